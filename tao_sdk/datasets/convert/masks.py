"""Semantic masks and Cityscapes -> COCO panoptic (the OneFormer layout).

**semantic_masks**: ``SRC/images/`` + a mask folder ``SRC/masks/`` (or ``labels/``,
``annotations/``) with one single-channel PNG per image (same relative path, ``.png``), whose
pixel value *v* is the class on line *v* of ``SRC/classes.txt`` (or ``--classes``); values in
``--ignore-value`` (default 255) are unlabelled. Sub-folders of ``images/`` that the mask folder
has too (``train``, ``val``...) are splits, each converted into ``DEST/<split>``. Each class
present in an image becomes one segment (``isthing: 0``: a semantic dataset, as the skill
describes it).

**cityscapes**: ``SRC/leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` with
``SRC/gtFine/<split>/<city>/<x>_gtFine_labelIds.png`` (and ``_instanceIds.png`` when present:
one segment per instance of the thing classes, instance-less groups as ``iscrowd: 1``). The
categories are Cityscapes' 19 evaluated classes (their usual colours); void labels become
unlabelled pixels. Splits ``train`` and ``val`` convert by default.
"""

from __future__ import annotations

from pathlib import Path

from tao_sdk.errors import ConversionError

from .files import first_dir, imaging, list_files
from .records import Category, ConvertOptions, Drops, PanopticSource, SegImage
from .registry import Reader

__all__ = ["SEMANTIC", "CITYSCAPES", "CITYSCAPES_CLASSES"]

_MASK_DIRS = ("masks", "labels", "annotations")

#: Cityscapes' evaluated classes: (labelId, name, isthing, colour), in trainId order.
CITYSCAPES_CLASSES = (
    (7, "road", 0, (128, 64, 128)), (8, "sidewalk", 0, (244, 35, 232)), (11, "building", 0, (70, 70, 70)),
    (12, "wall", 0, (102, 102, 156)), (13, "fence", 0, (190, 153, 153)), (17, "pole", 0, (153, 153, 153)),
    (19, "traffic light", 0, (250, 170, 30)), (20, "traffic sign", 0, (220, 220, 0)),
    (21, "vegetation", 0, (107, 142, 35)), (22, "terrain", 0, (152, 251, 152)), (23, "sky", 0, (70, 130, 180)),
    (24, "person", 1, (220, 20, 60)), (25, "rider", 1, (255, 0, 0)), (26, "car", 1, (0, 0, 142)),
    (27, "truck", 1, (0, 0, 70)), (28, "bus", 1, (0, 60, 100)), (31, "train", 1, (0, 80, 100)),
    (32, "motorcycle", 1, (0, 0, 230)), (33, "bicycle", 1, (119, 11, 32)),
)


def _read_mask(path: Path):
    np, Image = imaging()
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise ConversionError(f"{path}: a label mask must be single-channel (class index per pixel), "
                              f"found shape {arr.shape}; save class indices, not colours")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------- semantic masks


def _semantic_dirs(src: Path) -> tuple[Path, Path]:
    return first_dir(src, ["images"], "semantic_masks"), first_dir(src, _MASK_DIRS, "semantic_masks")


def _semantic_splits(src: Path) -> list[str]:
    images, masks = _semantic_dirs(src)
    if any(p.is_file() for p in images.iterdir()):
        return []
    return sorted(p.name for p in images.iterdir() if p.is_dir() and (masks / p.name).is_dir())


def _class_list(src: Path, opts: ConvertOptions) -> list[str]:
    if opts.classes:
        return list(opts.classes)
    path = src / "classes.txt"
    if not path.is_file():
        raise ConversionError(f"semantic_masks: no class list; write {path} (line v = the class of pixel "
                              "value v) or pass --classes")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _semantic_segments(mask: Path, value_to_id: dict[int, int], ignore: tuple[int, ...], drops: Drops):
    np, _Image = imaging()
    arr = _read_mask(mask)
    ids = np.zeros(arr.shape, dtype=np.int64)
    for v in np.unique(arr).tolist():
        if v in value_to_id:
            ids[arr == v] = value_to_id[v]
        elif v not in ignore:
            drops.add(f"pixels of mask value {v} (not in the class list) left unlabelled", str(mask))
    return ids, [(cid, cid, 0) for cid in sorted(set(np.unique(ids).tolist()) - {0})]


def _read_semantic(src: Path, split: str | None, opts: ConvertOptions) -> PanopticSource:
    images_dir, masks_dir = _semantic_dirs(src)
    images_dir, masks_dir = (images_dir / split, masks_dir / split) if split else (images_dir, masks_dir)
    kept = [(v, n) for v, n in enumerate(_class_list(src, opts)) if v not in opts.ignore_values]
    cats = [Category(i + 1, n, 0) for i, (_v, n) in enumerate(kept)]
    value_to_id = {v: i + 1 for i, (v, _n) in enumerate(kept)}
    drops, items = Drops(), []
    for path in list_files(images_dir):
        rel = path.relative_to(images_dir)
        mask = masks_dir / rel.with_suffix(".png")
        if not mask.is_file():
            drops.add("image without a label mask", str(path))
            continue
        items.append(SegImage(path, rel.as_posix(), lambda m=mask: _semantic_segments(
            m, value_to_id, opts.ignore_values, drops)))
    return _finish(items, cats, drops, f"semantic_masks {images_dir}",
                   [f"category ids 1..{len(cats)}: mask values {sorted(value_to_id)} in class-list order"])


def _finish(items, cats, drops, what, notes) -> PanopticSource:
    if not items:
        raise ConversionError(f"{what}: no image with a label mask was found; check the layout "
                              "(references/dataset-conversion.md)")
    return PanopticSource(items=items, categories=cats, classes=[c.name for c in cats], drops=drops,
                          notes=notes)


# --------------------------------------------------------------------------- Cityscapes


def _city_splits(src: Path) -> list[str]:
    return [s for s in ("train", "val") if (src / "leftImg8bit" / s).is_dir()]


def _city_segments(label_ids: Path, instance_ids: Path):
    np, _Image = imaging()
    by_label = {lab: (i + 1, thing) for i, (lab, _n, thing, _c) in enumerate(CITYSCAPES_CLASSES)}
    arr = _read_mask(instance_ids if instance_ids.is_file() else label_ids)
    ids, segments = np.zeros(arr.shape, dtype=np.int64), []
    for v in np.unique(arr).tolist():
        label = v // 1000 if v >= 1000 else v
        if label not in by_label:
            continue  # void: unlabelled
        cid, thing = by_label[label]
        seg = len(segments) + 1
        ids[arr == v] = seg
        segments.append((seg, cid, int(bool(thing) and v < 1000 and instance_ids.is_file())))
    return ids, segments


def _read_cityscapes(src: Path, split: str | None, opts: ConvertOptions) -> PanopticSource:
    if opts.classes:
        raise ConversionError("cityscapes: the categories are Cityscapes' 19 evaluated classes; drop --classes")
    if not split:
        raise ConversionError(f"cityscapes: name the split (--split train / val); {src}/leftImg8bit has "
                              f"{', '.join(_city_splits(src)) or 'none'}")
    images_dir = first_dir(src / "leftImg8bit", [split], "cityscapes")
    labels_dir = first_dir(src / "gtFine", [split], "cityscapes")
    drops, items = Drops(), []
    for path in list_files(images_dir, ("_leftimg8bit.png",)):
        rel = path.relative_to(images_dir).as_posix()
        stem = labels_dir / rel[: -len("_leftImg8bit.png")]
        label_ids = Path(f"{stem}_gtFine_labelIds.png")
        if not label_ids.is_file():
            drops.add("image without a gtFine labelIds file", str(path))
            continue
        items.append(SegImage(path, rel, lambda a=label_ids, b=Path(f"{stem}_gtFine_instanceIds.png"):
                              _city_segments(a, b)))
    cats = [Category(i + 1, n, thing, color) for i, (_l, n, thing, color) in enumerate(CITYSCAPES_CLASSES)]
    return _finish(items, cats, drops, f"cityscapes {images_dir}",
                   ["categories: Cityscapes' 19 evaluated classes (ids 1..19 in trainId order); void labels unlabelled"])


SEMANTIC = Reader(_read_semantic, _semantic_splits)
CITYSCAPES = Reader(_read_cityscapes, _city_splits)
