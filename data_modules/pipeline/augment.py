"""Photometric training augmentation (albumentations): colour jitter and blur, geometry untouched.

Geometry (letterbox, horizontal flip with the left/right text swap) lives in transforms.py because it
must move the mask and the sentence together with the image.
"""

from __future__ import annotations

import numpy as np
import torch


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
    ):
        import albumentations as A  # imported lazily: slow, and only needed when enabled

        steps = []
        if color_jitter:
            steps.append(A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                                       p=jitter_p))
        if blur:
            steps.append(A.GaussianBlur(blur_limit=(3, 7), p=blur_p))
        self._t = A.Compose(steps) if steps else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._t is None:
            return image
        reseed_from_torch(self._t)
        return self._t(image=image)["image"]


def reseed_from_torch(transform) -> None:
    """Seed an albumentations transform from the torch RNG: its own generators are seeded from the OS otherwise,
    so runs could not be repeated or resumed (the training loader seeds torch per sample)."""
    transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
