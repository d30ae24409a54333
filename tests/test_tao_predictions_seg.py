"""The segmentation comparison of ``tools/tao_predictions.py`` (no TAO code needed): TAO's
label maps (at its padded input size) against the worker's, and the README table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _tool():
    path = Path(__file__).resolve().parents[1] / "tools" / "tao_predictions.py"
    spec = importlib.util.spec_from_file_location("tao_predictions_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_maps_compared_on_the_workers_size_and_tabled():
    tool = _tool()
    ours = {"a.jpg": np.zeros((2, 3), int).tolist(), "b.jpg": np.ones((2, 2), int).tolist()}
    padded = np.zeros((4, 4), int)  # TAO's map of a.jpg: padded to its input size
    padded[0, 0] = 1
    tao = {"a.jpg": padded, "b.jpg": np.ones((2, 2), int)}
    got = tool.compare_label_maps(tao, ours)
    assert got == {"images": 2, "pixels_agree_pct": round(100 * 9 / 10, 4),
                   "lowest_image_pct": round(100 * 5 / 6, 4)}
    rec = {"network": "oneformer", "backbone": "swin", "checkpoint": "m.pth", "images": 2,
           "input": [64, 64], "tao": {"mIoU": 1.0, "ACC_all": 2.0},
           "worker": {"mIoU": 1.0, "ACC_all": 2.0}, "label_maps": got}
    rows = tool._segmentation_rows({"oneformer/swin": rec, "rtdetr/x": {"per_image": []}})
    assert rows[-1].startswith("| oneformer | swin | m.pth | 2 |")
    assert rows[-1].endswith("| 90.000 / 83.333 |")
