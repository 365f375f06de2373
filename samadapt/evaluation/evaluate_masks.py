"""`samadapt evaluate-masks`: the in-training metrics for a folder of predicted mask PNGs against ground truth.

Predictions and ground truth are matched by file stem (`<pred>/img_01.png` with `<gt>/img_01.png`).
- Prediction PNGs: 8-bit probability maps (0..255) or binary masks (0/255; 0/1 masks with --pred-01).
  Nothing is guessed: a confident "no object" probability map may hold only 0 and 1, like a 0/1 mask; but when the
  first predictions hold only 0 and one value at or below the threshold (0/1 masks without --pred-01), a warning
  names the flag. Colour (RGB with differing channels) and 16-bit PNGs are refused, as in training.
- Ground-truth PNGs: binary, foreground where > 128 (0/255 masks, as PySODMetrics reads them) or == 1
  (0/1 masks); a mask whose largest value is 2..128 (0/100 masks, label maps) would have no foreground and stops.
  Sizes must match the predictions: resize predictions to the original image size first.
- Referring / semantic metrics binarise the prediction at `--threshold` on value / 255 (strictly above).
  Semantic metrics need a class id per file: `--classes FILE.json` ({"stem": id, ...}) or stems ending in
  `_c<id>` (the sample ids of samadapt's semantic label-map datasets).
Prints the results as JSON; `--out FILE` also writes them (atomically).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.evaluation.families import FAMILIES
from samadapt.io import atomic_write_json, output_file

if TYPE_CHECKING:  # torch and the metrics load in evaluate_folders: `--help` and bad arguments answer at once
    import torch

_CLASS_SUFFIX = re.compile(r"_c(\d+)$")


def png_stems(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise MissingFileError(folder, f"{what} folder", "Pass an existing folder of PNG masks.")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == ".png" and p.is_file()}
    if not files:
        raise SamAdaptError(f"{what} folder {folder} holds no .png files.")
    return files


def _names(stems: list[str]) -> str:
    shown = ", ".join(sorted(stems)[:5])
    return shown + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")


def pair_files(pred_dir: str | Path, gt_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(stem, prediction, ground truth) for every stem; any unmatched file on either side stops with its name."""
    preds, gts = png_stems(Path(pred_dir), "prediction"), png_stems(Path(gt_dir), "ground-truth")
    missing = [s for s in gts if s not in preds]
    if missing:
        raise SamAdaptError(f"{len(missing)} ground-truth masks in {gt_dir} have no prediction in {pred_dir}: "
                            f"{_names(missing)}. Predict every image, or evaluate a ground-truth folder "
                            "holding only the predicted ones.")
    extra = [s for s in preds if s not in gts]
    if extra:
        raise SamAdaptError(f"{len(extra)} predictions in {pred_dir} have no ground truth in {gt_dir}: "
                            f"{_names(extra)}. Remove them or check the file names (matched by stem).")
    return [(stem, preds[stem], gts[stem]) for stem in sorted(gts)]


def read_gray(path: Path) -> np.ndarray:
    """An (H, W) uint8 array from a grayscale PNG (or an RGB one whose channels are equal, as training reads masks)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I") or im.mode == "F":
                raise SamAdaptError(f"{path} is a 16/32-bit image; save masks as 8-bit PNGs (0..255).")
            if im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im)
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise SamAdaptError(f"{path} is a colour image with different R, G, B values; masks must be "
                                        "single-channel PNGs (as training requires). Save it as a grayscale PNG.")
                return np.ascontiguousarray(rgb[..., 0])
            return np.asarray(im.convert("L"))
    except SamAdaptError:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise SamAdaptError(f"cannot read {path}: {e}. Re-export it as an 8-bit PNG.") from e


FIRST_FILES = 8  # the value sets of this many predictions decide whether they look like binary masks


def prediction_warnings(pairs: list[tuple[str, Path, Path]], threshold: float, zero_one: bool) -> list[str]:
    """Warnings for predictions that look like binary masks which this reading turns all-background.

    Legal input (a confident probability map may hold two values), so a warning that names the flag, not an error.
    """
    if zero_one or not pairs:
        return []
    looked = pairs[:FIRST_FILES]
    values = set()
    for _, pred_path, _ in looked:
        values |= {int(v) for v in np.unique(read_gray(pred_path))}
    top = max(values)
    if len(values) != 2 or 0 not in values or top / 255.0 > threshold:
        return []
    fix = "pass --pred-01" if top == 1 else "save them as 0/255 masks"
    return [f"the first {len(looked)} predictions in {looked[0][1].parent} hold only the values 0 and {top}: read as "
            f"0..255 probabilities, {top}/255 is not above --threshold {threshold}, so every predicted mask is "
            f"empty and every IoU 0. If they are 0/{top} masks, {fix}."]


def check_ground_truth(gt: np.ndarray, path: Path) -> None:
    """Ground truth whose foreground would vanish under the > 128 / == 1 rule (0/100 masks, label maps) stops."""
    top = int(gt.max(initial=0))
    if 1 < top <= 128:
        shown = ", ".join(str(int(v)) for v in np.unique(gt)[:6])
        raise SamAdaptError(f"ground truth {path} holds the values {shown}: foreground is > 128 (0/255 masks) or "
                            "== 1 (0/1 masks), so it would have none. Save ground-truth masks as 0/255 or 0/1 PNGs.")


def prediction_u8(pred: np.ndarray, path: Path, zero_one: bool) -> np.ndarray:
    """0..255 probabilities as they are; with `zero_one`, a 0/1 mask scaled to 0/255."""
    if not zero_one:
        return pred.copy()
    if pred.max() > 1:
        raise SamAdaptError(f"{path} holds values above 1 but --pred-01 says predictions are 0/1 masks.")
    return pred * np.uint8(255)


def ground_truth(gt: np.ndarray) -> np.ndarray:
    """Boolean foreground: == 1 for 0/1 masks, > 128 otherwise (PySODMetrics' rule for 0/255 masks)."""
    return gt == 1 if gt.max() <= 1 else gt > 128


def class_of(stem: str, classes: dict[str, int] | None) -> int:
    if classes is not None:
        if stem not in classes:
            raise SamAdaptError(f"the --classes file gives no class id for {stem!r}; add it.")
        return int(classes[stem])
    match = _CLASS_SUFFIX.search(stem)
    if match is None:
        raise SamAdaptError(f"semantic metrics need a class id per file, but {stem!r} does not end in _c<id> "
                            "(e.g. img_01_c7.png) and no --classes file was given; or use --metrics referring/sod.")
    return int(match.group(1))


def read_classes(path: str | Path) -> dict[str, int]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "--classes file", 'Write a JSON object {"<stem>": <class id>, ...}.')
    try:
        classes = json.loads(path.read_text())
        return {str(k): int(v) for k, v in classes.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise SamAdaptError(f'{path} is not a JSON object {{"<stem>": <class id>}}: {e}') from e


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, metrics: str = "sod", threshold: float = 0.5,
                     strict_pk: bool = True, minmax: bool = True, classes: dict[str, int] | None = None,
                     pred_01: bool = False) -> dict:
    """The metrics of `metrics` family over every stem; the referring values are always included."""
    import torch

    from samadapt.evaluation.metrics import ReferringMetrics
    from samadapt.evaluation.protocol import check_threshold
    from samadapt.evaluation.semantic import SemanticMetrics
    from samadapt.evaluation.sod import SodMetrics

    if metrics not in FAMILIES:
        raise SamAdaptError(f"unknown --metrics {metrics!r}; choose {', '.join(FAMILIES)}")
    check_threshold(threshold, "probs")
    referring = ReferringMetrics(strict=strict_pk)
    sod = SodMetrics(minmax=minmax) if metrics == "sod" else None
    semantic = SemanticMetrics() if metrics == "semantic" else None
    pairs = pair_files(pred_dir, gt_dir)
    warnings = prediction_warnings(pairs, threshold, pred_01)
    for stem, pred_path, gt_path in pairs:
        pred, gt = read_gray(pred_path), read_gray(gt_path)
        check_ground_truth(gt, gt_path)
        if pred.shape != gt.shape:
            raise SamAdaptError(f"size mismatch for {stem}: prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} "
                                f"but ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]} (WxH); resize the "
                                "prediction to the original image size.")
        probs_u8 = torch.from_numpy(prediction_u8(pred, pred_path, pred_01))[None]
        target = torch.from_numpy(ground_truth(gt))[None]
        binary = probs_u8.double() / 255.0 > threshold
        referring.update(binary, target, [stem])
        if sod is not None:
            sod.update(probs_u8, target, [stem])
        if semantic is not None:
            semantic.update(binary, target, [class_of(stem, classes)], [stem])
    values = dict(referring.compute())
    for extra in (sod, semantic):
        if extra is not None:
            values.update(extra.compute())
    report = {"count": len(pairs), "metrics": {k: float(v) for k, v in values.items()},
              "settings": {"metrics": metrics, "threshold": threshold, "strict_pk": strict_pk, "sod_minmax": minmax,
                           "pred_01": pred_01, "pred": str(pred_dir), "gt": str(gt_dir)}}
    if semantic is not None:
        report["classIoU_per_class"] = semantic.per_class()
    if warnings:
        report["warnings"] = warnings
    return report


def write_mask_png(path: str | Path, mask: np.ndarray | torch.Tensor) -> None:
    """An (H, W) uint8 map (probabilities from metrics_sod.to_uint8, or 0/255 masks) as an 8-bit PNG."""
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)  # a torch tensor
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path)  # 2-D uint8: mode L


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt evaluate-masks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="folder of predicted mask PNGs (probabilities or binary)")
    parser.add_argument("--gt", required=True, help="folder of ground-truth mask PNGs with the same stems")
    parser.add_argument("--metrics", default="sod", choices=FAMILIES,
                        help="referring: oIoU, mIoU, P@k; sod: those + MAE, S/E/F measures (default); "
                             "semantic: those + classIoU, objectIoU (stems end in _c<class id>)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="binarise predictions where value/255 > threshold (default 0.5; DIT uses 0.35)")
    parser.add_argument("--inclusive-pk", action="store_true", help="P@k counts IoU >= k (LAVT) instead of > k")
    parser.add_argument("--no-minmax", action="store_true",
                        help="SOD measures on the raw maps (default: min-max normalised per image, as PySODMetrics)")
    parser.add_argument("--pred-01", action="store_true", help="predictions are 0/1 masks (default: 0..255 maps)")
    parser.add_argument("--classes", help='semantic: JSON {"<stem>": <class id>} (default: stems end in _c<id>)')
    parser.add_argument("--out", type=output_file, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    report = evaluate_folders(args.pred, args.gt, args.metrics, args.threshold, not args.inclusive_pk,
                              not args.no_minmax, read_classes(args.classes) if args.classes else None, args.pred_01)
    for warning in report.get("warnings", []):
        print(f"samadapt: warning: {warning}", file=sys.stderr)
    if args.out:
        atomic_write_json(report, args.out)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
