"""``tao-skills dataset convert``: every source format converts into exactly the layout the
skill's table names, and the worker's own loaders read the result (load_coco, load_panoptic +
semantic_target, read_annotations + read_disparity). Tiny fixtures built here with PIL; one
conversion to S3 through the moto server; the CLI's JSON and its one-line errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tao_sdk.cli import main
from tao_sdk.datasets import validate_datasets
from tao_sdk.datasets.convert import convert_dataset
from tao_sdk.errors import ConversionError
from tao_sdk.storage import storage_for
from tao_sdk.worker.staging import safe_extract
from tao_sdk.worker.tasks.detection.coco import load_coco
from tao_sdk.worker.tasks import segmentation as seg
from tao_sdk.worker.tasks import stereo

DET_FILES = {"images.tar.gz", "annotations.json", "label_map.txt"}
PAN_FILES = {"images.tar.gz", "images_panoptic.tar.gz", "annotations.json", "label_map.json",
             "label_map_panoptic.json"}
STEREO_FILES = {"annotations.txt", "images.tar.gz"}


def _image(path: Path, w: int = 64, h: int = 48, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((h, w, 3), value, np.uint8)
    rgb[::7] = 200  # some texture
    Image.fromarray(rgb).save(path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _coco(root: str, num_classes: int):
    """The converted root as the worker loads it for training."""
    images = safe_extract(Path(root) / "images.tar.gz", Path(root + "-x"))
    return load_coco(Path(root) / "annotations.json", images, num_classes)


def _validates(skill: str, report, warnings: set[tuple[str, str]] = frozenset()) -> None:
    """The converted roots pass ``validate_datasets`` for ``skill``'s train action with the
    report's dataset format and spec hints: no error, and only the ``(check, record)`` warnings
    the fixture explains (a root that is both train and eval data is reported once)."""
    roots = [o["dest"] for o in report.outputs]
    datasets = {"train_datasets": roots[:1], "eval_dataset": roots[-1]}
    checked = validate_datasets(skill, "train", datasets, dataset_format=report.dataset_format,
                                spec_overrides=report.spec_hints, use_cache=False)
    assert checked.errors == [], checked.lines()
    assert sorted((p.check, p.record) for p in checked.problems) == sorted(warnings), checked.lines()  # once each


# --------------------------------------------------------------------------- detection fixtures
def _kitti(root: Path) -> Path:
    for i in range(2):
        _image(root / "training" / "image_2" / f"00000{i}.png")
    tail = " 1.5 1.6 3.9 1.0 1.5 20.0 0.1"
    _write(root / "training" / "label_2" / "000000.txt",
           f"Car 0.0 0 -1.5 10 10 30 30{tail}\nDontCare -1 -1 -10 5 5 8 8 -1 -1 -1 -1000 -1000 -1000 -10\n"
           f"Pedestrian 0.0 0 0.2 50 5 70 40{tail}\n")  # Pedestrian partly outside: clipped
    _write(root / "training" / "label_2" / "000001.txt", f"Car 0.0 0 0.1 30 30 20 40{tail}\n")  # degenerate
    return root


def _voc_xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b in objects)
    return f"<annotation><filename>{filename}</filename><size><width>64</width><height>48</height></size>{objs}</annotation>"


def _voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for stem, objs in (("a", [("dog", (1, 1, 20, 20))]), ("b", [("cat", (5, 5, 30, 40)), ("dog", (30, 2, 60, 30))]),
                       ("c", [("cat", (10, 10, 40, 40))])):
        _image(voc / "JPEGImages" / f"{stem}.jpg")
        _write(voc / "Annotations" / f"{stem}.xml", _voc_xml(f"{stem}.jpg", objs))
    _write(voc / "ImageSets" / "Main" / "train.txt", "a\nb\n")
    _write(voc / "ImageSets" / "Main" / "val.txt", "c\n")
    return root / "VOCdevkit"


def _yolo(root: Path) -> Path:
    _write(root / "data.yaml", "train: images/train\nval: ../images/val\nnames:\n  0: square\n  1: disc\n")
    for split in ("train", "val"):
        _image(root / "images" / split / "x.png")
        _write(root / "labels" / split / "x.txt",
               "0 0.5 0.5 0.25 0.25\n1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n5 0.5 0.5 0.1 0.1\n")
    _image(root / "images" / "train" / "empty.png")  # no label file: no objects
    return root


def _labelme(root: Path) -> Path:
    for stem in ("p", "q"):
        _image(root / f"{stem}.png")
        shapes = [{"label": "box", "shape_type": "rectangle", "points": [[30, 20], [5, 4]]},
                  {"label": "blob", "shape_type": "polygon", "points": [[10, 10], [20, 12], [15, 25]]},
                  {"label": "box", "shape_type": "point", "points": [[3, 3]]}]
        embedded = base64.b64encode((root / f"{stem}.png").read_bytes()).decode()
        if stem == "q":  # only embedded in its JSON (imageData), as LabelMe can save it
            (root / "q.png").unlink()
        _write(root / "sub" / f"{stem}.json", json.dumps({"imagePath": f"../{stem}.png", "shapes": shapes,
                                                         "imageData": embedded}))
    return root


DETECTION = {  # format -> (fixture, output roots, classes, boxes, a dropped reason)
    "kitti": (_kitti, [""], ["Car", "Pedestrian"], 2, "KITTI DontCare region (not an object)"),
    "voc": (_voc, ["train", "val"], ["cat", "dog"], 4, None),
    "yolo": (_yolo, ["train", "val"], ["square", "disc"], 4,
             "malformed YOLO line or class index not in data.yaml names"),
    "labelme": (_labelme, [""], ["blob", "box"], 4, "LabelMe shape_type 'point' with no box"),
}
DETECTION_WARNINGS = {  # what validation rightly warns about in each fixture
    "kitti": {("empty_image", "image id 2 (000001.png)")},  # its one box is degenerate, dropped
    "voc": {("unused_category", "category id 2 ('dog')")},  # val holds one cat only
    "yolo": {("empty_image", "image id 1 (images/train/empty.png)")},  # no label file: background
    "labelme": set(),
}


@pytest.mark.parametrize("fmt", sorted(DETECTION))
def test_detection_sources_convert_to_the_coco_layout_the_worker_loads(fmt, tmp_path):
    make, roots, classes, boxes, dropped = DETECTION[fmt]
    src = make(tmp_path / "src")
    dest = tmp_path / "out"
    report = convert_dataset(fmt, "coco", str(src), str(dest))
    assert [o["dest"] for o in report.outputs] == [str(dest / r) if r else str(dest) for r in roots]
    assert [c["name"] for c in report.classes] == classes
    assert report.spec_hints == {"dataset.num_classes": len(classes) + 1} and report.dataset_format == "coco"
    loaded = 0
    for out in report.outputs:
        assert {Path(f).name for f in out["files"]} == DET_FILES
        assert set(p.name for p in Path(out["dest"]).iterdir()) == DET_FILES  # exactly the layout
        data = _coco(out["dest"], len(classes) + 1)
        assert data.class_names() == {i + 1: n for i, n in enumerate(classes)}
        assert len(data.images) == out["images"] and not data.box_issues
        loaded += sum(len(im.boxes) for im in data.images)
        assert (Path(out["dest"]) / "label_map.txt").read_text().split() == classes
    assert loaded == boxes == sum(o["boxes"] for o in report.outputs)
    if dropped:
        assert dropped in {d["reason"] for d in report.dropped}
    if fmt == "yolo":  # val: ../images/val, as Roboflow writes it
        assert "data.yaml entry '../images/val' read as 'images/val' (Roboflow export convention)" in report.notes
    _validates("rtdetr", report, DETECTION_WARNINGS[fmt])


def test_split_selection_and_layout_errors(tmp_path):
    src = _yolo(tmp_path / "src")
    report = convert_dataset("yolo", "coco", str(src), str(tmp_path / "out"), split="val")
    assert [o["dest"] for o in report.outputs] == [str(tmp_path / "out" / "val")]
    with pytest.raises(ConversionError, match="names no split 'test'; use --split with one of train, val"):
        convert_dataset("yolo", "coco", str(src), str(tmp_path / "o2"), split="test")
    with pytest.raises(ConversionError, match="val_fraction partitions one split"):
        convert_dataset("yolo", "coco", str(src), str(tmp_path / "o3"), val_fraction=0.5)
    with pytest.raises(ConversionError, match="no Annotations/ folder"):
        convert_dataset("voc", "coco", str(src), str(tmp_path / "o4"))


def test_kitti_reports_drops_and_clipping_and_holds_out_a_val_split(tmp_path):
    src = _kitti(tmp_path / "src")
    report = convert_dataset("kitti", "coco", str(src), str(tmp_path / "out"), val_fraction=0.5)
    assert [o["split"] for o in report.outputs] == ["train", "val"]
    assert sum(o["images"] for o in report.outputs) == 2
    reasons = {d["reason"]: d["count"] for d in report.dropped}
    assert reasons == {"KITTI DontCare region (not an object)": 1, "box of zero or negative width / height": 1}
    assert any("clipped" in n for n in report.notes)
    with pytest.raises(ConversionError, match="one labelled split"):
        convert_dataset("kitti", "coco", str(src), str(tmp_path / "o2"), split="val")


# --------------------------------------------------------------------------- panoptic
def _masks(root: Path) -> Path:
    _write(root / "classes.txt", "background\nsquare\n")
    for split in ("train", "val"):
        _image(root / "images" / split / "a.jpg", 32, 24)
        mask = np.zeros((24, 32), np.uint8)
        mask[4:12, 4:20] = 1
        mask[20:, :] = 255
        mask[0, 0] = 7 if split == "val" else 0  # beyond the class list: reported, unlabelled
        Image.fromarray(mask).save(_write(root / "masks" / split / "a.png", ""))
    return root


def _cityscapes(root: Path) -> Path:
    name = "aachen_000000_000019"
    _image(root / "leftImg8bit" / "train" / "aachen" / f"{name}_leftImg8bit.png", 32, 24)
    labels = np.zeros((24, 32), np.uint8)
    labels[12:] = 7  # road
    labels[2:8, 2:10] = 26  # car
    labels[2:8, 20:30] = 26
    inst = labels.astype(np.int32)
    inst[2:8, 2:10], inst[2:8, 20:30] = 26000, 26001
    gt = root / "gtFine" / "train" / "aachen"
    gt.mkdir(parents=True)
    Image.fromarray(labels).save(gt / f"{name}_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(gt / f"{name}_gtFine_instanceIds.png")
    return root


def _panoptic(root: str, num_classes: int):
    lm = seg.read_label_map(Path(root) / "label_map.json", num_classes)
    return seg.load_panoptic(Path(root) / "annotations.json",
                             safe_extract(Path(root) / "images.tar.gz", Path(root + "-i")),
                             safe_extract(Path(root) / "images_panoptic.tar.gz", Path(root + "-p")), lm)


def test_semantic_masks_convert_to_coco_panoptic_read_back_pixel_for_pixel(tmp_path):
    src = _masks(tmp_path / "src")
    report = convert_dataset("semantic_masks", "coco_panoptic", str(src), str(tmp_path / "out"))
    assert [o["split"] for o in report.outputs] == ["train", "val"]
    assert report.spec_hints["model.sem_seg_head.num_classes"] == 2
    for out in report.outputs:
        assert set(p.name for p in Path(out["dest"]).iterdir()) == PAN_FILES
        (sample,) = _panoptic(out["dest"], 2)
        mask = np.asarray(Image.open(src / "masks" / out["split"] / "a.png")).copy()
        mask[mask == 7] = 255
        assert np.array_equal(seg.semantic_target(sample), mask)  # value v -> class v, 255 ignored
    assert report.dropped == [{"reason": "pixels of mask value 7 (not in the class list) left unlabelled",
                               "count": 1, "examples": [str(src / "masks" / "val" / "a.png")]}]
    _validates("oneformer", report)


def test_cityscapes_instances_become_segments_of_the_19_classes(tmp_path):
    src = _cityscapes(tmp_path / "src")
    report = convert_dataset("cityscapes", "coco_panoptic", str(src), str(tmp_path / "out"))
    (out,) = report.outputs
    assert out["split"] == "train" and out["segments"] == 3  # road + two cars
    assert len(report.classes) == 19 and report.classes[13]["name"] == "car"
    (sample,) = _panoptic(out["dest"], 19)
    target = seg.semantic_target(sample)
    assert target[20, 0] == 0 and target[3, 3] == 13 and target[3, 25] == 13 and target[0, 31] == 255
    label_map = json.loads((Path(out["dest"]) / "label_map.json").read_text())
    assert label_map[13] == {"id": 14, "name": "car", "isthing": 1, "color": [0, 0, 142]}
    _validates("oneformer", report)


# --------------------------------------------------------------------------- stereo
def _disp_png(path: Path, disp: np.ndarray, scale: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(disp * scale).astype(np.uint16)).save(path)


def _disp(w: int, h: int) -> np.ndarray:
    return np.tile(np.linspace(1, 9, w, dtype=np.float32), (h, 1))


DISP = _disp(32, 16)


def _kitti2015(root: Path, w: int = 32, h: int = 16) -> Path:
    base = root / "training"
    for i in range(2):
        _image(base / "image_2" / f"00000{i}_10.png", w, h)
        _image(base / "image_3" / f"00000{i}_10.png", w, h)
    _disp_png(base / "disp_occ_0" / "000000_10.png", _disp(w, h), 256)  # 000001 has none: dropped
    return root


def _kitti2012(root: Path, w: int = 32, h: int = 16) -> Path:
    base = root / "training"
    _image(base / "colored_0" / "000000_10.png", w, h)
    _image(base / "colored_1" / "000000_10.png", w, h)
    _disp_png(base / "disp_occ" / "000000_10.png", _disp(w, h), 256)
    return root


def _middlebury(root: Path, w: int = 32, h: int = 16) -> Path:
    scene = root / "trainingQ" / "Adirondack"
    _image(scene / "im0.png", w, h)
    _image(scene / "im1.png", w, h)
    stereo.write_pfm(scene / "disp0GT.pfm", _disp(w, h))
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(scene / "mask0nocc.png")
    return root


def _pairs(root: Path, w: int = 32, h: int = 16) -> Path:
    for stem in ("s1", "s2"):
        _image(root / "left" / f"{stem}.png", w, h)
        _image(root / "right" / f"{stem}.png", w, h)
        _disp_png(root / "disparity" / f"{stem}.png", _disp(w, h), 32)  # scale 32: re-encoded as PFM
    return root


STEREO = {  # format -> (fixture, dataset_format, pairs, columns, options)
    "kitti_stereo-2015": (_kitti2015, "Kitti", 1, 3, {}),
    "kitti_stereo-2012": (_kitti2012, "Kitti", 1, 3, {}),
    "middlebury": (_middlebury, "Middlebury", 1, 4, {}),
    "stereo_pairs": (_pairs, "GenericDataset", 2, 3, {"disparity_scale": 32}),
}


@pytest.mark.parametrize("case", sorted(STEREO))
def test_stereo_sources_convert_to_the_annotation_list_the_worker_reads(case, tmp_path):
    make, fmt, n_pairs, columns, options = STEREO[case]
    dest = tmp_path / "out"
    report = convert_dataset(case.split("-")[0], "stereo", str(make(tmp_path / "src")), str(dest), **options)
    assert report.dataset_format == fmt and report.outputs[0]["pairs"] == n_pairs
    assert set(p.name for p in dest.iterdir()) == STEREO_FILES
    lines = (dest / "annotations.txt").read_text().splitlines()
    assert {len(line.split()) for line in lines} == {columns}
    extracted = safe_extract(dest / "images.tar.gz", tmp_path / "x")
    samples = stereo.read_annotations(dest / "annotations.txt", lambda rel, _no: extracted / rel, fmt,
                                      "dataset.train_dataset.data_sources[0]", need_gt=True)
    disp, valid = stereo.read_disparity(samples[0].disparity, fmt)
    assert valid.all() and np.allclose(disp, DISP, atol=1 / 32)
    if case == "kitti_stereo-2015":
        assert report.dropped[0]["reason"] == "frame without ground-truth disparity"
    _validates("depth_net", report)


# --------------------------------------------------------------------------- S3, CLI, errors
def test_convert_from_and_to_s3_through_moto(s3_env, tmp_path):
    src, dest = f"s3://{s3_env}/raw/voc", f"s3://{s3_env}/data/voc"
    store = storage_for(dest)
    store.upload_dir(_voc(tmp_path / "src"), src)
    _write(tmp_path / "bad.xml", "<annotation><object>")
    store.upload_file(tmp_path / "bad.xml", f"{src}/VOC2012/Annotations/bad.xml")
    _write(tmp_path / "train.txt", "a\nb\nbad\n")
    store.upload_file(tmp_path / "train.txt", f"{src}/VOC2012/ImageSets/Main/train.txt")
    report = convert_dataset("voc", "coco", src, dest)
    assert report.dropped == [{"reason": "annotation file that is not valid XML", "count": 1,
                               "examples": [report.dropped[0]["examples"][0]]}]
    names = sorted(o.uri[len(dest) + 1:] for o in store.list(dest))
    assert names == sorted(f"{s}/{f}" for s in ("train", "val") for f in DET_FILES)
    coco = json.loads(store.read_text(f"{dest}/val/annotations.json"))
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]  # same ids as train
    assert report.outputs[1]["dest"] == f"{dest}/val"
    with pytest.raises(ConversionError, match="already exist"):
        convert_dataset("voc", "coco", str(tmp_path / "src" / "VOCdevkit"), dest)


def test_cli_json_and_one_line_errors(tmp_path, capsys):
    src = _labelme(tmp_path / "src")
    assert main(["dataset", "convert", "--from", "labelme", "--to", "coco", str(src), str(tmp_path / "o"),
                 "--classes", "box", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == [{"id": 1, "name": "box"}] and out["outputs"][0]["boxes"] == 2
    assert any(d["reason"] == "object of class 'blob', not in the class list" for d in out["dropped"])
    assert main(["dataset", "convert", "--from", "labelme", "--to", "stereo", str(src), str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no conversion --from labelme --to stereo; available: kitti -> coco" in err
