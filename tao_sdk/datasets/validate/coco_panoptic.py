"""COCO panoptic (OneFormer): ``annotations.json`` + ``images.tar.gz`` + ``images_panoptic.tar.gz``
+ ``label_map.json``.

Checks: ``label_map.json`` is a list of ``{id, name}`` with unique ids, and its size against
``model.sem_seg_head.num_classes`` (``dataset.contiguous_id: true``: one entry per class; false:
ids below ``num_classes``); the annotation file's shape; every annotation's image in ``images``;
segment categories declared in the label map (fix: declare the category there or drop the
segment); every image in the images archive and every annotation PNG in the panoptic archive,
with the sizes of their headers; the colours of each PNG (``R + 256*G + 256*256*B`` = segment id)
against its ``segments_info``: a segment with no pixel and pixels of a colour no segment names.
"""

from __future__ import annotations

import io
from typing import Any

from ..problems import Problem
from ..reader import HEADER_BYTES, image_size, is_image, name_resolver
from ..sources import Source
from .base import Context, problem, read_json, scan, text_digest

ANNOTATIONS, IMAGES, PANOPTIC = "annotations.json", "images.tar.gz", "images_panoptic.tar.gz"
LABEL_MAPS = ("label_map.json", "label_map_panoptic.json")


def _label_map_uri(ctx: Context, source: Source) -> tuple[str | None, str | None]:
    """The label map of this source, else the one another source of the action names."""
    for src in [source, *ctx.sources]:
        for name in LABEL_MAPS:
            if src.uri(name):
                return src.uri(name), src.key(name)
    return None, None


class CocoPanoptic:
    """The COCO panoptic validator (see the module docstring)."""

    name = "coco_panoptic"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """The panoptic files of the source (a label map alone counts too)."""
        return tuple(n for n in (ANNOTATIONS, IMAGES, PANOPTIC, *LABEL_MAPS) if n in source.files) \
            if (ANNOTATIONS in source.files or any(n in source.files for n in LABEL_MAPS)) else ()

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """Class count and id mode, and the label map it reads."""
        return {"num_classes": ctx.get("model.sem_seg_head.num_classes"),
                "contiguous": ctx.get("dataset.contiguous_id", True),
                "label_map": text_digest(ctx, _label_map_uri(ctx, source)[0])}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Every problem of the label map, the annotation file and both archives."""
        lm_uri, lm_key = _label_map_uri(ctx, source)
        categories, out = _label_map(ctx, lm_uri, lm_key, own=lm_uri in sum(source.files.values(), []))
        uri, key = source.uri(ANNOTATIONS), source.key(ANNOTATIONS)
        if uri is None:
            return out
        data, problems = read_json(ctx, uri, key, "COCO panoptic annotation file")
        out += problems
        if data is None:
            return out
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
            return out + [problem(uri, "the file", "is not a COCO panoptic file (needs 'images' and 'annotations' lists)",
                                  "write images, annotations (file_name + segments_info) and categories", "schema",
                                  spec_key=key)]
        images = {img["id"]: img for img in data["images"] if isinstance(img, dict) and "id" in img}
        anns, problems = _annotations(data["annotations"], images, categories, uri, lm_uri, key)
        out += problems
        for uri_images in source.files.get(IMAGES, []):
            out += _images(ctx, list(images.values()), uri, uri_images, source.key(IMAGES))
        for uri_pan in source.files.get(PANOPTIC, []):
            out += _panoptic(ctx, anns, images, uri, uri_pan, source.key(PANOPTIC))
        return out


def _label_map(ctx: Context, uri: str | None, key: str | None, own: bool) -> tuple[set[int] | None, list[Problem]]:
    """``(category ids of the label map or None, problems)``; problems only for the source that owns it."""
    if uri is None:
        return None, []
    data, out = read_json(ctx, uri, key, "label map")
    report = out if own else []
    if data is None:
        return None, report
    entries = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), int)] if isinstance(data, list) else []
    if not isinstance(data, list) or len(entries) != len(data) or not entries:
        return None, report + ([problem(uri, "the file", "is not a JSON list of {\"id\": int, \"name\": str, ...}",
                                        "write one entry per class: id, name, isthing, color", "schema",
                                        spec_key=key)] if own else [])
    ids = [e["id"] for e in entries]
    if own:
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            report.append(problem(uri, f"id {dup}", f"appears {ids.count(dup)} times", "give each class a unique id",
                                  "duplicate_category_id", spec_key=key))
        report += _class_count(ctx, ids, uri)
    return set(ids), report


def _class_count(ctx: Context, ids: list[int], uri: str) -> list[Problem]:
    n = ctx.get("model.sem_seg_head.num_classes")
    if not isinstance(n, int):
        return []
    if ctx.get("dataset.contiguous_id", True) and len(ids) != n:
        return [problem(uri, f"{len(ids)} entries", f"the label map has {len(ids)} classes but "
                        f"model.sem_seg_head.num_classes is {n} (dataset.contiguous_id: true: one class per entry)",
                        f"set model.sem_seg_head.num_classes to {len(ids)}", "num_classes",
                        spec_key="model.sem_seg_head.num_classes")]
    over = sorted(i for i in ids if i >= n)
    if not ctx.get("dataset.contiguous_id", True) and over:
        return [problem(uri, f"id {over[0]}", f"ids {over[:10]} are not below model.sem_seg_head.num_classes {n} "
                        "(dataset.contiguous_id: false: the id is the class index)",
                        f"set model.sem_seg_head.num_classes to {max(ids) + 1} or dataset.contiguous_id: true",
                        "num_classes", spec_key="model.sem_seg_head.num_classes")]
    return []


def _annotations(anns: list, images: dict, categories: set[int] | None, uri: str, lm_uri: str | None,
                 key: str | None) -> tuple[list[dict], list[Problem]]:
    out, good = [], []
    for i, a in enumerate(anns):
        if not (isinstance(a, dict) and isinstance(a.get("file_name"), str) and isinstance(a.get("segments_info"), list)):
            out.append(problem(uri, f"annotations[{i}]", "needs image_id, file_name and a segments_info list",
                               "write one annotation per image: image_id, file_name of its PNG, segments_info",
                               "schema", spec_key=key))
            continue
        record = f"annotation of image id {a.get('image_id')} ({a['file_name']})"
        if a.get("image_id") not in images:
            out.append(problem(uri, record, f"image_id {a.get('image_id')!r} is not in 'images'",
                               f"use the id of one of the images or drop the annotation {a['file_name']}",
                               "unknown_image", spec_key=key))
        for s in a["segments_info"]:
            cid = s.get("category_id") if isinstance(s, dict) else None
            if categories is not None and cid not in categories:
                out.append(problem(uri, f"{record} segment {s.get('id') if isinstance(s, dict) else s}",
                                   f"category_id {cid} is not in the label map {lm_uri}",
                                   f"declare category {cid} in {(lm_uri or 'label_map.json').rsplit('/', 1)[-1]} or drop "
                                   f"segment {s.get('id') if isinstance(s, dict) else s}", "undeclared_category",
                                   spec_key=key))
        good.append(a)
    annotated = {a.get("image_id") for a in good}
    for img_id, img in images.items():
        if img_id not in annotated:
            out.append(problem(uri, f"image id {img_id} ({img.get('file_name')})", "has no panoptic annotation",
                               "add its annotation (PNG + segments_info) or remove the image", "empty_image",
                               severity="warning", spec_key=key))
    return good, out


def _images(ctx: Context, images: list[dict], uri: str, archive: str, key: str | None) -> list[Problem]:
    found, out = scan(ctx, archive, key, lambda n: HEADER_BYTES if is_image(n) else 0)
    if found is None or not found.complete:
        return out
    resolve = name_resolver(found.members)
    for img in images:
        member = resolve(str(img.get("file_name")))
        record = f"image id {img.get('id')} ({img.get('file_name')})"
        if member is None:
            out.append(problem(uri, record, f"is not in {archive}", f"add it to the archive or remove image "
                               f"{img.get('id')} and its annotation", "missing_image", spec_key=key))
            continue
        size = image_size(found.data.get(member, b""))
        if size and (img.get("width"), img.get("height")) != size:
            out.append(problem(uri, record, f"width x height {img.get('width')}x{img.get('height')} but the file is "
                               f"{size[0]}x{size[1]}", f"set width {size[0]} and height {size[1]}", "image_size",
                               spec_key=key))
    return out


def _panoptic(ctx: Context, anns: list[dict], images: dict, uri: str, archive: str, key: str | None) -> list[Problem]:
    found, out = scan(ctx, archive, key, lambda n: -1 if n.lower().endswith(".png") else 0)
    if found is None:
        return out
    resolve = name_resolver(found.members)
    for a in anns:
        member = resolve(a["file_name"])
        record = f"annotation of image id {a.get('image_id')} ({a['file_name']})"
        if member is None:
            if found.complete:
                out.append(problem(uri, record, f"its PNG {a['file_name']} is not in {archive}",
                                   "add the PNG to the panoptic archive or drop the annotation", "missing_png",
                                   spec_key=key))
            continue
        out += _colours(found.data.get(member), a, images.get(a.get("image_id")), archive, member, key)
    return out


def _colours(data: bytes | None, ann: dict, image: dict | None, archive: str, member: str,
             key: str | None) -> list[Problem]:
    """Segment ids of ``segments_info`` against the colours of the PNG."""
    from PIL import Image

    if data is None:
        return []
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
            colours = rgb.getcolors(rgb.width * rgb.height) or []
            size = rgb.size
    except Exception as exc:  # noqa: BLE001 - a broken PNG
        return [problem(archive, f"member {member}", f"is not a readable PNG ({exc})", "re-export the panoptic PNG",
                        "unreadable_image", spec_key=key)]
    out = []
    if image and (image.get("width"), image.get("height")) != size:
        out.append(problem(archive, f"member {member}", f"is {size[0]}x{size[1]} but its image is "
                           f"{image.get('width')}x{image.get('height')}", "export the PNG at the image's size",
                           "png_size", spec_key=key))
    present = {r + 256 * g + 65536 * b for _, (r, g, b) in colours} - {0}
    declared = {s.get("id") for s in ann["segments_info"] if isinstance(s, dict)}
    for sid in sorted(d for d in declared - present if isinstance(d, int)):
        out.append(problem(archive, f"member {member} segment {sid}", "has no pixel of its colour in the PNG",
                           f"paint segment {sid} (R + 256*G + 65536*B = {sid}) or drop it from segments_info",
                           "segment_without_pixels", spec_key=key))
    for sid in sorted(present - declared):
        out.append(problem(archive, f"member {member} colour id {sid}", "has pixels but no segment in segments_info",
                           f"add segment {sid} to segments_info of {ann['file_name']} or paint those pixels 0 (unlabelled)",
                           "pixels_without_segment", spec_key=key))
    return out
