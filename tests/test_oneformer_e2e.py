"""OneFormer through the SDK on S3 (moto server): train -> evaluate -> export (ONNX parity) ->
inference, with the data-source overrides built from the skill's tables (COCO panoptic
annotations.json + images_panoptic.tar.gz + label_map.json). Tiny config on CPU; slow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk import Workspace, create_job, wait_for_job  # noqa: E402
from tao_sdk.storage import storage_for  # noqa: E402

pytestmark = pytest.mark.slow
SKILL = "tao-train-oneformer"
SIZE = 64
FILES = ("images.tar.gz", "images_panoptic.tar.gz", "annotations.json", "label_map.json",
         "label_map_panoptic.json")


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                               / "tao-e2e-cache"))


def _upload(root: Path, bucket: str) -> dict[str, str]:
    store = storage_for(f"s3://{bucket}")
    out = {}
    for split in ("train", "val"):
        for name in FILES:
            store.upload_file(str(root / split / name), f"s3://{bucket}/seg/{split}/{name}")
        out[split] = f"s3://{bucket}/seg/{split}"
    return out


def _wait(job, ws):
    done = wait_for_job(job.id, timeout=600, poll_interval=0.5, workspace=ws)
    assert done.status.value == "SUCCESS", done.result.get("message")
    return done


def test_oneformer_train_evaluate_export_inference_on_s3(env, s3_env, tmp_path):
    from tao_sdk.worker.registry import get

    plugin = get("oneformer")
    plugin.task.write_synthetic(tmp_path / "data", 8, 4, SIZE, seed=4)
    data = _upload(tmp_path / "data", s3_env)
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    datasets = {"train_datasets": [data["train"]], "eval_dataset": data["val"]}
    # one epoch: the test proves the chain (train -> evaluate, export, inference), not learning
    over = {**plugin.demo_train_overrides(1, SIZE), **plugin.task.demo_overrides("train", SIZE)}
    train = _wait(create_job(SKILL, "train", automl_policy="off", workspace=ws,
                             spec_overrides=over, datasets=datasets), ws)
    assert {"mIoU", "ACC_all", "train_loss"} <= set(train.kpis)
    assert any("/train/oneformer_model_latest.pth" in a for a in train.artifacts())

    def child(action, **kw):
        return _wait(create_job(SKILL, action, parent_job_id=train.id, workspace=ws,
                                spec_overrides=plugin.task.demo_overrides(action, SIZE), **kw),
                     ws)

    ev = child("evaluate", datasets=datasets)
    assert 0 <= ev.kpis["mIoU"] <= 100 and 0 < ev.kpis["ACC_all"] <= 100
    export = child("export")
    assert export.kpis["onnx_max_abs_diff"] < 1e-3
    assert f"s3://{s3_env}/tao/results/{export.id}/model.onnx" in export.artifacts()
    inf = child("inference", datasets=datasets, dataset_format="coco_panoptic")
    arts = inf.artifacts()
    for folder in ("labels", "masks", "overlays"):
        assert sum(f"/{folder}/" in a for a in arts) == 4, folder
