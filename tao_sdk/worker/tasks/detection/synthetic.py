"""Synthetic COCO detection datasets (coloured shapes on textured backgrounds).

:func:`make_coco_dataset` writes datasets in the same layout as datasets on S3, one folder per
split::

    <root>/train/images.tar.gz   # the images, at the top level of the archive
    <root>/train/annotations.json  # COCO: images, annotations (bbox = x, y, w, h), categories
    <root>/train/label_map.txt   # one class name per line, in category-id order
    <root>/val/...               # same for the validation split

Category ids start at 1 (COCO convention), so a spec needs ``dataset.num_classes`` = number of
classes + 1. Each class has its own shape and colour, so a small detector learns them in a few
epochs. Used by the tests and by ``tao-skills demo``. Needs only numpy and pillow.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["make_coco_dataset", "make_split", "DEFAULT_CLASSES"]

#: Default class names.
DEFAULT_CLASSES = ("square", "disc")

_COLORS = [(220, 40, 40), (40, 90, 230), (40, 180, 60), (240, 200, 30), (170, 60, 200),
           (30, 200, 200), (250, 130, 30), (120, 120, 120)]
_SHAPES = ("rectangle", "ellipse", "triangle", "diamond")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A textured background: smooth colour gradient + blurred noise + faint stripes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    base = rng.uniform(90, 170, size=3)
    slope = rng.uniform(-40, 40, size=(2, 3))
    img = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    noise = rng.normal(0, 18, size=(size // 4 + 1, size // 4 + 1, 3))
    noise_img = Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC)
    img = img + (np.asarray(noise_img, dtype=np.float32) - 128)
    freq = rng.uniform(4, 12)
    img += 8 * np.sin(2 * np.pi * freq * (x * rng.uniform(-1, 1) + y))[..., None]
    img += rng.normal(0, 4, size=img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(0.6))


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
          color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "rectangle":
        draw.rectangle(box, fill=color)
    elif shape == "ellipse":
        draw.ellipse(box, fill=color)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1),
                      (x0, (y0 + y1) / 2)], fill=color)


def make_split(folder: str | Path, n_images: int, classes: Sequence[str], size: int,
               seed: int, max_objects: int = 3) -> dict[str, Path]:
    """Write one dataset folder (images.tar.gz, annotations.json, label_map.txt).

    Returns ``{"root", "images", "annotations", "label_map"}`` paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    images, anns = [], []
    ann_id = 1
    tar_path = folder / "images.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for i in range(n_images):
            img = _background(rng, size)
            draw = ImageDraw.Draw(img)
            placed: list[tuple[int, int, int, int]] = []
            for _ in range(prng.randint(1, max_objects)):
                for _attempt in range(20):
                    w = prng.randint(max(6, int(size * 0.18)), max(8, int(size * 0.42)))
                    h = prng.randint(max(6, int(size * 0.18)), max(8, int(size * 0.42)))
                    x0 = prng.randint(0, size - w)
                    y0 = prng.randint(0, size - h)
                    box = (x0, y0, x0 + w, y0 + h)
                    if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3]
                           for b in placed):
                        break
                else:
                    continue
                placed.append(box)
                cls = prng.randrange(len(classes))
                _draw(draw, _SHAPES[cls % len(_SHAPES)], box, _COLORS[cls % len(_COLORS)])
                anns.append({"id": ann_id, "image_id": i + 1, "category_id": cls + 1,
                             "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                             "area": float(w * h), "iscrowd": 0})
                ann_id += 1
            name = f"{i + 1:06d}.jpg"
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=95)
            data = buf.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
    coco = {
        "info": {"description": f"synthetic shapes ({len(classes)} classes, seed {seed})"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"}
                       for k, n in enumerate(classes)],
    }
    (folder / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    (folder / "label_map.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    return {"root": folder, "images": tar_path, "annotations": folder / "annotations.json",
            "label_map": folder / "label_map.txt"}


def make_coco_dataset(root: str | Path, n_train: int = 32, n_val: int = 8,
                      classes: Sequence[str] = DEFAULT_CLASSES, size: int = 128,
                      seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write a train and a val split under ``root`` (``root/train``, ``root/val``).

    Args:
        root: output folder (created).
        n_train, n_val: images per split (``n_val=0`` skips the val split).
        classes: class names (category ids 1..len(classes); ``num_classes`` = len + 1).
        size: square image side in pixels.
        seed: random seed (same seed -> byte-identical annotations and images).

    Returns ``{"train": paths, "val": paths}`` as returned by :func:`make_split`.
    """
    if not classes:
        raise ValueError("classes must name at least one class")
    if size < 32:
        raise ValueError("size must be >= 32 pixels")
    root = Path(root)
    out = {"train": make_split(root / "train", n_train, classes, size, seed)}
    if n_val:
        out["val"] = make_split(root / "val", n_val, classes, size, seed + 10_000)
    return out
