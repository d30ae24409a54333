"""TAO OneFormer's evaluation geometry, reproduced without OpenCV: golden values computed with
TAO 7.3.0's ``get_output_shape`` and OpenCV 4/5 ``cv2.resize`` (INTER_NEAREST / INTER_LINEAR)."""

import numpy as np
import pytest

from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.tasks.segmentation.geometry import (EvalGeometry, bilinear_resize,
                                                        nearest_resize, output_shape)

# (h, w, test_min_size, test_max_size) -> TAO's resized (h, w)
SHAPES = [((1024, 1024, 800, 1333), (800, 800)), ((768, 1024, 800, 1333), (800, 1067)),
          ((1024, 600, 512, 640), (640, 375)), ((64, 64, 64, 64), (64, 64)),
          ((480, 640, 320, 500), (320, 427))]

LAB = [[4, 0, 3, 3, 3, 1, 3], [2, 4, 0, 0, 4, 2, 1], [0, 1, 1, 0, 1, 4, 3],
       [0, 3, 0, 2, 3, 0, 1], [3, 3, 3, 0, 1, 1, 1]]
# cv2.resize(LAB, (4, 9), interpolation=cv2.INTER_NEAREST)
LAB_9x4 = [[4, 0, 3, 1], [4, 0, 3, 1], [2, 4, 0, 2], [2, 4, 0, 2], [0, 1, 0, 4], [0, 1, 0, 4],
           [0, 3, 2, 0], [0, 3, 2, 0], [3, 3, 0, 1]]
IMG = [[127, 202, 163, 114, 34], [164, 38, 17, 105, 31], [65, 57, 119, 82, 142],
       [140, 84, 6, 127, 204], [232, 148, 23, 117, 49], [163, 197, 113, 162, 131]]
# cv2.resize(IMG, (8, 9), interpolation=cv2.INTER_LINEAR)
IMG_9x8 = [[127, 160, 199, 175, 148, 117, 69, 34], [146, 134, 118, 99, 96, 108, 66, 33],
           [147, 101, 41, 36, 55, 97, 72, 49], [81, 69, 57, 87, 97, 87, 107, 123],
           [103, 89, 70, 65, 75, 102, 143, 173], [155, 129, 89, 36, 45, 118, 155, 178],
           [217, 182, 130, 57, 51, 112, 94, 75], [198, 186, 166, 101, 90, 135, 112, 90],
           [163, 178, 192, 139, 128, 159, 144, 131]]


@pytest.mark.parametrize("args,expected", SHAPES)
def test_output_shape_matches_taos(args, expected):
    assert output_shape(*args) == expected


def test_nearest_resize_is_opencvs_not_pils():
    assert nearest_resize(np.array(LAB), (9, 4)).tolist() == LAB_9x4


def test_bilinear_resize_within_one_level_of_opencv():
    img = np.repeat(np.array(IMG, np.uint8)[..., None], 3, axis=2)
    out = bilinear_resize(img, (9, 8))
    assert np.abs(out[..., 0].astype(int) - np.array(IMG_9x8)).max() <= 1


def test_geometry_from_spec_defaults_and_padding():
    from PIL import Image

    geo = EvalGeometry.from_spec({"dataset": {"image_size": [1024, 768]}})
    assert geo.sizes() == ((800, 1067), (800, 1088))  # PIL (W, H) = (1024, 768)
    small = EvalGeometry.from_spec({"dataset": {"image_size": 40, "augmentation": {
        "test_min_size": 40, "test_max_size": 40}}})
    assert small.sizes() == ((40, 40), (64, 64))
    lab = small.labels(np.zeros((10, 20), np.int64), 255)
    assert lab.shape == (64, 64) and (lab[:40, :40] == 0).all() and (lab[40:] == 255).all()
    img = small.image(Image.new("RGB", (20, 10), (9, 9, 9)))
    assert img.shape == (64, 64, 3) and img[0, 0, 0] == 9 and img[63, 63, 0] == 0
    with pytest.raises(SpecError, match="dataset.image_size"):
        EvalGeometry.from_spec({"dataset": {"image_size": [1, 2, 3]}})
