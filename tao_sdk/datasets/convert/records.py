"""What a source reader hands a target writer: samples in memory, the class list, and every
record it dropped (with the reason), whatever the source format was.

- detection (``to coco``): :class:`DetectionSource` of :class:`DetImage` with pixel boxes;
- panoptic (``to coco_panoptic``): :class:`PanopticSource` of :class:`SegImage`, each with a
  function giving its segment map;
- stereo (``to stereo``): :class:`StereoSource` of :class:`StereoPair`.

Only the standard library here: readers and writers import numpy / pillow themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["ConvertOptions", "Drops", "Category", "categories_from", "DetImage", "Source",
           "DetectionSource", "SegImage", "PanopticSource", "StereoPair", "StereoSource"]


@dataclass
class ConvertOptions:
    """Reader options (``convert_dataset`` keywords; CLI flags of the same names).

    Attributes:
        classes: class names in id order (ids 1..N), overriding the order a format would pick;
            detection objects of other classes are dropped and reported.
        ignore_values: semantic-mask pixel values that mean "unlabelled" (default 255).
        disparity_scale: divisor of 16-bit PNG disparity in a ``stereo_pairs`` source (default
            256, the KITTI convention the worker reads; other scales are re-encoded as PFM).
        scratch: a folder that lives as long as the conversion, for files a reader has to
            materialise (LabelMe images embedded as ``imageData``).
    """

    classes: list[str] | None = None
    ignore_values: tuple[int, ...] = (255,)
    disparity_scale: float = 256.0
    scratch: Path | None = None


class Drops:
    """Every record left out of the output, grouped by reason (count + first examples)."""

    EXAMPLES = 5

    def __init__(self) -> None:
        self.by_reason: dict[str, dict[str, Any]] = {}

    def add(self, reason: str, where: str) -> None:
        """Record one dropped record (``where``: file and line / object) for ``reason``."""
        entry = self.by_reason.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < self.EXAMPLES:
            entry["examples"].append(where)

    def merge(self, other: "Drops") -> None:
        """Add the drops of ``other`` (another split) to these."""
        for reason, entry in other.by_reason.items():
            mine = self.by_reason.setdefault(reason, {"count": 0, "examples": []})
            mine["count"] += entry["count"]
            mine["examples"] = (mine["examples"] + entry["examples"])[: self.EXAMPLES]

    def to_list(self) -> list[dict[str, Any]]:
        """``[{"reason", "count", "examples"}]``, most frequent first."""
        return [{"reason": r, **e} for r, e in
                sorted(self.by_reason.items(), key=lambda kv: -kv[1]["count"])]


@dataclass(frozen=True)
class Category:
    """One output category: ``id`` (1..N), ``name``, thing (countable) or stuff, colour."""

    id: int
    name: str
    isthing: int = 1
    color: tuple[int, int, int] | None = None


def categories_from(names: Sequence[str], isthing: int = 1) -> list[Category]:
    """Categories 1..N for ``names`` (the COCO convention: id 0 is never a class)."""
    return [Category(i + 1, n, isthing) for i, n in enumerate(names)]


@dataclass
class DetImage:
    """One image of a detection source: its file, archive member name, size and boxes
    ``(class name, x0, y0, x1, y1)`` in pixels (corners, clipped to the image)."""

    path: Path
    name: str
    width: int
    height: int
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)

    def add_box(self, label: str, corners: Sequence[float], where: str, drops: Drops,
                clipped: list[int]) -> None:
        """Add a box given as corners, after the checks the worker makes: non-finite,
        empty or wholly outside boxes are dropped (reason in ``drops``), boxes partly outside
        are clipped (counted in ``clipped[0]``)."""
        x0, y0, x1, y1 = (float(v) for v in corners)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            drops.add("box with non-finite coordinates", where)
            return
        if x1 <= x0 or y1 <= y0:
            drops.add("box of zero or negative width / height", where)
            return
        c = (min(max(x0, 0.0), self.width), min(max(y0, 0.0), self.height),
             min(max(x1, 0.0), self.width), min(max(y1, 0.0), self.height))
        if c[2] <= c[0] or c[3] <= c[1]:
            drops.add("box wholly outside its image", where)
            return
        if c != (x0, y0, x1, y1):
            clipped[0] += 1
        self.boxes.append((label, *c))


@dataclass(kw_only=True)
class Source:
    """What every reader returns: the samples (``items``), class names in id order, every
    dropped record, and notes for the report."""

    items: list
    classes: list[str] = field(default_factory=list)
    drops: Drops = field(default_factory=Drops)
    notes: list[str] = field(default_factory=list)

    def subset(self, items: list) -> "Source":
        """The same source restricted to ``items`` (a train / val partition)."""
        return replace(self, items=items)


@dataclass(kw_only=True)
class DetectionSource(Source):
    """A read detection dataset (:class:`DetImage` items); ``clipped[0]`` counts boxes clipped
    to their image."""

    clipped: list[int] = field(default_factory=lambda: [0])


@dataclass
class SegImage:
    """One image of a segmentation source: its file, archive member name, and ``segments()``
    -> ``(segment id map uint32 [H, W], [(segment id, category id, iscrowd)])``."""

    path: Path
    name: str
    segments: Callable[[], tuple[Any, list[tuple[int, int, int]]]]


@dataclass(kw_only=True)
class PanopticSource(Source):
    """A read segmentation dataset (:class:`SegImage` items) with its categories (ids 1..N;
    ``classes`` are their names)."""

    categories: list[Category]


@dataclass
class StereoPair:
    """One stereo sample: left / right images, optional disparity and occlusion mask, and the
    sample ``name`` (unique; the archive members are ``left/<name>.<ext>`` ...)."""

    left: Path
    right: Path
    disparity: Path | None
    occlusion: Path | None
    name: str


@dataclass(kw_only=True)
class StereoSource(Source):
    """A read stereo dataset (:class:`StereoPair` items) and the ``dataset_name`` the worker
    reads it as (``dataset_format``)."""

    dataset_format: str
    disparity_scale: float = 256.0
