"""The evaluation protocol: which metrics a run computes, at which resolution, and the test report.

- Metric family, from the dataset unless chosen: "referring" (RefCOCO family: oIoU, mIoU, P@k), "sod"
  (COD10K and plain folders: those plus MAE, S-measure, E-measure, weighted F, F-measure) and "semantic"
  (COCO / ADE20K low-data, CelebAMask-HQ: those plus classIoU and objectIoU). The referring values are in
  every family, so `val/oIoU` exists for checkpoint monitoring whatever the dataset.
- Resolution: "original" un-letterboxes the logits (crop the content, bilinear resize to the image's own
  size, as SAM's postprocess_masks does) and compares with the original-size target `batch["orig_mask"]`,
  as the published evaluations do; "model" crops the letterboxed prediction and target at the model's
  resolution (fast, for validation during training). "auto": model while fitting, original otherwise.
  "original_binary" is the released DIT code's protocol (test.py, utils.mask_processing): binarise at the model's
  resolution, crop the content, resize the 0/1 float mask to the original size with OpenCV's bilinear filter and
  keep every pixel > 0 (which grows masks by up to a pixel at their edges). Referring metrics only.
- Binarisation: a pixel is foreground when sigmoid(logit) > threshold (threshold_on="probs", DIT: 0.35)
  or logit > threshold (threshold_on="logits", SAM: 0). SOD measures use the probabilities themselves.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from samadapt.errors import SamAdaptError
from samadapt.evaluation.families import FAMILIES, MetricFamily
from samadapt.evaluation.metrics import ReferringMetrics
from samadapt.evaluation.semantic import SemanticMetrics
from samadapt.evaluation.sod import SodMetrics
from samadapt.io import atomic_write, atomic_write_json
from samadapt.sam.preprocess import content_boxes, crop_content, to_original

# The family each DataModule's published results use (by class name, so subclasses inherit it).
DATASET_METRICS: dict[str, MetricFamily] = {
    "RefCocoDataModule": "referring",
    "Cod10kDataModule": "sod",
    "FolderDataModule": "sod",
    "CocoLowDataDataModule": "semantic",
    "Ade20kDataModule": "semantic",
    "CelebAMaskDataModule": "semantic",
}


def metrics_for(datamodule: object | None) -> MetricFamily:
    """The metric family of a DataModule: its `eval_metrics` attribute, else DATASET_METRICS, else referring."""
    if datamodule is None:
        return "referring"
    declared = getattr(datamodule, "eval_metrics", None)
    if declared is not None:
        return check_family(declared)
    for cls in type(datamodule).__mro__:
        if cls.__name__ in DATASET_METRICS:
            return DATASET_METRICS[cls.__name__]
    return "referring"


def check_family(name: str) -> MetricFamily:
    if name not in FAMILIES:
        raise SamAdaptError(f"unknown metrics {name!r}; choose auto, {', '.join(FAMILIES)}")
    return name  # type: ignore[return-value]


def check_threshold(threshold: float, on: str) -> None:
    if on not in ("probs", "logits"):
        raise SamAdaptError(f"threshold_on must be probs or logits, got {on!r}")
    if on == "probs" and not 0.0 < threshold < 1.0:
        raise SamAdaptError(f"threshold {threshold} on probabilities must lie strictly between 0 and 1; for a "
                            "threshold on logits (SAM's 0) set threshold_on: logits")


def binarize(logits: torch.Tensor, threshold: float, on: str) -> torch.Tensor:
    """Foreground where sigmoid(logits) > threshold ("probs") or logits > threshold ("logits")."""
    return (logits.sigmoid() if on == "probs" else logits) > threshold


def probability_threshold(threshold: float, on: str) -> float:
    """The same cut on probabilities: sigmoid(threshold) for a threshold on logits (0 -> 0.5)."""
    return float(torch.tensor(threshold, dtype=torch.float64).sigmoid()) if on == "logits" else threshold


RESOLUTIONS = ("original", "original_binary", "model")


@dataclass
class EvalSample:
    """One prediction ready for the metrics: logits and target at the evaluation resolution."""

    sample_id: str
    logits: torch.Tensor  # (H, W) float; for original_binary the content at the model's resolution
    target: torch.Tensor  # (H, W) bool
    ignore: torch.Tensor | None  # (H, W) bool, or None when nothing is ignored
    class_id: int = -1
    binary_to_hw: tuple[int, int] | None = None  # original_binary: binarise, then resize the mask to (H, W)

    def prediction(self, threshold: float, on: str) -> torch.Tensor:
        """The binary prediction at the target's resolution."""
        mask = binarize(self.logits, threshold, on)
        if self.binary_to_hw is None:
            return mask
        h, w = self.binary_to_hw
        # a float 0/1 map resized bilinearly, then > 0: every pixel that touches the mask (DIT's test.py)
        resized = cv2.resize(mask.float().cpu().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(resized > 0).to(mask.device)


def eval_samples(logits: torch.Tensor, batch: dict, resolution: str) -> list[EvalSample]:
    """Split a batch of letterboxed logits (B, 1, S, S) into per-sample EvalSamples at `resolution`; each sample's
    content is cropped where the batch says it is (`content_offset`, `content_hw`: top left or centred)."""
    if resolution not in RESOLUTIONS:
        raise SamAdaptError(f"eval_resolution must be auto or one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    if resolution.startswith("original") and "orig_mask" not in batch:
        raise SamAdaptError("eval_resolution original needs the original-size targets (batch['orig_mask']), "
                            "which this DataModule's evaluation samples lack; use eval_resolution: model")
    boxes = content_boxes(batch, logits.shape[-1]).tolist()  # (top, left, h, w) of each sample's content
    class_ids = batch.get("class_id")
    out = []
    for i, (h, w) in enumerate(batch["orig_size"].tolist()):
        binary_to_hw = None
        if resolution.startswith("original"):
            if resolution == "original":
                sample_logits = to_original(logits[i, 0], (h, w), content_box=boxes[i])
            else:
                sample_logits, binary_to_hw = crop_content(logits[i, 0], boxes[i]), (h, w)
            orig = batch["orig_mask"][i].to(logits.device)
            target, ignore = orig == 1, orig == 255
        else:
            sample_logits = crop_content(logits[i, 0], boxes[i])
            target = crop_content(batch["mask"][i, 0], boxes[i]) > 0.5
            ignore = crop_content(batch["ignore"][i, 0], boxes[i]) if "ignore" in batch else None
        out.append(EvalSample(str(batch["sample_id"][i]), sample_logits.float(), target,
                              ignore if ignore is not None and bool(ignore.any()) else None,
                              int(class_ids[i]) if class_ids is not None else -1, binary_to_hw))
    return out


class EvalMetrics(torch.nn.Module):
    """The metrics of one family for one split (or several pooled), fed with EvalSamples."""

    def __init__(self, family: MetricFamily = "referring", threshold: float = 0.5, threshold_on: str = "probs",
                 strict_pk: bool = True, sod_minmax: bool = True):
        super().__init__()
        check_threshold(threshold, threshold_on)
        self.family = check_family(family)
        self.threshold, self.threshold_on = threshold, threshold_on
        self.referring = ReferringMetrics(strict=strict_pk)
        self.sod = SodMetrics(minmax=sod_minmax) if family == "sod" else None
        self.semantic = SemanticMetrics() if family == "semantic" else None

    def update(self, samples: list[EvalSample], key_prefix: str = "") -> None:
        """`key_prefix` keeps ids of different splits apart when several splits are pooled in one metric."""
        for s in samples:
            ids = [key_prefix + s.sample_id]
            pred, target = s.prediction(self.threshold, self.threshold_on)[None], s.target[None]
            ignore = s.ignore[None] if s.ignore is not None else None
            self.referring.update(pred, target, ids, ignore)
            if self.sod is not None:
                if s.binary_to_hw is not None:
                    raise SamAdaptError("eval_resolution original_binary (the DIT protocol) gives binary masks; SOD "
                                        "measures need probabilities: use eval_resolution original")
                self.sod.update(s.logits.sigmoid()[None], target, ids)
            if self.semantic is not None:
                self.semantic.update(pred, target, [s.class_id], ids, ignore)

    def compute(self) -> dict[str, torch.Tensor]:
        out = dict(self.referring.compute())
        for extra in (self.sod, self.semantic):
            if extra is not None:
                out.update(extra.compute())
        return out

    def per_sample(self) -> list[dict]:
        """Intersection, union and IoU of every sample (all processes). Collective: call on every process."""
        return self.referring.per_sample()

    def details(self) -> dict:
        """What does not fit a scalar log: the IoU of every class (semantic family)."""
        return {"classIoU_per_class": self.semantic.per_class()} if self.semantic is not None else {}

    def reset(self) -> None:
        for metric in (self.referring, self.sod, self.semantic):
            if metric is not None:
                metric.reset()


# ---- the test report -------------------------------------------------------------------------------------------

REPORT_NAME = "test_metrics"


def markdown_table(rows: list[dict]) -> str:
    """Rows of {"split", "prompts", metric: value, ...} as a markdown table (values to 4 decimals)."""
    if not rows:
        return "(no test results)\n"
    columns = ["split", "prompts"] + [k for k in rows[0] if k not in ("split", "prompts")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_per_sample(path: Path, samples: list[dict]) -> None:
    """CSV, one line per (split, prompts, sample): intersection, union, IoU at the evaluation resolution."""
    columns = ["split", "prompts", "sample_id", "intersection", "union", "IoU"]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(samples)

    atomic_write(path, write)


def write_report(directory: str | Path, rows: list[dict], settings: dict) -> tuple[Path, Path]:
    """Write <dir>/test_metrics.json, test_metrics.md and (if rows carry "per_sample") test_per_sample.csv.

    rows: {"split", "prompts", metric: value, ..., optional "classIoU_per_class" and "per_sample"}; per-sample
    ids may carry the "<split>/" prefix that keeps pooled splits apart: it is dropped here.
    """
    directory = Path(directory)
    json_path, md_path = directory / f"{REPORT_NAME}.json", directory / f"{REPORT_NAME}.md"
    rows = [dict(r) for r in rows]
    per_class = {f"{r['split']}/{r['prompts']}": r.pop("classIoU_per_class") for r in rows if "classIoU_per_class" in r}
    details = {"classIoU_per_class": per_class} if per_class else {}
    per_sample = [{"split": r["split"], "prompts": r["prompts"], **s,
                   "sample_id": s["sample_id"].removeprefix(f"{r['split']}/")}
                  for r in rows for s in r.pop("per_sample", [])]
    if per_sample:
        write_per_sample(directory / "test_per_sample.csv", per_sample)
    atomic_write_json({"results": rows, "settings": settings, "details": details}, json_path)
    settings_line = ", ".join(f"{k}={v}" for k, v in settings.items())
    text = f"# Test results\n\n{markdown_table(rows)}\nSettings: {settings_line}\n"
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(text))
    return json_path, md_path
