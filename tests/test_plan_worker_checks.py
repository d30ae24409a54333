"""Plan-time truth: the worker's model checks run in the plan (torch-free), so a dry run refuses
what the job would refuse, with the job's message. Tried as a new user would: Deformable DETR
``model.dec_layers=1`` with ``with_box_refine: true`` (the default) passed the dry run and failed
at job start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tao_sdk.jobs import plan_job
from tao_sdk.worker import registry
from tao_sdk.worker.errors import SpecError

DATA = {"train_datasets": ["/d/train"], "eval_dataset": "/d/val"}


def _plan(**overrides):
    return plan_job("deformable_detr", "train", datasets=DATA, automl_policy="off", validate_datasets=False,
                    spec_overrides={"dataset.num_classes": 3, **overrides})


def test_dry_run_refuses_what_the_worker_refuses_with_its_message():
    spec = _plan().spec  # a valid plan: the worker builds this model
    registry.get("deformable_detr").build_arch(spec)
    spec["model"]["dec_layers"] = 1
    with pytest.raises(SpecError) as worker:
        registry.get("deformable_detr").build_arch(spec)
    with pytest.raises(SpecError) as plan:
        _plan(**{"model.dec_layers": 1})
    assert str(plan.value) == str(worker.value) and "model.dec_layers" in str(plan.value)
    _plan(**{"model.dec_layers": 1, "model.with_box_refine": False})  # the fix the message names


def test_the_plan_check_imports_no_torch():
    code = ("import sys; from tao_sdk.jobs import plan_job\n"
            "try:\n"
            "    plan_job('deformable_detr', 'train', datasets={'train_datasets': ['/d/t'], 'eval_dataset': '/d/v'},"
            " automl_policy='off', validate_datasets=False, spec_overrides={'dataset.num_classes': 3,"
            " 'model.dec_layers': 1})\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["SpecError", "False"], out.stdout + out.stderr
