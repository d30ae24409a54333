"""Stereo depth (disparity) task: what stereo networks share.

Data layout (a dataset root, local folder or ``s3://`` prefix)::

    <root>/annotations.txt     one sample per line: <left> <right> [<disparity> [<occlusion>]]
    <root>/images.tar.gz       optional: the files the lines name, as archive members

Every path in ``annotations.txt`` is relative to the dataset root (the folder holding
``annotations.txt``), written with ``/``. When ``<root>/images.tar.gz`` exists it is extracted
once and a line ``left/0001.png right/0001.png disparity/0001.pfm`` reads the archive members
``left/0001.png``, ``right/0001.png`` and ``disparity/0001.pfm`` (member paths are exactly the
annotation paths; no extra top folder). Without the archive, the files are read next to
``annotations.txt`` (``<root>/left/0001.png``: loose files, or objects under the ``s3://``
prefix). An absolute local path is used as it is. Columns: 2 = left + right (inference, no
ground truth), 3 = + disparity, 4 = + occlusion mask.

Disparity files (in pixels of the left image's width, for the left image): ``.pfm`` (float;
``inf``/``nan``/``<= 0`` = no ground truth), ``.npy`` (float), 16-bit ``.png`` (value / 256, 0 =
no ground truth; ``Crestereo``: value / 32), and for ``FSD`` an 8-bit RGB ``.png``
(``(R*255*255 + G*255 + B) / 1000``). Occlusion masks: ``Middlebury`` evaluates pixels where the
mask is 255 (its ``mask0nocc.png``); for the other formats a non-zero mask pixel is occluded and
left out of the loss and the metrics.

Metrics (:class:`DisparityMetrics`, over every valid pixel of the set, ground truth in
``(0, dataset.max_disparity)``): ``epe`` (mean absolute error, px), ``bp1`` / ``bp2`` / ``bp3``
(fraction of pixels with error > 1 / 2 / 3 px), ``d1`` (KITTI: error > 3 px and > 5% of the
ground truth), ``rmse``.

Inference outputs (:func:`write_prediction`), per left image ``<name>``:
``disparity_png/<name>.png`` (16-bit, disparity x 256, KITTI convention), ``disparity_pfm/<name>.pfm``
(float32), ``colorized/<name>.png`` (turbo-like colour map, near = warm) and with
``inference.save_raw_npy`` ``disparity_npy/<name>.npy``.
"""

from __future__ import annotations

import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tao_sdk.datasets.stereo_formats import FORMATS
from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.tasks import Task

__all__ = [
    "FORMATS",
    "StereoSample",
    "read_pfm",
    "write_pfm",
    "read_disparity",
    "read_annotations",
    "stage_sources",
    "StereoDataset",
    "collate",
    "DisparityMetrics",
    "colorize",
    "write_prediction",
    "make_stereo_dataset",
    "METRIC_KEYS",
    "StereoTask",
    "TASK",
]

#: Metric names, as TAO reports them.
METRIC_KEYS = ("epe", "bp1", "bp2", "bp3", "d1", "rmse")
_CANONICAL = {"fsd": "FSD", "isaacrealdataset": "IsaacRealDataset", "crestereo": "Crestereo",
              "middlebury": "Middlebury", "eth3d": "Eth3d", "kitti": "Kitti",
              "genericdataset": "GenericDataset"}


@dataclass
class StereoSample:
    """One annotation line with resolved local paths (``disparity`` / ``occlusion`` may be
    ``None``); ``name`` is the left image's annotation path without its suffix."""

    left: Path
    right: Path
    disparity: Path | None
    occlusion: Path | None
    name: str
    dataset_name: str


# --------------------------------------------------------------------------- file formats


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a single-channel (``Pf``) or the first channel of a colour (``PF``) PFM file as a
    top-down float32 array. Raises :class:`DatasetError` for a malformed file."""
    with open(path, "rb") as fh:
        header = fh.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise DatasetError(f"{path} is not a PFM file (header {header[:8]!r}); write "
                               "disparity as .pfm, 16-bit .png or .npy")
        dims = fh.readline().split()
        while len(dims) < 2:
            dims += fh.readline().split()
        w, h = int(dims[0]), int(dims[1])
        scale = float(fh.readline().strip())
        data = np.frombuffer(fh.read(), dtype="<f4" if scale < 0 else ">f4")
    chans = 3 if header == b"PF" else 1
    if data.size < w * h * chans:
        raise DatasetError(f"{path}: PFM data is truncated ({data.size} values for {w}x{h})")
    arr = data[: w * h * chans].reshape(h, w, chans)[..., 0]
    return np.ascontiguousarray(np.flipud(arr)).astype(np.float32)


def write_pfm(path: str | Path, array: np.ndarray) -> None:
    """Write a 2-D float array as a little-endian single-channel PFM (bottom-up rows)."""
    arr = np.asarray(array, dtype="<f4")
    with open(path, "wb") as fh:
        fh.write(b"Pf\n%d %d\n-1.0\n" % (arr.shape[1], arr.shape[0]))
        fh.write(np.flipud(arr).tobytes())


def _fmt_key(dataset_name: str, what: str) -> str:
    key = str(dataset_name).lower()
    if key not in FORMATS:
        raise SpecError(f"{what}.dataset_name={dataset_name!r} is not a stereo format; use one of "
                        f"{', '.join(_CANONICAL.values())} (GenericDataset for other layouts)")
    return key


def read_disparity(path: Path, dataset_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(disparity float32 [H, W], valid bool [H, W])`` from a ``.pfm``, ``.npy`` or ``.png``
    file (scales in the module docstring). Raises :class:`DatasetError` naming the file."""
    suffix = path.suffix.lower()
    fmt = _fmt_key(dataset_name, "data_sources")
    if suffix == ".pfm":
        disp = read_pfm(path)
    elif suffix == ".npy":
        disp = np.load(path).astype(np.float32)
    elif suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
        if arr.ndim == 3 and fmt == "fsd":
            a = arr[..., :3].astype(np.float64)
            disp = ((a[..., 0] * 255 * 255 + a[..., 1] * 255 + a[..., 2]) / 1000.0)
        elif arr.ndim == 2 and arr.dtype == np.uint16:
            disp = arr.astype(np.float32) / FORMATS[fmt]
        else:
            raise DatasetError(
                f"{path}: a PNG disparity must be 16-bit single-channel (value / "
                f"{FORMATS[fmt]:g}); found mode {arr.dtype} x {arr.shape[2:] or 1}; save it as "
                "16-bit PNG, .pfm or .npy")
    else:
        raise DatasetError(f"{path}: unsupported disparity file type {suffix!r}; use .pfm, "
                           "16-bit .png or .npy")
    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim != 2:
        raise DatasetError(f"{path}: disparity must be a 2-D map, got shape {disp.shape}")
    valid = np.isfinite(disp) & (disp > 0)
    return np.where(valid, disp, 0).astype(np.float32), valid


def _read_occlusion(path: Path, dataset_name: str) -> np.ndarray:
    """Boolean map of the pixels to keep (not occluded) from an occlusion mask image."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
    if str(dataset_name).lower() == "middlebury":
        return arr == 255
    return arr == 0


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the image ({exc}); replace the file") from None


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


# --------------------------------------------------------------------------- metrics


class DisparityMetrics:
    """Accumulates disparity errors over valid pixels; :meth:`result` gives TAO's metric set
    (:data:`METRIC_KEYS`), :meth:`histogram` the pixel count per absolute-error bin."""

    #: Absolute-error bin edges (px) of :meth:`histogram`; the last bin is open.
    HIST_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)

    def __init__(self) -> None:
        self.count = 0
        self.sums = dict.fromkeys(("abs", "sq", "bp1", "bp2", "bp3", "d1"), 0.0)
        self.hist = [0] * len(self.HIST_EDGES)

    def update(self, pred, gt, valid) -> None:
        """Add a batch (tensors or arrays of the same shape; ``valid`` boolean)."""
        import torch

        pred, gt, valid = (torch.as_tensor(x).detach().cpu() for x in (pred, gt, valid))
        valid = valid.bool() & torch.isfinite(pred)
        err = (pred.float() - gt.float()).abs()[valid]
        g = gt.float()[valid]
        self.count += int(err.numel())
        self.sums["abs"] += float(err.sum())
        self.sums["sq"] += float((err ** 2).sum())
        for t in (1, 2, 3):
            self.sums[f"bp{t}"] += float((err > t).sum())
        self.sums["d1"] += float(((err > 3) & (err > 0.05 * g)).sum())
        bins = torch.bucketize(err, torch.tensor(self.HIST_EDGES[1:]), right=True)
        for i, n in enumerate(torch.bincount(bins, minlength=len(self.hist)).tolist()):
            self.hist[i] += int(n)

    def histogram(self) -> dict[str, Any]:
        """``{"edges": bin edges (px, last bin open), "counts": valid pixels per bin}``."""
        return {"unit": "px", "edges": list(self.HIST_EDGES), "counts": list(self.hist)}

    def result(self) -> dict[str, float]:
        """``{epe, bp1, bp2, bp3, d1, rmse}`` (bp/d1 as fractions); raises
        :class:`DatasetError` when no pixel had ground truth."""
        if not self.count:
            raise DatasetError("no pixel with ground-truth disparity in (0, dataset.max_disparity)"
                               ": check the disparity column of annotations.txt and "
                               "dataset.max_disparity")
        n = float(self.count)
        return {"epe": self.sums["abs"] / n, "bp1": self.sums["bp1"] / n,
                "bp2": self.sums["bp2"] / n, "bp3": self.sums["bp3"] / n,
                "d1": self.sums["d1"] / n, "rmse": float(np.sqrt(self.sums["sq"] / n))}


# --------------------------------------------------------------------------- outputs

_TURBO_STOPS = np.array([[48, 18, 59], [70, 107, 227], [40, 188, 235], [50, 241, 153],
                         [165, 252, 60], [240, 204, 58], [250, 126, 33], [210, 49, 5],
                         [122, 4, 3]], dtype=np.float32)


def colorize(disp: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """``uint8 [H, W, 3]`` colour map of a disparity map (0 -> dark blue, ``vmax`` -> dark red;
    ``vmax`` defaults to the map's 99th percentile)."""
    d = np.nan_to_num(np.asarray(disp, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(vmax) if vmax else float(np.percentile(d, 99)) if d.size else 1.0
    t = np.clip(d / max(top, 1e-6), 0, 1) * (len(_TURBO_STOPS) - 1)
    i = np.minimum(t.astype(int), len(_TURBO_STOPS) - 2)
    f = (t - i)[..., None]
    return (_TURBO_STOPS[i] * (1 - f) + _TURBO_STOPS[i + 1] * f).astype(np.uint8)


def write_prediction(out_dir: Path, name: str, disp: np.ndarray, save_npy: bool = False
                     ) -> list[Path]:
    """Write one predicted disparity map (see the module docstring); return the files."""
    from PIL import Image

    d = np.asarray(disp, np.float32)
    files = [out_dir / "disparity_png" / f"{name}.png", out_dir / "disparity_pfm" / f"{name}.pfm",
             out_dir / "colorized" / f"{name}.png"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(d * 256), 0, 65535).astype(np.uint16)).save(files[0])
    write_pfm(files[1], d)
    Image.fromarray(colorize(d)).save(files[2])
    if save_npy:
        files.append(out_dir / "disparity_npy" / f"{name}.npy")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        np.save(files[-1], d)
    return files


# --------------------------------------------------------------------------- synthetic data


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random multi-scale texture ``[h, w, 3]`` in [0, 1] (matchable, not periodic)."""
    out = np.zeros((h, w, 3), np.float32)
    for cell, weight in ((1, 0.45), (3, 0.35), (9, 0.2)):
        small = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        big = np.repeat(np.repeat(small, cell, 0), cell, 1)[:h, :w]
        out += weight * big
    return out


def _shift_rows(tex: np.ndarray, disp_rows: np.ndarray, width: int) -> np.ndarray:
    """Right-view pixels of a layer: ``R(x, y) = T(x + d(y))`` with linear interpolation."""
    xs = np.arange(width, dtype=np.float32)
    out = np.empty((tex.shape[0], width, 3), np.float32)
    cols = np.arange(tex.shape[1], dtype=np.float32)
    for y in range(tex.shape[0]):
        for c in range(3):
            out[y, :, c] = np.interp(xs + disp_rows[y], cols, tex[y, :, c])
    return out


def _stereo_pair(rng: np.random.Generator, h: int, w: int, max_disp: float):
    """One synthetic rectified pair ``(left, right, disparity)`` with a slanted background and
    2-4 fronto-parallel textured objects nearer to the camera."""
    pad = int(np.ceil(max_disp)) + 2
    bg_tex = _texture(rng, h, w + pad)
    top, bottom = rng.uniform(0.1, 0.35) * max_disp, rng.uniform(0.1, 0.35) * max_disp
    bg_disp = np.linspace(top, bottom, h, dtype=np.float32)
    left = bg_tex[:, :w].copy()
    right = _shift_rows(bg_tex, bg_disp, w)
    disp = np.repeat(bg_disp[:, None], w, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    # Far objects first, so nearer ones occlude them in both views.
    for d in sorted(float(v) for v in rng.uniform(0.4, 0.9, int(rng.integers(2, 5))) * max_disp):
        tex = _texture(rng, h, w + pad)
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.08, 0.2) * w
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        left[mask] = tex[:, :w][mask]
        disp[mask] = d
        # In the right view the object appears shifted left by d (drawn over what is behind).
        mask_r = np.zeros_like(mask)
        shift = int(round(d))
        mask_r[:, : w - shift] = mask[:, shift:]
        obj_r = _shift_rows(tex, np.full(h, d, np.float32), w)
        right[mask_r] = obj_r[mask_r]
    return left, right, disp


def make_stereo_dataset(root: str | Path, n: int, height: int = 64, width: int = 128,
                        max_disparity: float = 24.0, seed: int = 0,
                        with_gt: bool = True) -> Path:
    """Write a synthetic stereo dataset in the layout above: ``<root>/images.tar.gz`` (members
    ``left/NNNN.png``, ``right/NNNN.png``, ``disparity/NNNN.pfm``) and
    ``<root>/annotations.txt`` (3 columns, or 2 with ``with_gt=False``). Returns ``root``."""
    import io

    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    with tarfile.open(root / "images.tar.gz", "w:gz") as tar:
        def add(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(n):
            left, right, disp = _stereo_pair(rng, height, width, max_disparity)
            names = [f"left/{i:04d}.png", f"right/{i:04d}.png", f"disparity/{i:04d}.pfm"]
            for member, img in zip(names[:2], (left, right)):
                buf = io.BytesIO()
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
                add(member, buf.getvalue())
            tmp = root / ".disp.pfm"
            write_pfm(tmp, disp)
            add(names[2], tmp.read_bytes())
            tmp.unlink()
            lines.append(" ".join(names if with_gt else names[:2]))
    (root / "annotations.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# --------------------------------------------------------------------------- the task


def _split(spec: dict, split: str, key: str, default: Any = None) -> Any:
    """``dataset.<split>_dataset.<key>``."""
    from tao_sdk.worker import spec as S

    return S.get(spec, f"dataset.{split}_dataset.{key}", default)


def split_batch_size(spec: dict, split: str) -> int:
    """``dataset.<split>_dataset.batch_size`` (>= 1; default 1)."""
    value = _split(spec, split, "batch_size", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"dataset.{split}_dataset.batch_size={value!r} must be an integer >= 1")
    return int(value)


def _action_batch_size(spec: dict, action: str, split: str) -> int:
    """``<action>.batch_size`` when positive (``-1``: unset), else
    ``dataset.<split>_dataset.batch_size``."""
    from tao_sdk.worker import spec as S

    value = S.get(spec, f"{action}.batch_size", -1)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return split_batch_size(spec, split)


def _max_disparity(spec: dict) -> float:
    from tao_sdk.worker import spec as S

    value = S.get(spec, "dataset.max_disparity", 416)
    if not isinstance(value, (int, float)) or value <= 0:
        raise SpecError(f"dataset.max_disparity={value!r} must be a positive number of pixels")
    return float(value)


class StereoModelInput:
    """Adapts a TensorRT engine (inputs ``left_image``, ``right_image``; output
    ``disparity``) to the call of the PyTorch stereo model: ``model(left, right, iters)`` ->
    ``(None, [disparity])``; ``arch`` is ``None`` (the engine's input size is fixed)."""

    arch = None

    def __init__(self, runner) -> None:
        self.runner = runner
        self.max_batch = runner.max_batch
        self.input_hw = runner.input_hw

    def eval(self) -> "StereoModelInput":
        """No-op (API parity with torch modules)."""
        return self

    def to(self, _device) -> "StereoModelInput":
        """No-op (the engine lives on the GPU)."""
        return self

    def __call__(self, left, right, iters=None):
        """Run the engine on one batch."""
        out = self.runner.run([left, right])
        return None, [out["disparity"]]


class StereoTask(Task):
    """Stereo disparity on ``annotations.txt`` datasets (see the module docstring).

    What a stereo plugin adds: ``predict(model, left, right)`` (full-resolution disparity of
    normalised images of any size), ``forward`` returning ``{"init", "outputs", "gt",
    "valid"}`` and ``loss``; its ``arch`` carries ``mean`` / ``std`` and ``valid_iters``.
    KPIs: ``val_loss``, ``val_epe``, ``val_bp1/2/3``, ``val_d1`` (train), ``epe``, ``bp1``,
    ``bp2``, ``bp3``, ``d1``, ``rmse`` (evaluate).
    """

    name = "stereo"
    preview_dir = "colorized"
    batch_size_key = "dataset.train_dataset.batch_size"
    workers_key = "dataset.train_dataset.workers"
    val_data_key = "dataset.val_dataset.data_sources"
    demo_format = "GenericDataset"

    # ------------------------------------------------------------------ train

    no_val_note = ("no dataset.val_dataset.data_sources: val_loss / val_epe are not computed")

    def load_train(self, spec, arch, ctx=None):
        """``(training pairs, validation StereoDataset or None)`` of a spec
        (``dataset.train_dataset`` / ``dataset.val_dataset`` data sources)."""
        from tao_sdk.worker import spec as S

        train = stage_sources(S.get(spec, "dataset.train_dataset.data_sources"),
                              "dataset.train_dataset.data_sources", need_gt=True)
        val = None
        if S.get(spec, "dataset.val_dataset.data_sources") not in (None, "", []):
            pairs = stage_sources(S.get(spec, "dataset.val_dataset.data_sources"),
                                  "dataset.val_dataset.data_sources", need_gt=True)
            val = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(spec))
        if ctx is not None:
            ctx.log.info("stereo data: %d training pairs, %d validation pairs", len(train),
                         len(val) if val is not None else 0)
        return train, val

    def train_dataset(self, plugin, spec, arch, samples, seed):
        """``(StereoDataset, collate)`` of the training pairs with the train split's
        augmentation."""
        ds = StereoDataset(samples, arch["mean"], arch["std"], _max_disparity(spec), train=True,
                           aug=_split(spec, "train", "augmentation", {}) or {}, seed=seed)
        return ds, collate

    def _run(self, plugin, model, dataset, batch_size: int, size=None, with_loss=False,
             on_batch=None):
        """Predict every pair of ``dataset`` (this rank's share); return ``(metrics, loss sum,
        loss count)`` with ``on_batch(batch, disparity)`` called per batch."""
        import torch

        from tao_sdk.worker import distributed as D
        from tao_sdk.worker.engine import runtime as R

        dist = D.state()
        indices = list(range(dist.rank, len(dataset), dist.world_size))
        subset = torch.utils.data.Subset(dataset, indices)
        loader = R.loader(subset, collate, batch_size, False, 0, 0)
        device = R.device()
        metrics = DisparityMetrics()
        loss_sum, loss_n = 0.0, 0
        for batch in loader:
            with torch.no_grad():
                if with_loss:
                    out = plugin.forward(model, batch, device, with_labels=True)
                    loss_sum += float(plugin.loss(out, None)) * len(batch["name"])
                    loss_n += len(batch["name"])
                    disp = out["outputs"][-1].cpu()
                else:
                    disp = plugin.predict_batch(model, batch, device, size)
            if any(batch["has_gt"]):
                metrics.update(disp, batch["disparity"], batch["valid"])
            if on_batch is not None:
                on_batch(batch, disp)
        return metrics, loss_sum, loss_n

    def validate(self, ctx, plugin, model, arch, val, batch_size) -> dict[str, Any]:
        """``val_loss`` (the training loss at ``valid_iters``) and ``val_epe`` / ``val_bp1..3``
        / ``val_d1`` on rank 0 (the ranks split the pairs)."""
        from tao_sdk.worker import distributed as D

        batch = split_batch_size(ctx.spec, "val")
        metrics, loss_sum, loss_n = self._run(plugin, model, val, batch, with_loss=True)
        parts = (metrics.count, metrics.sums, loss_sum, loss_n)
        if D.state().world_size > 1:
            gathered = D.gather_to_main(parts)
            if gathered is None:
                return {}
            total = DisparityMetrics()
            loss_sum = loss_n = 0
            for count, sums, ls, ln in gathered:
                total.count += count
                for k, v in sums.items():
                    total.sums[k] += v
                loss_sum += ls
                loss_n += ln
            metrics = total
        kpi: dict[str, Any] = {"val_loss": loss_sum / max(1, loss_n)}
        if metrics.count:
            kpi.update({f"val_{k}": v for k, v in metrics.result().items() if k != "rmse"})
        return kpi

    # ------------------------------------------------------------------ evaluate / inference

    def evaluate(self, ctx, plugin, model, arch, input_size) -> str:
        """EPE / bp1-3 / D1 / RMSE on ``dataset.test_dataset.data_sources`` (native resolution
        for a checkpoint; a TensorRT engine runs at its input size, disparity rescaled)."""
        import time

        from tao_sdk.worker import spec as S
        from tao_sdk.worker.engine import runtime as R

        pairs = stage_sources(S.get(ctx.spec, "dataset.test_dataset.data_sources"),
                              "dataset.test_dataset.data_sources", need_gt=True)
        ds = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(ctx.spec))
        batch = min(_action_batch_size(ctx.spec, "evaluate", "test"),
                    getattr(model, "max_batch", 1 << 30))
        t0 = time.monotonic()
        metrics, _s, _n = self._run(plugin, model, ds, batch, size=input_size)
        result = metrics.result()
        R.write_json(ctx.task_dir / "results.json", {**result, "pairs": len(pairs),
                                                     "valid_pixels": metrics.count,
                                                     "seconds": time.monotonic() - t0})
        # the error histogram for `tao-skills plot` (tao_sdk.plots)
        R.write_json(ctx.task_dir / "error_histogram.json", metrics.histogram())
        ctx.status.running("Evaluation metrics generated.", kpi=result)
        return (f"Evaluation finished successfully: epe={result['epe']:.4f} px, "
                f"bp1={result['bp1']:.4f}, bp2={result['bp2']:.4f}, bp3={result['bp3']:.4f}, "
                f"d1={result['d1']:.4f} on {len(pairs)} pairs.")

    def inference(self, ctx, plugin, model, arch, input_size) -> str:
        """Disparity of every pair of ``dataset.infer_dataset.data_sources``: 16-bit PNG, PFM
        and colourised PNG (``.npy`` with ``inference.save_raw_npy``)."""
        import time

        from tao_sdk.worker import spec as S
        from tao_sdk.worker.engine import runtime as R

        key = "dataset.infer_dataset.data_sources"
        pairs = stage_sources(S.get(ctx.spec, key), key, need_gt=False)
        ds = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(ctx.spec))
        batch = min(_action_batch_size(ctx.spec, "inference", "infer"),
                    getattr(model, "max_batch", 1 << 30))
        save_npy = bool(S.get(ctx.spec, "inference.save_raw_npy", False))
        written: list[str] = []

        def write(b, disp) -> None:
            """Write the predictions of one batch."""
            for i, name in enumerate(b["name"]):
                h, w = b["sizes"][i]
                write_prediction(ctx.task_dir, name, disp[i, 0, :h, :w].numpy(), save_npy)
                written.append(name)

        t0 = time.monotonic()
        self._run(plugin, model, ds, batch, size=input_size, on_batch=write)
        R.write_json(ctx.task_dir / "inference.json", {
            "pairs": written, "outputs": ["disparity_png/<name>.png (uint16, disparity x 256)",
                                          "disparity_pfm/<name>.pfm (float32)",
                                          "colorized/<name>.png"]
            + (["disparity_npy/<name>.npy"] if save_npy else [])})
        ctx.upload_now()
        return (f"Inference finished successfully: disparity of {len(written)} pairs "
                f"({time.monotonic() - t0:.1f} s) in disparity_png/ (16-bit, x256), "
                "disparity_pfm/ and colorized/.")

    def trt_model(self, runner):
        """The engine called like the PyTorch stereo model."""
        return StereoModelInput(runner)

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root, n_train, n_val, size, seed=0):
        """Synthetic rectified pairs (textured slanted background + nearer objects) of
        ``size // 2`` x ``size`` pixels with disparity up to ``size / 5`` px: ``root/train`` and
        ``root/val`` in the ``annotations.txt`` + ``images.tar.gz`` layout."""
        out = {}
        for i, (split, n) in enumerate((("train", n_train), ("val", n_val))):
            folder = make_stereo_dataset(Path(root) / split, n, size // 2, size,
                                         max_disparity=size / 5, seed=seed + i)
            out[split] = {"root": folder, "annotations": folder / "annotations.txt",
                          "images": folder / "images.tar.gz"}
        return out

    def demo_datasets(self, roots):
        """Train on ``train`` (validate on ``val``), evaluate / infer on ``val``."""
        return {
            "train": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "evaluate": {"eval_dataset": roots["val"]},
            "inference": {"inference_dataset": roots["val"]},
            "gen_trt_engine": {},
        }

    def demo_overrides(self, action, size):
        """The demo's model block for every model action; export at the demo's pair size."""
        if action == "gen_trt_engine":
            return {}
        out: dict[str, Any] = {}
        if action == "export":
            out.update({"export.input_height": size // 2, "export.input_width": size,
                        "export.batch_size": 1})
        return out

    def tiny_spec(self, plugin, data, results_dir, size, epochs):
        """Train / evaluate / inference / export sections over the synthetic splits, then the
        plugin's ``tiny_overrides``."""

        def src(split):
            return [{"data_file": str(data[split]["annotations"]),
                     "dataset_name": "GenericDataset"}]

        no_aug = {k: 0.0 for k in ("spatial_aug_prob", "color_aug_prob", "eraser_aug_prob",
                                   "v_flip_prob", "yjitter_prob")}
        spec: dict[str, Any] = {
            "results_dir": results_dir,
            "encryption_key": "tlt_encode",
            "dataset": {
                "dataset_name": "StereoDataset", "max_disparity": 416,
                "train_dataset": {"data_sources": src("train"), "batch_size": 4, "workers": 0,
                                  "augmentation": {"crop_size": [size // 2, size], **no_aug}},
                "val_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
                "test_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
                "infer_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
            },
            "model": {"model_type": "FastFoundationStereo"},
            "train": {"num_epochs": epochs, "checkpoint_interval": 1, "validation_interval": 1,
                      "optim": {"lr": 2e-3, "warmup_steps": 0, "lr_scheduler": "MultiStepLR"}},
            "export": {"onnx_file": f"{results_dir}/export/model.onnx",
                       "input_height": size // 2, "input_width": size, "opset_version": 17,
                       "valid_iters": 4},
        }
        return self.finish_tiny_spec(plugin, spec, size)


#: The stereo task instance the stereo plugins share.
TASK = StereoTask()
