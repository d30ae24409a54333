"""COCO box and category facts shared by plan-time validation and the worker's loader."""

from __future__ import annotations

import math

__all__ = ["BOX_DEFECTS", "MSCOCO_CATEGORY_TO_LABEL", "check_box"]

#: Box defects: key -> what the worker does with such a box.
BOX_DEFECTS = {"non_finite": "dropped (NaN/inf coordinates)", "no_area": "dropped (zero or negative width/height)",
               "outside": "dropped (wholly outside the image)", "clipped": "clipped to the image"}

#: The 80 MSCOCO category ids (of 1..90) -> contiguous class indices 0..79, the mapping TAO
#: applies with ``dataset.remap_mscoco_category: true``.
MSCOCO_CATEGORY_TO_LABEL: dict[int, int] = {
    cid: i for i, cid in enumerate(
        [c for c in range(1, 91) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)])
}


def check_box(box: list[float], width: int, height: int) -> tuple[list[float] | None, str | None]:
    """``(box to keep or None, defect key or None)`` for an ``[x, y, w, h]`` box in an image of
    ``width`` x ``height`` (0: unknown, then only finiteness and area are checked)."""
    if not all(math.isfinite(v) for v in box):
        return None, "non_finite"
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return None, "no_area"
    if not (width > 0 and height > 0):
        return box, None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None, "outside"
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        return [x0, y0, x1 - x0, y1 - y0], "clipped"
    return box, None
