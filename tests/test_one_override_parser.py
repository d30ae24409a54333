"""One ``--set`` parser on both sides of a job: ``train.optim.lr=1e-4`` is the float 0.0001 in
the SDK's ``--set`` and in the worker's own ``key=value`` overrides (YAML 1.1 alone reads
``1e-4`` as a string). Real tiny RT-DETR jobs on CPU through the CLIs; the evidence is the
resolved spec the worker writes (``experiment.yaml``); the worker's parser is the same function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk.spec import parse_set_options  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402
from tao_sdk.worker import spec as S  # noqa: E402
from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = 64


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path / "ws"), "TAO_WORKER_BACKBONE_SCALE": "tiny",
           "TAO_WORKER_CACHE": str(Path(os.environ.get("TMPDIR", "/tmp")) / "tao-e2e-cache")}
    for var in ("TAO_SKILLS_ENTRYPOINT", "TAO_SKILLS_STORAGE"):
        env.pop(var, None)
    return env


def _lr(experiment: Path) -> object:
    return yaml.safe_load(experiment.read_text())["train"]["optim"]["lr"]


def test_lr_1e_4_reaches_the_worker_as_a_float(tmp_path):
    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, size=SIZE, seed=1)
    tiny = {**registry.get("rtdetr").demo_train_overrides(1, SIZE), "dataset.batch_size": 2}
    sets = [a for k, v in tiny.items() if k != "train.optim.lr" for a in ("--set", f"{k}={json.dumps(v)}")]
    env = _env(tmp_path)
    run = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "run", "rtdetr", "train", "--automl-policy", "off",
                          "--train-dataset", str(ds["train"]["root"]), "--eval-dataset", str(ds["val"]["root"]),
                          *sets, "--set", "train.optim.lr=1e-4", "--wait", "--json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "SUCCESS", job
    sdk_side = next(Path(a) for a in json.loads(subprocess.run(
        [sys.executable, "-m", "tao_sdk.cli", "artifacts", job["id"], "--json"], capture_output=True, text=True,
        timeout=60, env=env, check=True).stdout) if a.endswith("train/experiment.yaml"))
    lr = _lr(sdk_side)
    assert isinstance(lr, float) and lr == 0.0001

    # the worker's own overrides (TAO's `key=value` arguments) read the same text the same way
    assert S.parse_override("train.optim.lr=1e-4") == ("train.optim.lr", 0.0001)
    assert parse_set_options(["train.optim.lr=1e-4"]) == {"train.optim.lr": 0.0001}
