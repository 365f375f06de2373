"""ADE20K low-data (1_64 etc.) in UniMatch-V2's format, semantic mode: one sample per class present.

Layout (data root): images/{training,validation}/ADE_*.jpg, annotations/{training,validation}/ADE_*.png and
splits/ade20k/1_64/labeled.txt, splits/ade20k/val.txt ("image_path mask_path" per line, relative to the root).
UniMatch-V2's dataset code reads these label PNGs as they are (no offset) with 150 classes and ignore 255: its
pre-processed annotations hold 0..149 = the SceneParsing classes (0 wall, 1 building, 2 sky, ...) and
255 = "other"/unlabelled. The original ADEChallengeData2016 PNGs instead hold 0 = other and 1..150; read those
with reduce_zero_label=True (0 -> 255, c -> c-1). A 150 in a mask means the original PNGs were given without it.
"""

from __future__ import annotations

from data_modules.datasets.class_names import ADE20K_CLASSES
from data_modules.datasets.semantic import SemanticSplitDataset
from data_modules.datasets.splits import SplitLine
from data_modules.pipeline.binary import SampleOptions

HOW_TO_GET_ADE20K = (
    "Download ADEChallengeData2016 images (sceneparsing.csail.mit.edu) and UniMatch-V2's pre-processed "
    "annotations and splits/ade20k folder (github.com/LiheYoung/UniMatch-V2) into the data root; see README, Datasets"
)
ORIGINAL_LABELS_HINT = (
    " If these are the original ADEChallengeData2016 annotations (0 = other, 1..150), set reduce_zero_label=true."
)


def ade20k_dataset(
    lines: list[SplitLine], options: SampleOptions, train: bool, text_template: str = "{}",
    reduce_zero_label: bool = False,
) -> SemanticSplitDataset:
    return SemanticSplitDataset(lines, ADE20K_CLASSES, options, train, text_template,
                                reduce_zero_label=reduce_zero_label, label_hint=ORIGINAL_LABELS_HINT)
