"""The DataModules' LightningCLI arguments; RefCocoDataModule: early path checks, one batch per loader."""

import pytest
import torch
from jsonargparse import ArgumentParser

import data_modules
from data_modules import RefCocoDataModule
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.errors import MissingFileError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(write_synthetic_refcoco(tmp_path_factory.mktemp("dm"), num_train=6, num_eval=2, seed=2))


def _dm(root, **kw):
    return RefCocoDataModule(root, dataset="shapes", image_size=32, batch_size=2, eval_batch_size=3, **kw)


SHARED = {"test_splits": None, "image_size": 1024, "num_points": 1, "train_num_points": None, "num_bg_points": 0,
          "point_strategy": "uniform",
          "box_jitter": 0.1, "hflip": False, "color_jitter": False, "blur": False, "batch_size": 8,
          "eval_batch_size": 8, "num_workers": 0, "pixel_cache_dir": None, "pixel_cache_mb": 20000, "seed": 0,
          "max_train_samples": None, "max_eval_samples": None, "group_by_image": False,
          "color_jitter_strength": 0.2, "color_jitter_p": None,
          "color_jitter_style": "albumentations", "random_long_side": None, "letterbox": "top_left"}
CLASS_BASED = {**SHARED, "text_template": "{}"}
# Experiment files and saved configs name these arguments: their names and defaults must stay.
INIT_ARGS = {
    "RefCocoDataModule": {**SHARED, "dataset": "refcoco", "split_by": "unc", "train_split": "train",
                          "val_split": "val", "image_dir": None},
    "CocoLowDataDataModule": {**CLASS_BASED, "split": "1_512", "split_dir": None, "mode": "instance",
                              "include_crowd": False, "num_points": 5},
    "Ade20kDataModule": {**CLASS_BASED, "split": "1_64", "split_dir": None, "reduce_zero_label": False,
                         "num_points": 5},
    "Cod10kDataModule": {**CLASS_BASED, "text_mode": "fixed", "fixed_text": "camouflaged object",
                         "camouflaged_only": True, "train_split": "Train", "val_split": "Test"},
    "CelebAMaskDataModule": {**CLASS_BASED, "parts": None, "train_split": "train", "val_split": "val"},
    "FolderDataModule": {**CLASS_BASED, "default_text": "", "classes": None, "train_split": "train",
                         "val_split": "val"},
}


@pytest.mark.parametrize("name", sorted(INIT_ARGS))
def test_cli_arguments_keep_their_names_and_defaults_and_have_help(name):
    """LightningCLI lists each DataModule's own arguments and, through **kwargs, its parents', typed and explained."""
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(data_modules, name), "data")
    actions = {a.dest.removeprefix("data."): a for a in parser._actions if a.dest.startswith("data.")}
    assert dict(parser.parse_args(["--data.root", "r"]).data) == {"root": "r", **INIT_ARGS[name]}
    assert all(action.help for action in actions.values()), [k for k, a in actions.items() if not a.help]


def test_fit_and_test_loaders_yield_batches(root):
    dm = _dm(root, num_points=2, hflip=True, max_eval_samples=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["points"].shape == (2, 2, 2)
    assert batch["point_labels"].dtype == torch.long and len(batch["text"]) == 2
    assert batch["content_hw"].tolist() == [[24, 32]] * 2 and batch["content_hw"].dtype == torch.long  # 160x120
    val = list(dm.val_dataloader())
    assert sum(len(b["sample_id"]) for b in val) == 4 and val[0]["box"].shape[1] == 4
    dm.setup("test")
    assert dm.test_split_names == ["val", "testA", "testB"]
    loaders = dm.test_dataloader()
    assert len(loaders) == 3
    for loader in loaders:
        b = next(iter(loader))
        assert b["mask"].shape[1:] == (1, 32, 32) and len(b["sample_id"]) <= 3


def test_max_train_samples_and_custom_test_splits(root):
    dm = _dm(root, max_train_samples=3, test_splits=["testB"])
    dm.setup(None)
    assert len(dm.train_set) == 3 and dm.test_split_names == ["testB"] and len(dm.test_dataloader()) == 1


def test_setup_checks_paths_early(tmp_path):
    with pytest.raises(MissingFileError, match=str(tmp_path)):
        _dm(str(tmp_path)).setup("fit")
