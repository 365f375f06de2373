"""Letterboxing to the model resolution and the optional training augmentations.

The content goes where `letterbox` says (samadapt.sam.preprocess: "top_left" as SAM, "center" as the released DIT
code); `long_side` (scale augmentation) resizes it to a long side below the frame's side S, still inside S x S.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from samadapt.sam.preprocess import Letterbox, letterbox_offset, to_original


@dataclass
class Letterboxed:
    """An image and mask letterboxed to S x S (content at `content_offset`, zero padding around it)."""

    image: torch.Tensor  # (3, S, S) uint8 (the model converts to float after the copy to its device)
    mask: torch.Tensor  # (1, S, S) uint8 {0, 1}: a quarter of float's bytes to cache, collate and pin
    scale: float  # letterboxed coordinate = original coordinate * scale + offset (x + left, y + top)
    content_hw: tuple[int, int]  # size of the resized content inside the S x S frame
    content_offset: tuple[int, int] = (0, 0)  # (top, left) of the content in the frame


def letterbox_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """Resized (h, w) with the longest side == size, rounded as SAM's ResizeLongestSide does."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def content_box(orig_hw: tuple[int, int], size: int, long_side: int | None = None,
                letterbox: Letterbox = "top_left") -> tuple[int, int, int, int]:
    """(top, left, h, w) of an (H, W) image's content in the S x S frame, its long side `long_side` (default S)."""
    nh, nw = letterbox_shape(orig_hw[0], orig_hw[1], long_side or size)
    return (*letterbox_offset((nh, nw), size, letterbox), nh, nw)


def letterbox(image: np.ndarray, mask: np.ndarray, size: int, long_side: int | None = None,
              letterbox: Letterbox = "top_left") -> Letterboxed:
    """Resize HxWx3 uint8 image (bilinear) and HxW mask (nearest) so the longest side is `long_side` (default
    `size`), pad to S x S with the content placed by `letterbox`.

    The image is resized as SAM's ResizeLongestSide does (see `letterbox_image`). Images stay uint8: a quarter
    of the bytes to collate, pin and copy to the device.
    """
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    out_img = letterbox_image(image, size, long_side, letterbox)
    h, w = image.shape[:2]
    top, left, nh, nw = content_box((h, w), size, long_side, letterbox)
    out_mask = np.zeros((1, size, size), dtype=np.uint8)  # numpy: torch's per-op overhead dominates here
    out_mask[0, top:top + nh, left:left + nw] = _resize_nearest(mask, nh, nw)
    return Letterboxed(out_img, torch.from_numpy(out_mask), (long_side or size) / max(h, w), (nh, nw), (top, left))


def letterbox_image(image: np.ndarray, size: int, long_side: int | None = None,
                    letterbox: Letterbox = "top_left") -> torch.Tensor:
    """The image part of `letterbox`: HxWx3 uint8 -> (3, S, S) uint8, content placed by `letterbox`, black padding.

    Resized by PIL's bilinear filter, as segment_anything's ResizeLongestSide.apply_image does (through
    torchvision), so the frozen encoder sees SamPredictor's pixels exactly; torch's antialiased uint8 resize is
    ~3x faster but differs by a grey level in some pixels (measured: 43k of 393k at 640x480 -> 512).
    The padding becomes SAM's mean (0 after normalising) in the model: `samadapt.sam.preprocess.fill_padding`.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got {image.shape}")
    top, left, nh, nw = content_box(image.shape[:2], size, long_side, letterbox)
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize((nw, nh), Image.BILINEAR)
    out_img = np.zeros((size, size, 3), dtype=np.uint8)
    out_img[top:top + nh, left:left + nw] = np.asarray(resized)
    return torch.from_numpy(out_img).permute(2, 0, 1)  # (3, S, S) view; collate stacks it contiguous


def _resize_nearest(mask: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """HxW map resized to (nh, nw) by nearest neighbour, as a bool array (nonzero = True).

    OpenCV's INTER_NEAREST_EXACT takes the source pixel under each target pixel centre, the rule PIL's NEAREST
    uses (plain INTER_NEAREST does not), so masks are pixel-identical to PIL's, faster.
    """
    binary = mask if mask.dtype == np.bool_ else mask != 0
    src = np.ascontiguousarray(binary).view(np.uint8)  # bool -> 0/1 bytes without a copy
    return cv2.resize(src, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT).view(np.bool_)


def letterbox_mask(mask: np.ndarray, size: int, long_side: int | None = None,
                   letterbox: Letterbox = "top_left") -> torch.Tensor:
    """A HxW boolean map (e.g. ignore pixels) letterboxed like `letterbox` does masks: (1, S, S) bool."""
    top, left, nh, nw = content_box(mask.shape[:2], size, long_side, letterbox)
    out = torch.zeros(1, size, size, dtype=torch.bool)
    out[0, top:top + nh, left:left + nw] = torch.from_numpy(_resize_nearest(mask, nh, nw))
    return out


def original_target(mask: np.ndarray, ignore: np.ndarray | None = None) -> torch.Tensor:
    """The evaluation target at the original size: (H, W) uint8, 1 = object, 0 = background, 255 = ignore."""
    out = torch.from_numpy(np.ascontiguousarray(mask > 0).astype(np.uint8))
    if ignore is not None:
        out[torch.from_numpy(np.ascontiguousarray(ignore, dtype=bool))] = 255
    return out


def unletterbox(pred: torch.Tensor, orig_hw: tuple[int, int], mode: str = "bilinear",
                letterbox: Letterbox = "top_left") -> torch.Tensor:
    """Undo the letterbox of a (..., S, S) prediction: crop the content area, resize to the original (H, W).

    Use "bilinear" for probabilities or logits (threshold afterwards) and "nearest" for binary masks.
    """
    return to_original(pred, orig_hw, mode, content_box(orig_hw, pred.shape[-1], None, letterbox))


_LEFT_RIGHT = re.compile(r"\b(left|right)(most)?\b", re.IGNORECASE)


def _swap_word(match: re.Match) -> str:
    word, suffix = match.group(1), match.group(2) or ""
    swapped = "right" if word.lower() == "left" else "left"
    if word.isupper():
        swapped = swapped.upper()
    elif word[0].isupper():
        swapped = swapped.capitalize()
    return swapped + suffix


def swap_left_right(text: str) -> str:
    """Swap 'left'<->'right' (and 'leftmost'<->'rightmost'), keeping case; other words untouched."""
    return _LEFT_RIGHT.sub(_swap_word, text)


def hflip(image: np.ndarray, mask: np.ndarray, text: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Mirror image and mask left-right and swap left/right in the text so it still names the object."""
    return image[:, ::-1].copy(), mask[:, ::-1].copy(), swap_left_right(text)


def image_key(name: str, size: int, flipped: bool, random_pixels: bool, long_side: int | None = None,
              letterbox: Letterbox = "top_left") -> str | None:
    """What identifies the model's input pixels of a sample: image, size, content long side (when not the size),
    placement (when not top_left) and flip; None when a random photometric change (colour jitter, blur) makes
    every read different, so nothing may be cached."""
    if random_pixels:
        return None
    scaled = f"/{long_side}" if long_side not in (None, size) else ""
    placed = f"|{letterbox}" if letterbox != "top_left" else ""
    return f"{name}@{size}{scaled}{placed}{'|flip' if flipped else ''}"
