"""SAM's own pre- and postprocessing, as `segment_anything.SamPredictor` does them: the one place for these rules.

- resize: the longest side becomes the input size S, the other `int(side * S / long + 0.5)` (`ResizeLongestSide`);
- normalise with SAM's pixel mean and std, THEN pad bottom-right with zeros to S x S (`Sam.preprocess`). Loaders
  deliver uint8 frames padded with black; `fill_padding` sets the padding to the pixel mean first, so after
  normalisation it is exactly 0, the value the frozen encoder was trained on (black would arrive as about -2);
- prompt coordinates scale per axis, x by new_w / old_w and y by new_h / old_h (`apply_coords`, `apply_boxes`);
- masks: low-res logits upsampled to S x S, cropped to the content, resized to the original size, all bilinear
  (`Sam.postprocess_masks`), and thresholded afterwards.

Placement of the content in the S x S frame (`letterbox`): "top_left" as SAM (pad bottom and right), or "center"
as the released DIT code (datasets/transforms.py, NormalizeAndPad: top = round(dh / 2 - 0.1), left likewise, which
is dh // 2 for dh = S - h). A content box is (top, left, h, w) in the frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from samadapt.errors import SamAdaptError

Letterbox = Literal["top_left", "center"]
LETTERBOXES: tuple[str, ...] = ("top_left", "center")


def resized_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) resized so the longest side is `size`, rounded as SAM's ResizeLongestSide does."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def letterbox_offset(content_hw: tuple[int, int], size: int, letterbox: Letterbox = "top_left") -> tuple[int, int]:
    """(top, left) of content of size (h, w) in the S x S frame: 0, 0 for top_left; half the padding (rounded
    down) before it for center."""
    if letterbox == "top_left":
        return 0, 0
    if letterbox == "center":
        return (size - int(content_hw[0])) // 2, (size - int(content_hw[1])) // 2
    raise SamAdaptError(f"letterbox must be one of {', '.join(LETTERBOXES)}, got {letterbox!r}")


def content_sizes(batch: dict, size: int) -> torch.Tensor:
    """(B, 2) content (h, w) of each letterboxed image: the loader's `content_hw`, or derived from `orig_size`."""
    if "content_hw" in batch:
        return torch.as_tensor(batch["content_hw"]).reshape(-1, 2)
    return torch.tensor([resized_hw(h, w, size) for h, w in torch.as_tensor(batch["orig_size"]).tolist()])


def content_boxes(batch: dict, size: int, letterbox: Letterbox = "top_left") -> torch.Tensor:
    """(B, 4) long content box (top, left, h, w) of each letterboxed image: the loader's `content_offset` and
    `content_hw`, else placed by `letterbox` (the loader's samples always carry both keys)."""
    hw = content_sizes(batch, size).long()
    if "content_offset" in batch:
        offset = torch.as_tensor(batch["content_offset"]).reshape(-1, 2).long()
    else:
        offset = torch.tensor([letterbox_offset((h, w), size, letterbox) for h, w in hw.tolist()],
                              dtype=torch.long).reshape(-1, 2)
    return torch.cat([offset, hw], dim=1)


def _as_boxes(content: torch.Tensor) -> torch.Tensor:
    """(B, 4) (top, left, h, w) from (B, 4) boxes or (B, 2) top-left sizes (h, w)."""
    content = torch.as_tensor(content).long()
    if content.shape[-1] == 2:
        content = torch.cat([torch.zeros_like(content.reshape(-1, 2)), content.reshape(-1, 2)], dim=1)
    return content.reshape(-1, 4)


def fill_padding(images: torch.Tensor, content: torch.Tensor, pixel_mean: torch.Tensor) -> torch.Tensor:
    """(B,3,S,S) float 0..255 frames with everything outside each image's content set to SAM's pixel mean.

    `content`: (B, 4) boxes (top, left, h, w), or (B, 2) sizes (h, w) of content at the top left.
    """
    size = images.shape[-1]
    rows = torch.arange(size, device=images.device)
    top, left, h, w = _as_boxes(content).to(images.device).unbind(1)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + h)[:, None])  # (B, S)
    in_cols = (rows[None] >= left[:, None]) & (rows[None] < (left + w)[:, None])
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    if bool(inside.all()):
        return images
    mean = pixel_mean.to(images.device, images.dtype).reshape(1, 3, 1, 1)
    return torch.where(inside[:, None], images, mean)


def coords_to_input(coords: np.ndarray, orig_hw: tuple[int, int], size: int,
                    letterbox: Letterbox = "top_left") -> np.ndarray:
    """(..., 2) x, y in original pixels -> the S x S input frame, per axis as SAM's `apply_coords`, then moved
    by the content's offset (none for top_left)."""
    h, w = orig_hw
    new_h, new_w = resized_hw(h, w, size)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / w
    out[..., 1] *= new_h / h
    top, left = letterbox_offset((new_h, new_w), size, letterbox)
    if top or left:
        out[..., 0] += left
        out[..., 1] += top
    return out


def boxes_to_input(boxes: np.ndarray, orig_hw: tuple[int, int], size: int,
                   letterbox: Letterbox = "top_left") -> np.ndarray:
    """(..., 4) x0, y0, x1, y1 boxes -> the input frame (SAM's `apply_boxes`)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    corners = boxes.reshape(*boxes.shape[:-1], 2, 2)
    return coords_to_input(corners, orig_hw, size, letterbox).reshape(boxes.shape)


def to_original(frame: torch.Tensor, orig_hw: tuple[int, int], mode: str = "bilinear",
                content_box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """A (..., S, S) map in the input frame -> (..., H, W): crop the content, resize to the original size.

    `content_box`: (top, left, h, w) of the content in the frame (default: SAM's, at the top left).
    Use "bilinear" for logits (threshold afterwards, as SAM does) and "nearest" for binary masks.
    """
    h, w = int(orig_hw[0]), int(orig_hw[1])
    top, left, nh, nw = content_box if content_box is not None else (0, 0, *resized_hw(h, w, frame.shape[-1]))
    content = crop_content(frame, (top, left, nh, nw))
    lead = content.shape[:-2]
    flat = content.reshape(-1, 1, int(nh), int(nw)).float()
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(flat, (h, w), mode=mode, **kwargs).reshape(*lead, h, w)


def crop_content(frame: torch.Tensor, content_box) -> torch.Tensor:
    """The (..., h, w) content of a (..., S, S) frame; `content_box` is (top, left, h, w), ints or a tensor."""
    top, left, h, w = (int(v) for v in content_box)
    return frame[..., top:top + h, left:left + w]
