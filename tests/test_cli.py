"""The `tao-skills` CLI as an agent uses it (real subprocesses, the TAO container test double)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FAKE_TAO = Path(__file__).with_name("fake_tao.py")
TRAIN_ARGS = ["--train-dataset", "/data/train", "--eval-dataset", "/data/eval", "--set", "train.num_epochs=3",
              "--set", "dataset.num_classes=3"]


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path / "ws"),
           "TAO_SKILLS_ENTRYPOINT": f"{sys.executable} {FAKE_TAO}"}
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_OBJECTIVE", "TAO_SKILLS_STORAGE"):
        env.pop(var, None)

    def run(*args: str, extra_env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", *args], capture_output=True, text=True,
                             timeout=120, env={**env, **(extra_env or {})})
        assert "Traceback" not in out.stderr, out.stderr
        if check:
            assert out.returncode == 0, out.stderr
        return out
    return run


def test_list_show_and_spec(cli, tmp_path):
    rows = json.loads(cli("list", "--json").stdout)
    assert {r["skill"] for r in rows} >= {"tao-train-rtdetr", "tao-run-automl"}
    shown = json.loads(cli("show", "rtdetr", "--action", "inference", "--json").stdout)
    assert shown["dataset_requirements"][0]["files"] == "image_dir: [images.tar.gz], classmap: label_map.txt"
    out = tmp_path / "spec.yaml"
    cli("spec", "rtdetr", "train", *TRAIN_ARGS, "--set", "train.optim.lr=1e-4", "-o", str(out))
    spec = yaml.safe_load(out.read_text())
    assert spec["train"]["optim"]["lr"] == 1e-4 and spec["train"]["num_epochs"] == 3
    assert spec["dataset"]["val_data_sources"]["json_file"] == "/data/eval/annotations.json"
    bad = cli("spec", "rtdetr", "train", *TRAIN_ARGS, "--set", "train.num_epoch=3", check=False)
    assert bad.returncode == 2 and "did you mean 'train.num_epochs'" in bad.stderr
    missing = cli("spec", "rtdetr", "train", "--train-dataset", "/d", check=False)
    assert missing.returncode == 2 and "--eval-dataset" in missing.stderr


def test_run_wait_status_logs_artifacts_jobs(cli):
    run = json.loads(cli("run", "rtdetr", "train", *TRAIN_ARGS, "--automl-policy", "off", "--wait", "--json").stdout)
    job_id = run["id"]
    assert run["status"] == "SUCCESS" and run["progress"]["kpis"]["val_mAP50"] == pytest.approx(0.7)
    status = cli("status", job_id)
    assert "SUCCESS" in status.stdout and "val_mAP50" in status.stdout
    assert "epoch 2 done" in cli("logs", job_id).stdout
    assert any(a.endswith("model_epoch_002.pth") for a in json.loads(cli("artifacts", job_id, "--json").stdout))
    jobs = json.loads(cli("jobs", "--json").stdout)
    assert [j["id"] for j in jobs] == [job_id]
    ev = cli("run", "rtdetr", "evaluate", "--eval-dataset", "/data/eval", "--parent", job_id, "--wait")
    assert "test_mAP50 = 0.61" in ev.stdout
    dry = json.loads(cli("run", "rtdetr", "train", *TRAIN_ARGS, "--request", "no HPO please", "--dry-run",
                         "--json").stdout)
    assert dry["dry_run"] and dry["route"]["target"] == "tao-train-rtdetr"


def test_cancel_and_resume(cli):
    started = json.loads(cli("run", "rtdetr", "train", *TRAIN_ARGS, "--automl-policy", "off", "--json",
                             extra_env={"FAKE_TAO_SLEEP": "2"}).stdout)
    import time

    time.sleep(2.5)  # let it write a checkpoint (3 epochs of 2 s: still running when cancelled)
    assert json.loads(cli("cancel", started["id"], "--json").stdout)["status"] == "CANCELED"
    resumed = json.loads(cli("resume", started["id"], "--wait", "--json").stdout)
    assert resumed["status"] == "SUCCESS" and resumed["parent_id"] == started["id"]
    assert resumed["spec"]["train"]["resume_training_checkpoint_path"].startswith(started["results_uri"])
    again = cli("wait", started["id"], check=False)
    assert again.returncode == 1 and "CANCELED" in again.stdout


def test_unknown_job_is_a_clean_error(cli):
    out = cli("status", "job-000000000000", check=False)
    assert out.returncode == 2 and "tao-skills jobs" in out.stderr


def test_run_plans_once_and_submits_the_plan_it_showed(tmp_path, monkeypatch, capsys):
    """Issue 23: ``run`` plans, prints the budget, then submits that same plan (no second plan_job)."""
    from tao_sdk import jobs
    from tao_sdk.cli import main

    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    planned: list[str] = []
    real_plan_job = jobs.plan_job

    def counting_plan_job(*args, **kwargs):
        plan = real_plan_job(*args, **kwargs)
        planned.append(plan.job_id)
        return plan

    monkeypatch.setattr(jobs, "plan_job", counting_plan_job)
    monkeypatch.setenv("FAKE_TAO_EPOCHS", "1")
    assert main(["run", "rtdetr", "train", *TRAIN_ARGS, "--automl-policy", "off", "--wait", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "SUCCESS" and planned == [out["id"]]  # one plan, and the job is that plan's
