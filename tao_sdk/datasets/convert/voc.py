"""Pascal VOC -> COCO.

Layout: ``SRC/Annotations/<id>.xml`` + ``SRC/JPEGImages/`` (+ ``SRC/ImageSets/Main/<split>.txt``),
``SRC`` being a ``VOC2007`` / ``VOC2012`` folder or a ``VOCdevkit`` holding one. By default the
``train`` and ``val`` lists convert into ``DEST/train`` and ``DEST/val`` (``--split test`` and
others too); without ``ImageSets`` every annotation file converts into DEST. Boxes: VOC's
1-based inclusive pixel corners -> COCO ``x = xmin - 1``, ``w = xmax - xmin + 1``. ``difficult``
objects are kept (counted in the notes). Parsed with the standard library's ElementTree
(expat: no external entities are fetched).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

from tao_sdk.errors import ConversionError

from .detection import finish, open_image
from .files import first_dir
from .records import ConvertOptions, DetectionSource, Drops
from .registry import Reader

__all__ = ["VOC", "read", "splits"]

_DEFAULT_SPLITS = ("train", "val")


def _root(src: Path) -> Path:
    if (src / "Annotations").is_dir():
        return src
    inner = sorted(p for p in src.glob("VOC*") if (p / "Annotations").is_dir())
    if len(inner) == 1:
        return inner[0]
    raise ConversionError(f"VOC: {src} has no Annotations/ folder (nor exactly one VOC*/Annotations/); "
                          "point SRC at the VOC2007 / VOC2012 folder")


def splits(src: Path) -> list[str]:
    """``train`` / ``val`` where ``ImageSets/Main`` lists them."""
    main = _root(src) / "ImageSets" / "Main"
    return [s for s in _DEFAULT_SPLITS if (main / f"{s}.txt").is_file()]


def _parse(xml: Path) -> tuple[str | None, tuple[tuple[str, tuple[float, ...], bool], ...]] | None:
    """``(filename, ((name, (xmin, ymin, xmax, ymax), difficult), ...))`` of one file (a
    malformed object has an empty box tuple); ``None`` for a file that is not XML. Parsed once
    per file version (the class scan and every split read the same files)."""
    try:
        return _parse_version(str(xml), xml.stat().st_mtime_ns)
    except OSError:
        return None


@lru_cache(maxsize=None)
def _parse_version(xml: str, _mtime_ns: int):
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        return None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            corners = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            corners = ()
        objects.append((name, corners, (obj.findtext("difficult") or "0").strip() == "1"))
    return root.findtext("filename"), tuple(objects)


def _ids(root: Path, split: str | None) -> list[str]:
    if split is None:
        return sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise ConversionError(f"VOC: no split list {listing}; use --split with one of "
                              f"{', '.join(p.stem for p in listing.parent.glob('*.txt') if '_' not in p.stem)}")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def read(src: Path, split: str | None, opts: ConvertOptions) -> DetectionSource:
    """Read a VOC folder (see the module docstring)."""
    root = _root(src)
    images_dir = first_dir(root, ["JPEGImages"], "VOC")
    found = {name for xml in (root / "Annotations").glob("*.xml") for name, _b, _d in (_parse(xml) or ("", ()))[1]}
    drops, clipped, images, difficult = Drops(), [0], [], 0
    for image_id in _ids(root, split):
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            drops.add("listed image without an annotation file", str(xml))
            continue
        parsed = _parse(xml)
        if parsed is None:
            drops.add("annotation file that is not valid XML", str(xml))
            continue
        filename, objects = parsed
        names = [n for n in (filename, f"{image_id}.jpg") if n]  # some exports name another extension
        name = next((n for n in names if (images_dir / n).is_file()), names[0])
        img = open_image(images_dir / name, name, drops)
        if img is None:
            continue
        for no, (name, corners, hard) in enumerate(objects, 1):
            if len(corners) != 4 or not name:
                drops.add("VOC object without a name or a numeric bndbox", f"{xml} object {no}")
                continue
            difficult += hard
            x0, y0, x1, y1 = corners
            img.add_box(name, (x0 - 1, y0 - 1, x1, y1), f"{xml} object {no}", drops, clipped)
        images.append(img)
    notes = [f"{difficult} object(s) marked difficult kept"] if difficult else []
    return finish(images, opts, drops, clipped, found, notes=notes, what=f"VOC {root}")


VOC = Reader(read, splits)
