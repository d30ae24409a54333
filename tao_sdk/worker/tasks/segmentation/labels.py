"""Segmentation label maps: categories of a COCO panoptic ``annotations.json`` (or a label
list), contiguous training ids, colours."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tao_sdk.worker.errors import DatasetError


#: Label of pixels that count nowhere (TAO's ``model.sem_seg_head.ignore_value`` default).
IGNORE_VALUE = 255


@dataclass(frozen=True)
class Category:
    """One label map entry: dataset category ``id``, ``name``, thing/stuff, display colour."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LabelMap:
    """The classes of a segmentation model, in class-index order.

    Attributes:
        categories: one :class:`Category` per class index (``None`` for an index no category
            uses when ``contiguous_id`` is false).
        id_to_class: dataset category id -> class index.
    """

    categories: tuple[Category | None, ...]
    id_to_class: dict[int, int]

    @property
    def num_classes(self) -> int:
        """Number of class indices (the model's ``num_classes``)."""
        return len(self.categories)

    @property
    def names(self) -> list[str]:
        """Class name per index (``class_<i>`` for an unused index)."""
        return [c.name if c else f"class_{i}" for i, c in enumerate(self.categories)]

    @property
    def colors(self) -> np.ndarray:
        """``[num_classes, 3]`` uint8 colours (label map colours; a fixed palette otherwise)."""
        pal = palette(self.num_classes)
        for i, c in enumerate(self.categories):
            if c is not None:
                pal[i] = c.color
        return pal


def palette(n: int) -> np.ndarray:
    """A deterministic ``[n, 3]`` uint8 palette of well separated colours."""
    rng = np.random.default_rng(12345)
    base = np.array([(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25),
                     (145, 30, 180), (245, 130, 48), (70, 240, 240), (240, 50, 230),
                     (128, 128, 0), (0, 0, 128)], dtype=np.uint8)
    extra = rng.integers(0, 256, size=(max(0, n - len(base)), 3), dtype=np.uint8)
    return np.concatenate([base, extra])[:n].copy()


def _read_json(path: Path, what: str) -> Any:
    """Parse JSON at ``path``; :class:`DatasetError` naming ``what`` and the file if broken."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{what}: {path} does not exist; point {what} at the file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{what}: {path} is not valid JSON ({exc}); fix or regenerate the "
                           "file") from None


def _category(entry: Any, index: int, what: str) -> Category:
    """One label map entry -> :class:`Category`, with errors naming the entry."""
    if not isinstance(entry, dict) or "id" not in entry or "name" not in entry:
        raise DatasetError(
            f"{what}[{index}] must be an object with at least \"id\" and \"name\" (e.g. "
            '{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]}), found '
            f"{entry!r}")
    try:
        cid = int(entry["id"])
    except (TypeError, ValueError):
        raise DatasetError(f"{what}[{index}].id must be an integer, found "
                           f"{entry['id']!r}") from None
    color = entry.get("color")
    if color is None:
        color = tuple(int(v) for v in palette(index + 1)[index])
    elif (not isinstance(color, (list, tuple)) or len(color) != 3
          or not all(isinstance(v, int) and 0 <= v <= 255 for v in color)):
        raise DatasetError(f"{what}[{index}].color must be [r, g, b] with values 0..255, "
                           f"found {color!r}")
    return Category(cid, str(entry["name"]), bool(entry.get("isthing", 0)), tuple(color))


def read_label_map(path: str | Path, num_classes: int, contiguous: bool = True,
                   what: str = "dataset.label_map") -> LabelMap:
    """Read ``label_map.json`` (a JSON list of ``{id, name, isthing, color}``) for a model of
    ``num_classes`` classes.

    ``contiguous`` (``dataset.contiguous_id``): class *i* = *i*-th entry, and the file must
    list exactly ``num_classes`` entries; else class index = ``id`` (each id below
    ``num_classes``). A ``{"categories": [...]}`` object (an annotations.json) is accepted too.
    Raises :class:`DatasetError` naming the file, the entry and the fix.
    """
    data = _read_json(Path(path), what)
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        data = data["categories"]
    if not isinstance(data, list) or not data:
        raise DatasetError(
            f"{what}: {path} must be a non-empty JSON list of categories "
            '[{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]}, ...]')
    cats = [_category(e, i, what) for i, e in enumerate(data)]
    ids = [c.id for c in cats]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetError(f"{what}: {path} lists category id(s) {dup} more than once; "
                           "give every category its own id")
    if contiguous:
        if len(cats) != num_classes:
            raise DatasetError(
                f"{what}: {path} lists {len(cats)} categories but "
                f"model.sem_seg_head.num_classes is {num_classes}; set "
                f"model.sem_seg_head.num_classes: {len(cats)} (with dataset.contiguous_id: "
                "true every category is one class)")
        return LabelMap(tuple(cats), {c.id: i for i, c in enumerate(cats)})
    too_big = [c.id for c in cats if not 0 <= c.id < num_classes]
    if too_big:
        raise DatasetError(
            f"{what}: category id(s) {too_big} are not below model.sem_seg_head.num_classes "
            f"({num_classes}); with dataset.contiguous_id: false the id is the class index: "
            f"set num_classes to {max(ids) + 1} or dataset.contiguous_id: true")
    slots: list[Category | None] = [None] * num_classes
    for c in cats:
        slots[c.id] = c
    return LabelMap(tuple(slots), {c.id: c.id for c in cats})
