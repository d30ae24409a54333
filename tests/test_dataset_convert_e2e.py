"""Every converted source format trains a seed model one epoch through the SDK, as few jobs as
the skills' dataset tables allow: one tiny RT-DETR job on the four detection conversions (KITTI,
VOC, YOLO, LabelMe -> COCO, one shared class list) as four ``train_datasets``; OneFormer reads one
train dataset (its table: no multiple sources), so one job per panoptic conversion (semantic
masks, Cityscapes); one tiny depth_net job on the four stereo conversions (KITTI 2012 / 2015,
Middlebury, stereo pairs), each data source with its own ``dataset_name``. Each conversion
validates clean first (``validate_datasets``). Spec values come from the conversion reports
and the plugins' demo overrides (the same tiny networks as the e2e suites); slow."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk import Workspace, create_job, wait_for_job  # noqa: E402
from tao_sdk import convert_dataset, validate_datasets  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402

from test_dataset_convert import (_cityscapes, _kitti, _kitti2012, _kitti2015, _labelme, _masks,  # noqa: E402
                                  _middlebury, _pairs, _voc, _yolo)

pytestmark = pytest.mark.slow
SIZE = 64
CLASSES = ["Car", "Pedestrian", "cat", "dog", "square", "disc", "blob", "box"]  # one list for all four


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return Workspace(tmp_path / "ws")


_SKILLS = {"coco": "rtdetr", "coco_panoptic": "oneformer", "stereo": "depth_net"}


def _convert(tmp_path, fmt: str, to: str, make, name: str = "", **options):
    """Convert the fixture ``make`` writes; the report, after its roots validated without error."""
    name = name or fmt
    report = convert_dataset(fmt, to, str(make(tmp_path / f"{name}-src")), str(tmp_path / name), **options)
    roots = [o["dest"] for o in report.outputs]
    checked = validate_datasets(_SKILLS[to], "train", {"train_datasets": roots[:1], "eval_dataset": roots[-1]},
                                dataset_format=report.dataset_format, spec_overrides=report.spec_hints,
                                use_cache=False)
    assert checked.errors == [], checked.lines()
    return report


def _train(skill: str, network: str, ws, datasets: dict, dataset_format: str, over: dict):
    plugin = registry.get(network)
    over = {**plugin.demo_train_overrides(1, SIZE), **over,
            "train.checkpoint_interval": 1, "train.validation_interval": 1}
    job = create_job(skill, "train", automl_policy="off", workspace=ws, spec_overrides=over,
                     dataset_format=dataset_format, datasets=datasets)
    job = wait_for_job(job.id, timeout=400, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    assert job.progress.max_epoch == 0
    return job


def test_four_detection_conversions_train_one_rtdetr_job(env, tmp_path):
    reports = [_convert(tmp_path, fmt, "coco", make, classes=CLASSES)
               for fmt, make in (("kitti", _kitti), ("voc", _voc), ("yolo", _yolo), ("labelme", _labelme))]
    assert all(r.spec_hints == {"dataset.num_classes": len(CLASSES) + 1} for r in reports)
    assert all(sum(o["boxes"] for o in r.outputs) > 0 for r in reports)  # every source brings boxes
    train = [o["dest"] for r in reports for o in r.outputs if o["split"] != "val"]
    assert len(train) == 4
    val = next(o["dest"] for o in reports[1].outputs if o["split"] == "val")
    job = _train("rtdetr", "rtdetr", env, {"train_datasets": train, "eval_dataset": val}, "coco",
                 reports[0].spec_hints)
    assert "val_mAP50" in job.kpis and "train_loss" in job.kpis
    logs = job.logs()
    assert all(f"dataset.train_data_sources[{i}]: " in logs for i in range(4))  # all four were read


@pytest.mark.parametrize("fmt", ["semantic_masks", "cityscapes"])
def test_panoptic_conversions_train_oneformer(env, tmp_path, fmt):
    report = _convert(tmp_path, fmt, "coco_panoptic", {"semantic_masks": _masks, "cityscapes": _cityscapes}[fmt])
    roots = [o["dest"] for o in report.outputs]
    job = _train("tao-train-oneformer", "oneformer", env, {"train_datasets": roots[:1], "eval_dataset": roots[-1]},
                 report.dataset_format, report.spec_hints)
    assert {"mIoU", "ACC_all", "train_loss"} <= set(job.kpis)


def test_four_stereo_conversions_train_one_depth_net_job(env, tmp_path):
    size = {"w": SIZE, "h": SIZE // 2}
    reports = [_convert(tmp_path, "kitti_stereo", "stereo", lambda r: _kitti2015(r, **size)),
               _convert(tmp_path, "kitti_stereo", "stereo", lambda r: _kitti2012(r, **size), "kitti2012"),
               _convert(tmp_path, "middlebury", "stereo", lambda r: _middlebury(r, **size)),
               _convert(tmp_path, "stereo_pairs", "stereo", lambda r: _pairs(r, **size), disparity_scale=32)]
    assert [r.dataset_format for r in reports] == ["Kitti", "Kitti", "Middlebury", "GenericDataset"]
    sources = [{"data_file": f"{o['dest']}/annotations.txt", "dataset_name": r.dataset_format}
               for r in reports for o in r.outputs]  # mixed formats: one dataset_name per source
    job = _train("tao-train-fast-foundation-stereo", "depth_net", env, {"eval_dataset": reports[0].outputs[0]["dest"]},
                 "Kitti", {"dataset.train_dataset.data_sources": sources, "model.train_iters": 2,
                           "model.valid_iters": 2, "dataset.train_dataset.batch_size": 2,
                           "dataset.val_dataset.batch_size": 2})
    assert {"train_loss", "val_loss", "val_epe"} <= set(job.kpis)
    assert f"stereo data: {sum(o['pairs'] for r in reports for o in r.outputs)} training pairs" in job.logs()
