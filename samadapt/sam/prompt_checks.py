"""Geometric prompts are checked before they reach SAM, which would accept nonsense without a word."""

from __future__ import annotations

import numpy as np
import torch

from samadapt.errors import SamAdaptError


def check_finite(values, what: str) -> None:
    """Refuse NaN or infinite coordinates: SAM turns them into an empty mask and a NaN score, without a word."""
    array = np.asarray(values.detach().cpu() if torch.is_tensor(values) else values, dtype=np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        row = array.reshape(-1, array.shape[-1])[int(np.flatnonzero(bad.reshape(-1))[0]) // array.shape[-1]]
        raise SamAdaptError(f"{what} ({', '.join(f'{v:g}' for v in row)}) holds {array[bad][0]:g}: "
                            "prompts must be finite pixel coordinates")


def check_prompts(batch: dict, size: int, prompt_kinds: list[frozenset[str]]) -> None:
    """Points (label != -1) must lie inside the S x S model input; boxes must have x0 <= x1 and y0 <= y1."""
    ids = batch.get("sample_id") or [str(i) for i in range(len(prompt_kinds))]
    for i, kinds in enumerate(prompt_kinds):
        if "points" in kinds:
            points = batch["points"][i][batch["point_labels"][i] != -1]
            check_finite(points.reshape(-1, 2), f"sample {ids[i]}: point")
            outside = (points < 0).any(1) | (points >= size).any(1)
            if bool(outside.any()):
                x, y = points[outside][0].tolist()
                raise SamAdaptError(
                    f"sample {ids[i]}: point ({x:g}, {y:g}) lies outside the {size}x{size} model input; prompts are "
                    "pixel (x, y) coordinates in the letterboxed image: scale them by size / max(H, W) and keep "
                    "them inside the image."
                )
        if "box" in kinds:
            check_finite(torch.as_tensor(batch["box"][i]).reshape(1, 4), f"sample {ids[i]}: box")
            x0, y0, x1, y1 = torch.as_tensor(batch["box"][i]).tolist()
            if x1 < x0 or y1 < y0:
                raise SamAdaptError(
                    f"sample {ids[i]}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has x1 < x0 or y1 < y0; boxes are "
                    "x0, y0, x1, y1 with the top-left corner first."
                )
