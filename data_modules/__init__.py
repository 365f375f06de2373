"""Datasets and LightningDataModules that yield samples in the shared prompted-segmentation format."""

from data_modules.datasets.refcoco import RefCocoDataset
from data_modules.datasets.safe_pickle import load_refs, load_refs_pickle
from data_modules.pipeline.collate import collate_prompted
from data_modules.pipeline.prompts import jitter_box, mask_to_box, sample_points, sample_prompts
from data_modules.pipeline.transforms import letterbox, swap_left_right
from data_modules.synthetic.referring import write_synthetic_refcoco

_DATAMODULES = {"PromptedSegDataModule", "RefCocoDataModule", "CocoLowDataDataModule", "Ade20kDataModule",
                "Cod10kDataModule", "CelebAMaskDataModule", "FolderDataModule"}


def __getattr__(name: str):
    # the DataModules import lightning (seconds); load them only when asked, so `samadapt synth` stays fast
    if name in _DATAMODULES:
        from data_modules import datamodules

        return getattr(datamodules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Ade20kDataModule",
    "CelebAMaskDataModule",
    "CocoLowDataDataModule",
    "Cod10kDataModule",
    "FolderDataModule",
    "PromptedSegDataModule",
    "RefCocoDataModule",
    "RefCocoDataset",
    "collate_prompted",
    "jitter_box",
    "letterbox",
    "load_refs",
    "load_refs_pickle",
    "mask_to_box",
    "sample_points",
    "sample_prompts",
    "swap_left_right",
    "write_synthetic_refcoco",
]
