"""Shared fixtures: a tiny SAM saved in the official format, tiny synthetic RefCOCO data, a tiny BERT."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers.text import make_tiny_bert, make_tiny_clip  # noqa: E402

TEST_SIZE = 64  # tests run the tiny SAM at 64 px (an 8x8 token grid)

# Tiny models gain nothing from intra-op threads, and a busy second core makes them wait: one thread.
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow (full-size SAM)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: full-size SAM; run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> str:
    """The tiny SAM at its native 128 px, random weights, saved as a plain state dict (official format)."""
    from samadapt.sam import build_sam, save_sam_checkpoint

    torch.manual_seed(0)
    sam = build_sam("tiny")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for name, p in sam.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    save_sam_checkpoint(sam, path)
    return str(path)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> str:
    from data_modules.synthetic.referring import write_synthetic_refcoco

    root = tmp_path_factory.mktemp("shapes")
    write_synthetic_refcoco(root, dataset="shapes", num_train=24, num_eval=6, seed=0)
    return str(root)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[dict, str]:
    """A tiny random open_clip CLIP (both towers) saved in the official format: (model_cfg, weights path)."""
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_layouts(tmp_path_factory) -> dict[str, str]:
    """Tiny datasets in each official layout, keyed by the class_path of the DataModule that reads them."""
    from tests.helpers import layouts

    base = tmp_path_factory.mktemp("layouts")
    return {
        "data_modules.CocoLowDataDataModule": str(layouts.write_coco_lowdata(base / "coco")),
        "data_modules.Ade20kDataModule": str(layouts.write_ade20k(base / "ade20k")),
        "data_modules.Cod10kDataModule": str(layouts.write_cod10k(base / "cod10k")),
        "data_modules.CelebAMaskDataModule": str(layouts.write_celebamask(base / "celebamask")),
        "data_modules.FolderDataModule": str(layouts.write_folder(base / "folder")),
    }


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, tiny_sam_checkpoint, shapes_root, tiny_bert) -> dict:
    """Two demo-sized runs (2 steps, then tested): shallow fusion (encoder frozen, embedding reusable) and
    L-DIT (text inside the encoder). name -> (run folder with results.json, last.ckpt)."""
    from tests.helpers.tiny_runs import fit_and_test

    out = tmp_path_factory.mktemp("runs")
    return {name: fit_and_test(experiment, out, name, tiny_sam_checkpoint, shapes_root, tiny_bert)
            for name, experiment in (("shallow", "demo/shallow_fusion"), ("ldit", "demo/ldit"))}


_DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


@pytest.fixture(autouse=True)
def no_process_group_leaks():
    """A run in this process under a distributed strategy (the FSDP experiment's smoke test, even on one device)
    leaves a default process group and MASTER_PORT behind: later multi-process tests would then fail to start."""
    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
