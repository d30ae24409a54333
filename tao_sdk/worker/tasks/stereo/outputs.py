"""Stereo inference outputs: 16-bit PNG, PFM, colourised disparity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tao_sdk.worker.tasks.stereo.formats import write_pfm


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
