"""The letterboxed-pixel cache: cached samples equal decoded ones, later reads decode nothing, edits are seen."""

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

import data_modules.pipeline.images as images_module
from data_modules import Ade20kDataModule, FolderDataModule
from data_modules.datasets.refcoco import RefCocoDataset
from data_modules.pipeline.binary import SampleOptions
from data_modules.pipeline.pixel_cache import HEADER_BYTES, MAGIC, PixelCache
from data_modules.synthetic.referring import write_synthetic_refcoco
from tests.helpers.layouts import write_ade20k, write_folder

S = 64


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("folder"), splits=(("train", 4), ("val", 3)))


def _folder(root, cache=None, train=True, **kw):
    dm = FolderDataModule(str(root), default_text="left object", image_size=S, num_points=3, num_bg_points=1,
                          hflip=True, box_jitter=0.1, pixel_cache_dir=None if cache is None else str(cache), **kw)
    dm.setup("fit")
    return dm.train_set if train else dm.val_set


def _read(ds, idx, seed):
    torch.manual_seed(seed)  # training reads draw flip and prompts from the global RNG: same seed, same draws
    return ds[idx]


def assert_same_sample(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == b[key].dtype and torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def _cache_files(cache_dir):
    return sorted(p for p in cache_dir.rglob("*.px"))


def _channels(path):
    return int(np.frombuffer(path.read_bytes()[len(MAGIC):HEADER_BYTES], np.int32)[0])


def test_cached_train_and_eval_samples_equal_decoded_ones(folder_root, tmp_path):
    plain, cached = _folder(folder_root), _folder(folder_root, tmp_path)
    flips = set()
    for _ in range(2):  # first pass fills the cache, the second reads it
        for idx in range(len(plain)):
            for seed in range(4):
                a, b = _read(plain, idx, seed), _read(cached, idx, seed)
                assert_same_sample(a, b)
                flips.add(a["image_key"].endswith("|flip"))
    assert flips == {True, False} and cached.pixel_cache.stats["hits"] > 0
    plain_val, cached_val = _folder(folder_root, train=False), _folder(folder_root, tmp_path, train=False)
    for _ in range(2):
        for idx in range(len(plain_val)):
            assert_same_sample(plain_val[idx], cached_val[idx])
    assert "orig_mask" in cached_val[0] and cached_val.pixel_cache.stats["hits"] > 0


def test_second_pass_decodes_no_file(folder_root, tmp_path, monkeypatch):
    ds = _folder(folder_root, tmp_path)
    first = [_read(ds, i, 7) for i in range(len(ds))]
    opened = []
    real_open = images_module._open
    monkeypatch.setattr(images_module, "_open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    second = [_read(ds, i, 7) for i in range(len(ds))]
    assert opened == []  # neither the JPEG nor the mask PNG
    for a, b in zip(first, second, strict=True):
        assert_same_sample(a, b)


def test_edited_image_is_decoded_again(tmp_path):
    root = write_folder(tmp_path / "data", splits=(("train", 1), ("val", 1)))
    ds = _folder(root, tmp_path / "cache")
    before = _read(ds, 0, 1)["image"]
    path = root / "train" / "images" / "train_000.jpg"
    Image.fromarray(255 - np.asarray(Image.open(path))).save(path, quality=95)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = _read(ds, 0, 1)
    assert not torch.equal(before, after["image"])
    assert_same_sample(after, _read(_folder(root), 0, 1))


def test_size_limit_stops_writing(folder_root, tmp_path, caplog):
    one_image_mb = (HEADER_BYTES + 3 * S * S) / 2**20
    ds = _folder(folder_root, tmp_path, pixel_cache_mb=1.5 * one_image_mb)
    plain = _folder(folder_root)
    with caplog.at_level(logging.WARNING):
        for idx in range(len(ds)):
            assert_same_sample(_read(ds, idx, 3), _read(plain, idx, 3))
    assert ds.pixel_cache.full and "reached its limit" in caplog.text
    assert 0 < ds.pixel_cache.disk_usage() <= 1.5 * one_image_mb * 2**20
    assert sum(_channels(p) == 3 for p in _cache_files(tmp_path)) == 1


def test_truncated_cache_file_is_remade_with_a_warning(folder_root, tmp_path, caplog):
    ds, plain = _folder(folder_root, tmp_path), _folder(folder_root)
    _read(ds, 0, 5)
    files = _cache_files(tmp_path)
    assert len(files) == 2  # the image and the target of sample 0
    sizes = {p: p.stat().st_size for p in files}
    for p in files:
        p.write_bytes(p.read_bytes()[: sizes[p] // 2])
    with caplog.at_level(logging.WARNING):
        assert_same_sample(_read(ds, 0, 5), _read(plain, 0, 5))
    assert "damaged" in caplog.text and ds.pixel_cache.stats["corrupt"] == 2
    assert {p: p.stat().st_size for p in files} == sizes  # rewritten whole


def test_random_pixels_are_never_cached(folder_root, tmp_path):
    for options in ({"color_jitter": True}, {"blur": True}):
        ds = _folder(folder_root, tmp_path, **options)
        for idx in range(len(ds)):
            assert _read(ds, idx, 0)["image_key"] is None
    files = _cache_files(tmp_path)
    assert files and all(_channels(p) == 1 for p in files)  # targets only: their pixels are not random


def test_ignore_maps_of_semantic_datasets_are_cached(tmp_path):
    root = write_ade20k(tmp_path / "ade")
    dms = [Ade20kDataModule(str(root), image_size=S, hflip=True, num_bg_points=2,
                            pixel_cache_dir=None if c is None else str(c)) for c in (None, tmp_path / "cache")]
    for dm in dms:
        dm.setup("fit")
    plain, cached = dms[0].train_set, dms[1].train_set
    for _ in range(2):
        for idx in range(len(plain)):
            assert_same_sample(_read(plain, idx, idx), _read(cached, idx, idx))
    assert "ignore" in plain[0] and any(_channels(p) == 2 for p in _cache_files(tmp_path / "cache"))


def test_refcoco_cached_equals_decoded(tmp_path):
    root = write_synthetic_refcoco(tmp_path / "refcoco", num_train=6, num_eval=2, seed=0)
    plain, cached = (RefCocoDataset(root, "shapes", "unc", "train", None, SampleOptions(
        image_size=S, hflip=True, num_points=2, box_jitter=0.1, pixel_cache_dir=c), train=True)
        for c in (None, str(tmp_path / "cache")))
    flips = set()
    for _ in range(2):
        for idx in range(len(plain)):
            for seed in range(4):
                a = _read(plain, idx, seed)
                assert_same_sample(a, _read(cached, idx, seed))
                flips.add(a["image_key"].endswith("|flip"))
    assert flips == {True, False} and cached.pixel_cache.stats["hits"] > 0


def test_dataloader_with_two_workers_shares_the_cache(folder_root, tmp_path):
    def batches(cache, workers):
        dm = FolderDataModule(str(folder_root), default_text="left object", image_size=S, hflip=True, batch_size=2,
                              num_workers=workers, pixel_cache_dir=None if cache is None else str(cache))
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [list(loader) for _ in range(2)]  # same epoch twice: same order and draws

    expected = batches(None, 0)[0]
    for epoch in batches(tmp_path, 2):
        for a, b in zip(expected, epoch, strict=True):
            assert_same_sample(a, b)
    assert len(_cache_files(tmp_path)) >= 2 * 4


def test_cache_folder_depends_on_size_and_resize_method(tmp_path, monkeypatch):
    import data_modules.pipeline.pixel_cache as pc

    a, b = PixelCache(tmp_path, 64), PixelCache(tmp_path, 128)
    monkeypatch.setattr(pc, "RESIZE_METHOD", pc.RESIZE_METHOD + " changed")
    assert len({a.dir, b.dir, PixelCache(tmp_path, 64).dir}) == 3
