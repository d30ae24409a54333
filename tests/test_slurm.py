"""Jobs and AutoML on a REAL Slurm cluster (tools/slurm_cluster.sh: two slurmd on this host).

The TAO container test double (tests/fake_tao.py) is the job's program; everything else is real:
sbatch/scontrol/scancel, the job store, S3 through the moto server. Never skipped under CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest

from tao_sdk import Workspace, cancel_job, create_job, get_job, job_logs, list_jobs, wait_for_job
from tao_sdk.automl.controller import resume_automl_job

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

REPO = Path(__file__).resolve().parents[1]
FAKE_TAO = Path(__file__).with_name("fake_tao.py")
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
TRAIN = {"train.num_epochs": 2, "dataset.num_classes": 3}
KEY = "model-key-9d1e7c55b2"
AWS_SECRET = "aws-secret-0c4f8e21d6a3"


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    """A workspace whose jobs run on the test cluster with this interpreter."""
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.setenv("TAO_SLURM_PYTHON", sys.executable)
    monkeypatch.setenv("TAO_SLURM_GPUS_PER_NODE", "0")
    monkeypatch.setenv("TAO_SLURM_SHARED_PATHS", f"{tmp_path}:/data")
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    for var in ("FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "FAKE_TAO_MAP", "FAKE_TAO_OBJECTIVE",
                "TAO_ENCRYPTION_KEY"):
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path / "ws")


def _scontrol(job) -> str:
    return subprocess.run(["scontrol", "-dd", "show", "job", job.record.platform_handle["slurm_job_id"]],
                          capture_output=True, text=True).stdout


def test_job_runs_on_slurm_and_reattaches_after_sdk_restart(ws):
    # the SDK that submits is another process, gone before we look at the job
    code = textwrap.dedent(f"""
        from tao_sdk import create_job, Workspace
        job = create_job("rtdetr", "train", datasets={DATASETS!r}, spec_overrides={TRAIN!r},
                         automl_policy="off", platform="slurm", workspace=Workspace({str(ws.root)!r}))
        print(job.id)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    job = wait_for_job(job_id, timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result
    assert job.record.platform == "slurm" and job.kpis["val_mAP50"] > 0
    assert "JobState=COMPLETED" in _scontrol(job) and "NumNodes=1 " in _scontrol(job)
    assert "[tao-slurm] job" in job_logs(job_id, workspace=ws)


def test_failing_job_reports_failure_with_log_tail(ws, tmp_path, monkeypatch):
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nprint('CUDA error: no kernel image for this GPU')\nsys.exit(3)\n")
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {crash}")
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                     platform="slurm", workspace=ws)
    job = wait_for_job(job.id, timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "FAILURE" and job.result["exit_code"] == 3
    assert "exit code 3; log tail:" in job.result["message"]
    assert "CUDA error: no kernel image" in job.result["message"]
    assert "JobState=FAILED" in _scontrol(job)


def test_cancel_stops_the_slurm_job(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                     platform="slurm", workspace=ws)
    deadline = time.monotonic() + 30
    while "JobState=RUNNING" not in _scontrol(job):
        assert time.monotonic() < deadline, _scontrol(job)
        time.sleep(0.2)
    job = cancel_job(job.id, workspace=ws)
    assert job.status.value == "CANCELED"
    assert "JobState=CANCELLED" in _scontrol(job)
    assert get_job(job.id, workspace=ws).status.value == "CANCELED"


def _all_bytes(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_secrets_absent_from_every_file_and_the_slurm_record(ws, tmp_path, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # moto accepts any key pair
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    monkeypatch.setenv("TAO_SKILLS_STORAGE", ws.storage_root)
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                     platform="slurm", encryption_key=KEY, workspace=ws)
    job = wait_for_job(job.id, timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result  # the job wrote its results to S3: the keys arrived
    files = _all_bytes(tmp_path) + _all_bytes(Path(os.environ["SLURM_CONF"]).parent)
    s3 = boto3.client("s3")
    objects = s3.list_objects_v2(Bucket=s3_env).get("Contents", [])
    assert any(o["Key"].endswith("status.json") for o in objects)
    files += [(o["Key"], s3.get_object(Bucket=s3_env, Key=o["Key"])["Body"].read()) for o in objects]
    leaks = [name for name, data in files for secret in (KEY, AWS_SECRET) if secret.encode() in data]
    assert leaks == []
    record = _scontrol(job)
    assert "JobState=COMPLETED" in record and KEY not in record and AWS_SECRET not in record
    assert len(files) > 20  # the grep really covered the job folder, the cluster state and S3


def _slurm_id(job) -> str:
    return job.record.platform_handle["slurm_job_id"]


@pytest.mark.slow
def test_automl_controller_and_trials_run_as_slurm_jobs_and_resume(ws, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    monkeypatch.setenv("FAKE_TAO_SLEEP", "0.5")
    cfg = {"algorithm": "random", "max_recommendations": 3, "max_concurrent": 1, "poll_interval": 0.2,
           "hyperparameters": ["train.optim.lr"], "seed": 5}
    job = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl=cfg, platform="slurm",
                     workspace=ws)
    assert job.record.kind == "automl" and job.record.platform == "slurm"
    # kill the controller (as a node failure would) once the first trial runs
    deadline = time.monotonic() + 60
    while not list_jobs(parent_id=job.id, workspace=ws):
        assert time.monotonic() < deadline, (Path(job.record.platform_handle["log_path"]).read_text())
        time.sleep(0.2)
    subprocess.run(["scancel", _slurm_id(job)], check=True)
    deadline = time.monotonic() + 60
    while not get_job(job.id, workspace=ws).result.get("interrupted"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = resume_automl_job(job.id, workspace=ws)
    job = wait_for_job(job.id, timeout=180, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    children = list_jobs(parent_id=job.id, workspace=ws)
    # a child recorded by the killed controller before its sbatch is failed as never started
    # (no Slurm job) and its trial submitted again: every trial ran exactly once
    never = [c for c in children if c.result.get("never_started")]
    assert all(c.status.value == "FAILURE" and not c.record.platform_handle for c in never)
    ran = [c for c in children if c not in never]
    table = job.result["trials"]
    assert sorted(table) == ["0", "1", "2"] and all(t["status"] == "ok" for t in table.values())
    assert sorted(t["child_id"] for t in table.values()) == sorted(c.id for c in ran)  # none lost, none repeated
    assert all(c.record.platform == "slurm" and c.status.value == "SUCCESS" for c in ran)
    assert len({_slurm_id(c) for c in ran}) == 3
    assert job.result["best_child_id"] in {c.id for c in ran}
