"""Disparity metrics (EPE, bad-pixel rates, D1, RMSE), as TAO reports them."""

from __future__ import annotations

from typing import Any

import numpy as np

from tao_sdk.worker.errors import DatasetError


#: Metric names, as TAO reports them.
METRIC_KEYS = ("epe", "bp1", "bp2", "bp3", "d1", "rmse")
# --------------------------------------------------------------------------- metrics


class DisparityMetrics:
    """Accumulates disparity errors over valid pixels; :meth:`result` gives TAO's metric set
    (:data:`METRIC_KEYS`), :meth:`histogram` the pixel count per absolute-error bin.

    As TAO's ``StereoDepthEvaluator``: ``epe``, ``bp1..3`` and ``d1`` are computed per image
    (over its valid pixels) and averaged over the images (an image with no valid pixel is left
    out); ``rmse`` is over every valid pixel of the set."""

    #: Absolute-error bin edges (px) of :meth:`histogram`; the last bin is open.
    HIST_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)

    def __init__(self) -> None:
        self.count = 0  # valid pixels
        self.images = 0  # images with a valid pixel
        self.sums = dict.fromkeys(("abs", "sq", "bp1", "bp2", "bp3", "d1"), 0.0)
        self.hist = [0] * len(self.HIST_EDGES)

    def update(self, pred, gt, valid) -> None:
        """Add a batch (tensors or arrays of the same shape, first dimension = images;
        ``valid`` boolean)."""
        import torch

        pred, gt, valid = (torch.as_tensor(x).detach().cpu() for x in (pred, gt, valid))
        valid = valid.bool() & torch.isfinite(pred)
        for p, g, v in zip(pred.float(), gt.float(), valid):
            err, g = (p - g).abs()[v], g[v]
            if not err.numel():
                continue
            self.count += int(err.numel())
            self.images += 1
            self.sums["sq"] += float((err ** 2).sum())
            self.sums["abs"] += float(err.mean())
            for t in (1, 2, 3):
                self.sums[f"bp{t}"] += float((err > t).float().mean())
            self.sums["d1"] += float(((err > 3) & (err > 0.05 * g)).float().mean())
            bins = torch.bucketize(err, torch.tensor(self.HIST_EDGES[1:]), right=True)
            for i, n in enumerate(torch.bincount(bins, minlength=len(self.hist)).tolist()):
                self.hist[i] += int(n)

    def merge(self, count: int, images: int, sums: dict[str, float]) -> None:
        """Add another rank's ``(count, images, sums)``."""
        self.count += count
        self.images += images
        for k, v in sums.items():
            self.sums[k] += v

    def histogram(self) -> dict[str, Any]:
        """``{"edges": bin edges (px, last bin open), "counts": valid pixels per bin}``."""
        return {"unit": "px", "edges": list(self.HIST_EDGES), "counts": list(self.hist)}

    def result(self) -> dict[str, float]:
        """``{epe, bp1, bp2, bp3, d1, rmse}`` (bp/d1 as fractions; per-image means, rmse per
        pixel); raises :class:`DatasetError` when no pixel had ground truth."""
        if not self.count:
            raise DatasetError("no pixel with ground-truth disparity in (0, dataset.max_disparity)"
                               ": check the disparity column of annotations.txt and "
                               "dataset.max_disparity")
        n = float(self.images)
        return {"epe": self.sums["abs"] / n, "bp1": self.sums["bp1"] / n,
                "bp2": self.sums["bp2"] / n, "bp3": self.sums["bp3"] / n,
                "d1": self.sums["d1"] / n, "rmse": float(np.sqrt(self.sums["sq"] / self.count))}
