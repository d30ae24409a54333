"""COCO detection (``coco`` / ``coco_raw``): ``annotations.json`` + ``images.tar.gz``.

Checks: the JSON's shape (``images`` / ``annotations`` / ``categories`` lists with integer ids,
``file_name``, ``width`` / ``height``, ``bbox`` of four numbers); duplicate image, annotation and
category ids and duplicate file names; annotations of an unknown image; categories used but not
declared (fix: declare the category or drop the annotation, never "raise num_classes", which
trains a class without a name) and declared but unused; category ids against
``dataset.num_classes`` and the skill's +1 convention (class index = category id, so ids 1..K
need ``num_classes`` K + 1; more is phantom classes); NaN / inf, zero-area, wholly and partly
outside boxes; images without a box; images listed but not in the archive and archive images not
listed; ``width`` / ``height`` against each image file's header.
"""

from __future__ import annotations

from typing import Any

from ..boxes import MSCOCO_CATEGORY_TO_LABEL, check_box
from ..problems import Problem
from ..reader import HEADER_BYTES, image_size, is_image, name_resolver
from ..sources import Source
from .base import Context, missing, problem, read_json, scan

ANNOTATIONS = "annotations.json"
IMAGES = "images.tar.gz"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ann_record(a: dict, i: int) -> str:
    """``annotation id N (image id M)`` or ``annotations[i]`` without an id."""
    name = f"annotation id {a['id']}" if _int(a.get("id")) else f"annotations[{i}]"
    return name + (f" (image id {a['image_id']})" if "image_id" in a else "")


class CocoDetection:
    """The COCO detection validator (see the module docstring)."""

    name = "coco_detection"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """``annotations.json`` and the images archive(s) beside it."""
        return tuple(n for n in (ANNOTATIONS, IMAGES) if n in source.files) if ANNOTATIONS in source.files else ()

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """The class count and the MSCOCO remap switch."""
        return {"num_classes": ctx.get("dataset.num_classes"), "remap": bool(ctx.get("dataset.remap_mscoco_category"))}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Every problem of the annotation file and its images."""
        uri, key = source.uri(ANNOTATIONS), source.key(ANNOTATIONS)
        data, out = read_json(ctx, uri, key, "COCO annotation file")
        if data is None:
            return out + [p for a in source.files.get(IMAGES, []) for p in missing(ctx, a, source.key(IMAGES))]
        images, anns, cats, shape = _shape(data, uri, key)
        out += shape
        if images is None:
            return out
        out += _duplicates(images, anns, cats, uri, key)
        out += _categories(ctx, anns, cats, uri, key)
        out += _boxes(images, anns, uri, key)
        for image_uri in source.files.get(IMAGES, []):
            out += _archive(ctx, images, uri, image_uri, source.key(IMAGES))
        return out


def _shape(data: Any, uri: str, key: str | None):
    """``(images, annotations, categories, problems)`` with only well-formed records kept."""
    p = lambda rec, msg, fix: problem(uri, rec, msg, fix, "schema", spec_key=key)  # noqa: E731
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return None, None, None, [p("the file", "is not a COCO detection file (no 'images' list)",
                                    "write an object with images, annotations and categories lists")]
    out: list[Problem] = []
    lists = {}
    for name in ("annotations", "categories"):
        lists[name] = data.get(name) if isinstance(data.get(name), list) else []
        if not isinstance(data.get(name), list):
            out.append(p(f"'{name}'", "is missing or not a list", f"add a '{name}' list"))
    images = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _int(img.get("id")) or not isinstance(img.get("file_name"), str):
            out.append(p(f"images[{i}]", f"{str(img)[:80]} needs an integer 'id' and a 'file_name'",
                         "give every image an integer id and its file name in the archive"))
            continue
        if not (_int(img.get("width")) and _int(img.get("height")) and img["width"] > 0 and img["height"] > 0):
            out.append(p(f"image id {img['id']} ({img['file_name']})", f"width/height {img.get('width')!r}/"
                         f"{img.get('height')!r} are not positive integers",
                         "write the image's pixel width and height (boxes are checked against them)"))
        images.append(img)
    anns = []
    for i, a in enumerate(lists["annotations"]):
        bad = [f for f in ("id", "image_id", "category_id") if not isinstance(a, dict) or not _int(a.get(f))]
        bbox = a.get("bbox") if isinstance(a, dict) else None
        if bad or not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            what = f"{', '.join(bad)} not integer(s)" if bad else f"bbox {bbox!r} is not [x, y, width, height]"
            out.append(p(ann_record(a, i) if isinstance(a, dict) else f"annotations[{i}]", what,
                         "write integer ids (no quotes) and bbox as four numbers in pixels"))
            continue
        anns.append(a)
    cats = []
    for i, c in enumerate(lists["categories"]):
        if not isinstance(c, dict) or not _int(c.get("id")) or not isinstance(c.get("name"), str):
            out.append(p(f"categories[{i}]", f"{str(c)[:80]} needs an integer 'id' and a 'name'",
                         "declare each category as {\"id\": N, \"name\": \"...\"}"))
            continue
        cats.append(c)
    return images, anns, cats, out


def _duplicates(images: list, anns: list, cats: list, uri: str, key: str | None) -> list[Problem]:
    out = []
    for what, items, field in (("image", images, "id"), ("annotation", anns, "id"), ("category", cats, "id"),
                               ("image", images, "file_name")):
        seen: dict[Any, int] = {}
        for item in items:
            seen[item[field]] = seen.get(item[field], 0) + 1
        for value, n in seen.items():
            if n > 1:
                label = f"{what} {field} {value!r}" if field != "id" else f"{what} id {value}"
                out.append(problem(uri, label, f"appears {n} times", f"give each {what} a unique {field}",
                                   f"duplicate_{what}_{field}", spec_key=key))
    return out


def _categories(ctx: Context, anns: list, cats: list, uri: str, key: str | None) -> list[Problem]:
    declared = {c["id"]: c["name"] for c in cats}
    used: dict[int, int] = {}
    out = []
    for i, a in enumerate(anns):
        cid = a["category_id"]
        used[cid] = used.get(cid, 0) + 1
        if cid not in declared:
            out.append(problem(uri, ann_record(a, i), f"category_id {cid} is not declared in 'categories'",
                               f"declare category {cid} in categories or drop annotation {a['id']}",
                               "undeclared_category", spec_key=key))
    for cid, name in sorted(declared.items()):
        if cid not in used:
            out.append(problem(uri, f"category id {cid} ({name!r})", "has no annotation: the model gets a class it "
                               "never sees", f"annotate some {name!r} objects or remove category {cid} from categories",
                               "unused_category", severity="warning", spec_key=key))
    return out + _num_classes(ctx, declared, uri, key)


def _num_classes(ctx: Context, declared: dict[int, str], uri: str, key: str | None) -> list[Problem]:
    """Category ids against ``dataset.num_classes`` (class index = id, or the MSCOCO remap)."""
    num_classes = ctx.get("dataset.num_classes")
    if not _int(num_classes) or not declared:
        return []
    remap = bool(ctx.get("dataset.remap_mscoco_category"))
    if remap:
        unknown = sorted(c for c in declared if c not in MSCOCO_CATEGORY_TO_LABEL)
        if unknown:
            return [problem(uri, f"category id {unknown[0]}", "is not an MSCOCO id but dataset.remap_mscoco_category "
                            "is true", "set dataset.remap_mscoco_category: false (it is for MSCOCO's 91 ids only)",
                            "remap", spec_key=key)]
        labels = {MSCOCO_CATEGORY_TO_LABEL[c]: c for c in declared}
    else:
        labels = {c: c for c in declared}
    needed = max(labels) + 1
    k = len(declared)
    if num_classes < needed:
        over = sorted(c for lab, c in labels.items() if lab >= num_classes)
        sparse = f", or renumber the categories 1..{k} (then {k + 1})" if needed > k + 1 else ""
        return [problem(uri, f"category id {over[0]} ({declared[over[0]]!r})",
                        f"{len(over)} declared categor{'y has a class index' if len(over) == 1 else 'ies have class indices'} >= dataset.num_classes "
                        f"{num_classes} (ids {over[:10]}); class index = category id, so ids must be < num_classes",
                        f"set dataset.num_classes to {needed} (the skill's convention: the highest category id + 1; "
                        f"{k} categories with ids 1..{k} -> {k + 1}){sparse}", "num_classes", spec_key="dataset.num_classes")]
    if num_classes > needed:
        return [problem(uri, "categories", f"dataset.num_classes {num_classes} is more than the highest category id + 1 "
                        f"({needed}): {num_classes - needed} class(es) have no category (phantom classes)",
                        f"set dataset.num_classes to {needed}", "phantom_classes", severity="warning",
                        spec_key="dataset.num_classes")]
    return []


def _boxes(images: list, anns: list, uri: str, key: str | None) -> list[Problem]:
    by_id = {img["id"]: img for img in images}
    boxed: set[int] = set()
    out = []
    fixes = {"non_finite": ("has NaN/inf coordinates", "fix or drop annotation {id}"),
             "no_area": ("has zero or negative width/height", "fix or drop annotation {id}"),
             "outside": ("lies wholly outside its {w}x{h} image", "fix or drop annotation {id}"),
             "clipped": ("reaches outside its {w}x{h} image (the worker clips it)", "clip bbox of annotation {id} "
                         "to the image")}
    for i, a in enumerate(anns):
        img = by_id.get(a["image_id"])
        if img is None:
            out.append(problem(uri, ann_record(a, i), f"image_id {a['image_id']} is not in 'images'",
                               f"use the id of one of the images or drop annotation {a['id']}", "unknown_image",
                               spec_key=key))
            continue
        w, h = (img.get("width") or 0), (img.get("height") or 0)
        _, defect = check_box([float(v) for v in a["bbox"]], w if _int(w) else 0, h if _int(h) else 0)
        if defect in (None, "clipped"):
            boxed.add(img["id"])
        if defect is None or a.get("iscrowd"):
            continue
        msg, fix = fixes[defect]
        out.append(problem(uri, ann_record(a, i), f"bbox {a['bbox']} " + msg.format(w=w, h=h),
                           fix.format(id=a["id"]), f"box_{defect}", severity="warning" if defect == "clipped" else "error",
                           spec_key=key))
    if not boxed:
        out.append(problem(uri, "annotations", "no usable box in the file: nothing to train or evaluate on",
                           "add annotations with bbox [x, y, width, height] inside their images", "no_boxes", spec_key=key))
    for img in images:
        if img["id"] not in boxed and boxed:
            out.append(problem(uri, f"image id {img['id']} ({img['file_name']})", "has no usable box (background only)",
                               f"annotate it, or remove image {img['id']} if it is not meant as a background image",
                               "empty_image", severity="warning", spec_key=key))
    return out


def _archive(ctx: Context, images: list, uri: str, archive: str, key: str | None) -> list[Problem]:
    """Listed images against the archive's members, and their sizes against the file headers."""
    listed = {str(img["file_name"]) for img in images}
    found, out = scan(ctx, archive, key, lambda name: HEADER_BYTES if is_image(name) else 0)
    if found is None or (not found.members and found.error):
        return out
    resolve = name_resolver(found.members)
    members_used: set[str] = set()
    for img in images:
        member = resolve(img["file_name"])
        if member is None:
            if found.complete:
                out.append(problem(uri, f"image id {img['id']} ({img['file_name']})", f"is not in {archive}",
                                   f"add {img['file_name']} to {archive.rsplit('/', 1)[-1]} or remove image {img['id']} "
                                   "(and its annotations) from the annotation file", "missing_image", spec_key=key))
            continue
        members_used.add(member)
        out += _size(img, member, found.data.get(member), uri, archive, key)
    if found.complete:
        for member in sorted(set(found.members) - members_used):
            if is_image(member) and member not in listed:
                out.append(problem(archive, f"member {member}", "is not listed in the annotation file (never read)",
                                   f"list it in {uri.rsplit('/', 1)[-1]} 'images' or remove it from the archive",
                                   "unlisted_image", severity="warning", spec_key=key))
    return out


def _size(img: dict, member: str, header: bytes | None, uri: str, archive: str, key: str | None) -> list[Problem]:
    if header is None:
        return []
    size = image_size(header)
    record = f"image id {img['id']} ({img['file_name']})"
    if size is None:
        return [problem(archive, f"member {member}", "is not a readable image", f"replace {member} with a valid "
                        "JPEG/PNG file or remove image " + str(img["id"]), "unreadable_image", spec_key=key)]
    if (img.get("width"), img.get("height")) != size and all(_int(img.get(k)) for k in ("width", "height")):
        return [problem(uri, record, f"width x height {img['width']}x{img['height']} but the file is "
                        f"{size[0]}x{size[1]}", f"set width {size[0]} and height {size[1]} (boxes are in the file's "
                        "pixels)", "image_size", spec_key=key)]
    return []


__all__ = ["CocoDetection", "ann_record"]
