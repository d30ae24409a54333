"""Case 1: every process of a job belongs to it until it ends.

torchrun starts each rank in a session of its own; a SIGKILL of the job's process group (cancel's
escalation, the OOM killer) must still take every rank down within seconds, and the launcher
dying alone must not leave ranks behind either.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import pytest
import yaml

from tao_sdk.platforms import JobTask
from tao_sdk.platforms.local import LocalPlatform

from .conftest import REPO_ROOT, alive, descendants, environ_of, wait_for


def _ranks(supervisor: int) -> list[int]:
    return [p for p in descendants(supervisor) if "TAO_WORKER_LAUNCHER_PID" in environ_of(p)
            and "LOCAL_RANK" in environ_of(p)]


@pytest.mark.slow
def test_group_sigkill_takes_torchrun_ranks_down(tmp_path):
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset
    from worker.conftest import base_spec

    ds = make_coco_dataset(tmp_path / "data", n_train=8, n_val=2, classes=("square", "disc"), size=64, seed=1)
    results = tmp_path / "results"
    spec = base_spec("rtdetr", ds, str(results))
    spec["train"].update(num_gpus=2, num_epochs=500, checkpoint_interval=1, validation_interval=1000)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    env = {"TAO_WORKER_BACKBONE_SCALE": "tiny", "TAO_WORKER_CACHE": str(tmp_path / "cache"),
           "TAO_WORKER_STAGING": str(tmp_path / "staging"), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        os.environ.pop(var, None)
    platform = LocalPlatform()
    handle = platform.submit(JobTask(job_id="job-ranks", env=env, workdir=str(tmp_path / "job"), command=[
        sys.executable, "-m", "tao_sdk.worker", "rtdetr", "train", "-e", str(spec_file)]))
    try:
        ranks = wait_for(lambda: len(_ranks(handle["pid"])) == 2 and _ranks(handle["pid"]), 120, "two torchrun ranks")
        assert all(os.getsid(r) != handle["pgid"] for r in ranks), "torchrun puts ranks in sessions of their own"
        wait_for(lambda: list((results / "train").glob("model_epoch_*.pth")), 120, "a first checkpoint")
        start = time.monotonic()
        os.killpg(handle["pgid"], signal.SIGKILL)
        wait_for(lambda: not any(alive(r) for r in ranks), 10, "the ranks to die after the group SIGKILL")
        gone_after = time.monotonic() - start
        print(f"ranks gone {gone_after:.2f} s after the group SIGKILL")
        assert gone_after < 5
        count = len(list((results / "train").glob("model_epoch_*.pth")))
        time.sleep(1.0)
        assert len(list((results / "train").glob("model_epoch_*.pth"))) == count, "no checkpoint after the kill"
        lines = [json.loads(x) for x in (results / "train" / "status.json").read_text().splitlines() if x]
        assert lines[-1]["status"] != "SUCCESS"
        assert platform.poll(handle).is_exited
    finally:
        for pid in descendants(handle["pid"]) + [handle["pid"]]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_launcher_killed_alone_leaves_no_orphan(tmp_path):
    """The OOM killer hits only the launcher: the supervisor (a child subreaper) stops the ranks it
    left behind in other sessions, then reports the kill."""
    pidfile = tmp_path / "orphan.pid"
    code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(300)
    """)
    platform = LocalPlatform()
    handle = platform.submit(JobTask(job_id="job-oom", command=[sys.executable, "-c", code], env={},
                                     workdir=str(tmp_path / "job")))
    orphan = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20, "the rank-like child"))
    launcher = next(p for p in descendants(handle["pid"]) if p != orphan and orphan in descendants(p))
    start = time.monotonic()
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: not alive(orphan), 10, "the orphan to be stopped")
    print(f"orphan gone {time.monotonic() - start:.2f} s after the launcher's SIGKILL")
    state = platform.wait(handle, timeout=10, interval=0.05)
    assert state.is_exited and state.exit_code == -9
