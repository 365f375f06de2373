"""Photometric training augmentation: colour jitter and blur, geometry untouched.

Geometry (letterbox, horizontal flip with the left/right text swap) lives in transforms.py because it
must move the mask and the sentence together with the image.

Two colour jitters, the same in intent but not in pixels:
- "albumentations" (the default): `A.ColorJitter` of albumentations 2.0.8 follows torchvision's tensor formulas
  (augmentations/pixel/functional.py, adjust_*_torchvision): brightness x * f; contrast f * x + (1 - f) * m with m
  the float mean of OpenCV's grey image; saturation cv2.addWeighted(x, f, grey, 1 - f); four steps (hue too, a
  no-op at hue 0) in a random order, factors drawn from its own seeded generator.
- "pil": PIL's ImageEnhance, what the released DIT code runs (datasets/transforms.py, class ColorJitter: with
  probability 0.8 brightness, contrast and saturation, each factor uniform in [1 - 0.4, 1 + 0.4], in a random order
  of the three). ImageEnhance blends with black, a grey (the mean of PIL's "L" image rounded to an integer) or a
  greyscale image and truncates. So the two are not the same: measured on a random 64x64 image, brightness agrees
  exactly, contrast at 0.7 differs by one grey level in 10% of the pixels and saturation at 0.7 / 1.3 in 46% / 34%.
  Use "pil" to reproduce DIT.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageEnhance

JitterStyle = Literal["albumentations", "pil"]
JITTER_STYLES: tuple[str, ...] = ("albumentations", "pil")


class PhotometricAugment:
    """Colour jitter (probability `jitter_p`) then Gaussian blur (probability `blur_p`) on an HxWx3 uint8 image.

    Hue stays at 0 by default: a hue shift turns "the red car" into a green one.
    """

    def __init__(
        self,
        color_jitter: bool = True,
        blur: bool = False,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.0,
        jitter_p: float = 0.8,
        blur_p: float = 0.3,
        jitter_style: JitterStyle = "albumentations",
    ):
        import albumentations as A  # imported lazily: slow, and only needed when enabled

        self._pil_jitter = None
        steps = []
        if color_jitter and jitter_style == "pil":
            if hue:
                raise ValueError("the PIL colour jitter has no hue step (DIT's has none)")
            self._pil_jitter = PilColorJitter(brightness, contrast, saturation, jitter_p)
        elif color_jitter:
            steps.append(A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                                       p=jitter_p))
        if blur:
            steps.append(A.GaussianBlur(blur_limit=(3, 7), p=blur_p))
        self._t = A.Compose(steps) if steps else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._pil_jitter is not None:
            image = self._pil_jitter(image)
        if self._t is None:
            return image
        reseed_from_torch(self._t)
        return self._t(image=image)["image"]


ENHANCERS = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
             "saturation": ImageEnhance.Color}


class PilColorJitter:
    """DIT's colour jitter: with probability `p`, brightness, contrast and saturation by PIL's ImageEnhance, each
    factor uniform in [1 - strength, 1 + strength], in a random order. Draws come from the torch RNG, which the
    training loader seeds per sample (exact repeats and resumes)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, p: float = 0.8):
        self.strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        self.p = p

    def draw(self) -> list[tuple[str, float]]:
        """The steps of one read, in order, with their factors; empty when the image stays as it is."""
        if float(torch.rand(())) >= self.p:
            return []
        names = list(self.strengths)
        order = torch.randperm(len(names)).tolist()
        spread = (torch.rand(len(names), dtype=torch.float64) * 2.0 - 1.0).tolist()
        return [(names[i], 1.0 + self.strengths[names[i]] * spread[i]) for i in order]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        steps = self.draw()
        if not steps:
            return image
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
        for name, factor in steps:
            pil = ENHANCERS[name](pil).enhance(factor)
        return np.asarray(pil)


def check_color_jitter(strength: float, p: float | None, style: str) -> None:
    """Stop on jitter settings that cannot work, naming the DataModule option."""
    from samadapt.errors import SamAdaptError

    if not 0.0 <= strength <= 1.0:
        raise SamAdaptError(f"color_jitter_strength {strength} must lie in [0, 1] (factors in [1 - s, 1 + s]; "
                            "DIT uses 0.4)")
    if p is not None and not 0.0 <= p <= 1.0:
        raise SamAdaptError(f"color_jitter_p {p} is a probability: give a value in [0, 1] (DIT uses 0.8)")
    if style not in JITTER_STYLES:
        raise SamAdaptError(f"color_jitter_style must be one of {', '.join(JITTER_STYLES)}, got {style!r}")


def reseed_from_torch(transform) -> None:
    """Seed an albumentations transform from the torch RNG: its own generators are seeded from the OS otherwise,
    so runs could not be repeated or resumed (the training loader seeds torch per sample)."""
    transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
