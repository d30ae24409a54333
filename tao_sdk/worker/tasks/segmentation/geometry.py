"""TAO OneFormer's test-time geometry (evaluate), without OpenCV.

TAO 7.3.0's evaluation dataset (``OneFormerDataset`` with ``is_training=False``):

1. the image is resized with PIL to ``dataset.image_size`` (an int: square; ``[W, H]``), PIL's
   default filter (bicubic for RGB); the panoptic PNG the same way with ``NEAREST``;
2. both are resized so the short side is ``dataset.augmentation.test_min_size`` with the long
   side capped at ``test_max_size`` (detectron2's ``get_output_shape``; OpenCV ``INTER_LINEAR``
   for the image, ``INTER_NEAREST`` for the labels);
3. both are padded right/bottom to a multiple of 32 (image with pixel value 0, labels with
   panoptic id 0, i.e. ignored);
4. the semantic scores are upsampled (bilinear) to that padded size and scored there.

:class:`EvalGeometry` reproduces this: OpenCV's bilinear resize is torch's
``interpolate(mode="bilinear", align_corners=False)`` (half-pixel centres, no antialias), its
nearest resize picks source index ``floor(dst * src / dst_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError

PAD = 32


def output_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """``(new_h, new_w)``: short side to ``short``, long side at most ``max_size``
    (detectron2's ``get_output_shape`` as TAO uses it, rounding half up)."""
    scale = short / min(h, w)
    nh, nw = (short, scale * w) if h < w else (scale * h, short)
    if max(nh, nw) > max_size:
        k = max_size / max(nh, nw)
        nh, nw = nh * k, nw * k
    return int(nh + 0.5), int(nw + 0.5)


def padded(h: int, w: int, multiple: int = PAD) -> tuple[int, int]:
    """``(h, w)`` rounded up to ``multiple``."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def nearest_resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_NEAREST`` resize of a 2-D array to ``size`` (H, W)."""
    h, w = arr.shape[:2]
    rows = np.minimum(np.floor(np.arange(size[0]) * (h / size[0])).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(size[1]) * (w / size[1])).astype(np.int64), w - 1)
    return arr[rows[:, None], cols[None, :]]


def bilinear_resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` resize of an ``[H, W, 3]`` uint8 image to ``size`` (H, W),
    rounded back to uint8 (OpenCV's fixed-point result may differ by 1 level)."""
    import torch

    if arr.shape[:2] == tuple(size):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear",
                                          align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def test_size_overrides(size: int) -> dict[str, int]:
    """Spec overrides that make TAO's test geometry a plain ``size`` x ``size`` (tiny specs)."""
    return {"dataset.image_size": size, "dataset.augmentation.test_min_size": size,
            "dataset.augmentation.test_max_size": size}


def _image_size(value: Any, key: str = "dataset.image_size") -> tuple[int, int]:
    """``dataset.image_size`` (or ``key``) as PIL's ``(W, H)``."""
    vals = [value] if isinstance(value, int) else list(value or [])
    if not vals or len(vals) > 2 or not all(isinstance(v, int) and v > 0 for v in vals):
        raise SpecError(f"{key}: {value!r} is not a positive int or [W, H]; "
                        "set e.g. 1024 or [1024, 768]")
    return (vals[0], vals[-1])


def _test_sizes(spec: dict[str, Any]) -> tuple[int, int]:
    """``(test_min_size, test_max_size)`` of ``dataset.augmentation`` (TAO's 800, 1333)."""
    return (int(S.get(spec, "dataset.augmentation.test_min_size", 800)),
            int(S.get(spec, "dataset.augmentation.test_max_size", 1333)))


@dataclass(frozen=True)
class EvalGeometry:
    """TAO's evaluation geometry from the spec (see the module docstring)."""

    image_size: tuple[int, int]  # PIL (W, H)
    test_min: int
    test_max: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "EvalGeometry":
        """From ``dataset.image_size`` and ``dataset.augmentation.test_min_size`` /
        ``test_max_size`` (TAO's defaults 1024, 800, 1333)."""
        return cls(_image_size(S.get(spec, "dataset.image_size", 1024)), *_test_sizes(spec))

    @classmethod
    def for_inference(cls, spec: dict[str, Any]) -> "EvalGeometry":
        """TAO's inference geometry (``OneFormerPredictDataset``): ``inference.image_size``
        (PIL ``[W, H]``, TAO's default 1024 x 1024) instead of ``dataset.image_size``, then the
        same test resize and padding."""
        return cls(_image_size(S.get(spec, "inference.image_size", [1024, 1024]),
                               "inference.image_size"), *_test_sizes(spec))

    def sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(resized (H, W), padded (H, W))``: the same for every image."""
        w, h = self.image_size
        new = output_shape(h, w, self.test_min, self.test_max)
        return new, padded(*new)

    def image(self, img: Image.Image) -> np.ndarray:
        """``[Hp, Wp, 3]`` uint8: resized, test-resized and zero-padded."""
        arr = np.asarray(img.resize(self.image_size), dtype=np.uint8)
        new, (ph, pw) = self.sizes()
        arr = bilinear_resize(arr, new)
        out = np.zeros((ph, pw, 3), np.uint8)
        out[:new[0], :new[1]] = arr
        return out

    def labels(self, target: np.ndarray, ignore_value: int) -> np.ndarray:
        """``[Hp, Wp]`` int64 class map: nearest-resized twice, ``ignore_value`` padding."""
        lab = np.asarray(Image.fromarray(target.astype(np.int32)).resize(
            self.image_size, Image.Resampling.NEAREST), dtype=np.int64)
        new, (ph, pw) = self.sizes()
        out = np.full((ph, pw), ignore_value, np.int64)
        out[:new[0], :new[1]] = nearest_resize(lab, new)
        return out

