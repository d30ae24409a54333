"""Converted datasets train a seed model one epoch through the SDK, one per target layout:
VOC -> COCO with tiny RT-DETR, semantic masks -> COCO panoptic with tiny OneFormer, KITTI 2015
stereo -> annotations.txt with tiny depth_net (the plugins' demo overrides: the same tiny
networks as the e2e suites). The spec values come from the conversion report; slow."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk import Workspace, create_job, wait_for_job  # noqa: E402
from tao_sdk import convert_dataset  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402

from test_dataset_convert import _disp_png, _masks, _voc  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return Workspace(tmp_path / "ws")


def _train(skill: str, network: str, report, ws, extra: dict | None = None):
    roots = {o["split"]: o["dest"] for o in report.outputs}
    plugin = registry.get(network)
    over = {**plugin.demo_train_overrides(1, SIZE), **report.spec_hints, **(extra or {}),
            "train.checkpoint_interval": 1, "train.validation_interval": 1}
    job = create_job(skill, "train", automl_policy="off", workspace=ws, spec_overrides=over,
                     dataset_format=report.dataset_format,
                     datasets={"train_datasets": [roots["train"]], "eval_dataset": roots["val"]})
    job = wait_for_job(job.id, timeout=400, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    assert job.progress.max_epoch == 0
    return job


def test_voc_converted_to_coco_trains_rtdetr(env, tmp_path):
    report = convert_dataset("voc", "coco", str(_voc(tmp_path / "src")), str(tmp_path / "coco"))
    job = _train("rtdetr", "rtdetr", report, env)
    assert "val_mAP50" in job.kpis and "train_loss" in job.kpis


def test_semantic_masks_converted_to_panoptic_train_oneformer(env, tmp_path):
    report = convert_dataset("semantic_masks", "coco_panoptic", str(_masks(tmp_path / "src")),
                             str(tmp_path / "pan"))
    job = _train("tao-train-oneformer", "oneformer", report, env)
    assert {"mIoU", "ACC_all", "train_loss"} <= set(job.kpis)


def test_kitti_stereo_converted_to_the_annotation_list_trains_depth_net(env, tmp_path):
    base = tmp_path / "kitti" / "training"
    rng = np.random.default_rng(0)
    for i in range(4):
        left = rng.integers(0, 255, (SIZE // 2, SIZE, 3), dtype=np.uint8)
        for folder, img in (("image_2", left), ("image_3", np.roll(left, -3, axis=1))):
            (base / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(base / folder / f"00000{i}_10.png")
        _disp_png(base / "disp_occ_0" / f"00000{i}_10.png", np.full((SIZE // 2, SIZE), 3.0), 256)
    report = convert_dataset("kitti_stereo", "stereo", str(tmp_path / "kitti"), str(tmp_path / "st"),
                             val_fraction=0.5)
    assert report.dataset_format == "Kitti" and sum(o["pairs"] for o in report.outputs) == 4
    job = _train("tao-train-fast-foundation-stereo", "depth_net", report, env,
                 {"model.train_iters": 2, "model.valid_iters": 2,
                  "dataset.train_dataset.batch_size": 2, "dataset.val_dataset.batch_size": 2})
    assert {"train_loss", "val_loss", "val_epe"} <= set(job.kpis)
