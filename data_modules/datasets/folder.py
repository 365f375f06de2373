"""A folder of task-specific data (banners, licence plates, anything): `images/` and `masks/` with matching stems.

Layout per split (`<root>/<split>/`, or the root itself with split "."):
  images/<stem>.jpg|png|...   masks/<stem>.png (binary: 0/1 or 0/255)
  texts.json (optional)       {"<stem>": "text or class name", ...}; images without an entry get `default_text`
  points.json (optional)      {"<stem>": [[x, y], ...], ...}: fixed foreground clicks in image pixels, used as the
                              sample's point prompt instead of points drawn from its mask (not with hflip)
`text_template` is applied to every text; with `classes` set, every text must be one of them (class_id = index).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from data_modules.pipeline.binary import MaskFileDataset, SampleOptions, Target, apply_template
from data_modules.pipeline.sample import Sample
from samadapt.errors import MissingFileError, SamAdaptError

HOW_TO_GET_FOLDER = "Put images in <root>/<split>/images and binary masks with the same stem in <root>/<split>/masks."
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in out:
            raise SamAdaptError(f"{out[p.stem]} and {p} share the stem {p.stem!r}; keep one file per stem.")
        out[p.stem] = p
    return out


def _is_click_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(c, int | float) for c in p) for p in value)


def _read_stem_map(path: Path, valid: Callable[[object], bool], shape: str, described: str) -> dict:
    """{stem: value} from an optional JSON file (empty when absent); `valid` checks each value."""
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SamAdaptError(f"could not read {path}: {e}. It must be a JSON object {{stem: {shape}}}.") from e
    if not isinstance(found, dict) or not all(valid(v) for v in found.values()):
        raise SamAdaptError(f"{path} must be a JSON object mapping image stems to {described}.")
    return found


def _read_points(path: Path) -> dict[str, list[list[float]]]:
    return _read_stem_map(path, _is_click_list, "[[x, y], ...]", "non-empty lists of [x, y] pairs")


def _read_texts(path: Path) -> dict[str, str]:
    return _read_stem_map(path, lambda v: isinstance(v, str), "text", "strings")


class FolderDataset(MaskFileDataset):
    """One sample per image of `<root>/<split>/images`."""

    def __init__(
        self,
        root: Path,
        split: str,
        options: SampleOptions,
        train: bool,
        default_text: str = "",
        classes: tuple[str, ...] | None = None,
        text_template: str = "{}",
    ):
        super().__init__(options, train)
        base = root / split
        image_dir, mask_dir = base / "images", base / "masks"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise MissingFileError(folder, "folder dataset directory", HOW_TO_GET_FOLDER)
        images, masks = _by_stem(image_dir), _by_stem(mask_dir)
        texts_path = base / "texts.json"
        texts = _read_texts(texts_path)
        for stem in sorted(set(masks) - set(images)):
            self.report.add("mask without an image ignored", masks[stem])
        for stem in sorted(set(texts) - set(images)):
            raise SamAdaptError(f"{texts_path} names {stem!r}, which has no image in {image_dir}. Fix the entry.")
        points_path = base / "points.json"
        self.points = _read_points(points_path)
        for stem in sorted(set(self.points) - set(images)):
            raise SamAdaptError(f"{points_path} names {stem!r}, which has no image in {image_dir}. Fix the entry.")
        if self.points and train and options.hflip:
            raise SamAdaptError(f"{points_path} gives fixed clicks, which a horizontal flip would misplace; "
                                "set hflip: false for this dataset.")
        for stem, image in images.items():
            if stem not in masks:
                raise MissingFileError(mask_dir / f"{stem}.png", f"mask of {image}", "Add it or remove the image.")
            raw = texts.get(stem, default_text)
            class_id = -1
            if classes is not None:
                if raw not in classes:
                    raise SamAdaptError(f"{texts_path} gives {stem!r} the class {raw!r}, which is not in classes "
                                        f"{list(classes)}. Fix the entry or the classes list.")
                class_id = classes.index(raw)
            text = apply_template(text_template, raw)
            self.targets.append(Target(stem, str(image), text, class_id, (str(masks[stem]),)))
        if not self.targets:
            raise SamAdaptError(f"no images found in {image_dir}. {HOW_TO_GET_FOLDER}")

    def __getitem__(self, idx: int) -> Sample:
        sample = super().__getitem__(idx)
        clicks = self.points.get(self.targets[idx].sample_id)
        if clicks is not None:  # the file's clicks, moved into the letterboxed frame like the image
            scale = float(sample["content_hw"].max()) / float(sample["orig_size"].max())
            top, left = sample["content_offset"].tolist()
            shift = torch.tensor([left, top], dtype=torch.float32)
            sample["points"] = torch.tensor(clicks, dtype=torch.float32) * scale + shift
            sample["point_labels"] = torch.ones(len(clicks), dtype=torch.long)
        return sample
