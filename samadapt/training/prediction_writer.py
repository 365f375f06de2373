"""`samadapt predict`: each sample's mask as a PNG at its image's own size, and one index, predictions.csv.

The masks are the ones `samadapt test` scores: the same original-resolution rule (protocol.eval_samples) and
the same binarisation (model.threshold / threshold_on), so the IoU column of the index is test's per-sample IoU.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from samadapt.evaluation.metrics import intersection_union, iou_of
from samadapt.evaluation.protocol import eval_samples
from samadapt.model import parse_prompt_kinds
from samadapt.sam.preprocess import content_boxes

INDEX_NAME = "predictions.csv"
INDEX_COLUMNS = ("sample_id", "split", "mask", "text", "prompts", "points", "point_labels", "box", "score", "IoU",
                 "height", "width")


def predicted_samples(module, batch: dict, split: str) -> list[dict]:
    """One row per sample of `batch` (its mask, a bool (H, W) array at the original size, under "mask_pixels"),
    predicted with the module's first eval_prompts combination."""
    prompts = next(iter(module.eval_kinds))
    low_res, iou_pred = module(batch, prompts)
    resolution = "original_binary" if module.eval_resolution() == "original_binary" else "original"
    has_target = "orig_mask" in batch
    if not has_target:  # no ground truth: an empty stand-in target, and no IoU in the index
        batch = {**batch, "orig_mask": [torch.zeros(h, w, dtype=torch.uint8) for h, w in batch["orig_size"].tolist()]}
    samples = eval_samples(module.model.upsample(low_res), batch, resolution)
    hp = module.hparams
    kinds = parse_prompt_kinds(prompts)
    boxes = content_boxes(batch, module.model.image_size).tolist()
    rows = []
    for i, sample in enumerate(samples):
        mask = sample.prediction(hp.threshold, hp.threshold_on)  # the rule EvalMetrics applies in `test`
        row = {"sample_id": sample.sample_id, "split": split, "text": batch["text"][i], "prompts": prompts,
               "score": round(float(iou_pred[i].reshape(-1)[0]), 6), "height": mask.shape[0], "width": mask.shape[1]}
        row.update(prompts_in_original_pixels(batch, i, kinds, boxes[i]))
        if has_target:
            ignore = sample.ignore[None] if sample.ignore is not None else None
            row["IoU"] = float(iou_of(*intersection_union(mask[None], sample.target[None], ignore))[0])
        row["mask_pixels"] = mask.cpu().numpy()
        rows.append(row)
    return rows


def prompts_in_original_pixels(batch: dict, i: int, kinds, content_box: list[int]) -> dict:
    """The point and box prompts sample i was given, as x, y in its original image (SamPredictor's convention)."""
    top, left, ch, cw = content_box
    h, w = batch["orig_size"][i].tolist()
    scale = torch.tensor([w / cw, h / ch], dtype=torch.float64)
    offset = torch.tensor([left, top], dtype=torch.float64)
    out = {}
    if "points" in kinds:
        labels = batch["point_labels"][i]
        keep = labels >= 0  # -1 pads a batch's shorter point lists
        points = (batch["points"][i][keep].double().cpu() - offset) * scale
        out["points"] = json.dumps([[round(v, 2) for v in p] for p in points.tolist()])
        out["point_labels"] = json.dumps(labels[keep].tolist())
    if "box" in kinds:
        box = (batch["box"][i].double().cpu().reshape(2, 2) - offset) * scale
        out["box"] = json.dumps([round(v, 2) for v in box.flatten().tolist()])
    return out


def safe_name(sample_id: str) -> str:
    """A file name made of a sample id (ids may hold slashes, spaces, colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "sample"


class PredictionWriter(BasePredictionWriter):
    """Writes `<out>/<split>/<sample id>.png` (0/255, the image's own size) and `<out>/predictions.csv`.

    `samadapt predict` adds it; `out` defaults to `<run folder>/predictions` (the logger's version folder, or
    trainer.default_root_dir without a logger). Under several processes each writes its own
    predictions.rank<N>.csv beside the first's.
    """

    def __init__(self, out: str | None = None):
        super().__init__(write_interval="batch")
        self.out = out
        self.folder: Path | None = None
        self._file = None
        self._writer: csv.DictWriter | None = None
        self._names: set[str] = set()

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "predict":
            return
        run_folder = trainer.log_dir or trainer.default_root_dir  # log_dir broadcasts: every process asks
        self.folder = Path(self.out) if self.out else Path(run_folder) / "predictions"

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = INDEX_NAME if trainer.global_rank == 0 else f"predictions.rank{trainer.global_rank}.csv"
        self._file = open(self.folder / name, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=INDEX_COLUMNS, restval="")
        self._writer.writeheader()
        self._names = set()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        for row in prediction:
            mask = row.pop("mask_pixels")
            relative = self._unique(f"{safe_name(row['split'])}/{safe_name(row['sample_id'])}")
            (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(self.folder / relative)
            self._writer.writerow({**row, "mask": relative})
        self._file.flush()

    def _unique(self, stem: str) -> str:
        """`stem`.png, or `stem`-2.png, ... when two ids map to the same file name."""
        name, n = f"{stem}.png", 1
        while name in self._names:
            n += 1
            name = f"{stem}-{n}.png"
        self._names.add(name)
        return name

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if trainer.is_global_zero:
                print(f"samadapt: predictions written to {self.folder} ({INDEX_NAME}, one mask PNG per sample)")
