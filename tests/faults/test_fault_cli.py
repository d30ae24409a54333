"""Issue 24, no traceback from the CLI for a fault: a stdout whose reader went away (``| head``)
ends quietly (exit 141 like a shell's SIGPIPE, nothing on stderr); an unexpected error prints one
line with the path of the traceback it saved."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tao_sdk import Workspace, create_job, wait_for_job

from .conftest import REPO_ROOT

FAKE_TAO = REPO_ROOT / "tests" / "fake_tao.py"
CLI = [sys.executable, "-m", "tao_sdk.cli"]


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    return {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path / "ws"), "PYTHONPATH": str(REPO_ROOT)}


def _closed_early(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run the CLI with a stdout pipe whose read end is closed before the CLI writes to it."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err.decode())


def test_closed_stdout_ends_quietly(env, tmp_path):
    ws = Workspace(tmp_path / "ws")
    job = create_job("rtdetr", "train", automl_policy="off", workspace=ws,
                     datasets={"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"},
                     spec_overrides={"train.num_epochs": 1, "dataset.num_classes": 3})
    wait_for_job(job.id, timeout=60, poll_interval=0.1, workspace=ws)
    for args in (["--json", "jobs"], ["status", job.id]):
        proc = _closed_early(args, env)
        assert proc.returncode == 141 and proc.stderr == "", proc.stderr
    shell = subprocess.run(["sh", "-c", f"{' '.join(CLI)} --json jobs | head -c 0; {' '.join(CLI)} status {job.id} "
                                        "| head -n 0"], capture_output=True, text=True, env=env, timeout=60)
    assert shell.stderr == "" and shell.stdout == "", shell.stderr


def test_unexpected_error_prints_one_line_and_saves_the_traceback(env, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = subprocess.run([*CLI, "jobs"], capture_output=True, text=True, timeout=60,
                          env={**env, "TAO_SKILLS_WORKSPACE": str(not_a_folder)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: unexpected FileExistsError: ") and "(traceback saved to " in line, line
    saved = line.split("(traceback saved to ", 1)[1].split(";", 1)[0]
    text = open(saved, encoding="utf-8").read()
    assert text.startswith("tao-skills jobs\n") and "Traceback (most recent call last)" in text
    os.unlink(saved)
