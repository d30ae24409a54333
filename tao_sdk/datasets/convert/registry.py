"""The conversion registry: ``(from_format, to_format)`` -> the reader that parses the source
layout, and ``to_format`` -> the writer of the TAO layout.

Adding a source format is one line in :data:`REGISTRY` plus a :class:`Reader` in the module of
its format family (``kitti``, ``voc``, ``yolo``, ``labelme``, ``masks``, ``stereo``); adding a
target layout is one line in :data:`TARGETS` plus its writer module (``to_coco``...). Import-cheap:
reader and writer modules are imported when a conversion runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tao_sdk.errors import ConversionError

__all__ = ["Reader", "no_splits", "missing_imaging", "REGISTRY", "TARGETS", "pairs", "reader", "writer"]


def no_splits(_src: Path) -> list[str]:
    """The source has no named splits: it converts whole into DEST."""
    return []


@dataclass(frozen=True)
class Reader:
    """A source format: ``read(src, split, options) -> Source`` and ``splits(src)``, the
    named splits converted by default (each into ``DEST/<split>``; ``[]``: the whole source
    into DEST)."""

    read: Callable[..., Any]
    splits: Callable[[Path], list[str]] = no_splits


#: (from_format, to_format) -> ("module:Reader attribute", one-line description of the source).
REGISTRY: dict[tuple[str, str], tuple[str, str]] = {
    ("kitti", "coco"): ("kitti:KITTI", "KITTI object detection: image_2/ + label_2/ (or images/ + labels/)"),
    ("voc", "coco"): ("voc:VOC", "Pascal VOC: Annotations/*.xml + JPEGImages/ [+ ImageSets/Main/<split>.txt]"),
    ("yolo", "coco"): ("yolo:YOLO", "YOLO: data.yaml (names, train/val/test) + images/ and labels/*.txt"),
    ("labelme", "coco"): ("labelme:LABELME", "LabelMe: one JSON per image (rectangles, polygons, circles)"),
    ("semantic_masks", "coco_panoptic"): ("masks:SEMANTIC", "images/ + masks/ (label PNGs) + classes.txt"),
    ("cityscapes", "coco_panoptic"): ("masks:CITYSCAPES", "Cityscapes: leftImg8bit/<split>/ + gtFine/<split>/"),
    ("kitti_stereo", "stereo"): ("stereo:KITTI", "KITTI 2012 (colored_0/1, disp_occ) or 2015 (image_2/3, disp_occ_0)"),
    ("middlebury", "stereo"): ("stereo:MIDDLEBURY", "Middlebury: one folder per scene with im0.png, im1.png, disp0[GT].pfm"),
    ("stereo_pairs", "stereo"): ("stereo:PAIRS", "left/ + right/ [+ disparity/ (PFM / 16-bit PNG / npy) + occlusion/]"),
}

#: to_format -> (writer module, the skills whose tables read that layout).
TARGETS: dict[str, tuple[str, str]] = {
    "coco": ("to_coco", "tao-train-rtdetr, tao-train-deformable-detr (formats coco, coco_raw)"),
    "coco_panoptic": ("to_panoptic", "tao-train-oneformer (format coco_panoptic)"),
    "stereo": ("to_stereo", "tao-train-fast-foundation-stereo (annotations.txt data_sources)"),
}


def pairs() -> list[dict[str, str]]:
    """Every conversion: ``[{"from", "to", "source", "skills"}]``."""
    return [{"from": f, "to": t, "source": desc, "skills": TARGETS[t][1]}
            for (f, t), (_target, desc) in REGISTRY.items()]


def _listing() -> str:
    return ", ".join(f"{f} -> {t}" for f, t in REGISTRY)


def reader(from_format: str, to_format: str) -> Reader:
    """The :class:`Reader` of a conversion; :class:`ConversionError` listing the conversions
    when the pair is unknown."""
    key = (str(from_format).lower(), str(to_format).lower())
    if key not in REGISTRY:
        raise ConversionError(f"no conversion --from {from_format} --to {to_format}; available: "
                              f"{_listing()}")
    module, attr = REGISTRY[key][0].split(":")
    return getattr(_module(module), attr)


def writer(to_format: str):
    """The writer module of ``to_format`` (``FILES``, ``write(source, staging)``,
    ``spec_hints(source)``)."""
    return _module(TARGETS[str(to_format).lower()][0])


def missing_imaging(exc: ImportError) -> ConversionError:
    """The error for a missing numpy / pillow (the only imports beyond the SDK core)."""
    return ConversionError(f"dataset conversion needs numpy and pillow ({exc}); install them with "
                           "`pip install 'tao-skill-bank[datasets]'`")


def _module(name: str):
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as exc:
        if exc.name in ("numpy", "PIL"):
            raise missing_imaging(exc) from None
        raise
