"""COD10K camouflaged object detection: `Train|Test/Image/*.jpg` with `Train|Test/GT_Object/<stem>.png`.

File names carry the kind and class, e.g. COD10K-CAM-1-Aquatic-3-Crab-32.jpg: CAM = camouflaged (NonCAM
images have no camouflaged object and are left out of the usual subset), the 6th dash field is the class.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from data_modules.pipeline.binary import MaskFileDataset, SampleOptions, Target, apply_template
from samadapt.errors import MissingFileError, SamAdaptError

HOW_TO_GET_COD10K = (
    "Download COD10K-v3 (github.com/DengPingFan/SINet-V2, 'COD10K') and unzip it so that the data root holds "
    "Train/Image, Train/GT_Object, Test/Image and Test/GT_Object; see README, Datasets."
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def class_words(name: str) -> str:
    """'StickInsect' -> 'stick insect', 'Crab' -> 'crab'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").lower()


def cod10k_class(stem: str, path: Path) -> str:
    fields = stem.split("-")
    if len(fields) < 7:
        raise SamAdaptError(
            f"cannot read the class from the file name {path}: COD10K names look like "
            f"COD10K-CAM-1-Aquatic-3-Crab-32.jpg. Use the original file names or text_mode=fixed."
        )
    return class_words(fields[5])


def cod10k_stems(image_dir: Path) -> list[Path]:
    return sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class Cod10kDataset(MaskFileDataset):
    """One sample per image; text "camouflaged object" (fixed) or the class from the file name."""

    def __init__(
        self,
        root: Path,
        split: Literal["Train", "Test"],
        options: SampleOptions,
        train: bool,
        text_mode: Literal["fixed", "class"] = "fixed",
        fixed_text: str = "camouflaged object",
        text_template: str = "{}",
        camouflaged_only: bool = True,
    ):
        super().__init__(options, train)
        image_dir, gt_dir = root / split / "Image", root / split / "GT_Object"
        for folder in (image_dir, gt_dir):
            if not folder.is_dir():
                raise MissingFileError(folder, f"COD10K {split} folder", HOW_TO_GET_COD10K)
        for path in cod10k_stems(image_dir):
            if camouflaged_only and "-CAM-" not in path.name:
                self.report.add("non-camouflaged (NonCAM) image left out of the usual subset", path)
                continue
            mask = gt_dir / f"{path.stem}.png"
            if not mask.is_file():
                raise MissingFileError(mask, f"ground truth of {path}", "Each image needs GT_Object/<stem>.png; "
                                       "re-download COD10K or remove the image.")
            if text_mode == "class":
                name = cod10k_class(path.stem, path)
                text = apply_template(text_template, name)
            else:
                name, text = "", fixed_text
            self.targets.append(Target(path.stem, str(path), text, -1, (str(mask), name)))
        if not self.targets:
            raise SamAdaptError(f"no COD10K images found in {image_dir}. {HOW_TO_GET_COD10K}")
