"""The real worker driven through the SDK: both networks on S3 (moto server), a failure that must
reach S3, resume of a killed train, and a small AutoML run through the CLI whose best child feeds
evaluate and export. Tiny configs on CPU; marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk import Workspace, cancel_job, create_job, get_job, resume_job, wait_for_job  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402
from tao_sdk.storage import storage_for  # noqa: E402
from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = 64


def _tiny(network: str, epochs: int) -> dict:
    """The demo's train overrides of ``network`` at SIZE px (the plugin's tiny model)."""
    return registry.get(network).demo_train_overrides(epochs, SIZE)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "tao-e2e-cache"))


@pytest.fixture(scope="module")
def local_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    ds = make_coco_dataset(root, n_train=8, n_val=4, size=SIZE, seed=1)
    return {"train": str(ds["train"]["root"]), "val": str(ds["val"]["root"])}


def _upload(local: dict, bucket: str) -> dict:
    store = storage_for(f"s3://{bucket}")
    out = {}
    for split, root in local.items():
        for name in ("images.tar.gz", "annotations.json", "label_map.txt"):
            store.upload_file(str(Path(root) / name), f"s3://{bucket}/data/{split}/{name}")
        out[split] = f"s3://{bucket}/data/{split}"
    return out


@pytest.mark.parametrize("skill,network", [("rtdetr", "rtdetr"), ("deformable_detr", "deformable_detr")])
def test_train_evaluate_export_inference_on_s3(skill, network, env, s3_env, tmp_path, local_data):
    data = _upload(local_data, s3_env)
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    over = _tiny(network, 2)
    common = {"dataset.num_classes": 3}
    train = create_job(skill, "train", automl_policy="off", workspace=ws, spec_overrides=over,
                       datasets={"train_datasets": [data["train"]], "eval_dataset": data["val"]})
    train = wait_for_job(train.id, timeout=300, poll_interval=0.5, workspace=ws)
    assert train.status.value == "SUCCESS", train.result.get("message")
    assert train.progress.max_epoch == 1 and "val_mAP50" in train.kpis
    arts = train.artifacts()
    assert any(a.startswith(f"s3://{s3_env}/tao/results/{train.id}/train/model_epoch_001") for a in arts)
    ev = wait_for_job(create_job(skill, "evaluate", parent_job_id=train.id, workspace=ws, spec_overrides=common,
                                 datasets={"eval_dataset": data["val"]}).id, timeout=300, poll_interval=0.5,
                      workspace=ws)
    assert ev.status.value == "SUCCESS" and "test_mAP50" in ev.kpis
    export = wait_for_job(create_job(skill, "export", parent_job_id=train.id, workspace=ws,
                                     datasets={"train_datasets": [data["train"]]},
                                     spec_overrides={**common, "export.input_height": SIZE,
                                                     "export.input_width": SIZE}).id,
                          timeout=300, poll_interval=0.5, workspace=ws)
    assert export.status.value == "SUCCESS", export.result.get("message")
    assert export.kpis["onnx_max_abs_diff"] < 1e-3
    assert f"s3://{s3_env}/tao/results/{export.id}/model.onnx" in export.artifacts()
    inf = wait_for_job(create_job(skill, "inference", parent_job_id=train.id, workspace=ws,
                                  spec_overrides={**common, "inference.input_height": SIZE,
                                                  "inference.input_width": SIZE} if skill == "rtdetr" else common,
                                  datasets={"inference_dataset": data["val"]}).id,
                       timeout=300, poll_interval=0.5, workspace=ws)
    assert inf.status.value == "SUCCESS", inf.result.get("message")
    assert any(a.endswith("detections.json") for a in inf.artifacts())


def test_failure_reaches_s3_with_partial_results(env, s3_env, tmp_path, local_data):
    data = _upload(local_data, s3_env)
    storage_for(data["val"]).write_text(f"{data['val']}/annotations.json", "{ not json")
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    job = create_job("rtdetr", "train", automl_policy="off", workspace=ws, spec_overrides=_tiny("rtdetr", 1),
                     datasets={"train_datasets": [data["train"]], "eval_dataset": data["val"]})
    job = wait_for_job(job.id, timeout=300, poll_interval=0.5, workspace=ws)
    assert job.status.value == "FAILURE"
    assert "annotations.json" in job.result["message"]
    store = storage_for(job.results_uri)
    lines = [json.loads(x) for x in store.read_text(f"{job.results_uri}/train/status.json").splitlines()]
    assert lines[-1]["status"] == "FAILURE" and "annotations.json" in lines[-1]["message"]
    assert store.exists(f"{job.results_uri}/train/experiment.yaml")


def test_killed_train_resumes_from_latest_checkpoint(env, tmp_path, local_data):
    ws = Workspace(tmp_path / "ws")
    over = {**_tiny("rtdetr", 8), "train.checkpoint_interval": 1, "train.validation_interval": 8}
    job = create_job("rtdetr", "train", automl_policy="off", workspace=ws, spec_overrides=over,
                     datasets={"train_datasets": [local_data["train"]], "eval_dataset": local_data["val"]})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        names = [a.rsplit("/", 1)[-1] for a in get_job(job.id, workspace=ws).artifacts()]
        if "model_epoch_001.pth" in names:
            break
        time.sleep(0.3)
    killed = cancel_job(job.id, workspace=ws)
    assert killed.status.value == "CANCELED"
    resumed = resume_job(job.id, workspace=ws)
    ckpt = resumed.spec["train"]["resume_training_checkpoint_path"]
    assert ckpt.startswith(job.results_uri) and "model_epoch_" in ckpt
    done_epoch = int(ckpt.rsplit("model_epoch_", 1)[1][:3])
    resumed = wait_for_job(resumed.id, timeout=400, poll_interval=0.5, workspace=ws)
    assert resumed.status.value == "SUCCESS", resumed.result.get("message")
    epochs = [e for e, _ in resumed.progress.history] or [resumed.progress.epoch]
    assert resumed.progress.epoch == 7
    lines = (Path(resumed.results_uri) / "train" / "status.json").read_text().splitlines()
    first_epoch = next(json.loads(x)["epoch"] for x in lines if '"epoch"' in x)
    assert first_epoch == done_epoch + 1, (first_epoch, done_epoch, epochs[:3])


def test_automl_through_the_cli_feeds_evaluate_and_export(env, tmp_path, local_data):
    ws_root = tmp_path / "ws"
    base = {**os.environ, "TAO_SKILLS_WORKSPACE": str(ws_root)}
    sets = []
    for key, value in _tiny("rtdetr", 1).items():  # one epoch per trial: the test is the chain
        sets += ["--set", f"{key}={json.dumps(value)}"]
    cmd = [sys.executable, "-m", "tao_sdk.cli", "--json", "run", "rtdetr", "train", "--train-dataset",
           local_data["train"], "--eval-dataset", local_data["val"], *sets, "--automl-algorithm", "random",
           "--automl-trials", "3", "--automl-param", "train.optim.lr", "--automl-concurrency", "1", "--wait"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=base)
    assert out.returncode == 0, out.stderr[-2000:]
    automl = json.loads(out.stdout)
    assert automl["kind"] == "automl" and automl["status"] == "SUCCESS"
    assert len(automl["result"]["trials"]) == 3 and automl["result"]["best_child_id"]
    trials = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "automl", "trials", automl["id"]],
                            capture_output=True, text=True, timeout=60, env=base)
    assert trials.returncode == 0 and "*" in trials.stdout
    for action, extra in (("evaluate", ["--eval-dataset", local_data["val"]]), ("export", [])):
        res = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "--json", "run", "rtdetr", action,
                              "--parent", automl["id"], *extra, "--wait"], capture_output=True, text=True,
                             timeout=300, env=base)
        assert res.returncode == 0, res.stderr[-2000:]
        job = json.loads(res.stdout)
        assert job["status"] == "SUCCESS"
        ckpt = job["spec"][action]["checkpoint"]
        assert automl["result"]["best_child_id"] in ckpt
