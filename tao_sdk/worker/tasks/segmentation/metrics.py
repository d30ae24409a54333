"""Segmentation metrics: a pixel confusion matrix (mIoU, pixel accuracy)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tao_sdk.worker.tasks.segmentation.labels import IGNORE_VALUE


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

        IoU of class *c* = TP / (TP + FP + FN), over the labelled pixels; ``mIoU`` averages
        the classes whose union is not empty (in the ground truth *or* predicted on labelled
        pixels: a class predicted but absent from the ground truth counts with IoU 0), as
        TAO's OneFormer ``summarize_semantic_iou`` does; classes with an empty union have IoU
        ``None``. ``ACC_all`` = correctly labelled pixels / labelled pixels; ``mACC`` = mean
        recall over the classes of the ground truth.
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(axis=1)
        union = gt + m.sum(axis=0) - tp
        valid = gt > 0
        seen = union > 0
        iou = np.where(seen, tp / np.maximum(union, 1), np.nan)
        acc = np.where(valid, tp / np.maximum(gt, 1), np.nan)
        names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        total = gt.sum()
        return {
            "mIoU": float(100 * np.nanmean(iou)) if seen.any() else 0.0,
            "ACC_all": float(100 * tp.sum() / total) if total else 0.0,
            "mACC": float(100 * np.nanmean(acc)) if valid.any() else 0.0,
            "iou_per_class": {n: (None if np.isnan(v) else float(100 * v))
                              for n, v in zip(names, iou)},
        }
