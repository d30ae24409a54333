"""YOLO (Ultralytics / Darknet txt) -> COCO.

Layout: ``SRC/data.yaml`` (or SRC is the YAML file) with ``names`` (a list, or a mapping
index -> name), optional ``path`` (the root, relative to the YAML's folder) and ``train`` /
``val`` / ``test``: an image folder, a ``.txt`` list of images, or a list of either. The labels
of ``.../images/.../x.jpg`` are in ``.../labels/.../x.txt``: one object per line, ``class cx cy w
h`` normalised to 0..1 (a segmentation line ``class x1 y1 x2 y2 ...`` gives the box of its
polygon); no label file = no objects. A missing ``../train/images`` entry (Roboflow exports) is
read as ``train/images`` when that exists, as Ultralytics does (noted in the report). Class index *k* -> category id *k* + 1. By default every
split the YAML names converts into ``DEST/<split>``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tao_sdk.errors import ConversionError

from .detection import finish, open_image
from .files import list_files, member_name
from .records import ConvertOptions, DetectionSource, DetImage, Drops
from .registry import Reader

__all__ = ["YOLO", "read", "splits"]

_SPLITS = ("train", "val", "test")


def _config(src: Path) -> tuple[Path, dict]:
    """``(dataset root, data.yaml contents)``."""
    path = src if src.is_file() else next((src / n for n in ("data.yaml", "data.yml", "dataset.yaml")
                                          if (src / n).is_file()), None)
    if path is None:
        raise ConversionError(f"YOLO: no data.yaml in {src}; point SRC at the folder holding data.yaml "
                              "(names + train / val image folders) or at the YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConversionError(f"YOLO: {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if not isinstance(data, dict) or not data.get("names"):
        raise ConversionError(f"YOLO: {path} has no 'names' (the class names, in class-index order)")
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else path.parent / root
    if not root.is_dir():
        raise ConversionError(f"YOLO: {path} sets path: {data.get('path')!r}, but {root} is not a folder; fix "
                              "path: (relative to the YAML's folder) or remove it (splits are then relative "
                              "to the YAML's folder)")
    return root, data


def _names(data: dict) -> list[str]:
    names = data["names"]
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


def splits(src: Path) -> list[str]:
    """The splits ``data.yaml`` names (``train``, ``val``, ``test``)."""
    return [s for s in _SPLITS if _config(src)[1].get(s)]


def _locate(root: Path, item: str, notes: list[str]) -> Path:
    """The path of a data.yaml split entry. As Ultralytics does for Roboflow exports (whose
    ``train: ../train/images`` points above the YAML's folder), a missing ``../x`` entry is read
    as ``x`` when that exists; a note says so."""
    path = Path(item) if Path(item).is_absolute() else root / item
    if not path.exists() and str(item).startswith("../") and (root / item[3:]).exists():
        notes.append(f"data.yaml entry {item!r} read as {item[3:]!r} (Roboflow export convention)")
        return root / item[3:]
    return path


def _images(root: Path, entry, notes: list[str]) -> list[Path]:
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = _locate(root, str(item), notes)
        if path.is_dir():
            out += list_files(path)
        elif path.suffix == ".txt" and path.is_file():
            out += [(p if p.is_absolute() else root / p) for p in
                    (Path(x.strip()) for x in path.read_text().splitlines() if x.strip())]
        else:
            raise ConversionError(f"YOLO: {path} (from data.yaml) is neither an image folder nor a .txt list")
    return out


def _label_file(image: Path) -> Path:
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is not None:
        parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def _objects(label: Path, img: DetImage, names: list[str], drops: Drops, clipped: list[int]) -> None:
    for no, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        where = f"{label} line {no}"
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            values = [-1.0]
        if not values:
            continue
        k = int(values[0]) if values[0].is_integer() else -1
        coords = values[1:]
        if not 0 <= k < len(names) or len(coords) < 4 or (len(coords) > 4 and len(coords) % 2):
            drops.add("malformed YOLO line or class index not in data.yaml names", where)
            continue
        if len(coords) == 4:
            cx, cy, w, h = coords
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        else:
            xs, ys = coords[0::2], coords[1::2]
            corners = (min(xs), min(ys), max(xs), max(ys))
        img.add_box(names[k], (corners[0] * img.width, corners[1] * img.height,
                               corners[2] * img.width, corners[3] * img.height), where, drops, clipped)


def read(src: Path, split: str | None, opts: ConvertOptions) -> DetectionSource:
    """Read one split of a YOLO dataset (see the module docstring)."""
    root, data = _config(src)
    if split is None or not data.get(split):
        raise ConversionError(f"YOLO: data.yaml names no split {split!r}; use --split with one of "
                              f"{', '.join(s for s in _SPLITS if data.get(s)) or '(none: add train / val)'}")
    names = _names(data)
    drops, clipped, images, notes = Drops(), [0], [], []
    for path in _images(root, data[split], notes):
        img = open_image(path, member_name(path, root), drops)
        if img is None:
            continue
        if _label_file(path).is_file():
            _objects(_label_file(path), img, names, drops, clipped)
        images.append(img)
    return finish(images, opts, drops, clipped, names, declared=names, notes=notes, what=f"YOLO {split}")


YOLO = Reader(read, splits)
