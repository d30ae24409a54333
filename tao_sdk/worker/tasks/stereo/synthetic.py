"""A synthetic stereo dataset (textured planes shifted by a known disparity) for demos and tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from tao_sdk.worker.tasks.stereo.formats import write_pfm


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
