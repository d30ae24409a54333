"""Case 8: a job whose processes all vanished (SIGKILL of the whole group, supervisor included)
ends FAILURE with a message saying the processes died - not the last status line - and its
status.json gets a closing FAILURE line."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tao_sdk import Workspace, create_job, wait_for_job

from .conftest import REPO_ROOT, wait_for


def test_group_sigkill_is_reported_as_dead_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {REPO_ROOT / 'tests' / 'fake_tao.py'}")
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.3")
    monkeypatch.setenv("FAKE_TAO_EPOCHS", "100")
    ws = Workspace(tmp_path / "ws")
    job = create_job("rtdetr", "train", datasets={"train_datasets": ["/d/t"], "eval_dataset": "/d/e"},
                     spec_overrides={"train.num_epochs": 100, "dataset.num_classes": 3}, automl_policy="off",
                     workspace=ws)
    status = Path(job.results_uri) / "train" / "status.json"
    wait_for(lambda: status.exists() and '"RUNNING"' in status.read_text(), 30, "a first epoch line")
    os.killpg(job.record.platform_handle["pgid"], signal.SIGKILL)
    job = wait_for_job(job.id, timeout=20, poll_interval=0.05, workspace=ws)
    assert job.status.value == "FAILURE"
    message = job.result["message"]
    assert message.startswith("the job's processes died without an exit status"), message
    assert "last status line: Train metrics generated." in message
    last = json.loads(status.read_text().splitlines()[-1])
    assert last["status"] == "FAILURE" and last["message"] == message
    assert job.progress.failed
