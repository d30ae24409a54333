"""Case 5: bad annotations never train silently. Every dropped or clipped box is counted and
reported (a WARNING line in status.json with the count and the first examples); empty or
all-invalid annotation sets fail; a wrong type names the file, the annotation id and the fix;
category ids mean the same classes in train, evaluate and inference whatever their base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tao_sdk.worker.errors import DatasetError
from tao_sdk.worker.tasks.detection.coco import load_coco, read_label_map


def _coco(tmp_path: Path, anns: list[dict], categories=((1, "square"), (2, "disc"))) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        (images / name).write_bytes(b"")
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "annotations": anns, "categories": [{"id": i, "name": n} for i, n in categories]}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN is written as the NaN token
    return path, images


def _ann(aid: int, bbox, cid=1, image=1) -> dict:
    return {"id": aid, "image_id": image, "category_id": cid, "bbox": bbox, "iscrowd": 0, "area": 1.0}


def test_every_dropped_or_clipped_box_is_counted(tmp_path):
    path, images = _coco(tmp_path, [
        _ann(1, [10, 10, 20, 20]),                 # fine
        _ann(2, [200, 10, 20, 20]),                # wholly outside the 100x80 image
        _ann(3, [90, 10, 50, 20]),                 # over-wide: clipped to [90, 10, 10, 20]
        _ann(4, [float("nan"), 10, 20, 20]),       # NaN
        _ann(5, [10, 10, 0, 20]),                  # no area
    ])
    data = load_coco(path, images, num_classes=3, what="dataset.train_data_sources[0]")
    assert data.box_issues == {"outside": 1, "clipped": 1, "non_finite": 1, "no_area": 1}
    assert data.skipped_boxes == 3
    assert data.images[0].boxes == [[10.0, 10.0, 20.0, 20.0], [90.0, 10.0, 10.0, 20.0]]
    summary = data.issues_summary("dataset.train_data_sources[0]")
    assert "4 box(es) with defects" in summary and "1 dropped (wholly outside the image)" in summary
    assert "annotation id 2 (image a.jpg, 100x80) bbox [200, 10, 20, 20] dropped (wholly outside" in summary
    assert "annotation id 3" in summary and "clipped to the image" in summary


def test_empty_and_all_invalid_annotation_sets_fail(tmp_path):
    path, images = _coco(tmp_path, [])
    with pytest.raises(DatasetError, match="has no annotations|it has no annotations"):
        load_coco(path, images, num_classes=3, what="dataset.val_data_sources")
    path, images = _coco(tmp_path, [_ann(1, [500, 500, 5, 5]), _ann(2, [1, 1, -3, 4])])
    with pytest.raises(DatasetError, match=r"all 2 of its boxes are invalid.*annotation id 1"):
        load_coco(path, images, num_classes=3, what="dataset.val_data_sources")


def test_wrong_type_names_file_annotation_and_fix(tmp_path):
    path, images = _coco(tmp_path, [_ann(1, [1, 1, 5, 5]), _ann(7, [1, 1, 5, 5], cid="1")])
    with pytest.raises(DatasetError) as err:
        load_coco(path, images, num_classes=3, what="dataset.train_data_sources[0]")
    text = str(err.value)
    assert str(path) in text and "annotation id 7" in text and "category_id '1' (str)" in text
    assert "write it as the integer 1 (no quotes)" in text
    path, images = _coco(tmp_path, [_ann(3, [1, "1", 5, 5])])
    with pytest.raises(DatasetError, match=r"annotation id 3 has bbox \[1, '1', 5, 5\].*not strings"):
        load_coco(path, images, num_classes=3)


def test_inference_names_classes_as_training_numbered_them(tmp_path):
    """0-based ids with num_classes = classes + 1: the classmap is read against the trained ids."""
    path, images = _coco(tmp_path, [_ann(1, [1, 1, 5, 5], cid=0), _ann(2, [1, 1, 5, 5], cid=1)],
                         categories=((0, "square"), (1, "disc")))
    data = load_coco(path, images, num_classes=3)
    assert data.class_names() == {0: "square", 1: "disc"}
    label_map = tmp_path / "label_map.txt"
    label_map.write_text("square\ndisc\n", encoding="utf-8")
    assert read_label_map(label_map, 3) == {1: "square", 2: "disc"}  # no training record: 1-based guess
    assert read_label_map(label_map, 3, trained=data.class_names()) == {0: "square", 1: "disc"}
    data.check_classes(data.class_names(), "dataset.test_data_sources")  # same numbering: fine
    # evaluating that model on a 1-based copy of the data would score class 1 'square' as 'disc'
    one_based_path, images = _coco(tmp_path, [_ann(1, [1, 1, 5, 5], cid=1), _ann(2, [1, 1, 5, 5], cid=2)])
    one_based = load_coco(one_based_path, images, num_classes=3, what="dataset.test_data_sources")
    with pytest.raises(DatasetError, match=r"class 1 is 'square' here but 'disc' at training"):
        one_based.check_classes(data.class_names(), "dataset.test_data_sources")


@pytest.mark.slow
def test_worker_reports_defects_and_keeps_zero_based_ids(tmp_path, monkeypatch):
    """A real tiny train + inference: the WARNING line lands in status.json, and inference names
    the classes of a 0-based dataset exactly as training numbered them."""
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset
    from worker.conftest import base_spec, run_job

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TAO_WORKER_STAGING", str(tmp_path / "staging"))
    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, classes=("square", "disc"), size=64, seed=2)
    for split in ("train", "val"):
        ann_file = ds[split]["annotations"]
        coco = json.loads(ann_file.read_text())
        for c in coco["categories"]:
            c["id"] -= 1
        for a in coco["annotations"]:
            a["category_id"] -= 1
        if split == "train":
            coco["annotations"].append({**coco["annotations"][0], "id": 999, "bbox": [300, 300, 10, 10]})
        ann_file.write_text(json.dumps(coco))
    spec = base_spec("rtdetr", ds, str(tmp_path / "results"))
    spec["train"].update(num_epochs=1, validation_interval=5)
    spec["inference"]["checkpoint"] = str(tmp_path / "results" / "train" / "model_epoch_000.pth")
    code, lines = run_job("rtdetr", "train", spec, tmp_path)
    assert code == 0, lines[-1]
    warnings = [ln for ln in lines if ln.get("verbosity") == "WARNING"]
    assert warnings and "1 dropped (wholly outside the image)" in warnings[0]["message"]
    assert "annotation id 999" in warnings[0]["message"]
    code, lines = run_job("rtdetr", "inference", spec, tmp_path)
    assert code == 0, lines[-1]
    detections = json.loads((tmp_path / "results" / "inference" / "detections.json").read_text())
    assert detections["class_names"] == {"0": "square", "1": "disc"}
