"""SAM's own pre- and postprocessing, as `segment_anything.SamPredictor` does them: the one place for these rules.

- resize: the longest side becomes the input size S, the other `int(side * S / long + 0.5)` (`ResizeLongestSide`);
- normalise with SAM's pixel mean and std, THEN pad bottom-right with zeros to S x S (`Sam.preprocess`). Loaders
  deliver uint8 frames padded with black; `fill_padding` sets the padding to the pixel mean first, so after
  normalisation it is exactly 0, the value the frozen encoder was trained on (black would arrive as about -2);
- prompt coordinates scale per axis, x by new_w / old_w and y by new_h / old_h (`apply_coords`, `apply_boxes`);
- masks: low-res logits upsampled to S x S, cropped to the content, resized to the original size, all bilinear
  (`Sam.postprocess_masks`), and thresholded afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resized_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) resized so the longest side is `size`, rounded as SAM's ResizeLongestSide does."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def content_sizes(batch: dict, size: int) -> torch.Tensor:
    """(B, 2) content (h, w) of each letterboxed image: the loader's `content_hw`, or derived from `orig_size`."""
    if "content_hw" in batch:
        return torch.as_tensor(batch["content_hw"]).reshape(-1, 2)
    return torch.tensor([resized_hw(h, w, size) for h, w in torch.as_tensor(batch["orig_size"]).tolist()])


def fill_padding(images: torch.Tensor, content_hw: torch.Tensor, pixel_mean: torch.Tensor) -> torch.Tensor:
    """(B,3,S,S) float 0..255 frames with everything outside each image's content set to SAM's pixel mean."""
    size = images.shape[-1]
    rows = torch.arange(size, device=images.device)
    hw = torch.as_tensor(content_hw, device=images.device).reshape(-1, 2)
    inside = (rows[None, :, None] < hw[:, 0, None, None]) & (rows[None, None, :] < hw[:, 1, None, None])
    if bool(inside.all()):
        return images
    mean = pixel_mean.to(images.device, images.dtype).reshape(1, 3, 1, 1)
    return torch.where(inside[:, None], images, mean)


def coords_to_input(coords: np.ndarray, orig_hw: tuple[int, int], size: int) -> np.ndarray:
    """(..., 2) x, y in original pixels -> the S x S input frame, per axis as SAM's `apply_coords`."""
    h, w = orig_hw
    new_h, new_w = resized_hw(h, w, size)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / w
    out[..., 1] *= new_h / h
    return out


def boxes_to_input(boxes: np.ndarray, orig_hw: tuple[int, int], size: int) -> np.ndarray:
    """(..., 4) x0, y0, x1, y1 boxes -> the input frame (SAM's `apply_boxes`)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return coords_to_input(boxes.reshape(*boxes.shape[:-1], 2, 2), orig_hw, size).reshape(boxes.shape)


def to_original(frame: torch.Tensor, orig_hw: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """A (..., S, S) map in the input frame -> (..., H, W): crop the content, resize to the original size.

    Use "bilinear" for logits (threshold afterwards, as SAM does) and "nearest" for binary masks.
    """
    size = frame.shape[-1]
    h, w = int(orig_hw[0]), int(orig_hw[1])
    nh, nw = resized_hw(h, w, size)
    content = frame[..., :nh, :nw]
    lead = content.shape[:-2]
    flat = content.reshape(-1, 1, nh, nw).float()
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(flat, (h, w), mode=mode, **kwargs).reshape(*lead, h, w)
