"""Segmentation inference outputs: the class mask and its colour overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tao_sdk.worker.tasks.detection.data import load_rgb


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
