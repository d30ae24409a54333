"""OneFormer inference follows TAO's ``OneFormerPredictDataset`` / ``predict_step``:
``inference.image_size`` is PIL's ``[W, H]``, then the test resize and padding; predictions
are cropped back and resized to the ``inference.image_size`` image (no TAO code needed)."""

from __future__ import annotations

import numpy as np
import pytest

from tao_sdk.worker.tasks.segmentation.geometry import EvalGeometry


def test_inference_geometry_reads_inference_image_size_as_width_height():
    spec = {"inference": {"image_size": [96, 64]},
            "dataset": {"image_size": 1024, "augmentation": {"test_min_size": 48, "test_max_size": 200}}}
    geo = EvalGeometry.for_inference(spec)
    assert geo.image_size == (96, 64)           # PIL (W, H), as TAO resizes with it
    assert geo.sizes() == ((48, 72), (64, 96))  # short side 48 (H 64 -> 48, W 96 -> 72), padded to 32


def test_inference_labels_crop_the_padding_then_resize_to_the_image():
    torch = pytest.importorskip("torch")
    from tao_sdk.worker.networks.oneformer import inference_labels

    # two classes (+ no-object), one query each: query 0 says class 0 on the left half of the
    # 48 x 72 test-resized image, query 1 class 1 elsewhere (the padding right / bottom too)
    logits = torch.tensor([[[9.0, -9.0, -9.0], [-9.0, 9.0, -9.0]]])
    masks = torch.full((1, 2, 16, 24), -9.0)
    masks[0, 0, :, :9] = 9.0    # columns < 36 of the padded 96-wide input: the image's left half
    masks[0, 1, :, 9:] = 9.0
    (out,) = inference_labels(logits, masks, (64, 96), (48, 72), (64, 96))
    assert out.shape == (64, 96)          # the inference.image_size image (H, W)
    assert (out[:, :40] == 0).all() and (out[:, 56:] == 1).all()
    assert np.unique(out).tolist() == [0, 1]
