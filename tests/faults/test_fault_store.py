"""Issue 24, a damaged job store: a store whose first bytes were zeroed, one that fails SQLite's
integrity check, one emptied (0 bytes) while job folders exist. Each is detected with one line
that says what to do (CLI exit 2); ``tao-skills jobs --recover`` / ``recover_job_store`` move the
damaged file aside (never delete it) and rebuild the records from the job folders, adopting what
still runs. A submission that gives up on a locked store leaves no job folder behind."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tao_sdk import Workspace, cancel_job, create_job, recover_job_store, wait_for_job
from tao_sdk.errors import JobStoreDamagedError, TaoSkillsError
from tao_sdk.jobstore import JobRecord, JobStore

from .conftest import REPO_ROOT, alive, wait_for

FAKE_TAO = REPO_ROOT / "tests" / "fake_tao.py"
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
OVERRIDES = {"train.num_epochs": 1, "dataset.num_classes": 3}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "FAKE_TAO_MAP", "TAO_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    return Workspace(tmp_path / "ws")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tao_sdk.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


def test_zeroed_store_says_recover_and_recover_rebuilds_it(ws):
    done = wait_for_job(create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES,
                                   automl_policy="off", workspace=ws).id, timeout=60, poll_interval=0.1, workspace=ws)
    assert done.status.value == "SUCCESS"
    db = ws.root / "jobs.db"
    ws.store.close()
    with open(db, "r+b") as fh:
        fh.write(b"\0" * 100)
    damaged = db.read_bytes()
    for args in (["jobs"], ["run", "rtdetr", "train", "--automl-policy", "off", "--train-dataset", "/data/train",
                            "--eval-dataset", "/data/eval", "--set", "dataset.num_classes=3"]):
        line = _one_line_error(_cli(*args))
        assert line == (f"error: job store {db} is damaged (file is not a database); run `tao-skills jobs --recover` "
                        "(Python: tao_sdk.recover_job_store()) to move it aside as jobs.db.damaged-<time> and "
                        f"rebuild the records from the job folders in {ws.root / 'jobs'}"), line
    proc = _cli("--json", "jobs", "--recover")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [aside] = [Path(p) for p in out["moved_aside"] if not p.endswith(("-wal", "-shm"))]
    assert aside.name.startswith("jobs.db.damaged-") and aside.read_bytes() == damaged  # moved, not deleted
    assert out["recovered"] == [{"id": done.id, "skill": "tao-train-rtdetr", "action": "train", "status": "SUCCESS"}]
    [listed] = json.loads(_cli("--json", "jobs").stdout)
    assert listed["id"] == done.id and listed["status"] == "SUCCESS" and listed["spec"] == done.spec


def test_store_failing_its_integrity_check_is_reported(tmp_path):
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    for i in range(300):
        store.create(JobRecord(skill="tao-train-rtdetr", action="train", spec={"pad": "x" * 200, "i": i}))
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    page = 4096
    with open(path, "r+b") as fh:  # scribble over an index page in the middle of the file
        size = fh.seek(0, 2)
        fh.seek((size // page // 2) * page + 8)
        fh.write(os.urandom(page - 16))
    with pytest.raises(JobStoreDamagedError, match=r"is damaged \((integrity check: |database disk image)") as err:
        JobStore(path).list()
    assert "\n" not in str(err.value) and "tao-skills jobs --recover" in str(err.value)


def test_emptied_store_beside_a_running_job_is_detected_and_the_job_adopted(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                     workspace=ws)
    handle = job.record.platform_handle
    ws.store.close()
    for suffix in ("", "-wal", "-shm"):
        path = ws.root / f"jobs.db{suffix}"
        if path.exists():
            os.truncate(path, 0)
    line = _one_line_error(_cli("jobs"))
    assert "is damaged (the file is empty (0 bytes) but 1 job folder(s)" in line
    assert "run `tao-skills jobs --recover`" in line
    fresh = Workspace(ws.root)
    out = recover_job_store(fresh)
    assert [j.id for j in out.recovered] == [job.id] and len(out.moved_aside) >= 1
    [adopted] = out.recovered
    assert adopted.status.value == "RUNNING" and adopted.record.platform_handle["pid"] == handle["pid"]
    assert recover_job_store(fresh).recovered == []  # twice is harmless
    assert cancel_job(job.id, workspace=fresh).status.value == "CANCELED"
    wait_for(lambda: not alive(handle["pid"]), 15, "the job to stop")


def test_submit_that_gives_up_on_a_locked_store_leaves_no_job_folder(ws, monkeypatch):
    import tao_sdk.jobstore as jobstore

    ws.store  # create it
    monkeypatch.setattr(jobstore, "_RETRY_DEADLINE_S", 0.3)
    monkeypatch.setattr(jobstore, "_BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(ws.root / "jobs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    try:
        with pytest.raises(TaoSkillsError, match="stayed locked"):
            create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                       workspace=Workspace(ws.root))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    jobs = ws.root / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []
