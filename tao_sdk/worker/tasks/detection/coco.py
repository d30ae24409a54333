"""COCO detection data for the detection task: load and validate an ``annotations.json``
(:func:`load_coco`), the class-name file of inference (:func:`read_label_map`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tao_sdk.datasets.boxes import BOX_DEFECTS, MSCOCO_CATEGORY_TO_LABEL
from tao_sdk.datasets.boxes import check_box as _check_box
from tao_sdk.datasets.reader import name_resolver
from tao_sdk.worker.errors import DatasetError

__all__ = ["CocoImage", "CocoData", "load_coco", "read_label_map"]


@dataclass
class CocoImage:
    """One image of a COCO file with its resolved local path and its boxes.

    ``boxes`` are ``[x, y, w, h]`` in pixels; ``labels`` are model class indices (the category
    id, or its remapped index with ``dataset.remap_mscoco_category``).
    """

    id: int
    file_name: str
    path: Path
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


@dataclass
class CocoData:
    """A validated COCO annotation file.

    Attributes:
        json_file: the local annotation file.
        image_dir: the local image folder.
        images: the images, in file order.
        categories: category id -> name.
        label_to_category: model class index -> category id (identity unless remapped).
        raw: the parsed JSON (used as ground truth for COCO evaluation).
        skipped_boxes: annotations dropped (no area, non-finite, wholly outside the image).
        box_issues: count per defect (:data:`BOX_DEFECTS` keys), dropped and clipped boxes.
        issue_examples: the first few defective annotations, described (id, image, bbox).
    """

    json_file: Path
    image_dir: Path
    images: list[CocoImage]
    categories: dict[int, str]
    label_to_category: dict[int, int]
    raw: dict[str, Any]
    skipped_boxes: int = 0
    box_issues: dict[str, int] = field(default_factory=dict)
    issue_examples: list[str] = field(default_factory=list)

    def issues_summary(self, what: str) -> str | None:
        """One line for status.json / the log about dropped and clipped boxes, or None."""
        if not self.box_issues:
            return None
        counts = ", ".join(f"{n} {BOX_DEFECTS[k]}" for k, n in self.box_issues.items())
        return (f"{what}: {sum(self.box_issues.values())} box(es) with defects in {self.json_file} "
                f"({counts}); first: {'; '.join(self.issue_examples)}. Fix the annotation file to train on "
                "every box")

    def class_names(self) -> dict[int, str]:
        """Model class index -> category name (what the trained model's outputs mean)."""
        return {lab: self.categories.get(cid, str(cid)) for lab, cid in self.label_to_category.items()}

    def check_classes(self, trained: dict[int, str] | None, what: str) -> None:
        """Raise DatasetError when a class index means another category name here than in the
        training data (``trained``: recorded in the checkpoint), e.g. 0-based ids at training
        and 1-based ids here. No record (older checkpoints): nothing to check."""
        if not trained:
            return
        mine = self.class_names()
        clash = [(lab, name, trained[lab]) for lab, name in sorted(mine.items())
                 if lab in trained and trained[lab] != name]
        if clash:
            shown = ", ".join(f"class {lab} is {name!r} here but {was!r} at training" for lab, name, was in clash[:5])
            raise DatasetError(
                f"{what}: {self.json_file} numbers its categories differently from the training data ({shown}); "
                f"use the training annotations' category ids ({dict(sorted(trained.items()))})")


_MAX_EXAMPLES = 5


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what}: {path} is not UTF-8 text ({exc.reason}); re-export it as "
                           "UTF-8 COCO JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{what}: {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); re-export the COCO annotation file"
        ) from None


def _index_files(root: Path) -> dict[str, Path]:
    """Map each file's relative posix path below ``root`` to its path."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p
    return out


def _resolver(image_dir: Path) -> Callable[[str], Path | None]:
    """Build a function file_name -> local path that tolerates a top-level folder in the tar
    (``images/xxx.jpg``) and file names with or without a folder prefix (the rule of
    :func:`tao_sdk.datasets.reader.name_resolver`, which plan-time validation applies too)."""
    index = _index_files(image_dir)
    by_name = name_resolver(index)

    def resolve(name: str) -> Path | None:
        """Local path of the annotation ``file_name`` ``name``, or None when absent."""
        member = by_name(name)
        return index[member] if member is not None else None

    return resolve


def load_coco(json_file: Path, image_dir: Path, num_classes: int, *, remap: bool = False,
              what: str = "dataset", check_images: bool = True) -> CocoData:
    """Load and validate a COCO detection file (``coco`` / ``coco_raw`` formats).

    Args:
        json_file: local annotations file.
        image_dir: local image folder (extracted ``images.tar.gz``).
        num_classes: ``dataset.num_classes``; every class index must be below it.
        remap: ``dataset.remap_mscoco_category``: map MSCOCO's 80 category ids (1..90 with
            gaps) to class indices 0..79 (:data:`MSCOCO_CATEGORY_TO_LABEL`) instead of using
            the ids as class indices.
        what: the spec key the files came from (for messages).
        check_images: verify that every listed image file exists.

    Boxes with NaN/inf coordinates, no area or wholly outside their image are dropped, boxes
    partly outside are clipped; every such box is counted in ``box_issues`` (see
    :meth:`CocoData.issues_summary`, which the job writes as a WARNING status line).

    Raises :class:`DatasetError` on corrupt JSON, missing keys, missing image files (their
    names are listed), boxes that are not ``[x, y, w, h]``, a ``category_id`` that is not an
    integer (file, annotation id and fix named), a class index ``>= num_classes`` (the message
    says which value to set ``dataset.num_classes`` to), or no valid box at all.
    """
    data = _read_json(json_file, what)
    anns, categories = _coco_parts(data, json_file, what)
    cat_to_label = _class_indices(anns, categories, num_classes, remap, json_file, what)
    images, by_id = _coco_images(data["images"], image_dir, json_file, what, check_images)
    issues, examples, boxes = _coco_boxes(anns, by_id, cat_to_label, json_file, what)
    label_to_cat = {lab: cid for cid, lab in cat_to_label.items()}
    out = CocoData(json_file=json_file, image_dir=image_dir, images=images, categories=categories,
                   label_to_category=label_to_cat, raw=data,
                   skipped_boxes=sum(n for k, n in issues.items() if k != "clipped"),
                   box_issues=issues, issue_examples=examples)
    if boxes == out.skipped_boxes:  # nothing to learn from or to evaluate against
        detail = f"all {boxes} of its boxes are invalid: {out.issues_summary(what)}" if boxes else (
            "it has no annotations (no non-crowd boxes)")
        raise DatasetError(f"{what}: {json_file} cannot be used: {detail}; a detection dataset needs "
                           "annotated boxes [x, y, width, height] inside their images")
    return out


def _coco_parts(data: Any, json_file: Path, what: str) -> tuple[list[dict], dict[int, str]]:
    """The annotations (each checked to be an object with an integer ``category_id``) and the
    declared categories (id -> name) of a parsed COCO file."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(
            f"{what}: {json_file} is not a COCO detection file (no 'images' list); expected "
            "keys images, annotations, categories"
        )
    anns = data.get("annotations", [])
    cats = data.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise DatasetError(f"{what}: {json_file}: 'annotations' and 'categories' must be lists")
    categories: dict[int, str] = {}
    for c in cats:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise DatasetError(f"{what}: {json_file}: category {c!r} has no integer 'id'")
        categories[c["id"]] = str(c.get("name", c["id"]))
    for a in anns:
        if not isinstance(a, dict):
            raise DatasetError(f"{what}: {json_file}: annotation {a!r} is not an object")
        _check_int_field(a, "category_id", what, json_file)
    return anns, categories


def _class_indices(anns: list[dict], categories: dict[int, str], num_classes: int, remap: bool,
                   json_file: Path, what: str) -> dict[int, int]:
    """Category id -> model class index (MSCOCO remap or identity), every index checked to be
    below ``num_classes``."""
    used_ids = sorted({a["category_id"] for a in anns})
    all_ids = sorted(set(categories) | set(used_ids))
    if remap:
        unknown = [c for c in used_ids if c not in MSCOCO_CATEGORY_TO_LABEL]
        if unknown:
            raise DatasetError(
                f"{what}: {json_file} uses category id(s) {unknown[:10]} that are not MSCOCO "
                "category ids, but dataset.remap_mscoco_category is true; set it to false "
                "(it is only for the original 91-id MSCOCO annotations)"
            )
        cat_to_label = {c: MSCOCO_CATEGORY_TO_LABEL[c] for c in all_ids
                        if c in MSCOCO_CATEGORY_TO_LABEL}
    else:
        negative = [c for c in all_ids if c < 0]
        if negative:
            raise DatasetError(f"{what}: {json_file}: negative category ids {negative}")
        cat_to_label = {cid: cid for cid in all_ids}
    max_label = max(cat_to_label.values(), default=-1)
    if max_label >= num_classes:
        offending = [c for c, lab in cat_to_label.items() if lab >= num_classes]
        undeclared = [c for c in offending if c not in categories]
        if undeclared:  # raising num_classes would train a class without a name
            first = next(a for a in anns if a["category_id"] == undeclared[0])
            raise DatasetError(
                f"{what}: {json_file}: annotation id {first.get('id')} uses category_id {undeclared[0]}, which is "
                f"not declared in 'categories' (undeclared and >= dataset.num_classes: {undeclared[:10]}); declare "
                f"category {undeclared[0]} in categories or drop its annotations. `tao-skills dataset validate` "
                "lists every such annotation")
        raise DatasetError(
            f"{what}: {json_file} uses category id(s) {offending[:10]} but dataset.num_classes "
            f"is {num_classes}; raise dataset.num_classes to at least {max_label + 1} "
            "(class ids must be < num_classes; with ids starting at 1 that is the number of "
            "classes + 1)"
        )
    return cat_to_label


def _coco_images(entries: list, image_dir: Path, json_file: Path, what: str,
                 check_images: bool) -> tuple[list[CocoImage], dict[int, CocoImage]]:
    """The images of a COCO file with their local paths (missing files listed in the error
    when ``check_images``), in file order and by id."""
    images: list[CocoImage] = []
    by_id: dict[int, CocoImage] = {}
    resolve = _resolver(image_dir)
    missing: list[str] = []
    for img in entries:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DatasetError(f"{what}: {json_file}: image entry {img!r} needs 'id' and "
                               "'file_name'")
        path = resolve(str(img["file_name"]))
        if path is None:
            missing.append(str(img["file_name"]))
            path = image_dir / str(img["file_name"])
        ci = CocoImage(id=img["id"], file_name=str(img["file_name"]), path=path,
                       width=int(img.get("width") or 0), height=int(img.get("height") or 0))
        images.append(ci)
        by_id[ci.id] = ci
    if missing and check_images:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10
                                           else "")
        raise DatasetError(
            f"{what}: {len(missing)} image(s) listed in {json_file} are missing from {image_dir}: "
            f"{shown}; add them to images.tar.gz or remove them from the annotation file"
        )
    return images, by_id


def _coco_boxes(anns: list[dict], by_id: dict[int, CocoImage], cat_to_label: dict[int, int],
                json_file: Path, what: str) -> tuple[dict[str, int], list[str], int]:
    """Attach each non-crowd box (clipped; defective ones dropped) to its image; return the
    count per defect, the first few defects described, and the number of non-crowd boxes."""
    issues: dict[str, int] = {}
    examples: list[str] = []
    boxes = 0
    for a in anns:
        img = by_id.get(a.get("image_id"))
        if img is None:
            raise DatasetError(
                f"{what}: {json_file}: annotation id {a.get('id')} refers to image_id "
                f"{a.get('image_id')!r}, which is not in 'images'; use the integer id of one of the images"
            )
        bbox = a.get("bbox")
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise DatasetError(
                f"{what}: {json_file}: annotation id {a.get('id')} has bbox {bbox!r}; expected "
                "[x, y, width, height] in pixels, four numbers (not strings)"
            )
        if a.get("iscrowd", 0):
            continue
        boxes += 1
        box, defect = _check_box([float(v) for v in bbox], img.width, img.height)
        if defect is not None:
            issues[defect] = issues.get(defect, 0) + 1
            if len(examples) < _MAX_EXAMPLES:
                size = f", {img.width}x{img.height}" if img.width and img.height else ""
                examples.append(f"annotation id {a.get('id')} (image {img.file_name}{size}) bbox {list(bbox)} "
                                f"{BOX_DEFECTS[defect]}")
        if box is None:
            continue
        img.boxes.append(box)
        img.labels.append(cat_to_label[a["category_id"]])
    return issues, examples, boxes


def _check_int_field(ann: dict, name: str, what: str, json_file: Path) -> None:
    """Raise DatasetError naming the file, the annotation id and the fix when ``ann[name]`` is
    not an integer (e.g. ``"1"``)."""
    value = ann.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        fix = f"write it as the integer {int(value)} (no quotes)"
    elif isinstance(value, float) and value.is_integer():
        fix = f"write it as the integer {int(value)}"
    else:
        fix = "set it to the integer id of one of the 'categories'"
    raise DatasetError(f"{what}: {json_file}: annotation id {ann.get('id')!r} has {name} {value!r} "
                       f"({type(value).__name__}), not an integer; {fix}")


def read_label_map(path: Path, num_classes: int, what: str = "classmap",
                   trained: dict[int, str] | None = None) -> dict[int, str]:
    """Read a ``label_map.txt`` (one class name per line) into class index -> name.

    ``trained``: the class index -> name map the model was trained with (recorded in its
    checkpoint). When given and the file lists one name per trained class, line *i* names the
    *i*-th trained class index, so inference names classes exactly as training numbered them,
    whatever the base of the category ids (0 or 1).

    Lines may also be ``<id> <name>`` / ``<id>: <name>`` with explicit ids. Without ids, a file
    with ``num_classes`` names maps line *i* to class *i*; a file with ``num_classes - 1`` names
    (COCO ids starting at 1, ``num_classes`` = classes + 1) maps line *i* to class *i + 1*.
    Raises :class:`DatasetError` for an empty file or a count that fits neither rule.
    """
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise DatasetError(f"{what}: {path} is not UTF-8 text") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DatasetError(f"{what}: {path} is empty; write one class name per line")
    explicit = [re.match(r"^(\d+)\s*[:\s]\s*(.+)$", ln) for ln in lines]
    if all(explicit):
        return {int(m.group(1)): m.group(2).strip() for m in explicit if m}
    if trained and len(lines) == len(trained):
        return {label: lines[i] for i, label in enumerate(sorted(trained))}
    if len(lines) == num_classes:
        return dict(enumerate(lines))
    if len(lines) == num_classes - 1:
        return {i + 1: name for i, name in enumerate(lines)}
    raise DatasetError(
        f"{what}: {path} lists {len(lines)} class names but dataset.num_classes is "
        f"{num_classes}; expected {num_classes} names (ids from 0) or {num_classes - 1} "
        "(COCO ids from 1), or set dataset.num_classes to match"
    )
