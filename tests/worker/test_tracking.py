"""Experiment tracking of train jobs (tao_sdk.worker.tracking) with the real packages: a tiny
1-epoch train job of every seed network with W&B (offline), TensorBoard and MLflow (SQLite
store) on at once; each tracker is read back and must hold the scalars of status.json."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.worker.conftest import run_job

pytest.importorskip("torch")
wandb = pytest.importorskip("wandb")
pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")

SECRET = "wandbkey-0123456789abcdef0123456789abcdef"
NETWORKS = ("rtdetr", "deformable_detr", "oneformer", "depth_net")


def wandb_history(run_dir: Path) -> list[dict]:
    """The history rows of an offline W&B run, read from its ``.wandb`` file (LevelDB log
    format: 7-byte header, 32 KiB blocks of records ``crc32c(4) length(2) type(1) data``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = next(run_dir.glob("*.wandb")).read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, chunks, rows = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        room = block - pos % block
        if room < 7:
            pos += room
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4:pos + 7])
        chunks += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                             for i in record.history.item})
    return rows


def tensorboard_last(logdir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize("network", NETWORKS)
def test_all_trackers_hold_the_status_scalars(network, tmp_path, monkeypatch, mlflow_store):
    from tao_sdk.worker.registry import get

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("TAO_SKILLS_JOB_ID", f"job-{network}")
    plugin = get(network)
    data = plugin.task.write_synthetic(tmp_path / "data", 4, 2, 64)
    spec = plugin.task.tiny_spec(plugin, data, str(tmp_path / "results"), 64, 1)
    spec["wandb"] = {"enable": True, "project": "tiny", "group": "g", "tags": ["t1"],
                     "name": f"tiny-{network}"}
    code, lines = run_job(network, "train", spec, tmp_path)
    assert code == 0, lines[-1]
    epoch_line = [ln for ln in lines if ln.get("epoch") == 0 and ln.get("kpi")][-1]
    kpi = {k: float(v) for k, v in epoch_line["kpi"].items()}
    task = tmp_path / "results" / "train"
    assert not any("wandb.enable=" in ln["message"] for ln in lines)  # honoured now

    board = tensorboard_last(task / "tensorboard")
    assert {k: board[k] for k in kpi} == pytest.approx(kpi)
    assert "train/loss_step" in board and "lr" in board

    client = mlflow.tracking.MlflowClient(mlflow_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`tao.job_id` = 'job-{network}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    assert {k: metrics[k] for k in kpi} == pytest.approx(kpi)
    assert metrics["final/train_loss"] == pytest.approx(kpi["train_loss"])
    assert runs[0].data.params["system.device"] == "cpu"
    assert runs[0].data.params["encryption_key"] == "***"

    run_dir = next((task / "wandb").glob("offline-run-*"))
    rows = wandb_history(run_dir)
    last = {k: v for row in rows for k, v in row.items()}
    assert {k: last[k] for k in kpi} == pytest.approx(kpi)
    assert sum("train/loss_step" in row for row in rows) >= 1
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked, f"WANDB_API_KEY in {leaked}"


def _info(tmp_path, spec):
    from tao_sdk.worker.tracking import RunInfo

    return RunInfo(spec=spec, task_dir=tmp_path, job_id="j", network="rtdetr", action="train")


def test_wandb_without_login_is_a_note_and_off_when_disabled(tmp_path, monkeypatch):
    from tao_sdk.worker.tracking import TRACKERS

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker, note = TRACKERS["wandb"](_info(tmp_path, {"wandb": {"enable": True}}))
    assert tracker is None and "WANDB_API_KEY" in note and "wandb.enable=false" in note
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert TRACKERS["wandb"](_info(tmp_path, {"wandb": {"enable": True}}))[0] is None
    assert TRACKERS["wandb"](_info(tmp_path, {"wandb": {"enable": False}})) == (None, "")
    monkeypatch.setenv("TAO_WORKER_TENSORBOARD", "0")
    assert TRACKERS["tensorboard"](_info(tmp_path, {})) == (None, "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert TRACKERS["mlflow"](_info(tmp_path, {})) == (None, "")


def test_other_ranks_track_nothing(tmp_path):
    from types import SimpleNamespace

    from tao_sdk.worker.tracking import open_tracking

    ctx = SimpleNamespace(main=False, spec={"wandb": {"enable": True}}, task_dir=tmp_path,
                          network="rtdetr", action="train")
    tracking = open_tracking(ctx, {})
    assert tracking.trackers == [] and tracking.notes == []


def test_a_failed_job_closes_its_runs_as_failed_once(tmp_path, monkeypatch, mlflow_store):
    from types import SimpleNamespace

    from tao_sdk.worker.tracking import open_tracking

    monkeypatch.setenv("TAO_SKILLS_JOB_ID", "job-failed")
    ctx = SimpleNamespace(main=True, spec={"wandb": {"enable": False}, "encryption_key": "k"},
                          task_dir=tmp_path / "train", network="rtdetr", action="train")
    tracking = open_tracking(ctx, {"device": "cpu"})
    assert [t.name for t in tracking.trackers] == ["tensorboard", "mlflow"]
    optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}, {"lr": 0.01}])
    tracking.step(1, 2.5, optimizer)
    tracking.finish({"train_loss": 2.5}, None, ok=False)
    tracking.finish({}, None, ok=True)  # the engine's finally: already closed, no-op
    client = mlflow.tracking.MlflowClient(mlflow_store)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.info.status == "FAILED" and run.data.metrics["lr/group_1"] == pytest.approx(0.01)
    assert tensorboard_last(tmp_path / "train" / "tensorboard")["train/loss_step"] == pytest.approx(2.5)
