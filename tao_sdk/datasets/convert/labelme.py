"""LabelMe -> COCO.

Layout: LabelMe's JSON files anywhere below SRC (``--split NAME``: below ``SRC/NAME``), each
naming its image by ``imagePath`` (relative to the JSON; when that file is absent, the image
embedded as ``imageData`` is used). Shapes: ``rectangle`` (two corners),
``polygon`` (the box of its points) and ``circle`` (centre + a point on the circle) become
boxes; ``point``, ``line`` and ``linestrip`` shapes have no area and are dropped (reported).
The class list is the sorted labels of every JSON below SRC (all splits), unless ``--classes``.
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path

from tao_sdk.errors import ConversionError

from .detection import finish, open_image
from .files import list_files, member_name
from .records import ConvertOptions, DetectionSource, Drops
from .registry import Reader

__all__ = ["LABELME", "read"]


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("shapes"), list) else None


def _corners(shape: dict) -> tuple[float, float, float, float] | None:
    points = shape.get("points") or []
    kind = shape.get("shape_type") or "polygon"
    try:
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    except (TypeError, ValueError, IndexError):
        return None
    if kind == "circle" and len(xs) == 2:
        r = math.hypot(xs[1] - xs[0], ys[1] - ys[0])
        return xs[0] - r, ys[0] - r, xs[0] + r, ys[0] + r
    if (kind == "rectangle" and len(xs) == 2) or (kind == "polygon" and len(xs) >= 3):
        return min(xs), min(ys), max(xs), max(ys)
    return None


def _embedded(b64: str, out: Path) -> Path:
    """Write the image LabelMe embedded in its JSON (``imageData``, base64) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.write_bytes(base64.b64decode(b64, validate=False))
    except (ValueError, TypeError):
        pass  # left absent: reported as a missing image
    return out


def read(src: Path, split: str | None, opts: ConvertOptions) -> DetectionSource:
    """Read the LabelMe JSON files below SRC (or SRC/<split>)."""
    folder = Path(os.path.normpath(src / split if split else src))
    if not folder.is_dir():
        raise ConversionError(f"LabelMe: {folder} is not a folder of LabelMe JSON files")
    found = {str(s.get("label")) for p in list_files(src, (".json",)) for s in (_load(p) or {}).get("shapes", [])}
    drops, clipped, images = Drops(), [0], []
    for path in list_files(folder, (".json",)):
        data = _load(path)
        if data is None:
            drops.add("not a LabelMe JSON file (no shapes list)", str(path))
            continue
        image = Path(os.path.normpath(path.parent / str(data.get("imagePath") or "").replace("\\", "/")))
        name = member_name(image, folder)
        if not image.is_file() and data.get("imageData"):
            image = _embedded(data["imageData"], opts.scratch / name)
        img = open_image(image, name, drops)
        if img is None:
            continue
        for no, shape in enumerate(data["shapes"], 1):
            corners = _corners(shape)
            where = f"{path} shape {no}"
            if corners is None:
                drops.add(f"LabelMe shape_type {shape.get('shape_type')!r} with no box", where)
                continue
            img.add_box(str(shape.get("label")), corners, where, drops, clipped)
        images.append(img)
    return finish(images, opts, drops, clipped, found, what=f"LabelMe {folder}")


LABELME = Reader(read)
