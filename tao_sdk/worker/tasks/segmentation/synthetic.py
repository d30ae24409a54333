"""A synthetic COCO panoptic dataset (coloured shapes) for demos and tests."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tao_sdk.worker.tasks.segmentation.labels import palette


# --------------------------------------------------------------------------- synthetic data

#: Default classes of the synthetic dataset: a stuff background and three shapes (things).
SYNTHETIC_CLASSES = ("background", "square", "disc", "triangle")
_SHAPE_OF = {"square": "rectangle", "disc": "ellipse", "triangle": "triangle"}
_TINT = {"square": (220, 60, 60), "disc": (60, 100, 230), "triangle": (60, 190, 80)}


def _tar(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) at the top level of ``folder/name`` (a .tar.gz)."""
    path = folder / name
    with tarfile.open(path, "w:gz") as tf:
        for fname, blob in files.items():
            info = tarfile.TarInfo(fname)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def panoptic_png(ids: np.ndarray) -> bytes:
    """A segment id map ``[H, W]`` as a COCO panoptic PNG (id = ``R + 256*G + 256*256*B``)."""
    ids = np.asarray(ids, dtype=np.int64)
    return _png(np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8))


def segment_info(ids: np.ndarray, seg_id: int, category_id: int, iscrowd: int = 0) -> dict:
    """The ``segments_info`` entry of segment ``seg_id`` of the id map ``ids`` (area, bbox
    ``[x, y, w, h]`` of its pixels; the segment must have at least one pixel)."""
    ys, xs = np.nonzero(ids == seg_id)
    return {"id": int(seg_id), "category_id": int(category_id), "iscrowd": int(iscrowd),
            "area": int(len(xs)), "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
                                           int(np.ptp(ys)) + 1]}


def _synthetic_image(rng: np.random.Generator, prng: random.Random, size: int,
                     shapes: Sequence[str], max_objects: int):
    """One image: textured background + 1..max_objects shapes; returns (rgb, ids, segments)."""
    from tao_sdk.worker.tasks.detection.synthetic import _background, _draw

    img = _background(rng, size)
    ids = Image.new("I", (size, size), 1)  # segment 1 = the background stuff segment
    draw_img, draw_ids = ImageDraw.Draw(img), ImageDraw.Draw(ids)
    segments = [(1, "background")]
    for k in range(prng.randint(1, max_objects)):
        name = prng.choice(list(shapes))
        side = prng.randint(size // 5, size // 2)
        x0, y0 = prng.randint(0, size - side), prng.randint(0, size - side)
        box = (x0, y0, x0 + side, y0 + side)
        tint = tuple(int(np.clip(c + prng.randint(-25, 25), 0, 255)) for c in _TINT[name])
        _draw(draw_img, _SHAPE_OF[name], box, tint)
        _draw(draw_ids, _SHAPE_OF[name], box, k + 2)
        segments.append((k + 2, name))
    id_arr = np.asarray(ids, dtype=np.int64)
    present = set(np.unique(id_arr).tolist())
    return np.asarray(img), id_arr, [s for s in segments if s[0] in present]


def _write_split(folder: Path, n_images: int, cats: list[dict], size: int, seed: int,
                 max_objects: int) -> dict[str, Path]:
    """Write one COCO panoptic split folder; return its file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    cat_id = {c["name"]: c["id"] for c in cats}
    shapes = [c["name"] for c in cats if c["isthing"]]
    images, anns, img_files, pan_files = [], [], {}, {}
    for i in range(n_images):
        rgb, ids, segs = _synthetic_image(rng, prng, size, shapes, max_objects)
        stem = f"img_{i:05d}"
        img_files[f"{stem}.jpg"] = _png(rgb, "JPEG")
        pan_files[f"{stem}.png"] = panoptic_png(ids)
        images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": size, "height": size})
        info = [segment_info(ids, seg_id, cat_id[name]) for seg_id, name in segs]
        anns.append({"image_id": i + 1, "file_name": f"{stem}.png", "segments_info": info})
    out = {"root": folder,
           "images": _tar(folder, "images.tar.gz", img_files),
           "panoptic": _tar(folder, "images_panoptic.tar.gz", pan_files),
           "annotations": folder / "annotations.json",
           "label_map": folder / "label_map.json"}
    out["annotations"].write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    out["label_map"].write_text(json.dumps(cats, indent=1), encoding="utf-8")
    (folder / "label_map_panoptic.json").write_text(json.dumps(cats, indent=1),
                                                    encoding="utf-8")
    return out


def make_segmentation_dataset(root: str | Path, n_train: int = 24, n_val: int = 8,
                              size: int = 64, classes: Sequence[str] = SYNTHETIC_CLASSES,
                              seed: int = 0, max_objects: int = 3) -> dict[str, dict[str, Path]]:
    """Write a synthetic COCO panoptic segmentation dataset under ``root``.

    ``root/train`` and ``root/val`` each hold ``images.tar.gz``, ``images_panoptic.tar.gz``,
    ``annotations.json`` and ``label_map.json`` (the skill's file names). ``classes[0]`` is a
    stuff background (``isthing: 0``); the others are shapes (``isthing: 1``) drawn with their
    own tint, so a small network learns them in a few epochs. Returns ``{"train": paths,
    "val": paths}``; ``model.sem_seg_head.num_classes`` = ``len(classes)`` with
    ``dataset.contiguous_id: true``.
    """
    unknown = [c for c in classes[1:] if c not in _SHAPE_OF]
    if unknown:
        raise ValueError(f"unknown synthetic shape class(es) {unknown}; use "
                         f"{sorted(_SHAPE_OF)}")
    pal = palette(len(classes))
    cats = [{"id": i + 1, "name": n, "isthing": int(i > 0), "color": [int(v) for v in pal[i]]}
            for i, n in enumerate(classes)]
    root = Path(root)
    return {"train": _write_split(root / "train", n_train, cats, size, seed, max_objects),
            "val": _write_split(root / "val", n_val, cats, size, seed + 1, max_objects)}
