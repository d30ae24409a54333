"""Generated runners are up to date and every one of them dry-runs its whole chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNERS = sorted((REPO / "runners").glob("*.py"))


def test_runners_are_up_to_date():
    out = subprocess.run([sys.executable, "tools/gen_runners.py", "--check"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_runner_per_model_skill():
    assert {p.name for p in RUNNERS} == {
        "tao_train_rtdetr_train_deploy.py", "tao_train_deformable_detr_train_deploy.py",
        "tao_train_oneformer_train_deploy.py", "tao_train_fast_foundation_stereo_train_deploy.py"}


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda p: p.stem)
def test_runner_dry_run_validates_every_step(runner, tmp_path):
    # a dry run also checks that a backend can run each step: the TAO container test double stands in
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path), "PYTHONPATH": str(REPO),
           "TAO_SKILLS_ENTRYPOINT": f"{sys.executable} {REPO / 'tests' / 'fake_tao.py'}"}
    out = subprocess.run([sys.executable, str(runner), "--dry-run", "--num-classes", "3"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("[dry-run]")]
    assert [line.split()[1] for line in lines] == ["train:", "evaluate:", "inference:", "export:", "gen_trt_engine:",
                                                   "trt_evaluate:", "trt_inference:"]
    assert "<engine artifact" in lines[-1]
    assert not (tmp_path / "jobs.db").exists() or "job-" not in (tmp_path / "jobs.db").read_bytes().decode(errors="ignore")


def test_runner_uses_only_public_sdk():
    for runner in RUNNERS:
        text = runner.read_text()
        imports = [line for line in text.splitlines() if line.startswith(("from tao_sdk", "import tao_sdk"))]
        assert all(line.split()[1] in ("tao_sdk", "tao_sdk.workflow", "tao_sdk.spec") for line in imports), imports
