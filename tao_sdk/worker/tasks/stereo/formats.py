"""Stereo file formats: PFM, disparity files of each dataset format, occlusion masks, RGB images,
and the :class:`StereoSample` record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tao_sdk.datasets.stereo_formats import FORMATS
from tao_sdk.worker.errors import DatasetError, SpecError


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
