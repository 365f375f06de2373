"""RefCocoDataModule: LightningCLI-friendly signature, early path checks, one batch per loader."""

import inspect

import pytest
import torch

from data_modules import RefCocoDataModule
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.errors import MissingFileError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(write_synthetic_refcoco(tmp_path_factory.mktemp("dm"), num_train=6, num_eval=2, seed=2))


def _dm(root, **kw):
    return RefCocoDataModule(root, dataset="shapes", image_size=32, batch_size=2, eval_batch_size=3, **kw)


def test_constructor_args_are_typed():
    params = list(inspect.signature(RefCocoDataModule.__init__).parameters.values())[1:]
    assert all(p.annotation is not inspect.Parameter.empty for p in params)


def test_fit_and_test_loaders_yield_batches(root):
    dm = _dm(root, num_points=2, hflip=True, max_eval_samples=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["points"].shape == (2, 2, 2)
    assert batch["point_labels"].dtype == torch.long and len(batch["text"]) == 2
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
