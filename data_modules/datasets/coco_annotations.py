"""COCO-format annotations (polygons, RLE) to binary masks, checked, for the RefCOCO and COCO readers.

pycocotools trusts its input: a 2-point "polygon" is read as a box (frPyObjects takes any 4-number list for a
bbox), an RLE whose counts overrun its size writes past its buffer, a non-number coordinate raises whatever the C
code raises. Here a malformed segmentation is one SamAdaptError naming the annotation; polygons are still drawn by
pycocotools (the masks every published RefCOCO number was computed on), RLE is decoded here (a few numpy lines).

`empty_reason` tells at start-up, mostly without drawing anything, why an annotation would give an empty target.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samadapt.errors import SamAdaptError

NO_SEGMENTATION = "no segmentation"
DEGENERATE = "degenerate polygon (fewer than 3 points or zero area)"
OUTSIDE = "polygon outside its image"
ZERO_AREA = "zero 'area' field"
EMPTY_RLE = "empty RLE mask"
_NUMBER_TYPES = (int, float)  # what json and the refer pickles hold


def instances_hw(coco: Any, image_id: Any, where: str) -> tuple[int, int]:
    """(height, width) of an image of instances.json, checked."""
    info = coco.imgs.get(image_id)
    if info is None:
        raise SamAdaptError(f"{where}: image {image_id!r} is not in its instances.json; the refs and instances "
                            "files do not belong together.")
    h, w = info.get("height"), info.get("width")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise SamAdaptError(f"{where}: image {image_id!r} has height {h!r} and width {w!r} in instances.json; "
                            "both must be positive integers.")
    return h, w


def _polygons(seg: list, where: str) -> list[np.ndarray]:
    """Every polygon as an (n, 2) float array; a malformed one stops."""
    polygons = []
    for i, poly in enumerate(seg):
        # type() rather than isinstance: bools are ints, and this runs once per referent at start-up
        numbers = isinstance(poly, list | tuple) and all(type(v) in _NUMBER_TYPES for v in poly)
        points = np.asarray(poly, dtype=np.float64) if numbers else None
        if points is None or len(points) % 2 or not np.isfinite(points).all():
            raise SamAdaptError(f"{where}: polygon {i} of its segmentation is not a flat list of finite x, y "
                                "numbers (COCO format: [[x1, y1, x2, y2, ...], ...]).")
        polygons.append(points.reshape(-1, 2))
    return polygons


def _area(points: np.ndarray) -> float:
    """Shoelace area."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def _clip(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The polygon cut to the rectangle (Sutherland-Hodgman), so pycocotools never walks far-away edges."""
    out = [tuple(p) for p in points]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        def inside(p, axis=axis, bound=bound, keep_below=keep_below):
            return p[axis] <= bound if keep_below else p[axis] >= bound

        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            if inside(cur) != inside(prev):
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in (0, 1)))
            if inside(cur):
                out.append(cur)
        if not out:
            break
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _draw_polygons(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    far = 10.0 * (h + w)  # pycocotools walks every edge in 1/5 pixel steps: cut absurdly far vertices first
    for points in polygons:
        if len(points) >= 3 and np.abs(points).max() > far:
            points = _clip(points, -far, -far, far, far)
        if len(points) < 3:
            continue
        rle = mask_utils.frPyObjects([points.ravel().tolist()], h, w)  # one polygon of >= 6 numbers: frPoly
        with warnings.catch_warnings():  # pycocotools' numpy-2 DeprecationWarning, one per call otherwise
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
            mask |= mask_utils.decode(rle)[..., 0].astype(bool)
    return mask


def _rle_counts(counts: str | bytes, where: str) -> list[int]:
    """The run lengths of a compressed RLE string (pycocotools' rleFrString format: 5-bit groups, 48 + value)."""
    data = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    i = 0
    while i < len(data):
        value, shift, more = 0, 0, True
        while more:
            if i >= len(data):
                raise SamAdaptError(f"{where}: its compressed RLE counts end in the middle of a number.")
            c = data[i] - 48
            if not 0 <= c < 64:
                raise SamAdaptError(f"{where}: its compressed RLE counts hold the byte {data[i]!r}, not RLE.")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            i += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _decode_rle(seg: dict, h: int, w: int, where: str) -> np.ndarray:
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, list | tuple) or [*size] != [h, w]:
        raise SamAdaptError(f"{where}: its RLE size {size!r} is not its image's [height, width] = [{h}, {w}].")
    if isinstance(counts, str | bytes):
        runs = _rle_counts(counts, where)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        runs = counts
    else:
        raise SamAdaptError(f"{where}: its RLE counts are neither a list of integers nor a compressed string.")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise SamAdaptError(f"{where}: its RLE run lengths add up to {sum(runs)} (or go negative), not to its "
                            f"image's {h} x {w} = {h * w} pixels.")
    values = np.arange(len(runs)) % 2 == 1  # runs alternate background, foreground, starting with background
    return np.repeat(values, runs).reshape(w, h).T  # column-major, as COCO stores it


def annotation_mask(ann: dict, h: int, w: int, where: str) -> np.ndarray:
    """The HxW bool mask of a COCO annotation (polygons or RLE); empty when it has no segmentation."""
    seg = ann.get("segmentation")
    if not seg:
        return np.zeros((h, w), dtype=bool)
    if isinstance(seg, list):
        return _draw_polygons(_polygons(seg, where), h, w)
    if isinstance(seg, dict):
        return _decode_rle(seg, h, w, where)
    raise SamAdaptError(f"{where}: its segmentation is a {type(seg).__name__}, neither polygons nor RLE.")


def empty_reason(ann: dict, h: int, w: int, where: str) -> str | None:
    """Why the annotation's mask is empty (NO_SEGMENTATION, ZERO_AREA, DEGENERATE, OUTSIDE, EMPTY_RLE), else None.

    Polygons well inside the image with an area of several pixels are trusted without drawing; the rest is drawn.
    """
    seg = ann.get("segmentation")
    if not seg:
        return NO_SEGMENTATION
    if type(ann.get("area")) in _NUMBER_TYPES and ann["area"] <= 0:  # COCO's own mask area says empty
        return ZERO_AREA
    if isinstance(seg, dict):
        return None if annotation_mask(ann, h, w, where).any() else EMPTY_RLE
    if not isinstance(seg, list):
        annotation_mask(ann, h, w, where)  # raises the malformed-segmentation error
    polygons = [p for p in _polygons(seg, where) if len(p) >= 3 and _area(p) > 0]
    if not polygons:
        return DEGENERATE
    points = np.concatenate(polygons)
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    if x1 < 0 or y1 < 0 or x0 > w or y0 > h:
        return OUTSIDE
    inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    if inside and sum(_area(p) for p in polygons) >= 4:
        return None
    if annotation_mask(ann, h, w, where).any():
        return None
    return DEGENERATE if inside else OUTSIDE
