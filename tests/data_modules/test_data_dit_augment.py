"""The released DIT code's training augmentation: PIL colour jitter (p 0.8, factors in [0.6, 1.4], random order)
and scale augmentation (the content's long side drawn from a list, letterboxed into the S x S frame)."""

from itertools import islice

import numpy as np
import pytest
import torch

from data_modules import RefCocoDataModule
from data_modules.datasets.refcoco import RefCocoDataset
from data_modules.pipeline.augment import PhotometricAugment, PilColorJitter
from data_modules.pipeline.binary import SampleOptions
from data_modules.pipeline.resumable import SeededDataset
from data_modules.pipeline.transforms import letterbox
from data_modules.synthetic.referring import write_synthetic_refcoco
from samadapt.errors import SamAdaptError

S = 64  # the synthetic images are 160 x 120
DIT_SIZES = [64, 56, 48, 40, 32]  # S - 8 i: DIT's S - 32 i at this small size


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_refcoco(tmp_path_factory.mktemp("refcoco"), num_train=12, num_eval=2, seed=3)


def _train_set(root, **options):
    return RefCocoDataset(root, "shapes", "unc", "train", None, SampleOptions(image_size=S, **options), True)


def test_pil_jitter_draws_as_dit():
    jitter = PilColorJitter(0.4, 0.4, 0.4, p=0.8)
    torch.manual_seed(0)
    draws = [jitter.draw() for _ in range(4000)]
    unchanged = sum(not d for d in draws) / len(draws)
    assert 0.18 < unchanged < 0.22  # DIT: `random.random() < 0.8` jitters
    factors = [f for d in draws for _, f in d]
    assert all(0.6 <= f <= 1.4 for f in factors)
    assert min(factors) < 0.61 and max(factors) > 1.39  # the whole range is used
    orders = {tuple(name for name, _ in d) for d in draws if d}
    assert len(orders) == 6 and all(sorted(o) == ["brightness", "contrast", "saturation"] for o in orders)


def test_pil_jitter_applies_pils_enhancers():
    """On a flat grey image contrast and saturation change nothing, so the output is PIL's brightness alone:
    trunc(100 * f), f in [0.6, 1.4]; about a fifth of the reads leave the image as it is."""
    augment = PhotometricAugment(color_jitter=True, brightness=0.4, contrast=0.4, saturation=0.4, jitter_p=0.8,
                                 jitter_style="pil")
    grey = np.full((8, 8, 3), 100, np.uint8)
    torch.manual_seed(1)
    values = [int(augment(grey)[0, 0, 0]) for _ in range(500)]
    assert all(60 <= v <= 140 for v in values)
    assert 0.15 < values.count(100) / len(values) < 0.25
    torch.manual_seed(1)
    assert values == [int(augment(grey)[0, 0, 0]) for _ in range(500)]  # seeded from torch: repeatable


def test_jitter_options_reach_the_dataset_and_default_to_todays(root):
    default = _train_set(root, color_jitter=True).augment._t.transforms[0]
    assert (default.brightness, default.contrast, default.saturation, default.p) == ((0.8, 1.2),) * 3 + (1.0,)
    stronger = _train_set(root, color_jitter=True, color_jitter_strength=0.4, color_jitter_p=0.8).augment
    assert stronger._t.transforms[0].brightness == (0.6, 1.4) and stronger._t.transforms[0].p == 0.8
    pil = _train_set(root, color_jitter=True, color_jitter_strength=0.4, color_jitter_p=0.8,
                     color_jitter_style="pil").augment
    assert pil._t is None and pil._pil_jitter.p == 0.8 and pil._pil_jitter.strengths["contrast"] == 0.4
    with pytest.raises(SamAdaptError, match="color_jitter_p 1.5"):
        RefCocoDataModule(str(root), dataset="shapes", color_jitter_p=1.5)


def test_scale_augmentation_draws_the_listed_long_sides_and_keeps_image_mask_and_prompts_together(root):
    ds = _train_set(root, random_long_side=DIT_SIZES, box_jitter=0.2, num_bg_points=2, letterbox="center")
    seen = set()
    for i in range(40):
        torch.manual_seed(i)
        s = ds[i % len(ds)]
        top, left = s["content_offset"].tolist()
        h, w = s["content_hw"].tolist()
        long_side = max(h, w)
        assert long_side in DIT_SIZES
        seen.add(long_side)
        assert (top, left) == ((S - h) // 2, (S - w) // 2)
        # the image and the mask are the source letterboxed at that long side, nothing else
        source = ds.pixel_source(ds.targets[i % len(ds)])
        image = source.read_image()
        mask, _ = source.read_mask(image.shape[:2])
        want = letterbox(image, mask, S, long_side=long_side, letterbox="center")
        assert torch.equal(s["image"], want.image) and torch.equal(s["mask"], want.mask)
        assert (h, w) == want.content_hw and (top, left) == want.content_offset
        # prompts lie inside the content; foreground points on the object
        pts, labels = s["points"], s["point_labels"]
        assert ((pts[:, 0] >= left) & (pts[:, 0] < left + w) & (pts[:, 1] >= top) & (pts[:, 1] < top + h)).all()
        fg = pts[labels == 1].long()
        assert bool(s["mask"][0, fg[:, 1], fg[:, 0]].all())
        x0, y0, x1, y1 = s["box"].tolist()
        assert left <= x0 <= x1 <= left + w - 1 and top <= y0 <= y1 <= top + h - 1
        assert s["image_key"].endswith(("|center", "|center|flip")) and (f"/{long_side}|" in s["image_key"]
                                                                         or long_side == S)
    assert seen == set(DIT_SIZES)


def test_evaluation_never_rescales(root):
    ds = RefCocoDataset(root, "shapes", "unc", "val", None, SampleOptions(image_size=S, random_long_side=(32,)),
                        False)
    assert all(ds[i]["content_hw"].tolist() == [48, 64] for i in range(len(ds)))


def test_long_sides_must_fit_the_frame(root):
    with pytest.raises(SamAdaptError, match=r"random_long_side \[64, 80\]: \[80\] not a whole number in 1..64"):
        RefCocoDataModule(str(root), dataset="shapes", image_size=64, random_long_side=[64, 80])


def test_pixel_cache_keeps_one_view_per_long_side(root, tmp_path):
    """A cached read equals a decoded one at every drawn size: a rescaled view is never served as another."""
    plain = _train_set(root, random_long_side=DIT_SIZES, letterbox="center")
    cached = _train_set(root, random_long_side=DIT_SIZES, letterbox="center", pixel_cache_dir=str(tmp_path))
    for _ in range(2):  # the second pass reads what the first wrote
        for i in range(24):  # three samples, each read at several sizes
            torch.manual_seed(i)
            want = plain[i % 3]
            torch.manual_seed(i)
            got = cached[i % 3]
            for key in ("image", "mask", "points", "box", "content_hw", "content_offset"):
                assert torch.equal(got[key], want[key]), key
    assert cached.pixel_cache.stats["hits"] > 0
    assert len(list(cached.pixel_cache.dir.rglob("*.px"))) > 2 * 3  # more than one size per image and mask
    top_left = _train_set(root, pixel_cache_dir=str(tmp_path))
    assert top_left.pixel_cache.dir != cached.pixel_cache.dir  # another placement, another folder


def _loader_batches(root, batches_done: int, count: int) -> list[dict]:
    dm = RefCocoDataModule(str(root), dataset="shapes", image_size=S, batch_size=2, seed=5, hflip=True,
                           color_jitter=True, color_jitter_strength=0.4, color_jitter_p=0.8,
                           color_jitter_style="pil", random_long_side=DIT_SIZES, letterbox="center")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, SeededDataset)
    loader.load_state_dict({"epoch": 0, "batches_done": batches_done, "batch_size": 2})
    return list(islice(iter(loader), count))


def test_seeded_loader_resumes_exactly_with_dit_augmentation(root):
    full = _loader_batches(root, 0, 4)
    resumed = _loader_batches(root, 2, 2)
    for want, got in zip(full[2:], resumed, strict=True):
        for key in ("image", "mask", "points", "box", "content_hw", "content_offset"):
            assert torch.equal(got[key], want[key]), key
        assert got["text"] == want["text"]
    assert len({tuple(b["content_hw"].max(1).values.tolist()) for b in full}) > 1  # the sizes do vary
