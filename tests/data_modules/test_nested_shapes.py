"""The nested-shapes generator: the task's target is the whole, and the pretraining set holds every shape."""

import numpy as np
from PIL import Image

from data_modules.synthetic.nested_shapes import write_nested_shapes


def _mask(path):
    return np.asarray(Image.open(path)) > 127


def test_every_shape_writes_the_whole_its_part_and_loose_shapes_of_the_same_scenes(tmp_path):
    task = write_nested_shapes(tmp_path / "task", (("train", 6),), seed=3)
    parts = write_nested_shapes(tmp_path / "parts", (("train", 6),), seed=3, every_shape=True)
    for i in range(6):
        stem = f"train_{i:04d}"
        whole, part = _mask(parts / "train/masks" / f"{stem}_0.png"), _mask(parts / "train/masks" / f"{stem}_1.png")
        assert np.array_equal(whole, _mask(task / "train/masks" / f"{stem}.png"))  # sample 0 is the task's target
        assert part.any() and (part <= whole).all() and part.sum() < whole.sum()  # the part lies inside the whole
        loose = sorted((parts / "train/masks").glob(f"{stem}_[2-9].png"))
        for path in loose:  # loose shapes lie outside the whole
            assert not (_mask(path) & whole).any()
        images = [np.asarray(Image.open(p)) for p in sorted((parts / "train/images").glob(f"{stem}_*.jpg"))]
        assert len(images) == 2 + len(loose) and all(np.array_equal(images[0], im) for im in images)
