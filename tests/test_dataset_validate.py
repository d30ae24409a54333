"""Plan-time dataset validation (issue #18, parts 1 and 3): every defect of a broken dataset is
reported with its file, record and the right fix, by ``validate_datasets``, by ``tao-skills dataset
validate`` and by ``run --dry-run``, on local paths and on S3 (moto), before any job exists; the
demo's synthetic datasets validate clean for every seed network."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tao_sdk.datasets import validate_datasets
from tao_sdk.errors import DatasetValidationError
from tao_sdk.jobs import plan_job
from tao_sdk.storage import storage_for
from tao_sdk.workspace import Workspace

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def _png(w: int, h: int, colour=(90, 120, 200), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour if mode == "RGB" else 0).save(buf, "PNG")
    return buf.getvalue()


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _coco(root: Path, n: int = 4, size: tuple[int, int] = (48, 32)) -> dict:
    """A clean COCO detection dataset: images.tar.gz, annotations.json, label_map.txt (ids 1, 2)."""
    root.mkdir(parents=True, exist_ok=True)
    _tar(root / "images.tar.gz", {f"{i:04d}.png": _png(*size) for i in range(1, n + 1)})
    data = {"images": [{"id": i, "file_name": f"{i:04d}.png", "width": size[0], "height": size[1]}
                       for i in range(1, n + 1)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [2, 2, 10, 8], "area": 80,
                             "iscrowd": 0} for i in range(1, n + 1)],
            "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]}
    (root / "annotations.json").write_text(json.dumps(data))
    (root / "label_map.txt").write_text("square\ndisc\n")
    return data


#: The broken COCO dataset: (check, record, words of the fix) for every defect planted below.
COCO_DEFECTS = [
    ("missing_image", "image id 99 (ghost.png)", "add ghost.png to images.tar.gz or remove image 99"),
    ("unlisted_image", "member stray.png", "list it in annotations.json"),
    ("undeclared_category", "annotation id 1 (image id 1)", "declare category 7 in categories or drop annotation 1"),
    ("unused_category", "category id 3 ('unused')", "remove category 3 from categories"),
    ("num_classes", "category id 3 ('unused')", "set dataset.num_classes to 4"),
    ("box_non_finite", "annotation id 2 (image id 2)", "fix or drop annotation 2"),
    ("box_no_area", "annotation id 3 (image id 3)", "fix or drop annotation 3"),
    ("box_outside", "annotation id 4 (image id 4)", "fix or drop annotation 4"),
    ("box_clipped", "annotation id 5 (image id 1)", "clip bbox of annotation 5"),
    ("empty_image", "image id 99 (ghost.png)", "annotate it"),
    ("image_size", "image id 2 (0002.png)", "set width 48 and height 32"),
    ("duplicate_annotation_id", "annotation id 6", "unique id"),
    ("unknown_image", "annotation id 8 (image id 42)", "drop annotation 8"),
]


def _broken_coco(root: Path) -> Path:
    data = _coco(root)
    members = {f"{i:04d}.png": _png(48, 32) for i in range(1, 5)} | {"stray.png": _png(48, 32)}
    _tar(root / "images.tar.gz", members)
    data["images"].append({"id": 99, "file_name": "ghost.png", "width": 48, "height": 32})
    data["images"][1]["width"] = 40
    anns = data["annotations"]
    anns[0]["category_id"] = 7
    anns[1]["bbox"] = [float("nan"), 1, 2, 3]
    anns[2]["bbox"] = [1, 1, 0, 3]
    anns[3]["bbox"] = [100, 100, 5, 5]
    anns += [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [40, 20, 20, 20]},
             {"id": 6, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]},
             {"id": 6, "image_id": 3, "category_id": 2, "bbox": [1, 1, 5, 5]},
             {"id": 8, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    data["categories"].append({"id": 3, "name": "unused"})
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def _assert_defects(problems: list[dict], annotations: str, defects=COCO_DEFECTS) -> None:
    for check, record, fix in defects:
        hits = [p for p in problems if p["check"] == check and p["record"] == record]
        assert hits, f"{check} {record} not reported; got {[(p['check'], p['record']) for p in problems]}"
        assert fix in hits[0]["fix"], (check, hits[0]["fix"])
        assert hits[0]["file"].endswith(("annotations.json", "images.tar.gz")) and hits[0]["file"].startswith(
            annotations.rsplit("/", 1)[0])
    undeclared = next(p for p in problems if p["check"] == "undeclared_category")
    assert "num_classes" not in undeclared["fix"]  # the wrong fix would train a phantom class


def _run_cli(*args: str, env_on: bool = True) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "TAO_SKILLS_VALIDATE_DATASETS": "1" if env_on else "0"}
    return subprocess.run([sys.executable, "-m", "tao_sdk.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("TAO_SKILLS_VALIDATE_DATASETS", "1")
    return Workspace(tmp_path / "ws")


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path):
    """``place(folder) -> dataset root URI``: the folder itself, or its copy on S3 (moto)."""
    if request.param == "local":
        return str
    bucket = request.getfixturevalue("s3_env")

    def upload(folder) -> str:
        uri = f"s3://{bucket}/{Path(folder).name}"
        storage_for(uri).upload_dir(folder, uri)
        return uri
    return upload


def _refused(network: str, datasets: dict, ws: Workspace, **kwargs) -> list:
    """The problems with which ``run --dry-run`` (create_job) refuses the plan; no job exists after it."""
    with pytest.raises(DatasetValidationError) as err:
        plan_job(network, "train", datasets=datasets, automl_policy="off", workspace=ws, **kwargs)
    assert ws.store.list() == []
    return err.value.report.problems


def test_import_needs_no_torch(tmp_path):
    """Plan time: importing and running the validators pulls neither torch nor numpy."""
    _coco(tmp_path / "d")
    code = ("import sys; import tao_sdk.datasets as d; r = d.validate_datasets('rtdetr', 'train', "
            f"{{'train_datasets': [{str(tmp_path / 'd')!r}], 'eval_dataset': {str(tmp_path / 'd')!r}}}, "
            "spec_overrides={'dataset.num_classes': 3}, use_cache=False); assert r.ok, r.lines(); "
            "bad = [m for m in ('torch', 'numpy', 'transformers') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_broken_coco_local_api_cli_and_dry_run(tmp_path, ws):
    root = _broken_coco(tmp_path / "bad")
    clean = tmp_path / "val"
    _coco(clean)
    datasets = {"train_datasets": [str(root)], "eval_dataset": str(clean)}
    report = validate_datasets("rtdetr", "train", datasets, spec_overrides={"dataset.num_classes": 3}, use_cache=False)
    assert not report.ok
    _assert_defects([p.model_dump() for p in report.problems], str(root / "annotations.json"))
    assert report.budget.complete and 0 < report.budget.bytes_read <= report.budget.byte_limit

    args = ["rtdetr", "train", "--train-dataset", str(root), "--eval-dataset", str(clean), "--set",
            "dataset.num_classes=3", "--json"]
    out = _run_cli("dataset", "validate", *args)
    assert out.returncode == 2, out.stderr
    _assert_defects(json.loads(out.stdout)["problems"], str(root / "annotations.json"))

    out = _run_cli("run", *args, "--dry-run")
    assert out.returncode == 2, out.stderr
    err = json.loads(out.stdout)
    assert err["error"] == "DatasetValidationError" and "nothing was submitted" in err["message"]
    _assert_defects(err["datasets"]["problems"], str(root / "annotations.json"))
    assert "declare category 7 in categories or drop annotation 1" in err["message"]  # what the human form prints
    assert not (ws.root / "jobs").exists() or not any((ws.root / "jobs").iterdir())  # no job exists
    # the switch turns it off: the plan goes through and says so
    off = _run_cli(*(["run"] + args[:-1] + ["--dry-run", "--no-validate-datasets"]))
    assert off.returncode == 0 and "datasets: not validated" in off.stdout


def test_broken_coco_on_s3_api_and_cli(tmp_path, ws, s3_env):
    root = _broken_coco(tmp_path / "bad")
    store = storage_for(f"s3://{s3_env}/d")
    store.upload_dir(root, f"s3://{s3_env}/d/train")
    _coco(tmp_path / "val")
    store.upload_dir(tmp_path / "val", f"s3://{s3_env}/d/val")
    datasets = {"train_datasets": [f"s3://{s3_env}/d/train"], "eval_dataset": f"s3://{s3_env}/d/val"}
    with pytest.raises(DatasetValidationError) as err:
        plan_job("rtdetr", "train", datasets=datasets, spec_overrides={"dataset.num_classes": 3},
                   automl_policy="off", workspace=ws)
    _assert_defects([p.model_dump() for p in err.value.report.problems], f"s3://{s3_env}/d/train/annotations.json")
    assert ws.store.list() == []
    out = _run_cli("dataset", "validate", "rtdetr", "train", "--train-dataset", f"s3://{s3_env}/d/train",
                   "--eval-dataset", f"s3://{s3_env}/d/val", "--set", "dataset.num_classes=3")
    assert out.returncode == 2 and "declare category 7 in categories or drop annotation 1" in out.stdout


def test_invalid_json_label_map_and_phantom_classes(tmp_path, ws):
    root = tmp_path / "d"
    _coco(root)
    (root / "label_map.txt").write_text("square\ndisc\ntriangle\nstar\n")
    report = validate_datasets("rtdetr", "inference", {"inference_dataset": str(root)},
                               spec_overrides={"dataset.num_classes": 3}, use_cache=False)
    checks = {p.check: p for p in report.problems}
    assert checks["label_count"].fix.startswith("write 2 names") and not report.ok
    (root / "label_map.txt").write_text("disc\nsquare\n")
    report = validate_datasets("rtdetr", "inference", {"inference_dataset": str(root)},
                               spec_overrides={"dataset.num_classes": 3}, use_cache=False)
    assert [p.check for p in report.problems] == ["label_mismatch", "label_mismatch"]
    report = validate_datasets("rtdetr", "evaluate", {"eval_dataset": str(root)},
                               spec_overrides={"dataset.num_classes": 9}, use_cache=False)
    assert report.ok and [p.check for p in report.problems] == ["phantom_classes"]
    assert report.problems[0].fix == "set dataset.num_classes to 3"
    (root / "annotations.json").write_text('{"images": [\n {"id": 1,, }')
    report = validate_datasets("rtdetr", "evaluate", {"eval_dataset": str(root)}, use_cache=False)
    assert report.problems[0].check == "invalid_json" and report.problems[0].record == "line 2, column 11"


def test_calibration_count_for_int8(tmp_path, ws):
    _coco(tmp_path / "cal")
    sets = {"gen_trt_engine.tensorrt.data_type": "INT8", "gen_trt_engine.tensorrt.calibration.cal_batches": 3,
            "gen_trt_engine.tensorrt.calibration.cal_batch_size": 2}
    report = validate_datasets("rtdetr", "gen_trt_engine", {"calibration_dataset": str(tmp_path / "cal")},
                               spec_overrides=sets, use_cache=False)
    (p,) = report.problems
    assert p.check == "calibration_count" and p.record == "4 images" and "cal_batches 3 x cal_batch_size 2" in p.message
    assert p.fix == ("add 2 image(s) to the calibration set or set gen_trt_engine.tensorrt.calibration.cal_batches "
                     "to 2")
    fp16 = validate_datasets("rtdetr", "gen_trt_engine", {"calibration_dataset": str(tmp_path / "cal")},
                             spec_overrides={**sets, "gen_trt_engine.tensorrt.data_type": "FP16"}, use_cache=False)
    assert fp16.ok and not fp16.problems


def test_broken_panoptic(tmp_path, ws, place):
    from tao_sdk.worker.tasks.segmentation import make_segmentation_dataset

    split = make_segmentation_dataset(tmp_path / "seg", n_train=3, n_val=2, size=32)["train"]
    ann = json.loads(Path(split["annotations"]).read_text())
    first, second = ann["annotations"][0], ann["annotations"][1]
    first["segments_info"][0]["category_id"] = 77
    dropped = second["segments_info"].pop()
    first["segments_info"].append({"id": 123456, "category_id": 1, "iscrowd": 0})
    Path(split["annotations"]).write_text(json.dumps(ann))
    root = place(Path(split["annotations"]).parent)
    args = dict(dataset_format="coco_panoptic", spec_overrides={"model.sem_seg_head.num_classes": 9})
    datasets = {"train_datasets": [root], "eval_dataset": root}
    report = validate_datasets("oneformer", "train", datasets, use_cache=False, **args)
    assert {(p.check, p.record) for p in _refused("oneformer", datasets, ws, **args)} == {
        (p.check, p.record) for p in report.problems}
    by = {}
    for p in report.problems:
        by.setdefault(p.check, p)
    assert all(p.file.startswith(root) for p in report.problems)
    assert "declare category 77 in label_map.json or drop segment" in by["undeclared_category"].fix
    assert by["segment_without_pixels"].record.endswith("segment 123456")
    assert by["pixels_without_segment"].record.endswith(f"colour id {dropped['id']}")
    assert by["num_classes"].fix.startswith("set model.sem_seg_head.num_classes to")


def test_broken_stereo(tmp_path, ws, place):
    from tao_sdk.worker.tasks.stereo import make_stereo_dataset, write_pfm

    np = pytest.importorskip("numpy")
    root = make_stereo_dataset(tmp_path / "st", n=3, height=32, width=64, max_disparity=12.0)
    with tarfile.open(root / "images.tar.gz") as tf:  # loose files, so the test can add broken ones
        tf.extractall(root, filter="data")
    (root / "images.tar.gz").unlink()
    (root / "right" / "0001.png").write_bytes(_png(40, 32))
    (root / "disparity" / "bad.png").write_bytes(_png(64, 32, mode="L"))
    write_pfm(root / "disparity" / "far.pfm", np.full((32, 64), 30.0, dtype=np.float32))
    for name, value in (("ok16.png", 10 * 256), ("far16.png", 40 * 256)):  # KITTI: disparity x 256
        Image.new("I;16", (64, 32), value).save(root / "disparity" / name)
    lines = (root / "annotations.txt").read_text().splitlines()
    lines += ["left/0000.png right/0000.png disparity/bad.png", "left/0000.png right/0000.png disparity/far.pfm",
              "left/9999.png right/0000.png disparity/0000.pfm", "left/0000.png right/0000.png",
              "left/0000.png right/0000.png disparity/ok16.png", "left/0000.png right/0000.png disparity/far16.png",
              f"{root}/left/0000.png /nowhere/r.png"]
    (root / "annotations.txt").write_text("\n".join(lines) + "\n")
    uri = place(root)
    args = dict(dataset_format="GenericDataset", spec_overrides={"dataset.max_disparity": 24})
    datasets = {"train_datasets": [uri], "eval_dataset": uri}
    report = validate_datasets("depth_net", "train", datasets, use_cache=False, **args)
    got = {(p.check, p.record) for p in report.problems}
    assert {(p.check, p.record) for p in _refused("depth_net", datasets, ws, **args)} == got
    assert all(p.file.startswith(uri) for p in report.problems)
    assert ("pair_size", "line 2") in got
    assert ("disparity_encoding", "line 4 disparity disparity/bad.png") in got
    assert ("disparity_range", "line 5 disparity disparity/far.pfm") in got
    assert ("missing_file", "line 6 left") in got
    assert ("no_disparity", "line 7") in got
    assert ("disparity_range", "line 9 disparity disparity/far16.png") in got
    assert not any(p.record.startswith("line 8") for p in report.problems)
    assert ("missing_file", "line 10 right") in got and ("missing_file", "line 10 left") not in got  # absolute paths
    far = next(p for p in report.problems if p.check == "disparity_range")
    assert far.fix == "set dataset.max_disparity to at least 31" and far.severity == "warning"


def test_demo_datasets_validate_clean_for_every_seed_network(tmp_path, ws):
    from tao_sdk.worker.registry import get

    for network in ("rtdetr", "deformable_detr", "oneformer", "depth_net"):
        plugin = get(network)
        plugin.task.write_synthetic(tmp_path / network, 4, 2, 64, seed=0)
        roots = {"train": str(tmp_path / network / "train"), "val": str(tmp_path / network / "val")}
        for action, datasets in plugin.task.demo_datasets(roots).items():
            if not datasets:
                continue
            over = plugin.demo_train_overrides(1, 64) if action == "train" else plugin.task.demo_overrides(action, 64)
            report = validate_datasets(network, action, datasets, dataset_format=plugin.task.demo_format,
                                       spec_overrides=over, use_cache=False)
            assert report.problems == [], (network, action, report.lines())


def test_cache_and_budget(tmp_path, ws):
    root = tmp_path / "d"
    _coco(root)
    args = ("rtdetr", "evaluate", {"eval_dataset": str(root)})
    cache = tmp_path / "cache"
    first = validate_datasets(*args, spec_overrides={"dataset.num_classes": 3}, cache_dir=cache)
    again = validate_datasets(*args, spec_overrides={"dataset.num_classes": 3}, cache_dir=cache)
    assert not any(s.cached for s in first.sources) and all(s.cached for s in again.sources)
    assert again.budget.bytes_read < first.budget.bytes_read  # the archive was not read again
    changed = validate_datasets(*args, spec_overrides={"dataset.num_classes": 2}, cache_dir=cache)
    assert not changed.sources[0].cached and not changed.ok  # the class count is part of the key
    infer = validate_datasets("rtdetr", "inference", {"inference_dataset": str(root)}, cache_dir=cache,
                              spec_overrides={"dataset.num_classes": 3})
    data = json.loads((root / "annotations.json").read_text())
    data["categories"][0]["name"] = "box"  # the label map is compared with the annotations beside it
    (root / "annotations.json").write_text(json.dumps(data))
    renamed = validate_datasets("rtdetr", "inference", {"inference_dataset": str(root)}, cache_dir=cache,
                                spec_overrides={"dataset.num_classes": 3})
    assert infer.ok and [p.check for p in renamed.problems] == ["label_mismatch"]
    limit = (root / "annotations.json").stat().st_size + 100  # the JSON and the archive's first bytes
    tight = validate_datasets(*args, spec_overrides={"dataset.num_classes": 3}, use_cache=False, byte_limit=limit)
    assert not tight.budget.complete and any(p.check == "budget" and "TAO_DATASET_VALIDATE_MAX_BYTES" in p.fix
                                             for p in tight.problems)


def test_deformable_detr_eval_dataset_wins_with_a_note(tmp_path, ws):
    """Part 3: the table validates Deformable DETR on its train datasets; an explicit eval dataset
    (or a spec file's dataset.val_data_sources) wins, and the plan says so."""
    import yaml

    train, val = tmp_path / "train", tmp_path / "val"
    _coco(train)
    _coco(val)
    over = {"dataset.num_classes": 3}
    plan = plan_job("deformable_detr", "train", datasets={"train_datasets": [str(train)], "eval_dataset": str(val)},
                      spec_overrides=over, automl_policy="off", workspace=ws)
    assert plan.spec["dataset"]["val_data_sources"] == [{"image_dir": f"{val}/images.tar.gz",
                                                         "json_file": f"{val}/annotations.json"}]
    assert any("built from your eval dataset" in n and "SKILL.md line" in n for n in plan.notes)
    assert plan.to_dict()["datasets"]["ok"] and {s.files.get("annotations.json") for s in plan.datasets.sources} >= {
        f"{train}/annotations.json", f"{val}/annotations.json"}
    alone = plan_job("deformable_detr", "train", datasets={"train_datasets": [str(train)]}, spec_overrides=over,
                       automl_policy="off", workspace=ws)
    assert any("validates on the train datasets" in n and "--eval-dataset" in n for n in alone.notes)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"dataset": {"val_data_sources": [
        {"image_dir": f"{val}/images.tar.gz", "json_file": f"{val}/annotations.json"}]}}))
    mine = plan_job("deformable_detr", "train", datasets={"train_datasets": [str(train)]}, spec_overrides=over,
                      base_spec=str(spec_file), automl_policy="off", workspace=ws)
    assert mine.spec["dataset"]["val_data_sources"][0]["json_file"] == f"{val}/annotations.json"
    assert any(f"the value from spec file {spec_file} is kept" in n for n in mine.notes)
    shutil.rmtree(val)  # the user's validation split is validated too
    with pytest.raises(DatasetValidationError, match=f"{val}/annotations.json"):
        plan_job("deformable_detr", "train", datasets={"train_datasets": [str(train)]}, spec_overrides=over,
                   base_spec=str(spec_file), automl_policy="off", workspace=ws)


def test_worker_names_the_right_fix_for_an_undeclared_category(tmp_path):
    """With validation off the worker still refuses an undeclared category beyond num_classes, with the
    right fix (not "raise dataset.num_classes", which trains a class without a name)."""
    from tao_sdk.worker.errors import DatasetError
    from tao_sdk.worker.staging import safe_extract
    from tao_sdk.worker.tasks.detection.coco import load_coco

    data = _coco(tmp_path / "d")
    data["annotations"][0]["category_id"] = 7
    (tmp_path / "d" / "annotations.json").write_text(json.dumps(data))
    images = safe_extract(tmp_path / "d" / "images.tar.gz", tmp_path / "x")
    with pytest.raises(DatasetError, match="declare category 7 in categories or drop its annotations") as err:
        load_coco(tmp_path / "d" / "annotations.json", images, num_classes=3)
    assert "raise dataset.num_classes" not in str(err.value)
