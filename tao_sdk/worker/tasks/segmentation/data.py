"""Segmentation data: COCO panoptic samples, semantic targets, the
:class:`SegmentationDataset`, its collate and per-class mask targets."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from tao_sdk.worker.errors import DatasetError
from tao_sdk.worker.tasks.detection.data import load_rgb
from tao_sdk.worker.tasks.segmentation.labels import IGNORE_VALUE, LabelMap, _read_json


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


def normalize(img: Image.Image | np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB image -> ``[3, H, W]`` float32 ``(pixel - mean) / std`` (TAO's 0..255 statistics)."""
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class SegmentationDataset:
    """Images (+ semantic targets) resized to a fixed ``size`` (H, W) for the network.

    Items are dicts: ``pixel_values`` ``[3, H, W]`` tensor, ``labels`` ``[H, W]`` int64 at the
    network size (nearest resize; absent without targets), ``target`` the label map at the
    original size (evaluation), ``path`` and ``orig_size`` (H, W). Training flips images
    horizontally with probability ``hflip``. With a ``geometry`` (TAO's evaluation geometry,
    :class:`~tao_sdk.worker.tasks.segmentation.geometry.EvalGeometry`) ``size`` is unused: the
    image and ``target`` follow that geometry and ``orig_size`` is its padded size, so the
    predictions are scored where TAO scores them.
    """

    def __init__(self, samples: Sequence[SegSample], size: tuple[int, int],
                 mean: Sequence[float], std: Sequence[float], *, train: bool = False,
                 hflip: float = 0.5, ignore_value: int = IGNORE_VALUE, seed: int = 0,
                 geometry: Any = None) -> None:
        self.samples = list(samples)
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = list(mean), list(std)
        self.train, self.hflip, self.ignore_value = train, hflip, ignore_value
        self.rng = random.Random(seed)
        self.geometry = geometry

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
        if self.geometry is not None:
            return self._tao_test_item(sample, img, target)
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

    def _tao_test_item(self, sample: SegSample, img: Image.Image,
                       target: np.ndarray | None) -> dict[str, Any]:
        """An item in TAO's evaluation geometry (``self.geometry``)."""
        import torch

        arr = self.geometry.image(img)
        item: dict[str, Any] = {"pixel_values": torch.from_numpy(
            normalize(arr, self.mean, self.std)), "path": str(sample.image),
            "orig_size": arr.shape[:2]}
        if target is not None:
            lab = self.geometry.labels(target, self.ignore_value)
            item["labels"] = torch.from_numpy(lab)
            item["target"] = lab
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
