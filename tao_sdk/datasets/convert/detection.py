"""What the detection readers share: the class list (``--classes``, a declared list, or the
sorted names found in the whole source, so that every split of one source gets the same ids),
and the images with their sizes read from the files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tao_sdk.errors import ConversionError

from .files import image_size
from .records import ConvertOptions, DetectionSource, DetImage, Drops

__all__ = ["open_image", "finish"]


def open_image(path: Path, name: str, drops: Drops) -> DetImage | None:
    """A :class:`DetImage` with the size read from the file; ``None`` (and a drop) when the
    file is missing or not a readable image."""
    size = image_size(path) if path.is_file() else None
    if size is None:
        drops.add("image missing or unreadable", str(path))
        return None
    return DetImage(path, name, *size)


def finish(images: list[DetImage], opts: ConvertOptions, drops: Drops, clipped: list[int],
           found: Iterable[str], declared: list[str] | None = None, notes: list[str] | None = None,
           what: str = "SRC") -> DetectionSource:
    """The :class:`DetectionSource`: classes from ``opts.classes``, else ``declared`` (the
    format's own list), else the sorted names ``found`` anywhere in the source; objects of other
    classes are dropped. Raises :class:`ConversionError` when no image is left."""
    classes = list(opts.classes or declared or sorted(set(found)))
    keep = set(classes)
    for img in images:
        for box in img.boxes:
            if box[0] not in keep:
                drops.add(f"object of class {box[0]!r}, not in the class list", img.name)
        img.boxes = [b for b in img.boxes if b[0] in keep]
    if not images:
        raise ConversionError(f"{what}: no readable image with annotations was found; check the "
                              "source layout (references/dataset-conversion.md)")
    source_of = "--classes" if opts.classes else "the source's class list" if declared else \
        "the sorted class names found in the source"
    return DetectionSource(items=images, classes=classes, drops=drops, clipped=clipped,
                           notes=[f"category ids 1..{len(classes)} follow {source_of}", *(notes or [])])
