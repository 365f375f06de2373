"""`samadapt segment --ckpt RUN.ckpt --image PATH|DIR [--text ...] [--point x,y ...] [--box x0,y0,x1,y1] --out DIR`
[--precision auto|bf16|fp32]

For every image: <stem>_mask.png (0 / 255 at the image's size) and <stem>_overlay.png (the mask tinted over the
image, points and box drawn), plus segment.json with each image's files and predicted IoU score and the
precision used (auto: bf16 where the device computes it natively). Prompts are in pixels of each image; all
images and prompts are checked before anything is written.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.inference.precision import PRECISIONS
from samadapt.inference.predictor import SamAdaptPredictor, check_prompts
from samadapt.io import atomic_write, atomic_write_json, output_folder
from samadapt.training.prediction_panel import draw_prompts

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
TINT = np.array([255, 40, 160], dtype=np.float32)  # magenta


def parse_numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        form = {2: "x,y", 4: "x0,y0,x1,y1"}[count]
        raise SamAdaptError(f"{what} {text!r} is not {form} (numbers in pixels, comma-separated, no spaces)")
    odd = next((v for v in values if not math.isfinite(v)), None)
    if odd is not None:
        raise SamAdaptError(f"{what} {text!r} holds {odd:g}: give finite numbers in pixels")
    return values


def json_number(value: float) -> float | None:
    """A float JSON can hold: NaN and infinity (which json.dumps would write as invalid JSON) become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def image_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SamAdaptError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingFileError(path, "image", "Give an image file or a folder of images.")
    stems = [f.stem for f in files]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate:
        raise SamAdaptError(f"two images are named {duplicate!r}; their outputs would overwrite each other")
    return files


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError) as err:
        raise SamAdaptError(f"cannot read image {path}: {err}") from err


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * TINT
    return out.clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def progress(items: list, description: str):
    """A progress bar over folders; a single image needs none."""
    if len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description=description)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt segment", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a training run's checkpoint (.ckpt)")
    parser.add_argument("--image", type=Path, nargs="+", required=True, help="image files and/or folders")
    parser.add_argument("--out", type=output_folder, required=True, help="output folder")
    parser.add_argument("--text", default=None, help="the referring phrase")
    parser.add_argument("--point", action="append", default=[], metavar="X,Y", help="foreground point (repeat)")
    parser.add_argument("--bg-point", action="append", default=[], metavar="X,Y", help="background point (repeat)")
    parser.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1", help="a box around the object")
    parser.add_argument("--threshold", type=float, default=None, help="probability cut (default: the run's)")
    parser.add_argument("--sam-checkpoint", default=None, help="the base SAM, if not at the path used in training")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="bf16 or fp32 (default auto: bf16 where the device computes it natively)")
    args = parser.parse_args(argv)

    points = [parse_numbers(p, 2, "--point") for p in args.point] + [
        parse_numbers(p, 2, "--bg-point") for p in args.bg_point]
    labels = [1] * len(args.point) + [0] * len(args.bg_point)
    boxes = [parse_numbers(args.box, 4, "--box")] if args.box else None
    files = image_files(args.image)
    for path in files:  # every prompt fits every image before the model loads or anything is written
        try:
            check_prompts(image_size(path), points, labels, boxes)
        except SamAdaptError as err:
            raise SamAdaptError(f"{path}: {err}") from err

    predictor = SamAdaptPredictor.from_checkpoint(args.ckpt, args.sam_checkpoint, device=args.device,
                                                  precision=args.precision)
    kinds = frozenset(k for k, given in (("points", points), ("box", boxes)) if given)
    records = {}
    for path in progress(files, f"segmenting {len(files)} images"):
        predictor.set_image(path)
        result = predictor.predict(text=args.text, points=points, point_labels=labels, boxes=boxes,
                                   threshold=args.threshold)
        mask = result.masks[0]
        drawn = draw_prompts(overlay(predictor.original_image, mask), kinds, torch.tensor(points).reshape(-1, 2),
                             torch.tensor(labels), torch.tensor(boxes[0] if boxes else [0.0] * 4))
        mask_path, overlay_path = args.out / f"{path.stem}_mask.png", args.out / f"{path.stem}_overlay.png"
        save_png(mask.astype(np.uint8) * 255, mask_path)
        save_png(drawn, overlay_path)
        records[str(path)] = {"mask": mask_path.name, "overlay": overlay_path.name,
                              "score": json_number(result.scores[0]), "foreground_fraction": float(mask.mean())}
    atomic_write_json({"checkpoint": str(args.ckpt), "text": args.text, "points": points, "point_labels": labels,
                       "box": boxes[0] if boxes else None, "precision": predictor.precision, "images": records},
                      args.out / "segment.json")
    print(json.dumps({"images": len(records), "out": str(args.out), "precision": predictor.precision}))
