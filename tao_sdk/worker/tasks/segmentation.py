"""Semantic segmentation task: what every segmentation network of the worker shares.

Data (the layout of the ``tao-train-oneformer`` skill's tables):

- ``dataset.<split>.images``: ``images.tar.gz`` (or a folder) with the RGB images.
- ``dataset.<split>.annotations``: ``annotations.json`` in COCO panoptic format: ``images``
  (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (one per image: ``image_id``,
  ``file_name`` of its panoptic PNG, ``segments_info`` = list of ``{id, category_id, iscrowd,
  area, bbox}``) and ``categories``.
- ``dataset.<split>.panoptic``: ``images_panoptic.tar.gz`` (or a folder) with the panoptic
  PNGs: RGB images whose pixel value ``R + 256*G + 256*256*B`` is a segment ``id`` of
  ``segments_info``; 0 = unlabelled (ignored).
- ``dataset.label_map``: ``label_map.json``, a JSON list of categories ``{"id": int, "name":
  str, "isthing": 0|1, "color": [r, g, b]}`` (the COCO panoptic ``categories`` entries). With
  ``dataset.contiguous_id: true`` class index *i* is the *i*-th entry of the list; with
  ``false`` the class index is the ``id`` itself (ids must then be below
  ``model.sem_seg_head.num_classes``).

A semantic-only dataset is the same format with one segment per class present in an image,
every category ``isthing: 0``. The semantic target of an image is its panoptic PNG with every
segment replaced by its category's class index; unlabelled pixels (id 0) and segments of
categories missing from the label map are set to ``ignore_value`` (255) and count neither in
the loss nor in the metrics. ``label_map_panoptic.json`` (what the skill's inference table
names for ``coco_panoptic`` datasets) has the same layout as ``label_map.json``.

Metrics (:class:`ConfusionMatrix`): per-class IoU, mean IoU over the classes that occur in the
ground truth (``mIoU``) and pixel accuracy (``ACC_all``), in percent as detectron2 / TAO report
them. Inference outputs (:func:`write_prediction`): raw label PNGs (class index per pixel),
colour mask PNGs (label map colours) and overlays of the mask on the image.

:func:`make_segmentation_dataset` writes a synthetic dataset in exactly this layout (shapes with
masks) for the demo and the tests.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.tasks import Task
from tao_sdk.worker.tasks.detection.data import load_rgb

__all__ = [
    "IGNORE_VALUE",
    "Category",
    "LabelMap",
    "SegSample",
    "read_label_map",
    "load_panoptic",
    "semantic_target",
    "SegmentationDataset",
    "collate",
    "mask_targets",
    "ConfusionMatrix",
    "palette",
    "panoptic_png",
    "segment_info",
    "write_prediction",
    "make_segmentation_dataset",
    "SegmentationTask",
    "TASK",
]

#: Label of pixels that count nowhere (TAO's ``model.sem_seg_head.ignore_value`` default).
IGNORE_VALUE = 255


@dataclass(frozen=True)
class Category:
    """One label map entry: dataset category ``id``, ``name``, thing/stuff, display colour."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LabelMap:
    """The classes of a segmentation model, in class-index order.

    Attributes:
        categories: one :class:`Category` per class index (``None`` for an index no category
            uses when ``contiguous_id`` is false).
        id_to_class: dataset category id -> class index.
    """

    categories: tuple[Category | None, ...]
    id_to_class: dict[int, int]

    @property
    def num_classes(self) -> int:
        """Number of class indices (the model's ``num_classes``)."""
        return len(self.categories)

    @property
    def names(self) -> list[str]:
        """Class name per index (``class_<i>`` for an unused index)."""
        return [c.name if c else f"class_{i}" for i, c in enumerate(self.categories)]

    @property
    def colors(self) -> np.ndarray:
        """``[num_classes, 3]`` uint8 colours (label map colours; a fixed palette otherwise)."""
        pal = palette(self.num_classes)
        for i, c in enumerate(self.categories):
            if c is not None:
                pal[i] = c.color
        return pal


def palette(n: int) -> np.ndarray:
    """A deterministic ``[n, 3]`` uint8 palette of well separated colours."""
    rng = np.random.default_rng(12345)
    base = np.array([(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25),
                     (145, 30, 180), (245, 130, 48), (70, 240, 240), (240, 50, 230),
                     (128, 128, 0), (0, 0, 128)], dtype=np.uint8)
    extra = rng.integers(0, 256, size=(max(0, n - len(base)), 3), dtype=np.uint8)
    return np.concatenate([base, extra])[:n].copy()


def _read_json(path: Path, what: str) -> Any:
    """Parse JSON at ``path``; :class:`DatasetError` naming ``what`` and the file if broken."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{what}: {path} does not exist; point {what} at the file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{what}: {path} is not valid JSON ({exc}); fix or regenerate the "
                           "file") from None


def _category(entry: Any, index: int, what: str) -> Category:
    """One label map entry -> :class:`Category`, with errors naming the entry."""
    if not isinstance(entry, dict) or "id" not in entry or "name" not in entry:
        raise DatasetError(
            f"{what}[{index}] must be an object with at least \"id\" and \"name\" (e.g. "
            '{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]}), found '
            f"{entry!r}")
    try:
        cid = int(entry["id"])
    except (TypeError, ValueError):
        raise DatasetError(f"{what}[{index}].id must be an integer, found "
                           f"{entry['id']!r}") from None
    color = entry.get("color")
    if color is None:
        color = tuple(int(v) for v in palette(index + 1)[index])
    elif (not isinstance(color, (list, tuple)) or len(color) != 3
          or not all(isinstance(v, int) and 0 <= v <= 255 for v in color)):
        raise DatasetError(f"{what}[{index}].color must be [r, g, b] with values 0..255, "
                           f"found {color!r}")
    return Category(cid, str(entry["name"]), bool(entry.get("isthing", 0)), tuple(color))


def read_label_map(path: str | Path, num_classes: int, contiguous: bool = True,
                   what: str = "dataset.label_map") -> LabelMap:
    """Read ``label_map.json`` (a JSON list of ``{id, name, isthing, color}``) for a model of
    ``num_classes`` classes.

    ``contiguous`` (``dataset.contiguous_id``): class *i* = *i*-th entry, and the file must
    list exactly ``num_classes`` entries; else class index = ``id`` (each id below
    ``num_classes``). A ``{"categories": [...]}`` object (an annotations.json) is accepted too.
    Raises :class:`DatasetError` naming the file, the entry and the fix.
    """
    data = _read_json(Path(path), what)
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        data = data["categories"]
    if not isinstance(data, list) or not data:
        raise DatasetError(
            f"{what}: {path} must be a non-empty JSON list of categories "
            '[{"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]}, ...]')
    cats = [_category(e, i, what) for i, e in enumerate(data)]
    ids = [c.id for c in cats]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetError(f"{what}: {path} lists category id(s) {dup} more than once; "
                           "give every category its own id")
    if contiguous:
        if len(cats) != num_classes:
            raise DatasetError(
                f"{what}: {path} lists {len(cats)} categories but "
                f"model.sem_seg_head.num_classes is {num_classes}; set "
                f"model.sem_seg_head.num_classes: {len(cats)} (with dataset.contiguous_id: "
                "true every category is one class)")
        return LabelMap(tuple(cats), {c.id: i for i, c in enumerate(cats)})
    too_big = [c.id for c in cats if not 0 <= c.id < num_classes]
    if too_big:
        raise DatasetError(
            f"{what}: category id(s) {too_big} are not below model.sem_seg_head.num_classes "
            f"({num_classes}); with dataset.contiguous_id: false the id is the class index: "
            f"set num_classes to {max(ids) + 1} or dataset.contiguous_id: true")
    slots: list[Category | None] = [None] * num_classes
    for c in cats:
        slots[c.id] = c
    return LabelMap(tuple(slots), {c.id: c.id for c in cats})


@dataclass
class SegSample:
    """One image with its panoptic PNG and segment id -> class index table."""

    image: Path
    panoptic: Path | None = None
    segments: dict[int, int] = field(default_factory=dict)


def _index(folder: Path) -> dict[str, Path]:
    """Relative path and base name -> file, for every file below ``folder``."""
    out: dict[str, Path] = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            out.setdefault(p.relative_to(folder).as_posix(), p)
            out.setdefault(p.name, p)
    return out


def _find(files: dict[str, Path], name: str, folder: Path, what: str) -> Path:
    """Resolve ``name`` (a relative path or base name) in an :func:`_index`; error otherwise."""
    hit = files.get(name) or files.get(Path(name).name)
    if hit is None:
        raise DatasetError(f"{what}: {name} is not in {folder}; add the file to the archive or "
                           "remove its entry from annotations.json")
    return hit


def load_panoptic(annotations: str | Path, image_dir: str | Path, panoptic_dir: str | Path,
                  label_map: LabelMap, split: str = "train") -> list[SegSample]:
    """Read a COCO panoptic split: ``annotations.json`` + image folder + panoptic PNG folder.

    ``split`` (``train``/``val``/``test``) only names the spec keys in errors. Segments whose
    ``category_id`` is not in ``label_map`` are ignored (they become ``ignore_value`` pixels).
    Raises :class:`DatasetError` for a missing file, an image without annotation entry or a
    malformed entry, naming the ``dataset.<split>.*`` key.
    """
    key = f"dataset.{split}"
    data = _read_json(Path(annotations), f"{key}.annotations")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(
            f"{key}.annotations: {annotations} is not COCO panoptic JSON (needs \"images\" and "
            "\"annotations\" lists, each annotation with file_name and segments_info)")
    images, pans = _index(Path(image_dir)), _index(Path(panoptic_dir))
    by_image = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "file_name" not in ann \
                or not isinstance(ann.get("segments_info"), list):
            raise DatasetError(f"{key}.annotations: annotations[{i}] needs image_id, file_name "
                               "and a segments_info list (COCO panoptic format)")
        by_image[ann["image_id"]] = ann
    samples = []
    for img in data["images"]:
        ann = by_image.get(img.get("id"))
        if ann is None:
            raise DatasetError(f"{key}.annotations: image id {img.get('id')} "
                               f"({img.get('file_name')}) has no panoptic annotation; add one "
                               "(an empty segments_info marks an unlabelled image)")
        segs = {int(s["id"]): label_map.id_to_class[int(s["category_id"])]
                for s in ann["segments_info"]
                if int(s["category_id"]) in label_map.id_to_class}
        samples.append(SegSample(
            _find(images, str(img["file_name"]), Path(image_dir), f"{key}.images"),
            _find(pans, str(ann["file_name"]), Path(panoptic_dir), f"{key}.panoptic"), segs))
    if not samples:
        raise DatasetError(f"{key}.annotations: {annotations} lists no images")
    return samples


def semantic_target(sample: SegSample, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """The ``[H, W]`` int64 class-index map of ``sample`` (``ignore_value`` where unlabelled)."""
    try:
        with Image.open(sample.panoptic) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read panoptic PNG {sample.panoptic} ({exc}); replace it")
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    out = np.full(ids.shape, ignore_value, dtype=np.int64)
    for seg_id, cls in sample.segments.items():
        out[ids == seg_id] = cls
    return out


def normalize(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB image -> ``[3, H, W]`` float32 ``(pixel - mean) / std`` (TAO's 0..255 statistics)."""
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class SegmentationDataset:
    """Images (+ semantic targets) resized to a fixed ``size`` (H, W) for the network.

    Items are dicts: ``pixel_values`` ``[3, H, W]`` tensor, ``labels`` ``[H, W]`` int64 at the
    network size (nearest resize; absent without targets), ``target`` the label map at the
    original size (evaluation), ``path`` and ``orig_size`` (H, W). Training flips images
    horizontally with probability ``hflip``.
    """

    def __init__(self, samples: Sequence[SegSample], size: tuple[int, int],
                 mean: Sequence[float], std: Sequence[float], *, train: bool = False,
                 hflip: float = 0.5, ignore_value: int = IGNORE_VALUE, seed: int = 0) -> None:
        self.samples = list(samples)
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = list(mean), list(std)
        self.train, self.hflip, self.ignore_value = train, hflip, ignore_value
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        sample = self.samples[index]
        img = load_rgb(sample.image)
        orig = (img.height, img.width)
        target = (semantic_target(sample, self.ignore_value)
                  if sample.panoptic is not None else None)
        if target is not None and target.shape != orig:
            raise DatasetError(f"panoptic PNG {sample.panoptic} is {target.shape[1]}x"
                               f"{target.shape[0]} but image {sample.image} is {orig[1]}x"
                               f"{orig[0]}; they must have the same size")
        flip = self.train and self.rng.random() < self.hflip
        h, w = self.size
        resized = img.resize((w, h), Image.Resampling.BILINEAR)
        if flip:
            resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        item: dict[str, Any] = {"pixel_values": torch.from_numpy(
            normalize(resized, self.mean, self.std)), "path": str(sample.image),
            "orig_size": orig}
        if target is not None:
            lab = Image.fromarray(target.astype(np.int32)).resize((w, h),
                                                                   Image.Resampling.NEAREST)
            lab_arr = np.asarray(lab, dtype=np.int64)
            if flip:
                lab_arr = lab_arr[:, ::-1]
            item["labels"] = torch.from_numpy(np.ascontiguousarray(lab_arr))
            item["target"] = target
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``pixel_values`` (and ``labels``); keep ``target``/``path``/``orig_size`` lists."""
    import torch

    batch: dict[str, Any] = {"pixel_values": torch.stack([i["pixel_values"] for i in items]),
                             "path": [i["path"] for i in items],
                             "orig_size": [i["orig_size"] for i in items]}
    if all("labels" in i for i in items):
        batch["labels"] = torch.stack([i["labels"] for i in items])
        batch["target"] = [i["target"] for i in items]
    return batch


def mask_targets(labels, ignore_value: int = IGNORE_VALUE):
    """Semantic labels ``[B, H, W]`` -> per image ``(mask_labels [n, H, W] float,
    class_labels [n] long)``: one binary mask per class present (the mask-classification
    targets of OneFormer / Mask2Former)."""
    import torch

    masks, classes = [], []
    for lab in labels:
        present = [int(c) for c in torch.unique(lab) if int(c) != ignore_value]
        cls = torch.tensor(present, dtype=torch.long, device=lab.device)
        masks.append((lab[None] == cls[:, None, None]).float() if present
                     else torch.zeros((0, *lab.shape), device=lab.device))
        classes.append(cls)
    return masks, classes


class ConfusionMatrix:
    """Accumulates a ``[num_classes, num_classes]`` (ground truth x prediction) pixel count."""

    def __init__(self, num_classes: int, ignore_value: int = IGNORE_VALUE) -> None:
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one image: ``pred`` and ``target`` are ``[H, W]`` class-index maps."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in size")
        keep = (target != self.ignore_value) & (target >= 0) & (target < self.num_classes)
        idx = target[keep].astype(np.int64) * self.num_classes + pred[keep].astype(np.int64)
        self.matrix += np.bincount(idx, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def metrics(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"mIoU", "ACC_all", "mACC", "iou_per_class": {name: IoU}}`` in percent.

        IoU of class *c* = TP / (TP + FP + FN); ``mIoU`` averages the classes that occur in
        the ground truth (others have IoU ``None``); ``ACC_all`` = correctly labelled pixels /
        labelled pixels; ``mACC`` = mean per-class recall.
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(axis=1)
        union = gt + m.sum(axis=0) - tp
        valid = gt > 0
        iou = np.where(valid, tp / np.maximum(union, 1), np.nan)
        acc = np.where(valid, tp / np.maximum(gt, 1), np.nan)
        names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        total = gt.sum()
        return {
            "mIoU": float(100 * np.nanmean(iou)) if valid.any() else 0.0,
            "ACC_all": float(100 * tp.sum() / total) if total else 0.0,
            "mACC": float(100 * np.nanmean(acc)) if valid.any() else 0.0,
            "iou_per_class": {n: (None if np.isnan(v) else float(100 * v))
                              for n, v in zip(names, iou)},
        }


def write_prediction(out_dir: str | Path, image_path: str | Path, pred: np.ndarray,
                     colors: np.ndarray, alpha: float = 0.5) -> dict[str, str]:
    """Write the outputs of one image below ``out_dir`` and return their paths.

    ``labels/<stem>.png``: raw class index per pixel (8-bit, 16-bit above 256 classes);
    ``masks/<stem>.png``: colour mask (``colors[class]``); ``overlays/<stem>.jpg``: the mask
    blended over the image with ``alpha``.
    """
    out = Path(out_dir)
    stem = Path(image_path).stem
    paths = {k: out / k / f"{stem}{ext}" for k, ext in
             (("labels", ".png"), ("masks", ".png"), ("overlays", ".jpg"))}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint8 if len(colors) <= 256 else np.uint16
    Image.fromarray(pred.astype(dtype)).save(paths["labels"])
    color = colors[np.clip(pred, 0, len(colors) - 1)].astype(np.uint8)
    Image.fromarray(color).save(paths["masks"])
    img = load_rgb(Path(image_path))
    if (img.height, img.width) != pred.shape:
        img = img.resize((pred.shape[1], pred.shape[0]), Image.Resampling.BILINEAR)
    blend = (1 - alpha) * np.asarray(img, np.float32) + alpha * color.astype(np.float32)
    Image.fromarray(blend.clip(0, 255).astype(np.uint8)).save(paths["overlays"], quality=90)
    return {k: str(v) for k, v in paths.items()}


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


# --------------------------------------------------------------------------- the task

def _stage_split(spec: dict[str, Any], split: str, required: bool):
    """``(annotations.json, image folder, panoptic folder)`` of ``dataset.<split>`` staged
    locally, or ``None`` when the split is not set and not ``required``."""
    from tao_sdk.worker.staging import fetch_file, stage_image_dir

    key = f"dataset.{split}"
    values = {f: S.get(spec, f"{key}.{f}") for f in ("images", "annotations", "panoptic")}
    if not any(values.values()) and not required:
        return None
    missing = [f for f, v in values.items() if v in (None, "", "???")]
    if missing:
        raise SpecError(
            f"{', '.join(f'{key}.{m}' for m in missing)} not set: a segmentation split needs "
            f"{key}.images (images.tar.gz), {key}.annotations (COCO panoptic annotations.json) "
            f"and {key}.panoptic (images_panoptic.tar.gz)")
    return (fetch_file(str(values["annotations"]), f"{key}.annotations"),
            stage_image_dir(str(values["images"]), f"{key}.images"),
            stage_image_dir(str(values["panoptic"]), f"{key}.panoptic"))


def _label_map(spec: dict[str, Any], arch: dict[str, Any]) -> LabelMap:
    """The staged ``dataset.label_map`` for a model of ``arch['num_classes']`` classes."""
    from tao_sdk.worker.staging import fetch_file

    uri = S.require(spec, "dataset.label_map", "the label_map.json of the dataset (a JSON list "
                    "of {id, name, isthing, color})")
    return read_label_map(fetch_file(str(uri), "dataset.label_map"), int(arch["num_classes"]),
                          bool(S.get(spec, "dataset.contiguous_id", True)))


def _samples(spec: dict[str, Any], split: str, lm: LabelMap, required: bool):
    staged = _stage_split(spec, split, required)
    return None if staged is None else load_panoptic(*staged, lm, split)


def _ignore(spec: dict[str, Any]) -> int:
    return int(S.get(spec, "model.sem_seg_head.ignore_value", IGNORE_VALUE))


def _batch(spec: dict[str, Any], key: str, fallback: str) -> int:
    """``spec[key]`` as a batch size (``-1``/unset: ``spec[fallback]``, else 1)."""
    value = S.get(spec, key, -1)
    if value in (None, -1):
        value = S.get(spec, fallback, 1)
    if int(value) < 1:
        raise SpecError(f"{key}={value} must be >= 1 (or -1 for {fallback})")
    return int(value)


def check_size(value: Any, key: str) -> tuple[int, int]:
    """A ``[H, W]`` (or single int) size spec value at ``key``, each side a multiple of 32
    (the backbone stride / size divisibility); :class:`SpecError` naming the key otherwise."""
    hw = [int(value), int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
    if len(hw) != 2 or min(hw) < 32 or any(v % 32 for v in hw):
        raise SpecError(f"{key}={value!r}: give [height, width], each a multiple of 32 (the "
                        "size divisibility), e.g. [512, 512]")
    return hw[0], hw[1]


def predict(plugin, model, loader, device):
    """Yield ``(batch, predicted class maps at the original sizes)`` for each batch."""
    import torch

    with torch.no_grad():
        for batch in loader:
            logits, masks = plugin.forward(model, batch, device, with_labels=False)
            yield batch, plugin.predict_labels(logits, masks, batch["orig_size"])


class SegmentationTask(Task):
    """Semantic segmentation on COCO panoptic data (see the module docstring).

    A plugin of this task provides ``forward(model, batch, device, with_labels=False) ->
    (pred_logits, pred_masks)`` and ``predict_labels(logits, masks, sizes)``; its ``arch``
    has ``num_classes``, ``input_size``, ``pixel_mean``, ``pixel_std``.
    """

    name = "segmentation"
    preview_dir = "overlays"
    batch_size_key = "dataset.train.batch_size"
    workers_key = "dataset.train.num_workers"
    val_data_key = "dataset.val"
    demo_format = "coco_panoptic"
    synthetic_keys = ("model.sem_seg_head.num_classes", "dataset.contiguous_id")

    # ------------------------------------------------------------------ train

    no_val_note = "no dataset.val.*: mIoU / ACC_all are not computed during training"

    def load_train(self, spec, arch, ctx=None):
        """``(train samples, (val samples, ignore value) or None)`` of a staged spec; the
        label map's names and colours go into ``arch``."""
        lm = _label_map(spec, arch)
        arch["class_names"], arch["colors"] = lm.names, lm.colors.tolist()
        train = _samples(spec, "train", lm, True)
        val = _samples(spec, "val", lm, False)
        if ctx is not None:
            ctx.log.info("train: %d images; val: %s images; %d classes", len(train),
                         len(val) if val else "no", lm.num_classes)
        return train, ((val, _ignore(spec)) if val else None)

    def train_dataset(self, plugin, spec, arch, samples, seed):
        """``(dataset, collate)`` of the training samples (random horizontal flip)."""
        return (SegmentationDataset(samples, arch["input_size"], arch["pixel_mean"],
                                    arch["pixel_std"], train=True, ignore_value=_ignore(spec),
                                    seed=seed), collate)

    def _confusion(self, plugin, model, arch, samples, size, batch_size, ignore):
        """The confusion matrix of ``model`` on ``samples`` (this rank's share), summed on
        rank 0 (``None`` on the other ranks)."""
        from tao_sdk.worker import distributed as D
        from tao_sdk.worker.engine import runtime as R

        dist = D.state()
        mine = samples[dist.rank::dist.world_size] if dist.world_size > 1 else samples
        cm = ConfusionMatrix(arch["num_classes"], ignore)
        model.eval()
        if mine:
            ds = SegmentationDataset(mine, size, arch["pixel_mean"], arch["pixel_std"],
                                     ignore_value=ignore)
            loader = R.loader(ds, collate, batch_size, False, 0, 0)
            for batch, preds in predict(plugin, model, loader, R.device()):
                for pred, target in zip(preds, batch["target"]):
                    cm.update(pred, target)
        parts = D.gather_to_main(cm.matrix)
        if parts is None:
            return None
        cm.matrix = sum(parts)
        return cm

    def validate(self, ctx, plugin, model, arch, val, batch_size) -> dict[str, Any]:
        """``mIoU`` and ``ACC_all`` on ``dataset.val`` (TAO's KPI names)."""
        samples, ignore = val
        cm = self._confusion(plugin, model, arch, samples, arch["input_size"], batch_size,
                             ignore)
        model.train()
        if cm is None:
            return {}
        m = cm.metrics()
        return {"mIoU": m["mIoU"], "ACC_all": m["ACC_all"]}

    # ------------------------------------------------------------------ evaluate / inference

    def evaluate(self, ctx, plugin, model, arch, input_size) -> str:
        """mIoU / ACC_all / per-class IoU on ``dataset.test.*``; ``results.json``."""
        import time

        from tao_sdk.worker.engine import runtime as R

        spec = ctx.spec
        lm = _label_map(spec, arch)
        samples = _samples(spec, "test", lm, True)
        ignore = int(arch.get("ignore_value", arch.get("head", {}).get("ignore_value",
                                                                         IGNORE_VALUE)))
        size = input_size or tuple(arch["input_size"])
        batch = min(_batch(spec, "evaluate.batch_size", "dataset.test.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        t0 = time.monotonic()
        cm = self._confusion(plugin, model, arch, samples, size, batch, ignore)
        m = cm.metrics(lm.names)
        R.write_json(ctx.task_dir / "results.json", {
            "mIoU": m["mIoU"], "ACC_all": m["ACC_all"], "mACC": m["mACC"],
            "iou_per_class": m["iou_per_class"], "images": len(samples),
            "input_size": list(size), "seconds": time.monotonic() - t0})
        per_class = ({k: v for k, v in m["iou_per_class"].items() if v is not None}
                     if bool(S.get(spec, "evaluate.iou_per_class", True)) else None)
        ctx.status.running("Evaluation metrics generated.",
                           kpi={"mIoU": m["mIoU"], "ACC_all": m["ACC_all"]},
                           categorical={"IoU_per_class": per_class} if per_class else None)
        return (f"Evaluation finished successfully: mIoU={m['mIoU']:.2f}, "
                f"ACC_all={m['ACC_all']:.2f} on {len(samples)} images.")

    def inference(self, ctx, plugin, model, arch, input_size) -> str:
        """Segment ``inference.images_dir`` (else ``dataset.test.images``); write
        ``labels/`` (raw class PNGs), ``masks/`` (colour PNGs), ``overlays/``."""
        import time

        from tao_sdk.worker.engine import runtime as R
        from tao_sdk.worker.staging import list_images, stage_image_dir

        spec = ctx.spec
        mode = str(S.get(spec, "inference.mode", "semantic"))
        if mode != "semantic":
            raise SpecError(f"inference.mode={mode!r}: this worker runs semantic segmentation; "
                            "set inference.mode: semantic")
        lm = _label_map(spec, arch)
        key = ("inference.images_dir" if S.get(spec, "inference.images_dir") not in (None, "")
               else "dataset.test.images")
        uri = S.require(spec, key, "the images to segment (images.tar.gz or a folder)")
        paths = list_images(stage_image_dir(str(uri), key))
        if not paths:
            raise DatasetError(f"{key}: no images (jpg, png...) in {uri}")
        size = input_size or check_size(S.get(spec, "inference.image_size", [1024, 1024]),
                                        "inference.image_size")
        batch = min(_batch(spec, "inference.batch_size", "dataset.test.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        ds = SegmentationDataset([SegSample(p) for p in paths], size, arch["pixel_mean"],
                                 arch["pixel_std"])
        loader = R.loader(ds, collate, batch, False, 0, 0)
        t0 = time.monotonic()
        model.eval()
        for b, preds in predict(plugin, model, loader, R.device()):
            for path, pred in zip(b["path"], preds):
                write_prediction(ctx.task_dir, path, pred, lm.colors)
        ctx.upload_now()
        return (f"Inference finished successfully: {len(paths)} images segmented at "
                f"{size[0]}x{size[1]} ({time.monotonic() - t0:.1f} s); see labels/, masks/ "
                "and overlays/.")

    def trt_model(self, runner):
        """A callable ``pixel_values -> (pred_logits, pred_masks)`` over a TensorRT engine."""
        return _trt_segmenter(runner)

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root, n_train, n_val, size, seed=0):
        """Shapes with masks in COCO panoptic layout (:func:`make_segmentation_dataset`)."""
        return make_segmentation_dataset(root, n_train=n_train, n_val=n_val, size=size,
                                         seed=seed)

    def demo_datasets(self, roots):
        """Train on ``train`` (validate on ``val``); evaluate / infer on ``val``."""
        return {
            "train": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "evaluate": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "inference": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "gen_trt_engine": {},
        }

    def demo_overrides(self, action, size):
        """The synthetic classes; export / inference at the demo's image size."""
        out: dict[str, Any] = {"model.sem_seg_head.num_classes": len(SYNTHETIC_CLASSES),
                               "dataset.contiguous_id": True}
        if action == "export":
            out.update({"export.input_height": size, "export.input_width": size})
        if action == "inference":
            out.update({"inference.image_size": [size, size]})
        return out

    def tiny_spec(self, plugin, data, results_dir, size, epochs):
        """Train / evaluate / inference / export sections over the synthetic splits."""
        train, val = data["train"], data["val"]

        def split(d):
            return {"images": str(d["images"]), "annotations": str(d["annotations"]),
                    "panoptic": str(d["panoptic"]), "batch_size": 4, "num_workers": 0}

        spec: dict[str, Any] = {
            "results_dir": results_dir, "encryption_key": "tlt_encode",
            "dataset": {"train": split(train), "val": split(val), "test": split(val),
                        "label_map": str(train["label_map"]), "contiguous_id": True,
                        "workers": 1},
            "model": {"sem_seg_head": {"num_classes": len(SYNTHETIC_CLASSES)}},
            "train": {"num_epochs": epochs, "checkpoint_interval": 1, "validation_interval": 1,
                      "optim": {"lr": 2e-3}},
            "inference": {"image_size": [size, size]},
            "export": {"onnx_file": f"{results_dir}/export/model.onnx",
                       "input_height": size, "input_width": size, "opset_version": 17},
            "gen_trt_engine": {"onnx_file": f"{results_dir}/export/model.onnx",
                               "trt_engine": f"{results_dir}/gen_trt_engine/model.engine",
                               "tensorrt": {"data_type": "fp32"}},
            "wandb": {"enable": False},
        }
        for key, value in plugin.tiny_overrides(size).items():
            S.set_value(spec, key, value)
        return spec


def _trt_segmenter(runner):
    """A TensorRT engine with outputs ``pred_logits`` / ``pred_masks`` used like the model:
    ``segmenter(pixel_values) -> (pred_logits, pred_masks)`` (CPU tensors)."""
    from tao_sdk.worker.tasks.detection.outputs import TrtDetector

    class TrtSegmenter(TrtDetector):
        """The detection task's engine adapter with the segmentation outputs."""

        def __call__(self, pixel_values, pixel_mask=None, labels=None):
            out = self.runner.run([pixel_values])
            return out["pred_logits"], out["pred_masks"]

    return TrtSegmenter(runner)


#: The segmentation task instance its plugins share.
TASK = SegmentationTask()
