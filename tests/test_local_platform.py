"""Local platform: detached jobs, exit status, re-attach after an SDK restart, cancel."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tao_sdk.errors import PlatformError
from tao_sdk.platforms import JobTask, Platform, PlatformState, get_platform, known_platforms
from tao_sdk.platforms.local import LocalPlatform

pytestmark = pytest.mark.skipif(os.name != "posix", reason="local platform needs POSIX")

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _task(
    tmp_path: Path, code: str, env: dict[str, str] | None = None, name: str = "job"
) -> JobTask:
    return JobTask(
        job_id=f"job-{name}",
        command=[PY, "-c", textwrap.dedent(code)],
        env=env or {},
        workdir=str(tmp_path / name),
    )


def _wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """True when ``pid`` is a live process (zombies count as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return data[data.rfind(b")") + 2 :].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_registry() -> None:
    assert "local" in known_platforms()
    p = get_platform("local", cancel_timeout=3)
    assert isinstance(p, LocalPlatform) and isinstance(p, Platform)
    assert p.name == "local" and p.cancel_timeout == 3
    with pytest.raises(PlatformError, match="known platforms: docker, local, slurm") as exc:
        get_platform("slurmm")
    assert "slurm" in str(exc.value)
    with pytest.raises(PlatformError, match="bad options"):
        get_platform("local", nope=1)


def test_exit_code_and_log(tmp_path: Path) -> None:
    platform = LocalPlatform()
    task = _task(tmp_path, "print('hi'); import sys; sys.exit(3)")
    t0 = time.perf_counter()
    handle = platform.submit(task)
    latency = time.perf_counter() - t0
    assert latency < 0.3, f"submit took {latency * 1000:.0f} ms"
    assert json.loads(json.dumps(handle)) == handle  # storable in the job store
    assert {"pid", "pgid", "workdir", "log_path", "exit_status_path", "started"} <= set(handle)
    state = platform.wait(handle, timeout=15, interval=0.02)
    assert state == PlatformState("exited", 3)
    assert state.is_exited and not state.is_running
    log = Path(platform.logs_path(handle)).read_text()
    assert "hi" in log
    assert Path(handle["exit_status_path"]).read_text().strip() == "3"
    assert handle["log_path"] == str(tmp_path / "job" / "job.log")
    # cancel of a finished job is a no-op
    platform.cancel(handle)
    assert platform.poll(handle) == PlatformState("exited", 3)


def test_resubmit_in_same_workdir_appends_log_and_clears_status(tmp_path: Path) -> None:
    platform = LocalPlatform()
    h1 = platform.submit(_task(tmp_path, "print('first'); raise SystemExit(1)"))
    assert platform.wait(h1, timeout=15, interval=0.02).exit_code == 1
    h2 = platform.submit(_task(tmp_path, "print('second')"))
    assert platform.wait(h2, timeout=15, interval=0.02) == PlatformState("exited", 0)
    log = Path(h2["log_path"]).read_text()
    assert log.index("first") < log.index("second")


def test_command_not_found(tmp_path: Path) -> None:
    platform = LocalPlatform()
    task = JobTask("job-nf", ["/nonexistent/tao-worker"], {}, str(tmp_path / "nf"))
    handle = platform.submit(task)
    assert platform.wait(handle, timeout=15, interval=0.02) == PlatformState("exited", 127)
    assert "cannot start" in Path(handle["log_path"]).read_text()


def test_submit_validation(tmp_path: Path) -> None:
    platform = LocalPlatform()
    with pytest.raises(PlatformError, match="non-empty list"):
        platform.submit(JobTask("job-e", [], {}, str(tmp_path)))
    with pytest.raises(PlatformError, match="num_nodes"):
        platform.submit(JobTask("job-n", ["true"], {}, str(tmp_path), num_nodes=2))
    with pytest.raises(PlatformError, match="env values must be strings"):
        platform.submit(JobTask("job-v", ["true"], {"N": 1}, str(tmp_path)))  # type: ignore[dict-item]


_TREE_JOB = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open("grandchild.pid.tmp", "w") as fh:
        fh.write(str(child.pid))
    os.replace("grandchild.pid.tmp", "grandchild.pid")
    print("started", flush=True)
    time.sleep(120)
"""

_SDK = """
    import json, sys
    from tao_sdk.platforms import JobTask, get_platform
    task = JobTask(job_id="job-tree", command=[sys.executable, "-c", sys.argv[2]], env={},
                   workdir=sys.argv[1])
    print(json.dumps(get_platform("local").submit(task)))
"""


def test_job_survives_sdk_restart_and_cancel_kills_tree(tmp_path: Path) -> None:
    workdir = tmp_path / "tree"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # The "SDK" is a separate process that submits, prints the handle and exits.
    out = subprocess.run(
        [PY, "-c", textwrap.dedent(_SDK), str(workdir), textwrap.dedent(_TREE_JOB)],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    ).stdout
    handle = json.loads(out)
    gc.collect()

    platform = LocalPlatform()  # a fresh instance in another process re-attaches
    pid_file = workdir / "grandchild.pid"
    _wait_for(pid_file.exists, what="the job to start its grandchild")
    grandchild = int(pid_file.read_text())
    assert platform.poll(handle) == PlatformState("running")
    assert _alive(handle["pid"]) and _alive(grandchild)
    assert os.getpgid(grandchild) == handle["pgid"]

    t0 = time.monotonic()
    platform.cancel(handle)
    assert time.monotonic() - t0 < 8
    state = platform.poll(handle)
    assert state.state == "exited"
    assert state.exit_code == -signal.SIGTERM
    assert not _alive(grandchild)
    assert not _alive(handle["pid"])
    platform.cancel(handle)  # idempotent


def test_popen_dropped_job_keeps_running(tmp_path: Path) -> None:
    platform = LocalPlatform()
    code = "import time; print('up', flush=True); time.sleep(60)"
    handle = platform.submit(_task(tmp_path, code))
    del platform
    gc.collect()
    reattached = LocalPlatform(cancel_timeout=5)
    _wait_for(lambda: "up" in Path(handle["log_path"]).read_text(), what="job output")
    assert reattached.poll(handle).is_running
    reattached.cancel(handle)
    assert reattached.poll(handle) == PlatformState("exited", -signal.SIGTERM)


def test_cancel_escalates_to_sigkill(tmp_path: Path) -> None:
    platform = LocalPlatform(cancel_timeout=0.5)
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring", flush=True)
        time.sleep(60)
    """
    handle = platform.submit(_task(tmp_path, code))
    _wait_for(lambda: "ignoring" in Path(handle["log_path"]).read_text(), what="job ready")
    t0 = time.monotonic()
    platform.cancel(handle)
    assert time.monotonic() - t0 < 5
    assert platform.poll(handle) == PlatformState("exited", -signal.SIGTERM)
    assert not _alive(handle["pid"])


def test_vanished_job_reports_exit_code_none(tmp_path: Path) -> None:
    platform = LocalPlatform()
    handle = platform.submit(_task(tmp_path, "import time; time.sleep(60)"))
    assert platform.poll(handle).is_running
    os.killpg(handle["pgid"], signal.SIGKILL)  # supervisor gets no chance to write a status
    _wait_for(lambda: not platform.poll(handle).is_running, what="group to vanish")
    state = platform.poll(handle)
    assert state.state == "exited" and state.exit_code is None
    assert "exit status" in state.detail


def test_stragglers_are_stopped_when_job_exits(tmp_path: Path) -> None:
    platform = LocalPlatform()
    code = """
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open("bg.pid", "w").write(str(p.pid))
    """
    handle = platform.submit(_task(tmp_path, code))
    assert platform.wait(handle, timeout=15, interval=0.02) == PlatformState("exited", 0)
    bg = int((Path(handle["workdir"]) / "bg.pid").read_text())
    assert not _alive(bg)


def test_env_reaches_job_but_never_disk(tmp_path: Path) -> None:
    secret = "s3cr3t-VALUE-4f9a"
    platform = LocalPlatform()
    code = """
        import os, sys
        ok = os.environ.get("TAO_ENCRYPTION_KEY") == "s3cr3t-VALUE-4f9a"
        print("key ok" if ok else "key missing", "PATH" in os.environ)
        sys.exit(0 if ok else 5)
    """
    env = {"TAO_ENCRYPTION_KEY": secret, "AWS_SECRET_ACCESS_KEY": secret}
    task = _task(tmp_path, code, env=env)
    handle = platform.submit(task)
    assert platform.wait(handle, timeout=15, interval=0.02) == PlatformState("exited", 0)
    assert "key ok True" in Path(handle["log_path"]).read_text()  # os.environ is inherited too
    assert secret not in json.dumps(handle)
    files = [p for p in Path(task.workdir).rglob("*") if p.is_file()]
    assert files
    for f in files:
        assert secret.encode() not in f.read_bytes(), f
