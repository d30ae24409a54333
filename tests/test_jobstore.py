"""Job store: CRUD, status rules, secret redaction, WAL, multi-process concurrency."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tao_sdk.errors import JobNotFoundError, TaoSkillsError
from tao_sdk.jobstore import (
    SCHEMA_VERSION,
    JobRecord,
    JobStatus,
    JobStore,
    new_job_id,
    redact,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "state" / "jobs.db")


def _rec(**kw) -> JobRecord:
    kw.setdefault("skill", "tao-train-rtdetr")
    kw.setdefault("action", "train")
    return JobRecord(**kw)


def test_new_job_id_format() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"job-[0-9a-f]{12}", i) for i in ids)


def test_job_status_terminal_and_parse() -> None:
    assert [s.is_terminal for s in JobStatus] == [False, False, True, True, True]
    assert JobStatus.parse("success") is JobStatus.SUCCESS
    assert str(JobStatus.RUNNING) == "RUNNING"
    with pytest.raises(TaoSkillsError, match="PENDING, RUNNING, SUCCESS, FAILURE, CANCELED"):
        JobStatus.parse("DONE")


def test_create_get_roundtrip(store: JobStore, tmp_path: Path) -> None:
    assert (tmp_path / "state").is_dir()
    rec = store.create(
        _rec(spec={"train": {"num_epochs": 3}}, results_uri="s3://b/r", platform="local")
    )
    assert re.fullmatch(r"job-[0-9a-f]{12}", rec.id)
    got = store.get(rec.id)
    assert got == rec
    assert got.status is JobStatus.PENDING
    assert got.spec == {"train": {"num_epochs": 3}}
    assert got.kind == "job" and got.parent_id is None
    assert got.started_at is None and got.finished_at is None
    assert got.updated_at >= got.created_at
    assert json.loads(json.dumps(got.to_dict()))["status"] == "PENDING"


def test_create_duplicate_id_is_an_error(store: JobStore) -> None:
    rec = store.create(_rec())
    with pytest.raises(TaoSkillsError, match="already exists"):
        store.create(_rec(id=rec.id))


def test_unknown_job_id_error_suggests_jobs_command(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError, match="tao-skills jobs") as exc:
        store.get("job-000000000000")
    assert "job-000000000000" in str(exc.value)
    with pytest.raises(JobNotFoundError):
        store.update("job-000000000000", result={"a": 1})
    with pytest.raises(JobNotFoundError):
        store.set_status("job-000000000000", "RUNNING")
    with pytest.raises(JobNotFoundError):
        store.children("job-000000000000")


def test_list_filters_and_newest_first(store: JobStore) -> None:
    a = store.create(_rec(skill="tao-train-rtdetr", action="train"))
    b = store.create(_rec(skill="tao-train-oneformer", action="train"))
    c = store.create(_rec(skill="tao-train-rtdetr", action="export", parent_id=a.id))
    store.set_status(c.id, "RUNNING")
    assert [r.id for r in store.list()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list(skill="tao-train-rtdetr")] == [c.id, a.id]
    assert [r.id for r in store.list(status="running")] == [c.id]
    assert [r.id for r in store.list(status=["PENDING", JobStatus.RUNNING])] == [
        c.id,
        b.id,
        a.id,
    ]
    assert [r.id for r in store.list(parent_id=a.id)] == [c.id]
    assert [r.id for r in store.list(limit=2)] == [c.id, b.id]
    assert store.list(skill="nope") == []
    with pytest.raises(TaoSkillsError, match="positive integer"):
        store.list(limit=0)
    with pytest.raises(TaoSkillsError, match="allowed|use one of"):
        store.list(status="DONE")


def test_children_oldest_first_and_kind(store: JobStore) -> None:
    parent = store.create(_rec(skill="tao-run-automl", kind="automl"))
    trials = [store.create(_rec(parent_id=parent.id, kind="trial")) for _ in range(3)]
    assert [t.id for t in store.children(parent.id)] == [t.id for t in trials]
    assert [r.id for r in store.list(kind="automl")] == [parent.id]
    assert len(store.list(kind="trial")) == 3


def test_update_fields(store: JobStore) -> None:
    rec = store.create(_rec())
    time.sleep(0.002)
    upd = store.update(
        rec.id, result={"best_child": "job-abc"}, platform_handle={"pid": 12}, results_uri="/r"
    )
    assert upd.result == {"best_child": "job-abc"}
    assert upd.platform_handle == {"pid": 12}
    assert upd.results_uri == "/r"
    assert upd.updated_at > rec.updated_at
    assert upd.created_at == rec.created_at
    assert store.get(rec.id) == upd
    with pytest.raises(TaoSkillsError, match="updatable fields"):
        store.update(rec.id, bogus=1)
    with pytest.raises(TaoSkillsError, match="updatable fields"):
        store.update(rec.id, id="job-123456789012")
    with pytest.raises(TaoSkillsError, match="must be a dict"):
        store.update(rec.id, result=["not", "a", "dict"])
    with pytest.raises(TaoSkillsError, match="JSON serialisable"):
        store.update(rec.id, result={"x": object()})
    assert store.update(rec.id, result={"p": Path("/a/b")}).result == {"p": "/a/b"}


def test_set_status_sets_timestamps(store: JobStore) -> None:
    rec = store.create(_rec())
    running = store.set_status(rec.id, JobStatus.RUNNING, platform_handle={"pid": 1})
    assert running.status is JobStatus.RUNNING
    assert running.started_at is not None and running.finished_at is None
    assert running.platform_handle == {"pid": 1}
    again = store.set_status(rec.id, "RUNNING")
    assert again.started_at == running.started_at  # not reset
    done = store.set_status(rec.id, "SUCCESS", result={"kpi": 0.9})
    assert done.status is JobStatus.SUCCESS
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.result == {"kpi": 0.9}


@pytest.mark.parametrize("terminal", ["SUCCESS", "FAILURE", "CANCELED"])
def test_terminal_state_never_regresses(store: JobStore, terminal: str) -> None:
    rec = store.create(_rec())
    store.set_status(rec.id, "RUNNING")
    final = store.set_status(rec.id, terminal, result={"why": "first"})
    for status in JobStatus:
        got = store.set_status(rec.id, status, result={"why": "late"})
        assert got == final
    # update(status=...) follows the same rule
    assert store.update(rec.id, status="RUNNING", result={"why": "late"}) == final
    assert store.get(rec.id) == final
    # non-status fields can still be annotated on a finished job
    annotated = store.update(rec.id, result={"why": "first", "note": "uploaded"})
    assert annotated.status.value == terminal
    assert annotated.result["note"] == "uploaded"


def test_pending_to_terminal_directly(store: JobStore) -> None:
    rec = store.create(_rec())
    failed = store.set_status(rec.id, "FAILURE", result={"error": "submit failed"})
    assert failed.status is JobStatus.FAILURE
    assert failed.started_at is None and failed.finished_at is not None


def test_running_never_goes_back_to_pending(store: JobStore) -> None:
    rec = store.create(_rec())
    running = store.set_status(rec.id, "RUNNING")
    back = store.set_status(rec.id, "PENDING", result={"x": 1})
    assert back == running
    assert store.get(rec.id).status is JobStatus.RUNNING
    assert store.update(rec.id, status="PENDING").status is JobStatus.RUNNING


def test_redact_function() -> None:
    src = {
        "encryption_key": "tlt_encode",
        "Key": "k",
        "api_key": "k",
        "storage": {
            "aws_access_key_id": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s",
            "session_token": "t",
            "endpoint": "http://x",
        },
        "list": [{"password": "p"}, {"client_secret": "s"}, "plain"],
        "credentials": {"user": "u", "pass": "p"},
        "tokenizer": "bert-base",
        "unset_key": None,
        "num_epochs": 3,
    }
    out = redact(src)
    assert out == {
        "encryption_key": "***",
        "Key": "***",
        "api_key": "***",
        "storage": {
            "aws_access_key_id": "***",
            "AWS_SECRET_ACCESS_KEY": "***",
            "session_token": "***",
            "endpoint": "http://x",
        },
        "list": [{"password": "***"}, {"client_secret": "***"}, "plain"],
        "credentials": "***",
        "tokenizer": "bert-base",
        "unset_key": None,
        "num_epochs": 3,
    }
    assert src["encryption_key"] == "tlt_encode"  # input untouched


def test_secrets_never_stored(store: JobStore) -> None:
    spec = {
        "encryption_key": "tlt_encode",
        "dataset": {"s3": {"aws_secret_access_key": "SUPERSECRETVALUE", "bucket": "b"}},
        "train": {"num_epochs": 2},
    }
    rec = store.create(_rec(spec=spec, platform_handle={"pid": 3, "token": "SUPERSECRETTOKEN"}))
    assert rec.spec["encryption_key"] == "***"
    assert rec.spec["dataset"]["s3"] == {"aws_secret_access_key": "***", "bucket": "b"}
    assert rec.spec["train"] == {"num_epochs": 2}
    assert rec.platform_handle == {"pid": 3, "token": "***"}
    store.update(rec.id, result={"password": "SUPERSECRETPASS"})
    store.set_status(rec.id, "SUCCESS", result={"aws_access_key_id": "SUPERSECRETAKIA"})
    assert spec["encryption_key"] == "tlt_encode"  # caller's dict untouched
    store.close()
    blob = b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.is_file())
    for secret in (b"tlt_encode", b"SUPERSECRET"):
        assert secret not in blob


def test_wal_mode_and_schema_version(store: JobStore) -> None:
    store.create(_rec())
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    # reopening an existing store is a no-op migration
    assert len(JobStore(store.path).list()) == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(TaoSkillsError, match="upgrade tao_sdk"):
        JobStore(path)


def test_threads_share_a_store(store: JobStore) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                rec = store.create(_rec())
                store.set_status(rec.id, "RUNNING")
                store.set_status(rec.id, "SUCCESS")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.list(status="SUCCESS")) == 40


def test_fork_child_reopens_connection(store: JobStore) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    rec = store.create(_rec())  # parent opens its connection
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection
        code = 1
        try:
            store.set_status(rec.id, "RUNNING")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(rec.id).status is JobStatus.RUNNING  # parent connection still fine


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from tao_sdk.jobstore import JobRecord, JobStore
    db, wid, n, ready, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:6]
    store = JobStore(db)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    ids = []
    for i in range(n):
        rec = store.create(JobRecord(skill="tao-train-rtdetr", action="train",
                                     spec={"worker": wid, "i": i}))
        ids.append(rec.id)
        store.set_status(rec.id, "RUNNING", platform_handle={"pid": os.getpid()})
    for i, job_id in enumerate(ids):
        for step in range(3):
            store.update(job_id, result={"worker": wid, "i": i, "step": step})
        final = "SUCCESS" if i % 3 else "FAILURE"
        store.set_status(job_id, final, result={"worker": wid, "i": i, "step": 3})
        # late, conflicting updates must be ignored
        store.set_status(job_id, "RUNNING")
        store.set_status(job_id, "CANCELED")
    print(" ".join(ids))
    """
)


def test_concurrent_processes(tmp_path: Path) -> None:
    nproc, njobs = 6, 25
    db = tmp_path / "jobs.db"
    go = tmp_path / "go"
    pythonpath = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = []
    for wid in range(nproc):
        ready = tmp_path / f"ready{wid}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(db), str(wid), str(njobs), str(ready),
                     str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 20
    while not all(r.exists() for r, _ in procs):  # maximise contention: start together
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        time.sleep(0.01)
    go.touch()
    ids_by_worker = {}
    for wid, (_, p) in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "locked" not in err and "busy" not in err, err
        ids_by_worker[wid] = out.split()
        assert len(ids_by_worker[wid]) == njobs

    store = JobStore(db)
    records = store.list()
    assert len(records) == nproc * njobs  # no lost records
    by_id = {r.id: r for r in records}
    for wid, ids in ids_by_worker.items():
        for i, job_id in enumerate(ids):
            r = by_id[job_id]
            assert r.spec == {"worker": wid, "i": i}
            assert r.status is (JobStatus.SUCCESS if i % 3 else JobStatus.FAILURE)
            assert r.result == {"worker": wid, "i": i, "step": 3}
            assert r.started_at is not None and r.finished_at >= r.started_at
    assert len(store.list(status="FAILURE")) == nproc * len(range(0, njobs, 3))
