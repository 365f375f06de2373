"""Semantic label maps as per-class binary samples: one sample per (image, class present), 255 = ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_modules.datasets.splits import SplitLine
from data_modules.pipeline.binary import BinarySegDataset, SampleOptions, Target, apply_template
from data_modules.pipeline.images import LoadReport, check_same_size, read_label, read_rgb
from samadapt.errors import SamAdaptError

IGNORE = 255


def classes_present(
    label: np.ndarray, num_classes: int, skip: set[int], path: Path, where: str, hint: str = ""
) -> list[int]:
    """Sorted class ids present in a label map; a value outside 0..num_classes-1 (and not 255) stops."""
    values = np.unique(label)
    bad = [int(v) for v in values if v != IGNORE and not 0 <= v < num_classes]
    if bad:
        raise SamAdaptError(
            f"mask {path}{where} holds class id {bad[0]}, outside the {num_classes} classes 0..{num_classes - 1} "
            f"(255 = ignore).{hint} Fix the mask or the dataset choice."
        )
    return [int(v) for v in values if v != IGNORE and int(v) not in skip]


class SemanticSplitDataset(BinarySegDataset):
    """Label-map PNGs listed by a UniMatch split file; target for class c: mask = (label == c), ignore = 255."""

    def __init__(
        self,
        lines: list[SplitLine],
        class_names: tuple[str, ...],
        options: SampleOptions,
        train: bool,
        text_template: str = "{}",
        skip_classes: tuple[int, ...] = (),
        reduce_zero_label: bool = False,
        label_hint: str = "",
    ):
        super().__init__(options, train)
        self.class_names, self.reduce_zero_label = class_names, reduce_zero_label
        for line in lines:
            label = self._label(line.mask, line.where, self.report)
            for c in classes_present(label, len(class_names), set(skip_classes), line.mask, line.where, label_hint):
                self.targets.append(Target(f"{line.image.stem}_c{c}", str(line.image),
                                           apply_template(text_template, class_names[c]), c,
                                           (str(line.mask), line.where)))

    def _label(self, path: Path, where: str, report: LoadReport) -> np.ndarray:
        label = read_label(path, report, where=where).astype(np.int64)
        if self.reduce_zero_label:  # original ADEChallengeData2016: 0 = "other" -> ignore, 1..150 -> 0..149
            label = np.where((label == 0) | (label == IGNORE), IGNORE, label - 1)
        return label

    def load_image(self, target: Target) -> np.ndarray:
        return read_rgb(target.image, self.report, where=target.source[1])

    def load_mask(self, target: Target, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        mask_path, where = Path(target.source[0]), target.source[1]
        label = self._label(mask_path, where, self.report)
        check_same_size(image_hw, label, Path(target.image), mask_path, where)
        return label == target.class_id, label == IGNORE

    def mask_files(self, target: Target) -> list[Path] | None:
        return [Path(target.source[0])]

    def mask_settings(self) -> str:
        return f"reduce_zero_label={self.reduce_zero_label}"
