"""Jobs end to end on the local platform, with a TAO container test double (tests/fake_tao.py).

Real subprocesses, a real SQLite job store, local storage and S3 through a moto server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tao_sdk import (
    ParentModelError,
    PlatformError,
    SpecValidationError,
    Workspace,
    cancel_job,
    create_job,
    get_job,
    job_logs,
    list_jobs,
    wait_for_job,
)
from tao_sdk.jobs import worker_command

FAKE_TAO = Path(__file__).with_name("fake_tao.py")
REPO = Path(__file__).resolve().parents[1]
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
TRAIN_OVERRIDES = {"train.num_epochs": 5, "dataset.num_classes": 3}
SECRET_KEY = "s3cr3t-model-key-123"


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.delenv("TAO_ENCRYPTION_KEY", raising=False)
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "FAKE_TAO_MAP", "FAKE_TAO_DUMP_ENV"):
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path / "ws")


def _train(ws: Workspace, **kw) -> object:
    return create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN_OVERRIDES, automl_policy="off",
                      workspace=ws, **kw)


def test_train_evaluate_export_trt_chain(ws):
    train = _train(ws)
    assert train.status.value == "RUNNING" and train.results_uri.endswith(train.id)
    seen = []
    train = wait_for_job(train.id, timeout=60, poll_interval=0.1, on_progress=seen.append, workspace=ws)
    assert train.status.value == "SUCCESS", train.result
    assert train.kpis["val_mAP50"] == pytest.approx(0.55)  # latest KPIs
    assert train.progress.epoch == 4 and train.progress.max_epoch == 4
    assert any(a.endswith("train/model_epoch_002.pth") for a in train.artifacts())
    assert seen and seen[-1].status.value == "SUCCESS"

    # evaluate of a train parent -> the BEST checkpoint by val_mAP50 (epoch 2: 0.7), not the last
    ev = create_job("rtdetr", "evaluate", parent_job_id=train.id, datasets={"eval_dataset": "/data/eval"},
                    spec_overrides={"dataset.num_classes": 3}, workspace=ws)
    assert ev.spec["evaluate"]["checkpoint"].endswith("train/model_epoch_002.pth")
    assert ev.spec["results_dir"] == ev.results_uri
    assert ev.parent_id == train.id
    ev = wait_for_job(ev.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert ev.status.value == "SUCCESS" and ev.kpis["test_mAP50"] == pytest.approx(0.61)

    export = create_job("rtdetr", "export", parent_job_id=train.id, spec_overrides={"dataset.num_classes": 3},
                        workspace=ws)
    assert export.spec["export"]["checkpoint"].endswith("model_epoch_002.pth")
    assert export.spec["export"]["onnx_file"] == f"{export.results_uri}/model.onnx"
    export = wait_for_job(export.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert export.status.value == "SUCCESS"

    # gen_trt_engine of an export parent -> its .onnx; engine + cal cache in its own results
    trt = create_job("rtdetr", "gen_trt_engine", parent_job_id=export.id,
                     datasets={"calibration_dataset": "/data/train"}, workspace=ws)
    gte = trt.spec["gen_trt_engine"]
    assert gte["onnx_file"] == f"{export.results_uri}/model.onnx"
    assert gte["trt_engine"] == f"{trt.results_uri}/model.engine"
    assert gte["tensorrt"]["calibration"]["cal_cache_file"] == f"{trt.results_uri}/cal.bin"
    assert gte["tensorrt"]["calibration"]["cal_image_dir"] == ["/data/train/images.tar.gz"]
    trt = wait_for_job(trt.id, timeout=60, poll_interval=0.1, workspace=ws)

    # TensorRT evaluate of a gen_trt_engine parent -> the .engine, no checkpoint needed
    trt_eval = create_job("rtdetr", "evaluate", parent_job_id=trt.id, datasets={"eval_dataset": "/data/eval"},
                          spec_overrides={"dataset.num_classes": 3}, workspace=ws)
    assert trt_eval.spec["evaluate"]["trt_engine"] == f"{trt.results_uri}/model.engine"
    assert "checkpoint" not in trt_eval.spec["evaluate"]
    trt_eval = wait_for_job(trt_eval.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert trt_eval.status.value == "SUCCESS" and trt_eval.kpis["test_mAP50"] == pytest.approx(0.61)

    ids = [j.id for j in list_jobs(workspace=ws)]
    assert set(ids) == {train.id, ev.id, export.id, trt.id, trt_eval.id}
    assert [j.id for j in list_jobs(parent_id=train.id, workspace=ws)] == [export.id, ev.id]


def test_parent_errors(ws, monkeypatch):
    with pytest.raises(SpecValidationError, match="parent_job_id"):
        create_job("rtdetr", "evaluate", datasets={"eval_dataset": "/d"}, workspace=ws)
    monkeypatch.setenv("FAKE_TAO_SLEEP", "5")
    running = _train(ws)
    try:
        with pytest.raises(ParentModelError, match="still RUNNING"):
            create_job("rtdetr", "evaluate", parent_job_id=running.id, datasets={"eval_dataset": "/d"}, workspace=ws)
    finally:
        cancel_job(running.id, workspace=ws)
    # export parent cannot feed evaluate (needs a checkpoint or an engine)
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0")
    train = wait_for_job(_train(ws).id, timeout=60, poll_interval=0.1, workspace=ws)
    export = create_job("rtdetr", "export", parent_job_id=train.id, workspace=ws)
    export = wait_for_job(export.id, timeout=60, poll_interval=0.1, workspace=ws)
    with pytest.raises(ParentModelError, match="evaluate"):
        create_job("rtdetr", "evaluate", parent_job_id=export.id, datasets={"eval_dataset": "/d"}, workspace=ws)
    # a parent whose results hold no checkpoint: error names the job, the folder and what was found
    empty = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN_OVERRIDES, automl_policy="off",
                       workspace=ws)
    wait_for_job(empty.id, timeout=60, poll_interval=0.1, workspace=ws)
    for f in Path(empty.results_uri, "train").glob("*.pth"):
        f.unlink()
    with pytest.raises(ParentModelError) as err:
        create_job("rtdetr", "export", parent_job_id=empty.id, workspace=ws)
    assert empty.id in str(err.value) and empty.results_uri in str(err.value) and "status.json" in str(err.value)


def test_failure_keeps_message_and_partial_results(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_FAIL", "1")
    job = wait_for_job(_train(ws).id, timeout=60, poll_interval=0.1, workspace=ws)
    assert job.status.value == "FAILURE"
    assert "Simulated CUDA out of memory" in job.result["message"]
    assert job.result["exit_code"] == 1
    assert any(a.endswith("model_epoch_000.pth") for a in job.artifacts())
    assert "epoch 0 done" in job_logs(job.id, workspace=ws)


def test_cancel_kills_the_job(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    job = _train(ws)
    pgid = job.record.platform_handle["pgid"]
    job = cancel_job(job.id, workspace=ws)
    assert job.status.value == "CANCELED"
    from tao_sdk.platforms.local import _group_alive

    assert not _group_alive(pgid)  # no live process of the job's group is left (zombies aside)
    assert get_job(job.id, workspace=ws).status.value == "CANCELED"  # never regresses


def test_reattach_after_sdk_restart(ws, tmp_path, monkeypatch):
    """A job created by one SDK process is tracked to the end by another one."""
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.5")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tao_sdk import create_job, Workspace
        job = create_job("rtdetr", "train", datasets={DATASETS!r}, spec_overrides={TRAIN_OVERRIDES!r},
                         automl_policy="off", workspace=Workspace({str(ws.root)!r}))
        print(job.id)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    fresh = Workspace(ws.root)  # a new SDK "process": new store connection, new platform instance
    assert get_job(job_id, workspace=fresh).status.value == "RUNNING"
    job = wait_for_job(job_id, timeout=60, poll_interval=0.2, workspace=fresh)
    assert job.status.value == "SUCCESS" and job.progress.epoch == 4


def test_secrets_never_stored_or_printed(ws, tmp_path, monkeypatch):
    dump = tmp_path / "env.json"
    monkeypatch.setenv("FAKE_TAO_DUMP_ENV", str(dump))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-xyz")
    job = wait_for_job(_train(ws, encryption_key=SECRET_KEY).id, timeout=60, poll_interval=0.1, workspace=ws)
    assert job.status.value == "SUCCESS"
    env = json.loads(dump.read_text())
    assert env["TAO_ENCRYPTION_KEY"] == SECRET_KEY  # the job gets it by environment
    spec_file = yaml.safe_load((ws.job_dir(job.id) / "spec.yaml").read_text())
    assert spec_file["encryption_key"] == "${oc.env:TAO_ENCRYPTION_KEY}"
    haystacks = [p for p in ws.root.rglob("*") if p.is_file()]
    assert haystacks
    for path in haystacks:
        data = path.read_bytes()
        assert SECRET_KEY.encode() not in data, path
        assert b"aws-secret-xyz" not in data, path
    cli = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "status", job.id, "--json"], capture_output=True,
                         text=True, env={**os.environ, "TAO_SKILLS_WORKSPACE": str(ws.root)}, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert SECRET_KEY not in cli.stdout and "aws-secret-xyz" not in cli.stdout


def test_worker_command_selection(monkeypatch, tmp_path):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tao_sdk.worker", "torch")
                        else real(name, *a))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PlatformError, match="nothing can run 'rtdetr train'"):
        worker_command("rtdetr", "train", "/s.yaml")
    entry = tmp_path / "rtdetr"
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    assert worker_command("rtdetr", "train", "/s.yaml") == [str(entry), "train", "-e", "/s.yaml"]


def test_s3_results_and_parent_selection(tmp_path, monkeypatch, s3_env):
    bucket = s3_env
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.setenv("FAKE_TAO_MAP", "0.1,0.9,0.3")
    monkeypatch.setenv("FAKE_TAO_EPOCHS", "3")
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{bucket}/tao")
    train = _train(ws)
    assert train.results_uri == f"s3://{bucket}/tao/results/{train.id}"
    train = wait_for_job(train.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert train.status.value == "SUCCESS", train.result
    assert train.kpis["val_mAP50"] == pytest.approx(0.3)
    ev = create_job("rtdetr", "inference", parent_job_id=train.id, datasets={"inference_dataset": f"s3://{bucket}/d"},
                    spec_overrides={"dataset.num_classes": 3}, workspace=ws)
    assert ev.spec["inference"]["checkpoint"] == f"s3://{bucket}/tao/results/{train.id}/train/model_epoch_001.pth"
    assert ev.spec["dataset"]["infer_data_sources"]["image_dir"] == [f"s3://{bucket}/d/images.tar.gz"]


def test_downstream_jobs_inherit_model_and_preprocessing_from_train(ws):
    overrides = {**TRAIN_OVERRIDES, "model.num_queries": 20, "model.num_select": 20,
                 "dataset.augmentation.eval_spatial_size": [128, 128], "model.pretrained_backbone_path": "/ptm.pth"}
    train = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=overrides, automl_policy="off",
                       workspace=ws)
    train = wait_for_job(train.id, timeout=60, poll_interval=0.1, workspace=ws)
    ev = create_job("rtdetr", "evaluate", parent_job_id=train.id, datasets={"eval_dataset": "/data/eval"},
                    spec_overrides={"model.num_select": 10}, workspace=ws)
    assert ev.spec["model"]["num_queries"] == 20          # inherited
    assert ev.spec["model"]["num_select"] == 10           # the user's value wins
    assert ev.spec["dataset"]["num_classes"] == 3
    assert ev.spec["dataset"]["augmentation"]["eval_spatial_size"] == [128, 128]
    assert "pretrained_backbone_path" not in ev.spec["model"]  # not part of the evaluate schema
    assert any("inherited" in n for n in ev.result["notes"])
    # through export -> gen_trt_engine -> TensorRT evaluate, the train job is still the source
    export = wait_for_job(create_job("rtdetr", "export", parent_job_id=train.id, workspace=ws).id, timeout=60,
                          poll_interval=0.1, workspace=ws)
    trt = wait_for_job(create_job("rtdetr", "gen_trt_engine", parent_job_id=export.id,
                                  datasets={"calibration_dataset": "/data/train"}, workspace=ws).id,
                       timeout=60, poll_interval=0.1, workspace=ws)
    trt_eval = create_job("rtdetr", "evaluate", parent_job_id=trt.id, datasets={"eval_dataset": "/data/eval"},
                          workspace=ws)
    assert trt_eval.spec["model"]["num_queries"] == 20 and trt_eval.spec["dataset"]["num_classes"] == 3
