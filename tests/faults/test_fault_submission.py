"""Case 2 and 7: a SIGKILL at any point of a submission (plain and AutoML) leaves records that
reach a terminal state matching what really ran; cancel refreshes first and stops what runs.

The submitting process is killed by tests/faults/inject/sitecustomize.py at a chosen point; the
job is the TAO container test double (tests/fake_tao.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tao_sdk import Workspace, cancel_job, create_job, get_job, list_jobs, wait_for_job
from tao_sdk.automl.controller import resume_automl_job

from .conftest import REPO_ROOT, alive, wait_for

FAKE_TAO = REPO_ROOT / "tests" / "fake_tao.py"
INJECT = Path(__file__).with_name("inject")
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
OVERRIDES = {"train.num_epochs": 2, "dataset.num_classes": 3}
POINTS = ("after_create", "before_start", "after_start")


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "FAKE_TAO_MAP", "TAO_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(INJECT), str(REPO_ROOT)]))
    monkeypatch.setenv("TAO_FAULT_ONCE", str(tmp_path / "fault-fired"))
    return Workspace(tmp_path / "ws")


def _submit_and_die(ws: Workspace, point: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        # fault_submitter
        from tao_sdk import Workspace, create_job
        create_job("rtdetr", "train", datasets={DATASETS!r}, spec_overrides={OVERRIDES!r},
                   automl_policy="off", workspace=Workspace({str(ws.root)!r}))
    """)
    env = {**os.environ, "TAO_FAULT_POINT": point, "TAO_FAULT_PROC": "fault_submitter"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _status_lines(record) -> list[dict]:
    path = Path(record.results_uri) / "train" / "status.json"
    return [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []


@pytest.mark.parametrize("point", POINTS)
def test_sdk_killed_mid_submission_leaves_a_true_terminal_record(ws, point):
    proc = _submit_and_die(ws, point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [record] = ws.store.list()
    assert record.status.value == "PENDING" and not record.platform_handle  # the crash window
    job = wait_for_job(record.id, timeout=60, poll_interval=0.1, workspace=ws)
    lines = _status_lines(job.record)
    if point == "after_start":  # it ran: adopted through the handle its supervisor wrote
        assert job.status.value == "SUCCESS", job.result
        assert lines[-1]["status"] == "SUCCESS"
    else:  # it never started, and never will
        assert job.status.value == "FAILURE" and job.result["never_started"], job.result
        assert "submission interrupted" in job.result["message"]
        assert lines == []
        time.sleep(0.3)
        assert not (ws.job_dir(record.id) / "handle.json").exists()


def test_cancel_stops_an_orphan_that_started(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    assert _submit_and_die(ws, "after_start").returncode == -signal.SIGKILL
    [record] = ws.store.list()
    handle = wait_for(lambda: json.loads((ws.job_dir(record.id) / "handle.json").read_text()), 10, "the handle")
    wait_for(lambda: len(_status_lines(record)) >= 1, 30, "the job to start")
    start = time.monotonic()
    job = cancel_job(record.id, workspace=ws)
    assert job.status.value == "CANCELED"
    assert not alive(handle["pid"]) and time.monotonic() - start < 15


def test_submit_that_raises_after_the_job_started_adopts_it(ws, monkeypatch):
    """Issue 24: an OSError inside the platform's submit after the job announced itself: the job
    is adopted (record RUNNING with its handle, a warning says why), and cancel stops it."""
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    proc = _submit_and_die(ws, "oserror_after_start")
    assert proc.returncode == 0, proc.stderr
    [record] = ws.store.list()
    handle = record.platform_handle
    assert record.status.value == "RUNNING" and handle["pid"] and alive(handle["pid"]), record.result
    assert "raised OSError: [Errno 5] injected I/O error after the job started" in record.result["warnings"][-1]
    assert get_job(record.id, workspace=ws).status.value == "RUNNING"
    job = cancel_job(record.id, workspace=ws)
    assert job.status.value == "CANCELED" and not alive(handle["pid"])


def test_submit_refused_after_the_job_started_stops_it(ws, monkeypatch):
    """A PlatformError after the start means the job must not run: it is stopped, and the record
    (FAILURE, with the handle) agrees with the process (gone, no SUCCESS line)."""
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    proc = _submit_and_die(ws, "platform_error_after_start")
    assert proc.returncode == 1 and "PlatformError" in proc.stderr
    [record] = ws.store.list()
    assert record.status.value == "FAILURE", record.result
    assert record.result["message"].endswith("it had started and was stopped"), record.result["message"]
    assert not alive(record.platform_handle["pid"])
    assert all(line["status"] != "SUCCESS" for line in _status_lines(record))


def test_cancel_after_a_clean_exit_keeps_success(ws):
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                     workspace=ws)
    exit_status = Path(job.record.platform_handle["exit_status_path"])
    wait_for(exit_status.exists, 30, "the job to exit")  # no refresh of the record meanwhile
    assert ws.store.get(job.id).status.value == "RUNNING"
    job = cancel_job(job.id, workspace=ws)
    assert job.status.value == "SUCCESS" and job.result["exit_code"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_create", "after_start"])
def test_automl_controller_killed_mid_trial_submission_resumes_exactly(ws, point, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    monkeypatch.setenv("TAO_FAULT_POINT", point)
    monkeypatch.setenv("TAO_FAULT_PROC", "tao_sdk.automl.controller")
    cfg = {"algorithm": "random", "max_recommendations": 1, "max_concurrent": 1, "poll_interval": 0.1,
           "hyperparameters": ["train.optim.lr"], "seed": 3}
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl=cfg, workspace=ws)
    handle = job.record.platform_handle
    wait_for(lambda: Path(os.environ["TAO_FAULT_ONCE"]).exists() and not alive(handle["pid"]), 60,
             "the controller to be killed mid-submission")
    trials = ws.store.get(job.id).result["trials"]
    assert [t["status"] for t in trials.values()] == ["submitting"]
    monkeypatch.delenv("TAO_FAULT_POINT")
    resume_automl_job(job.id, workspace=ws)
    job = wait_for_job(job.id, timeout=90, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    trials = job.result["trials"]
    assert len(trials) == 1 and all(t["status"] == "ok" for t in trials.values()), json.dumps(trials)
    children = list_jobs(parent_id=job.id, workspace=ws)
    assert all(c.status.is_terminal for c in children)
    orphans = [c for c in children if c.result.get("never_started")]
    if point == "after_create":  # the lost child never ran; the trial ran again under a new id
        assert len(orphans) == 1 and len(children) == 2
        assert orphans[0].id not in {t["child_id"] for t in trials.values()}
    else:  # the started child was adopted, not run twice
        assert not orphans and len(children) == 1
    for child in children:
        assert get_job(child.id, workspace=ws).status.value == ("FAILURE" if child in orphans else "SUCCESS")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_start", "after_start"])
def test_sdk_killed_while_creating_an_automl_job(ws, point, monkeypatch):
    """The AutoML job's own record: its controller never started (FAILURE, never_started) or it
    started and is adopted and runs to the end."""
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    cfg = {"algorithm": "random", "max_recommendations": 1, "max_concurrent": 1, "poll_interval": 0.1,
           "hyperparameters": ["train.optim.lr"], "seed": 3}
    code = textwrap.dedent(f"""
        # fault_submitter
        from tao_sdk import Workspace, create_job
        create_job("rtdetr", "train", datasets={DATASETS!r}, spec_overrides={OVERRIDES!r}, automl={cfg!r},
                   workspace=Workspace({str(ws.root)!r}))
    """)
    env = {**os.environ, "TAO_FAULT_POINT": point, "TAO_FAULT_PROC": "fault_submitter"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [record] = ws.store.list()
    assert record.kind == "automl" and record.status.value == "PENDING" and not record.platform_handle
    job = wait_for_job(record.id, timeout=90, poll_interval=0.2, workspace=ws)
    if point == "after_start":
        assert job.status.value == "SUCCESS", job.result.get("message")
        assert [c.status.value for c in list_jobs(parent_id=job.id, workspace=ws)] == ["SUCCESS"]
    else:
        assert job.status.value == "FAILURE" and job.result["never_started"]
        assert list_jobs(parent_id=job.id, workspace=ws) == []


@pytest.mark.slow
def test_controller_killed_while_submitting_a_continuing_trial_counts_only_trained_epochs(ws, monkeypatch,
                                                                                          tmp_path):
    """PBT's second generation continues the first's checkpoints. The controller dies right after
    starting the first continuing child (4th submission), before recording it as running: after
    resume that trial still records the checkpoint it continues, and the epochs AutoML reports as
    trained are exactly the epochs the children trained."""
    log = tmp_path / "epochs.log"
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    monkeypatch.setenv("FAKE_TAO_EPOCH_LOG", str(log))
    monkeypatch.setenv("TAO_FAULT_POINT", "after_start")
    monkeypatch.setenv("TAO_FAULT_SKIP", "3")
    monkeypatch.setenv("TAO_FAULT_PROC", "tao_sdk.automl.controller")
    cfg = {"algorithm": "pbt", "max_recommendations": 2, "max_concurrent": 3, "poll_interval": 0.1,
           "hyperparameters": ["train.optim.lr"], "seed": 3}
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides={**OVERRIDES, "train.num_epochs": 3},
                     automl=cfg, workspace=ws)
    handle = job.record.platform_handle
    wait_for(lambda: Path(os.environ["TAO_FAULT_ONCE"]).exists() and not alive(handle["pid"]), 90,
             "the controller to be killed mid-submission")
    trials = ws.store.get(job.id).result["trials"]
    cut = [t for t in trials.values() if t["status"] == "submitting"]
    assert len(cut) == 1 and cut[0]["resume_from_trial"] is not None, json.dumps(trials)
    monkeypatch.delenv("TAO_FAULT_POINT")
    resume_automl_job(job.id, workspace=ws)
    job = wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    trained = log.read_text().splitlines()
    assert len(trained) == len(set(trained)) and job.result["epochs_trained"] == len(trained)
    for entry in job.result["trials"].values():
        if entry["resume_from_trial"] is None:
            continue
        child = get_job(entry["child_id"], workspace=ws)
        assert entry["resume_checkpoint"] == child.spec["train"]["resume_training_checkpoint_path"]
        assert entry["epochs_trained"] == entry["budget_epochs"] - entry["resume_epochs"]
