"""Stereo annotations (``annotations.txt``, ``images.tar.gz``), staging their sources, the
:class:`StereoDataset` and its collate."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.tasks.stereo.formats import (StereoSample, _CANONICAL, _fmt_key, _load_rgb,
                                                 _read_occlusion, read_disparity)


# --------------------------------------------------------------------------- annotations


def read_annotations(path: Path, resolve, dataset_name: str, what: str,
                     need_gt: bool) -> list[StereoSample]:
    """Parse ``annotations.txt`` at ``path``; ``resolve(relative_path, line_no)`` returns the
    local file of one column. ``need_gt`` requires 3 or 4 columns on every line.

    Raises :class:`DatasetError` naming the file and line for a wrong column count, a missing
    file, or an empty list.
    """
    samples = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (2, 3, 4):
            raise DatasetError(f"{what}.data_file {path} line {no}: {len(parts)} columns; each "
                               "line is <left> <right> [<disparity> [<occlusion_mask>]]")
        if need_gt and len(parts) < 3:
            raise DatasetError(
                f"{what}.data_file {path} line {no}: no disparity column; train / evaluate need "
                "3 columns (<left> <right> <disparity>), 2-column files are for inference")
        files = [resolve(p, no) for p in parts]
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", parts[0].lstrip("/"))
        samples.append(StereoSample(files[0], files[1], files[2] if len(files) > 2 else None,
                                    files[3] if len(files) > 3 else None, stem, dataset_name))
    if not samples:
        raise DatasetError(f"{what}.data_file {path} lists no samples; write one line per "
                           "stereo pair")
    return samples


def _root_resolver(data_file_uri: str, what: str):
    """A ``resolve(relative_path, line_no)`` for the dataset root of ``data_file_uri``:
    ``<root>/images.tar.gz`` members when the archive exists, else files under the root."""
    from tao_sdk.worker.staging import _exists, fetch_file, is_remote_uri, stage_image_dir

    root = data_file_uri.rstrip("/").rsplit("/", 1)[0] if "/" in data_file_uri else "."
    archive = f"{root}/images.tar.gz"
    extracted = stage_image_dir(archive, f"{what} ({archive})") if _exists(archive) else None

    def resolve(rel: str, no: int) -> Path:
        """The local file of one annotation column."""
        if not is_remote_uri(rel) and Path(rel).is_absolute():
            if not Path(rel).is_file():
                raise DatasetError(f"{what}.data_file {data_file_uri} line {no}: {rel} does not "
                                   "exist; fix the path or use a path relative to the root")
            return Path(rel)
        clean = rel.lstrip("./") if rel.startswith("./") else rel
        if extracted is not None:
            local = extracted / clean
            if local.is_file():
                return local
            raise DatasetError(
                f"{what}.data_file {data_file_uri} line {no}: {clean} is not a member of "
                f"{archive}; annotation paths are archive member paths relative to the root "
                "(e.g. left/0001.png)")
        if is_remote_uri(root):
            return fetch_file(f"{root}/{clean}", f"{what}.data_file line {no}")
        local = Path(root[len("file://"):] if root.startswith("file://") else root) / clean
        if not local.is_file():
            raise DatasetError(f"{what}.data_file {data_file_uri} line {no}: {local} does not "
                               f"exist (no images.tar.gz next to annotations.txt either)")
        return local

    return resolve


def stage_sources(value: Any, key: str, need_gt: bool) -> list[StereoSample]:
    """Fetch and parse every ``{data_file, dataset_name}`` entry of the spec value at ``key``
    (``dataset.train_dataset.data_sources``...) -> the samples of all entries.

    Raises :class:`SpecError` for a malformed entry and :class:`DatasetError` for data problems.
    """
    from tao_sdk.worker.staging import fetch_file

    entries = value if isinstance(value, list) else [value]
    if value in (None, "", []) or not entries:
        raise SpecError(f"{key} is not set: give a list of {{data_file: <root>/annotations.txt, "
                        "dataset_name: GenericDataset}} entries")
    out: list[StereoSample] = []
    for i, entry in enumerate(entries):
        what = f"{key}[{i}]"
        if not isinstance(entry, dict) or not entry.get("data_file") or not entry.get(
                "dataset_name"):
            raise SpecError(f"{what} needs data_file and dataset_name (e.g. {{data_file: "
                            f"s3://bucket/data/annotations.txt, dataset_name: GenericDataset}}); "
                            f"got {entry!r}")
        name = _CANONICAL[_fmt_key(entry["dataset_name"], what)]
        uri = str(entry["data_file"])
        local = fetch_file(uri, f"{what}.data_file")
        out += read_annotations(local, _root_resolver(uri, what), name, what, need_gt)
    return out


# --------------------------------------------------------------------------- dataset


class StereoDataset:
    """Map-style dataset over :class:`StereoSample` items.

    Each item: ``left`` / ``right`` float tensors ``[3, H, W]`` (normalised with ``mean`` /
    ``std``), ``disparity`` ``[1, H, W]`` and ``valid`` ``[1, H, W]`` (zeros / False without
    ground truth), ``name``. With ``train`` the augmentation of ``aug`` (the split's
    ``augmentation`` section) is applied: random crop to ``crop_size``, colour jitter
    (``color_aug_prob``, brightness, contrast, saturation: same for both images), eraser on the
    right image (``eraser_aug_prob``), vertical flip of both (``v_flip_prob``), re-cropping
    up to 10 times until ``crop_min_valid_disp_ratio`` of the crop has ground truth, random
    rescale (``spatial_aug_prob``, ``min_scale`` / ``max_scale``, ``stretch_prob`` /
    ``max_stretch``) and a vertical shift of the right image by up to 2 rows
    (``yjitter_prob``).
    """

    def __init__(self, samples: Sequence[StereoSample], mean: Sequence[float],
                 std: Sequence[float], max_disparity: float, *, train: bool = False,
                 aug: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.samples = list(samples)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
        self.max_disparity = float(max_disparity)
        self.train = train
        self.aug = dict(aug or {})
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def _spatial(self, left, right, disp, valid):
        """Random rescale (``min_scale`` / ``max_scale`` as powers of 2, ``stretch_prob`` /
        ``max_stretch`` for a different x and y scale); disparity scales with x. The scale is
        kept large enough for ``crop_size``."""
        import torch
        from torch.nn import functional as F

        aug, rng = self.aug, self.rng
        h, w = left.shape[:2]
        scale = 2 ** rng.uniform(float(aug.get("min_scale") or 0.0),
                                 float(aug.get("max_scale") or 0.0))
        sx = sy = scale
        if rng.random() < float(aug.get("stretch_prob") or 0.0):
            stretch = float(aug.get("max_stretch") or 0.0)
            sx *= 2 ** rng.uniform(-stretch, stretch)
            sy *= 2 ** rng.uniform(-stretch, stretch)
        crop = aug.get("crop_size") or [h, w]
        sy = max(sy, (int(crop[0]) + 1) / h)
        sx = max(sx, (int(crop[1]) + 1) / w)
        size = (int(round(h * sy)), int(round(w * sx)))

        def resize(a, mode):
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
            kw = {"align_corners": False} if mode == "bilinear" else {}
            out = F.interpolate(t, size=size, mode=mode, **kw)[0]
            return out.permute(1, 2, 0).numpy() if a.ndim == 3 else out[0].numpy()

        real_sx = size[1] / w
        return (resize(left, "bilinear"), resize(right, "bilinear"),
                resize(disp, "nearest") * real_sx, resize(valid, "nearest") > 0.5)

    @staticmethod
    def _yjitter(right: np.ndarray, dy: int) -> np.ndarray:
        """The right image shifted vertically by ``dy`` rows (edge rows repeated): imperfect
        rectification."""
        if dy == 0:
            return right
        idx = np.clip(np.arange(right.shape[0]) - dy, 0, right.shape[0] - 1)
        return right[idx]

    def _augment(self, left, right, disp, valid):
        aug, rng = self.aug, self.rng
        if rng.random() < float(aug.get("spatial_aug_prob") or 0.0):
            left, right, disp, valid = self._spatial(left, right, disp, valid)
        if rng.random() < float(aug.get("yjitter_prob") or 0.0):
            right = self._yjitter(right, rng.randint(-2, 2))
        crop = aug.get("crop_size")
        if crop:
            ch, cw = int(crop[0]), int(crop[1])
            h, w = left.shape[:2]
            if ch > h or cw > w:
                raise DatasetError(
                    f"augmentation.crop_size={list(crop)} is larger than the image {h}x{w}; "
                    "set dataset.train_dataset.augmentation.crop_size to at most [height, width]")
            ratio = float(aug.get("crop_min_valid_disp_ratio") or 0.0)
            for _ in range(10):
                y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
                if valid[y:y + ch, x:x + cw].mean() >= ratio:
                    break
            left, right = left[y:y + ch, x:x + cw], right[y:y + ch, x:x + cw]
            disp, valid = disp[y:y + ch, x:x + cw], valid[y:y + ch, x:x + cw]
        if rng.random() < float(aug.get("color_aug_prob") or 0.0):
            b = 1 + rng.uniform(-1, 1) * float(aug.get("color_aug_brightness") or 0.0)
            c = 1 + rng.uniform(-1, 1) * float(aug.get("color_aug_contrast") or 0.0)
            sat = aug.get("color_aug_saturation") or [1.0, 1.0]
            s = rng.uniform(float(sat[0]), float(sat[1]))
            left, right = (self._colour(im, b, c, s) for im in (left, right))
        if rng.random() < float(aug.get("eraser_aug_prob") or 0.0):
            right = right.copy()
            h, w = right.shape[:2]
            for _ in range(rng.randint(1, 2)):
                eh, ew = rng.randint(h // 10 + 1, h // 4 + 1), rng.randint(w // 10 + 1, w // 4 + 1)
                y, x = rng.randint(0, h - eh), rng.randint(0, w - ew)
                right[y:y + eh, x:x + ew] = right.reshape(-1, 3).mean(0)
        if rng.random() < float(aug.get("v_flip_prob") or 0.0):
            left, right, disp, valid = (np.flipud(a) for a in (left, right, disp, valid))
        return left, right, disp, valid

    @staticmethod
    def _colour(img: np.ndarray, brightness: float, contrast: float, saturation: float):
        grey = img.mean(2, keepdims=True)
        out = grey + (img - grey) * saturation
        out = (out - out.mean()) * contrast + out.mean()
        return np.clip(out * brightness, 0.0, 1.0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        s = self.samples[index]
        left, right = _load_rgb(s.left), _load_rgb(s.right)
        if left.shape != right.shape:
            raise DatasetError(f"{s.left} is {left.shape[1]}x{left.shape[0]} but {s.right} is "
                               f"{right.shape[1]}x{right.shape[0]}; stereo pairs must match")
        if s.disparity is not None:
            disp, valid = read_disparity(s.disparity, s.dataset_name)
            if disp.shape != left.shape[:2]:
                raise DatasetError(f"{s.disparity} is {disp.shape[1]}x{disp.shape[0]} but "
                                   f"{s.left} is {left.shape[1]}x{left.shape[0]}")
            valid &= disp < self.max_disparity
            if s.occlusion is not None:
                valid &= _read_occlusion(s.occlusion, s.dataset_name)
        else:
            disp = np.zeros(left.shape[:2], np.float32)
            valid = np.zeros(left.shape[:2], bool)
        if self.train:
            left, right, disp, valid = self._augment(left, right, disp, valid)

        def img(a):
            return torch.from_numpy(
                np.ascontiguousarray(((a - self.mean) / self.std).transpose(2, 0, 1)))

        return {"left": img(left), "right": img(right),
                "disparity": torch.from_numpy(np.ascontiguousarray(disp))[None],
                "valid": torch.from_numpy(np.ascontiguousarray(valid))[None],
                "name": s.name, "has_gt": s.disparity is not None}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`StereoDataset`; pairs of different sizes are padded at the
    bottom/right to the largest (replicated pixels, no ground truth); ``sizes`` keeps each
    item's ``(H, W)``."""
    import torch
    from torch.nn import functional as F

    h = max(it["left"].shape[1] for it in items)
    w = max(it["left"].shape[2] for it in items)
    out: dict[str, Any] = {"name": [it["name"] for it in items],
                           "sizes": [tuple(it["left"].shape[1:]) for it in items],
                           "has_gt": [it["has_gt"] for it in items]}
    for key, mode in (("left", "replicate"), ("right", "replicate"), ("disparity", "constant"),
                      ("valid", "constant")):
        tensors = []
        for it in items:
            t = it[key]
            pad = (0, w - t.shape[2], 0, h - t.shape[1])
            if any(pad):
                t = (F.pad(t[None].float(), pad, mode=mode)[0] if mode == "replicate"
                     else F.pad(t, pad))
            tensors.append(t)
        out[key] = torch.stack(tensors)
    return out
