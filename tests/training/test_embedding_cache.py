"""The image-embedding cache: same logits as no cache, used only where it is exact, bounded in size."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_modules import RefCocoDataModule
from data_modules.pipeline.collate import collate_prompted
from samadapt.embedding_cache import EmbeddingCache, cache_plan
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE

REPO = Path(__file__).resolve().parents[2]


def module(checkpoint, cache_mb, method="decoder_only", **kw):
    torch.manual_seed(0)
    return SamAdaptModule(method=method, sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE,
                          eval_prompts="points", embedding_cache_mb=cache_mb, **kw)


def batches(shapes_root, count=3, **kw):
    """`count` batches of 4 samples of 4 different images (one image twice in a batch sits in two rows, and the
    encoder's rows of one batch differ in the last bits: that is the encoder, not the cache)."""
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, **kw)
    dm.setup("fit")
    by_image = {}
    for i in range(len(dm.train_set)):
        sample = dm.train_set[i]
        by_image.setdefault(sample["image_key"], sample)
        if len(by_image) == 4 * count:
            break
    samples = list(by_image.values())[: 4 * count]
    return [collate_prompted(samples[4 * b: 4 * b + 4]) for b in range(count)]


@pytest.mark.parametrize("method", ["decoder_only", "plm"])
@pytest.mark.parametrize("tier", ["memory", "disk"])
def test_cached_and_uncached_training_match_exactly(tiny_sam_checkpoint, shapes_root, tmp_path, method, tier):
    """The same logits, losses and weights at every step, bit for bit: a cached embedding is the one the encoder
    gave (batches keep their composition here; a different one changes an embedding's last bits with or without
    the cache)."""
    disk = {"embedding_cache_dir": str(tmp_path / "cache")} if tier == "disk" else {}
    memory_mb = 64 if tier == "memory" else 0
    plain, cached = module(tiny_sam_checkpoint, 0, method), module(tiny_sam_checkpoint, memory_mb, method, **disk)
    assert plain.model.embedding_cache is None and cached.model.embedding_cache is not None
    data = batches(shapes_root)
    optimizers = [torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2) for m in (plain, cached)]
    kinds = [frozenset({"points"})] * 4
    for m in (plain, cached):
        m.train()
    for _epoch in range(2):  # the second epoch reads every embedding from the cache
        for batch in data:
            outputs = []
            for m, opt in zip((plain, cached), optimizers, strict=True):
                loss, _ = m.step_loss(batch, kinds)
                opt.zero_grad()
                loss.backward()
                opt.step()
                outputs.append((loss.detach(), m.model(batch, kinds)[0].detach()))
            assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    cache = cached.model.embedding_cache
    keys = {k for b in data for k in b["image_key"]}
    assert len(keys) == 12 and cache.misses == 12 and cache.hits == 3 * 12  # 4 forwards a batch, the first encodes
    if tier == "disk":
        assert len(list((tmp_path / "cache").rglob("*.pt"))) == len(keys)
    for (name, a), b in zip(plain.named_parameters(), cached.parameters(), strict=True):
        assert torch.equal(a, b), name


CHILD = """
import sys, torch
from samadapt.model import SamAdaptModel
model = SamAdaptModel(sam_variant="tiny", sam_checkpoint=sys.argv[1], image_size=64, method="plm",
                      embedding_cache_dir=sys.argv[2])
images = torch.load(sys.argv[3])
with torch.no_grad():
    out = model.embedding_cache.encode(["a", "b"], images, lambda x: model.method.encode(model.sam, x, None))
torch.save(out, sys.argv[4])
"""


def test_disk_cache_survives_a_new_process(tiny_sam_checkpoint, tmp_path):
    from samadapt.model import SamAdaptModel

    images = torch.rand(2, 3, TEST_SIZE, TEST_SIZE) * 255
    torch.save(images, tmp_path / "images.pt")
    child = subprocess.run([sys.executable, "-c", CHILD, tiny_sam_checkpoint, str(tmp_path / "cache"),
                            str(tmp_path / "images.pt"), str(tmp_path / "out.pt")], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert child.returncode == 0, child.stderr
    model = SamAdaptModel(sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint, image_size=TEST_SIZE, method="plm",
                          embedding_cache_dir=str(tmp_path / "cache"))
    cache = model.embedding_cache

    def must_not_encode(x):
        raise AssertionError("encoded although the other process cached it")

    with torch.no_grad():
        again = cache.encode(["a", "b"], images, must_not_encode)
        fresh = torch.cat([model.method.encode(model.sam, images[i : i + 1], None) for i in range(2)])  # one by one
    assert cache.hits == 2 and torch.equal(again, torch.load(tmp_path / "out.pt")) and torch.equal(again, fresh)
    other = SamAdaptModel(sam_variant="tiny", image_size=TEST_SIZE, method="plm",
                          embedding_cache_dir=str(tmp_path / "cache"))
    assert other.embedding_cache.get("a") is None  # another SAM's weights: another folder, never mixed up


def test_disk_tier_is_bounded_and_survives_damaged_files(tmp_path):
    value = torch.zeros(1000)  # ~4 KB per file
    size = len(pickle_bytes(value))
    cache = EmbeddingCache(0, tmp_path, disk_max_mb=2.5 * size / 2**20)
    for key in "abc":
        cache.put(key, value)
    files = sorted(tmp_path.rglob("*.pt"))
    assert len(files) == 2 and cache.get("a") is None and cache.get("c") is not None  # oldest went first
    for f in files:
        f.write_bytes(b"not a torch file")  # e.g. a disk full mid-copy by hand
    reopened = EmbeddingCache(0, tmp_path, disk_max_mb=1)
    assert reopened.get("b") is None and reopened.get("c") is None
    assert not list(tmp_path.rglob("*.pt"))  # the damaged entries are gone, to be recomputed


def pickle_bytes(value):
    import io

    buffer = io.BytesIO()
    torch.save({"key": "a", "value": value}, buffer)
    return buffer.getvalue()


def test_the_plan_follows_the_augmentation_settings(shapes_root):
    plain = RefCocoDataModule(shapes_root, dataset="shapes")
    flips = RefCocoDataModule(shapes_root, dataset="shapes", hflip=True)
    jitter = RefCocoDataModule(shapes_root, dataset="shapes", hflip=True, color_jitter=True)
    assert "encoded once" in cache_plan(plain)
    assert "2 views" in cache_plan(flips)
    assert "color_jitter" in cache_plan(jitter) and "encoded every time" in cache_plan(jitter)


def test_cache_is_off_where_it_would_be_wrong(tiny_sam_checkpoint, tiny_bert):
    dit = SamAdaptModule(method="dit", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint, image_size=TEST_SIZE,
                         text_encoder="bert", text_options={"name_or_path": tiny_bert}, embedding_cache_mb=64)
    assert dit.model.embedding_cache is None  # text enters the encoder
    unfrozen = module(tiny_sam_checkpoint, 64, train_image_encoder=True)
    assert unfrozen.model.embedding_cache is None  # the encoder itself trains


def test_random_pixels_have_no_key_and_flips_have_their_own(shapes_root):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, color_jitter=True, hflip=True)
    dm.setup("fit")
    assert all(dm.train_set[i]["image_key"] is None for i in range(4))
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, hflip=True)
    dm.setup("fit")
    keys = {dm.train_set[0]["image_key"] for _ in range(30)}
    assert len(keys) == 2 and any(k.endswith("|flip") for k in keys)


def test_least_recently_used_goes_first():
    cache = EmbeddingCache(max_mb=3 * 4 / 2**20)  # room for three float32 values
    for key in "abc":
        cache.put(key, torch.zeros(1))
    cache.get("a")
    cache.put("d", torch.zeros(1))
    assert list(cache.entries) == ["c", "a", "d"]
