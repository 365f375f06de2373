"""COCO low-data (SAM-PTx's COCO 1_512): UniMatch split files over COCO 2017, one binary sample per object or class.

Layout (data root): train2017/, val2017/, masks/{train2017,val2017}/*.png (UniMatch's class masks: 0 background,
1..80 the COCO things in category-id order, 255 ignore), annotations/instances_{train2017,val2017}.json, and the
split files splits/coco/1_512/labeled.txt and splits/coco/val.txt ("image_path mask_path" per line).

mode="instance": one sample per object of instances.json (pycocotools decoding), text = its category name.
mode="semantic": one sample per class present in the class mask (background excluded), ignore = 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from data_modules.datasets.class_names import COCO_CLASSES
from data_modules.datasets.coco_annotations import annotation_mask, empty_reason, instances_hw
from data_modules.datasets.refcoco import load_coco
from data_modules.datasets.semantic import SemanticSplitDataset
from data_modules.datasets.splits import SplitLine
from data_modules.pipeline.binary import BinarySegDataset, SampleOptions, Target, apply_template
from data_modules.pipeline.images import check_same_size, read_rgb
from samadapt.errors import MissingFileError, SamAdaptError

HOW_TO_GET_COCO_LOWDATA = (
    "Download COCO 2017 train/val images and annotations from cocodataset.org, UniMatch's masks "
    "(github.com/LiheYoung/UniMatch, 'masks') and its splits/coco folder into the data root; see README, Datasets"
)
COCO_SEMANTIC_CLASSES: tuple[str, ...] = ("background", *COCO_CLASSES)


class CocoInstanceDataset(BinarySegDataset):
    """One sample per object (crowd regions excluded unless include_crowd) of the listed images."""

    def __init__(
        self,
        lines: list[SplitLine],
        annotations_dir: Path,
        options: SampleOptions,
        train: bool,
        text_template: str = "{}",
        include_crowd: bool = False,
    ):
        super().__init__(options, train)
        self.cocos: dict[str, Any] = {}
        self.annotation_files: dict[str, Path] = {}
        for line in lines:
            coco = self._coco(annotations_dir, line)
            image_id = self._image_id(coco, line)
            contiguous = {cid: i + 1 for i, cid in enumerate(sorted(coco.cats))}
            for ann in coco.imgToAnns.get(image_id, []):
                if ann["category_id"] not in contiguous:
                    raise SamAdaptError(
                        f"annotation {ann['id']} of {line.image}{line.where} has category_id {ann['category_id']}, "
                        f"which is not in the categories of its instances file. Re-download the annotations."
                    )
                if ann.get("iscrowd", 0) and not include_crowd:
                    self.report.add("crowd annotation excluded (set include_crowd to keep)", line.image)
                    continue
                where = f"{self.annotation_files[self._coco_key(line)]} annotation {ann['id']}"
                reason = empty_reason(ann, *instances_hw(coco, image_id, where), where)
                if reason is not None:  # an empty target trains nothing (docs/datasets.md)
                    self.report.add("annotation with zero area or no polygon skipped",
                                    f"{line.image} ann {ann['id']} ({reason})")
                    continue
                name = coco.cats[ann["category_id"]]["name"]
                self.targets.append(Target(f"{image_id}_a{ann['id']}", str(line.image),
                                           apply_template(text_template, name), contiguous[ann["category_id"]],
                                           (self._coco_key(line), ann["id"], line.where)))

    @staticmethod
    def _coco_key(line: SplitLine) -> str:
        return line.image.parent.name  # train2017 / val2017

    def _coco(self, annotations_dir: Path, line: SplitLine) -> Any:
        key = self._coco_key(line)
        if key not in self.cocos:
            path = annotations_dir / f"instances_{key}.json"
            if not path.is_file():
                raise MissingFileError(path, f"COCO instances file for {line.image}{line.where}",
                                       HOW_TO_GET_COCO_LOWDATA + ".")
            self.cocos[key] = load_coco(path)
            self.annotation_files[key] = path
        return self.cocos[key]

    @staticmethod
    def _image_id(coco: Any, line: SplitLine) -> int:
        try:
            image_id = int(line.image.stem)
        except ValueError:
            image_id = -1
        if image_id not in coco.imgs:
            raise SamAdaptError(
                f"image {line.image}{line.where} is not in instances_{line.image.parent.name}.json (COCO file names "
                f"are the 12-digit image id). Use the COCO 2017 images with their own annotations."
            )
        return image_id

    def load_image(self, target: Target) -> np.ndarray:
        return read_rgb(target.image, self.report, where=target.source[2])

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        key, ann_id, where = target.source
        coco, named = self.cocos[key], f"{self.annotation_files[key]} annotation {ann_id}"
        ann = coco.anns[ann_id]
        mask = annotation_mask(ann, *instances_hw(coco, ann.get("image_id"), named), named)
        check_same_size(image_hw, mask, Path(target.image), Path(f"instances_{key}.json annotation {ann_id}"), where)
        return mask, None

    def mask_files(self, target: Target) -> list[Path] | None:
        return [self.annotation_files[target.source[0]]]


def coco_lowdata_dataset(
    mode: Literal["instance", "semantic"],
    lines: list[SplitLine],
    root: Path,
    options: SampleOptions,
    train: bool,
    text_template: str = "{}",
    include_crowd: bool = False,
) -> BinarySegDataset:
    """The dataset for one split file in the chosen mode."""
    if mode == "instance":
        return CocoInstanceDataset(lines, root / "annotations", options, train, text_template, include_crowd)
    return SemanticSplitDataset(lines, COCO_SEMANTIC_CLASSES, options, train, text_template, skip_classes=(0,))
