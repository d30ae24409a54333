"""Writer of the COCO panoptic layout (OneFormer, format ``coco_panoptic``)::

    <dest>/images.tar.gz            the RGB images (member = annotations.json images[].file_name)
    <dest>/images_panoptic.tar.gz   one RGB PNG per image: segment id = R + 256*G + 256*256*B
    <dest>/annotations.json         COCO panoptic: images, annotations (segments_info), categories
    <dest>/label_map.json           the categories: [{id, name, isthing, color}], ids 1..N
    <dest>/label_map_panoptic.json  the same list (the name OneFormer inference reads for
                                    coco_panoptic datasets)

Category ids are 1..N in label-map order, so with ``dataset.contiguous_id: true`` (the default)
class *i* is the *i*-th entry and ``model.sem_seg_head.num_classes`` = N. Segment id 0 marks
unlabelled pixels, which the worker ignores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import TarWriter, image_size
from .records import PanopticSource

__all__ = ["FILES", "write", "spec_hints"]

FILES = ["images.tar.gz", "images_panoptic.tar.gz", "annotations.json", "label_map.json",
         "label_map_panoptic.json"]


def _label_map(source: PanopticSource) -> list[dict[str, Any]]:
    from tao_sdk.worker.tasks.segmentation import palette

    pal = palette(len(source.categories))
    return [{"id": c.id, "name": c.name, "isthing": c.isthing,
             "color": list(c.color) if c.color else [int(v) for v in pal[i]]}
            for i, c in enumerate(source.categories)]


def write(source: PanopticSource, staging: Path) -> dict[str, Any]:
    """Write the layout into ``staging``; return its counts (images, segments, per class).
    An image whose segment map has another size than the image is dropped (in ``drops``)."""
    from tao_sdk.worker.tasks.segmentation import panoptic_png, segment_info

    names = {c.id: c.name for c in source.categories}
    images, anns, per_class = [], [], {c.name: 0 for c in source.categories}
    with TarWriter(staging / "images.tar.gz") as tar, \
            TarWriter(staging / "images_panoptic.tar.gz") as pan_tar:
        for img in source.items:
            try:
                ids, segments = img.segments()
            except (OSError, ValueError) as exc:
                source.drops.add("unreadable label mask", f"{img.path}: {exc}")
                continue
            size = image_size(img.path)
            if size != (ids.shape[1], ids.shape[0]):
                source.drops.add("label map of another size than its image (or unreadable image)",
                                 f"{img.path} {size} vs label {ids.shape[1]}x{ids.shape[0]}")
                continue
            image_id = len(images) + 1
            pan_name = img.name.rsplit(".", 1)[0] + ".png"
            tar.add_file(img.path, img.name)
            pan_tar.add_bytes(pan_name, panoptic_png(ids))
            info = [segment_info(ids, sid, cid, crowd) for sid, cid, crowd in segments]
            for seg in info:
                per_class[names[seg["category_id"]]] += 1
            images.append({"id": image_id, "file_name": img.name, "width": size[0], "height": size[1]})
            anns.append({"image_id": image_id, "file_name": pan_name, "segments_info": info})
    label_map = _label_map(source)
    coco = {"info": {"description": "converted by tao-skills dataset convert"}, "images": images,
            "annotations": anns, "categories": label_map}
    (staging / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    for name in ("label_map.json", "label_map_panoptic.json"):
        (staging / name).write_text(json.dumps(label_map, indent=1), encoding="utf-8")
    return {"images": len(images), "segments": sum(len(a["segments_info"]) for a in anns),
            "images_without_segments": sum(1 for a in anns if not a["segments_info"]),
            "segments_per_class": per_class}


def spec_hints(source: PanopticSource) -> dict[str, Any]:
    """Spec values the converted data needs (contiguous ids 1..N -> N classes)."""
    return {"model.sem_seg_head.num_classes": len(source.categories), "dataset.contiguous_id": True}
