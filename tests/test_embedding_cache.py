"""The image-embedding cache: same logits as no cache, used only where it is exact, bounded in size."""

import torch

from data_modules import RefCocoDataModule
from samadapt.embedding_cache import EmbeddingCache
from samadapt.module import SamAdaptModule
from tests.conftest import TEST_SIZE


def module(checkpoint, cache_mb, method="decoder_only", **kw):
    torch.manual_seed(0)
    return SamAdaptModule(method=method, sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE,
                          eval_prompts="points", embedding_cache_mb=cache_mb, **kw)


def batches(shapes_root, count=3, **kw):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=4, eval_batch_size=4,
                           test_splits=["testA"], **kw)
    dm.setup("fit")
    loader = iter(dm.val_dataloader())
    return [next(loader) for _ in range(count)]


def test_cached_and_uncached_training_match(tiny_sam_checkpoint, shapes_root):
    """Same logits at every step and the same weights after training, up to float rounding (an embedding
    computed in another batch composition differs in the last bits; plain SGD keeps that from growing)."""
    plain, cached = module(tiny_sam_checkpoint, 0), module(tiny_sam_checkpoint, 64)
    assert plain.model.embedding_cache is None and cached.model.embedding_cache is not None
    data = batches(shapes_root)
    optimizers = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05) for m in (plain, cached)]
    kinds = [frozenset({"points"})] * 4
    for _epoch in range(2):  # the second epoch reads every embedding from the cache
        for batch in data:
            logits = []
            for m, opt in zip((plain, cached), optimizers, strict=True):
                low_res, iou = m.model(batch, kinds)
                loss, _ = m.loss(m.model.upsample(low_res), batch["mask"], iou)
                opt.zero_grad()
                loss.backward()
                opt.step()
                logits.append(low_res.detach())
            assert torch.allclose(logits[0], logits[1], atol=1e-5)
    cache = cached.model.embedding_cache
    samples = sum(len(b["text"]) for b in data)
    assert len(cache.entries) == len({k for b in data for k in b["image_key"]})  # one entry per image
    assert cache.misses <= samples <= cache.hits  # the first epoch fills it, the second only reads
    for (name, a), b in zip(plain.named_parameters(), cached.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


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
