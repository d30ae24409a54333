"""Writer of the detection layout (RT-DETR, Deformable DETR: formats ``coco`` / ``coco_raw``)::

    <dest>/images.tar.gz      the images, member names = annotations.json file_name
    <dest>/annotations.json   COCO: images, annotations (bbox = x, y, w, h in pixels), categories
    <dest>/label_map.txt      one class name per line, in category-id order

Category ids are 1..N in the class order of the source (``categories_from``), so the spec
needs ``dataset.num_classes`` = N + 1 (the "+1" of the detection skills: the worker uses the
category id as the class index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import TarWriter
from .records import DetectionSource, categories_from

__all__ = ["FILES", "write", "spec_hints"]

#: The files of the layout, as the skills' tables name them.
FILES = ["images.tar.gz", "annotations.json", "label_map.txt"]


def write(source: DetectionSource, staging: Path) -> dict[str, Any]:
    """Write the layout into ``staging``; return its counts (images, boxes, images without
    boxes, boxes per class)."""
    cats = categories_from(source.classes)
    cat_id = {c.name: c.id for c in cats}
    images, anns, per_class = [], [], {c.name: 0 for c in cats}
    with TarWriter(staging / "images.tar.gz") as tar:
        for image_id, img in enumerate(source.items, 1):
            tar.add_file(img.path, img.name)
            images.append({"id": image_id, "file_name": img.name, "width": img.width,
                           "height": img.height})
            for label, x0, y0, x1, y1 in img.boxes:
                w, h = x1 - x0, y1 - y0
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_id[label],
                             "bbox": [round(x0, 3), round(y0, 3), round(w, 3), round(h, 3)],
                             "area": round(w * h, 3), "iscrowd": 0})
                per_class[label] += 1
    coco = {"info": {"description": "converted by tao-skills dataset convert"}, "images": images,
            "annotations": anns,
            "categories": [{"id": c.id, "name": c.name, "supercategory": "none"} for c in cats]}
    (staging / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    (staging / "label_map.txt").write_text("".join(f"{c.name}\n" for c in cats), encoding="utf-8")
    return {"images": len(images), "boxes": len(anns),
            "images_without_boxes": sum(1 for im in source.items if not im.boxes),
            "boxes_per_class": per_class}


def spec_hints(source: DetectionSource) -> dict[str, Any]:
    """Spec values the converted data needs (category ids 1..N -> ``num_classes`` N + 1)."""
    return {"dataset.num_classes": len(source.classes) + 1}
