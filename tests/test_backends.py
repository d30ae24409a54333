"""Plan-time backend resolution (tao_sdk.backends): the built-in worker, a TAO container entrypoint on
PATH (a test-double script), or neither -> an error before submit that names what to install."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tao_sdk import PlatformError, Workspace, create_job, plan_job, wait_for_job
from tao_sdk import worker
from tao_sdk.backends import WORKER_INSTALL, resolve_backend
from tao_sdk.jobs import worker_command
from tao_sdk.platforms import NODE_PYTHON

FAKE_TAO = Path(__file__).with_name("fake_tao.py")
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
OVERRIDES = {"train.num_epochs": 2}
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    """No forced entrypoint and a PATH holding only an empty tmp folder (entrypoints go there)."""
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.fixture
def no_worker_oneformer(monkeypatch):
    """The worker without its OneFormer plugin: 'oneformer' stands for a network it cannot run."""
    from tao_sdk.worker import registry

    monkeypatch.setattr(registry, "REGISTRY", {k: v for k, v in registry.REGISTRY.items()
                                               if k != "oneformer"})
    monkeypatch.setattr(worker, "NETWORKS", tuple(registry.REGISTRY))


def _entrypoint(bin_dir: Path, network: str) -> Path:
    """A TAO container-style command ``<network> <action> -e spec.yaml`` (the test double behind it)."""
    script = bin_dir / network
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TAO}" {network} "$@"\n')
    script.chmod(0o755)
    return script


def test_worker_capability_interface():
    assert worker.supports("rtdetr", "train") and worker.supports("deformable_detr", "gen_trt_engine")
    assert not worker.supports("rtdetr", "dataset_convert")  # TAO action the worker does not implement
    assert not worker.supports("segformer", "train")
    from tao_sdk.worker import registry

    assert all(a in registry.actions(n) for n in worker.NETWORKS for a in worker.ACTIONS)
    # a network shared by several TAO models is supported only for the model types it builds
    assert worker.supports("depth_net", "train", "FastFoundationStereo")
    assert not worker.supports("depth_net", "train", "RelativeDepthAnything")


@pytest.mark.skipif(not HAVE_TORCH, reason="the built-in worker needs torch")
def test_worker_when_installed_and_supported(bare_path, tmp_path):
    backend = resolve_backend("rtdetr", "train")
    assert backend.kind == "worker" and backend.available
    assert backend.command("/s.yaml") == [NODE_PYTHON, "-m", "tao_sdk.worker", "rtdetr", "train", "-e", "/s.yaml"]
    plan = plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                    workspace=Workspace(tmp_path / "ws"))
    assert plan.backend.kind == "worker" and plan.command[1:4] == ["-m", "tao_sdk.worker", "rtdetr"]


def test_entrypoint_on_path_runs_what_the_worker_cannot(bare_path, tmp_path, no_worker_oneformer):
    script = _entrypoint(bare_path, "oneformer")
    backend = resolve_backend("oneformer", "train")
    assert (backend.kind, backend.argv) == ("entrypoint", (str(script), "train"))
    assert str(script) in backend.detail
    ws = Workspace(tmp_path / "ws")
    job = create_job("oneformer", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                     workspace=ws)
    job = wait_for_job(job.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert job.status.value == "SUCCESS", job.result  # the entrypoint really ran the job
    assert job.artifacts()


def test_forced_entrypoint_wins(bare_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", "/opt/tao/launch --gpus 1")
    backend = resolve_backend("rtdetr", "train")
    assert backend.kind == "entrypoint" and "TAO_SKILLS_ENTRYPOINT" in backend.detail
    assert worker_command("rtdetr", "train", "/s.yaml") == ["/opt/tao/launch", "--gpus", "1", "rtdetr", "train",
                                                           "-e", "/s.yaml"]


def test_neither_is_a_plan_time_error_naming_what_to_install(bare_path, tmp_path, no_worker_oneformer):
    ws = Workspace(tmp_path / "ws")
    plan = plan_job("oneformer", "train", datasets=DATASETS, spec_overrides=OVERRIDES, automl_policy="off",
                    workspace=ws)
    assert plan.backend.kind == "none" and not plan.backend.available  # the plan reports it
    for policy, make in (("off", plan_job), ("off", create_job), ("auto", create_job), ("auto", plan_job)):
        with pytest.raises(PlatformError) as err:
            make("oneformer", "train", datasets=DATASETS, spec_overrides=OVERRIDES, workspace=ws,
                 automl_policy=policy).backend.require()
        text = str(err.value)
        assert "nothing can run 'oneformer train'" in text
        assert "runs rtdetr, deformable_detr" in text and "TAO container" in text and "on PATH" in text
    assert ws.store.list() == []  # AutoML refused at plan time: no controller, no trial, no record


def test_worker_not_installed_says_how_to_install(bare_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    backend = resolve_backend("rtdetr", "evaluate")
    assert backend.kind == "none" and WORKER_INSTALL in backend.detail
    with pytest.raises(PlatformError, match="nothing can run 'rtdetr evaluate'"):
        worker_command("rtdetr", "evaluate", "/s.yaml")


def test_cli_reports_the_backend(bare_path, tmp_path):
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path / "ws"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", *args], capture_output=True, text=True,
                             timeout=120, env=env)
        assert "Traceback" not in out.stderr, out.stderr
        return out

    # The worker implements no quantize action: 'oneformer quantize' needs a TAO container.
    rows = {r["skill"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert rows["tao-train-oneformer"]["backends"]["quantize"] == "none"
    assert rows["tao-train-oneformer"]["task"] == "segmentation (semantic, instance, panoptic)"
    assert rows["tao-train-segformer"]["backend"] == "none" and len(rows) == 33
    shown = json.loads(cli("show", "oneformer", "--action", "quantize", "--json").stdout)
    assert shown["backend"]["kind"] == "none" and "TAO container" in shown["backend"]["detail"]
    run = cli("run", "oneformer", "quantize", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run")
    assert run.returncode == 2 and "nothing can run 'oneformer quantize'" in run.stderr

    _entrypoint(bare_path, "oneformer")
    run = cli("run", "oneformer", "quantize", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["backend"]["kind"] == "entrypoint"
