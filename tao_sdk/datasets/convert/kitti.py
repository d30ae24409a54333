"""KITTI object detection -> COCO.

Layout: ``SRC/training/image_2/*.png`` + ``SRC/training/label_2/*.txt`` (the KITTI download),
``SRC/image_2`` + ``SRC/label_2``, or TAO's KITTI layout ``SRC/images`` + ``SRC/labels``. One
label file per image (same stem), one object per line: ``type truncated occluded alpha left top
right bottom h w l x y z rotation_y [score]``; the box is ``left top right bottom`` in pixels.
``DontCare`` regions are not objects and are dropped (reported). KITTI has one labelled split:
hold out a val split with ``--val-fraction``.
"""

from __future__ import annotations

from pathlib import Path

from tao_sdk.errors import ConversionError

from .detection import finish, open_image
from .files import list_files
from .records import ConvertOptions, DetectionSource, DetImage, Drops
from .registry import Reader

__all__ = ["KITTI", "read"]

_LAYOUTS = (("image_2", "label_2"), ("images", "labels"))


def _folders(src: Path) -> tuple[Path, Path]:
    for base in (src / "training", src):
        for images, labels in _LAYOUTS:
            if (base / images).is_dir() and (base / labels).is_dir():
                return base / images, base / labels
    raise ConversionError(f"KITTI: no image_2/ + label_2/ (or images/ + labels/) folder pair under {src} "
                          f"or {src / 'training'}; point SRC at the KITTI object-detection root")


def _objects(label: Path, img: DetImage, drops: Drops, clipped: list[int]) -> set[str]:
    """Add the boxes of one label file to ``img``; return the class names it uses."""
    found = set()
    for no, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        where = f"{label} line {no}"
        if not parts:
            continue
        if parts[0] == "DontCare":
            drops.add("KITTI DontCare region (not an object)", where)
            continue
        try:
            corners = [float(v) for v in parts[4:8]]
        except ValueError:
            corners = []
        if len(parts) < 15 or len(corners) != 4:
            drops.add("malformed KITTI label line (needs 15 fields, numeric box)", where)
            continue
        found.add(parts[0])
        img.add_box(parts[0], corners, where, drops, clipped)
    return found


def read(src: Path, split: str | None, opts: ConvertOptions) -> DetectionSource:
    """Read a KITTI detection folder (see the module docstring)."""
    if split:
        raise ConversionError("KITTI detection has one labelled split (training): drop --split and "
                              "hold out a val split with --val-fraction")
    image_dir, label_dir = _folders(src)
    labels = {p.relative_to(label_dir).with_suffix("").as_posix(): p for p in list_files(label_dir, (".txt",))}
    drops, clipped, images, found, unlabelled = Drops(), [0], [], set(), 0
    for path in list_files(image_dir):
        rel = path.relative_to(image_dir)
        label = labels.pop(rel.with_suffix("").as_posix(), None)
        img = open_image(path, rel.as_posix(), drops)
        if img is None:
            continue
        if label is None:
            unlabelled += 1
        else:
            found |= _objects(label, img, drops, clipped)
        images.append(img)
    for label in labels.values():
        drops.add("label file without an image", str(label))
    notes = [f"{unlabelled} image(s) without a label file kept without objects"] if unlabelled else []
    return finish(images, opts, drops, clipped, found, notes=notes, what=f"KITTI {image_dir}")


KITTI = Reader(read)
