"""AutoML controller end to end with the TAO container test double: routing, concurrency, failures,
resume after a kill mid-trial, best-model handoff to evaluate, trial table and plot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tao_sdk import TaoSkillsError, Workspace, create_job, get_job, list_jobs, wait_for_job
from tao_sdk.automl.controller import resume_automl_job
from tao_sdk.automl.report import format_trial_table, plot_trials, trial_rows

FAKE_TAO = Path(__file__).with_name("fake_tao.py")
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
BASE = {"train.num_epochs": 3, "dataset.num_classes": 3}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "FAKE_TAO_MAP", "FAKE_TAO_FAIL_LR_ABOVE"):
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path / "ws")


def _automl(ws, **settings):
    cfg = {"algorithm": "random", "max_recommendations": 4, "max_concurrent": 2, "poll_interval": 0.1,
           "hyperparameters": ["train.optim.lr", "train.optim.weight_decay"], "seed": 3}
    cfg.update(settings)
    return create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=BASE, automl=cfg, workspace=ws)


def test_train_routes_to_automl_and_best_child_feeds_evaluate(ws, tmp_path):
    job = _automl(ws, algorithm="bayesian")
    assert job.skill == "tao-run-automl" and job.record.kind == "automl"
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    trials = list_jobs(parent_id=job.id, workspace=ws)
    assert len(trials) == 4 and all(t.record.kind == "trial" and t.action == "train" for t in trials)
    rows = trial_rows(job.record)
    assert [r["trial"] for r in rows] == [0, 1, 2, 3]
    # bayesian's first trial is the template defaults
    assert rows[0]["params"]["train.optim.lr"] == pytest.approx(1e-4)
    # the best child is the one with the best (best-epoch) metric
    values = {r["child_job"]: r["value"] for r in rows}
    assert job.result["best_child_id"] == max(values, key=values.get)
    assert job.result["best_epoch"] == 2 and job.result["best_value"] == pytest.approx(max(values.values()))
    # the AutoML job id as parent resolves to the best child's best checkpoint
    ev = create_job("rtdetr", "evaluate", parent_job_id=job.id, datasets={"eval_dataset": "/data/eval"},
                    spec_overrides={"dataset.num_classes": 3}, workspace=ws)
    best = get_job(job.result["best_child_id"], workspace=ws)
    assert ev.spec["evaluate"]["checkpoint"] == f"{best.results_uri}/train/model_epoch_002.pth"
    export = create_job("rtdetr", "export", parent_job_id=job.id, spec_overrides={"dataset.num_classes": 3},
                        workspace=ws)
    assert export.spec["export"]["checkpoint"].startswith(best.results_uri)
    # every trial fixed num_classes (user override) and searched only lr / weight decay
    for t in trials:
        assert t.spec["dataset"]["num_classes"] == 3
    table = format_trial_table(job.record)
    assert "VAL_MAP50" in table and "*" in table
    png = plot_trials(job.record, tmp_path / "trials.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_training_request_trains_directly(ws):
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=BASE, request="plain training, no HPO",
                     workspace=ws)
    assert job.skill == "tao-train-rtdetr" and job.record.kind == "job"
    assert wait_for_job(job.id, timeout=60, poll_interval=0.1, workspace=ws).status.value == "SUCCESS"


def test_failed_trials_are_recorded_never_best(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_FAIL_LR_ABOVE", "3e-4")
    job = _automl(ws, max_recommendations=6, overrides={"train.optim.lr": {"minimum": 1e-5, "maximum": 1e-2}})
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    rows = trial_rows(job.record)
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed, "the seed should sample some lr above 3e-4"
    assert all("divergence" in r["error"] and r["value"] is None for r in failed)
    best = job.result["best_child_id"]
    assert best not in {r["child_job"] for r in failed}
    assert job.status.value == "SUCCESS"


def test_unknown_hyperparameter_is_rejected_before_anything_starts(ws):
    with pytest.raises(TaoSkillsError, match="train.optim.lr"):
        _automl(ws, hyperparameters=["train.optim.lrr"])
    assert list_jobs(workspace=ws) == []


def test_resume_after_controller_kill_mid_trial(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.7")
    job = _automl(ws, max_recommendations=4, max_concurrent=1)
    # wait until the first trial is running, then kill the controller (SIGKILL: no clean-up)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = ws.store.get(job.id)
        if any(t["status"] == "running" for t in (rec.result.get("trials") or {}).values()):
            break
        time.sleep(0.05)
    os.killpg(job.record.platform_handle["pgid"], signal.SIGKILL)
    time.sleep(0.5)
    interrupted = get_job(job.id, workspace=ws)
    assert interrupted.status.value == "RUNNING" and interrupted.result["interrupted"]
    with pytest.raises(TaoSkillsError, match="automl resume"):
        wait_for_job(job.id, timeout=5, poll_interval=0.1, workspace=ws)
    trials_before = dict(interrupted.result["trials"])
    # the running trial survived the controller and is re-attached, not re-run
    resumed = resume_automl_job(job.id, workspace=ws)
    assert resumed.status.value == "RUNNING"
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    children = list_jobs(parent_id=job.id, workspace=ws)
    assert len(children) == 4  # no trial lost or repeated
    rows = trial_rows(job.record)
    assert [r["trial"] for r in rows] == [0, 1, 2, 3]
    for key, entry in trials_before.items():
        assert job.result["trials"][key]["child_id"] == entry["child_id"]
    with pytest.raises(TaoSkillsError, match="already ended"):
        resume_automl_job(job.id, workspace=ws)


def test_cli_trials_json(ws, monkeypatch):
    job = wait_for_job(_automl(ws, max_recommendations=2).id, timeout=120, poll_interval=0.2, workspace=ws)
    out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "automl", "trials", job.id, "--json"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TAO_SKILLS_WORKSPACE": str(ws.root)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["best_child_id"] == job.result["best_child_id"] and len(data["trials"]) == 2


def test_early_stop_cuts_hopeless_trials(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.3")
    monkeypatch.setenv("FAKE_TAO_EPOCHS", "")
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides={**BASE, "train.num_epochs": 5},
                     workspace=ws, automl={"algorithm": "random", "max_recommendations": 8, "max_concurrent": 1,
                                           "poll_interval": 0.1, "hyperparameters": ["train.optim.lr"],
                                           "overrides": {"train.optim.lr": {"minimum": 1e-7, "maximum": 1e-1}},
                                           "early_stop": True, "seed": 11})
    job = wait_for_job(job.id, timeout=180, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS"
    entries = list(job.result["trials"].values())
    stopped = [e for e in entries if e.get("early_stopped")]
    assert stopped, [(e["params"], e["value"]) for e in entries]
    for e in stopped:
        assert e["status"] == "ok" and e["epochs"] < 5  # recorded with its best-so-far value, not as a failure
    best = job.result["best_child_id"]
    assert best not in {e["child_id"] for e in stopped}


def test_progress_line_and_status_cli(ws):
    from tao_sdk.automl.report import progress_line

    job = wait_for_job(_automl(ws, max_recommendations=2).id, timeout=120, poll_interval=0.2, workspace=ws)
    line = progress_line(job.record)
    assert line.startswith("automl random: 2 trial(s) done of 2 planned, 0 running, best val_mAP50=")
    out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "status", job.id], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "TAO_SKILLS_WORKSPACE": str(ws.root)})
    assert out.returncode == 0 and "2 trial(s) done" in out.stdout


def _kill_when(ws, job, predicate, timeout=90):
    """SIGKILL the controller (no clean-up) once ``predicate(trial entries)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = list((ws.store.get(job.id).result.get("trials") or {}).values())
        if predicate(trials):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the awaited trial never started")
    os.killpg(job.record.platform_handle["pgid"], signal.SIGKILL)
    time.sleep(0.3)
    return {k: dict(v) for k, v in ws.store.get(job.id).result["trials"].items()}


def _trained_epochs(log: Path) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines()]


def _assert_continued_without_retraining(ws, job, log: Path, before: dict) -> list[dict]:
    """Every trial trained exactly epochs resume_epochs..budget-1, from the checkpoint of the trial it continues."""
    trials = job.result["trials"]
    assert sorted(int(k) for k in trials) == list(range(len(trials)))          # no trial lost
    assert len(list_jobs(parent_id=job.id, workspace=ws)) == len(trials)      # ... or repeated
    for key, entry in before.items():
        assert trials[key]["child_id"] == entry["child_id"]
    trained = _trained_epochs(log)
    assert len(trained) == len(set(trained))                                   # no epoch trained twice
    assert job.result["epochs_trained"] == len(trained)
    by_dir: dict[str, list[int]] = {}
    for folder, epoch in trained:
        by_dir.setdefault(folder, []).append(epoch)
    entries = sorted(trials.values(), key=lambda e: e["trial_id"])
    for e in entries:
        child = get_job(e["child_id"], workspace=ws)
        start = e["resume_epochs"] if e["resume_from_trial"] is not None else 0
        assert by_dir[child.results_uri] == list(range(start, e["budget_epochs"])), e
        assert e["epochs_trained"] == e["budget_epochs"] - start
        if e["resume_from_trial"] is not None:
            source = get_job(trials[str(e["resume_from_trial"])]["child_id"], workspace=ws)
            ckpt = child.spec["train"]["resume_training_checkpoint_path"]
            assert ckpt == f"{source.results_uri}/train/model_epoch_{start - 1:03d}.pth"
            assert e["resume_checkpoint"] == ckpt
    return entries


@pytest.mark.slow
def test_promoted_trials_continue_their_checkpoint_across_a_controller_kill(ws, monkeypatch, tmp_path):
    log = tmp_path / "epochs.log"
    monkeypatch.setenv("FAKE_TAO_EPOCH_LOG", str(log))
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.4")
    job = _automl(ws, algorithm="hyperband", max_epochs=3, reduction_factor=3, max_concurrent=2)
    before = _kill_when(ws, job, lambda ts: any(t["resume_from_trial"] is not None and t["status"] == "running"
                                                 for t in ts))
    assert get_job(job.id, workspace=ws).result["interrupted"]
    resume_automl_job(job.id, workspace=ws)
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    entries = _assert_continued_without_retraining(ws, job, log, before)
    # hyperband R=3, eta=3: 3 x 1 epoch, the best continued to 3 (2 more epochs), 2 x 3 epochs
    assert [e["budget_epochs"] for e in entries] == [1, 1, 1, 3, 3, 3]
    assert sum(e["resume_from_trial"] is not None for e in entries) == 1
    assert job.result["epochs_trained"] == 3 + 2 + 6


@pytest.mark.slow
def test_pbt_members_copy_and_continue_checkpoints_across_a_controller_kill(ws, monkeypatch, tmp_path):
    log = tmp_path / "epochs.log"
    monkeypatch.setenv("FAKE_TAO_EPOCH_LOG", str(log))
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.4")
    job = _automl(ws, algorithm="pbt", max_recommendations=3, max_concurrent=3)   # 3 generations of 1 epoch
    before = _kill_when(ws, job, lambda ts: any(t["rung"] == 1 and t["status"] == "running" for t in ts))
    resume_automl_job(job.id, workspace=ws)
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    entries = _assert_continued_without_retraining(ws, job, log, before)
    assert [e["rung"] for e in entries] == [0] * 3 + [1] * 3 + [2] * 3
    assert job.result["epochs_trained"] == 3 * 3                     # each member: 3 epochs, none twice
    exploits = [e for e in entries if e["info"]["source"].startswith("exploit")]
    assert len(exploits) == 2 and all(e["params"] != job.result["trials"][str(e["resume_from_trial"])]["params"]
                                      for e in exploits)
    assert entries[job.result["best_trial"]]["rung"] == 2


def test_trials_nest_their_mlflow_runs_under_the_automl_run(ws, monkeypatch, tmp_path, mlflow_store):
    mlflow = pytest.importorskip("mlflow")
    dump = tmp_path / "trial_env.json"
    monkeypatch.setenv("FAKE_TAO_DUMP_ENV", str(dump))
    job = wait_for_job(_automl(ws, max_recommendations=2).id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    client = mlflow.tracking.MlflowClient(mlflow_store)
    parent = client.get_run(job.result["mlflow_run_id"])
    assert parent.data.tags["tao.job_id"] == job.id and parent.info.status == "FINISHED"
    assert parent.data.metrics[f"best/{job.result['metric']}"] == pytest.approx(job.result["best_value"])
    assert json.loads(dump.read_text())["TAO_MLFLOW_PARENT_RUN_ID"] == parent.info.run_id
