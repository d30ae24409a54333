"""Plan-time refusals of distill / quantize specs the built-in worker cannot run here, without
importing torch in the SDK process (plan_job dry runs, no job runs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tao_sdk import Workspace, plan_job
from tao_sdk.worker.errors import SpecError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="the built-in worker (torch) is the backend these checks belong to")
DATA = {"train_datasets": ["/data/train"], "eval_dataset": "/data/val"}
LINEAR = {"module_name": "*", "weights": {"dtype": "int8"}}


def _plan(tmp_path, action: str, **over):
    key = "quantize.model_path" if action == "quantize" else "distill.pretrained_teacher_model_path"
    return plan_job("rtdetr", action, workspace=Workspace(tmp_path / "ws"), datasets=DATA,
                    spec_overrides={key: "/models/model_epoch_009.pth", **over})


@pytest.mark.parametrize("over,match", [
    ({"quantize.backend": "modelopt.onnx"}, "modelopt.onnx.*not supported by this worker: ONNX-level"),
    ({"quantize.mode": "static_ptq", "quantize.layers": [LINEAR]}, "use quantize.backend=modelopt.pytorch"),
    ({"quantize.layers": [{"module_name": "*", "weights": {"dtype": "int8"}, "activations": {"dtype": "int8"}}]},
     "activations is set but quantize.mode is weight_only_ptq"),
    ({"quantize.layers": [{"module_name": "*", "weights": {"dtype": "int9"}}]}, "did you mean int8"),
])
def test_quantize_refused_at_plan_time(tmp_path, over, match):
    with pytest.raises(SpecError, match=match):
        _plan(tmp_path, "quantize", **over)


@pytest.mark.skipif(importlib.util.find_spec("mslk") is not None, reason="mslk installed: int4 runs")
def test_torchao_int4_refused_with_the_reason(tmp_path):
    with pytest.raises(SpecError, match="int4.*cannot run here: torchao's int4 weight-only packing needs the mslk"):
        _plan(tmp_path, "quantize", **{"quantize.layers": [{"module_name": "*", "weights": {"dtype": "int4"}}]})


def test_distill_unknown_criterion_and_empty_bindings(tmp_path):
    bad = {"student_module_name": "a", "teacher_module_name": "a", "criterion": "cosine"}
    with pytest.raises(SpecError, match=r"distill.bindings\[0\].criterion='cosine' is unknown; use one of L1"):
        _plan(tmp_path, "distill", **{"distill.bindings": [bad]})
    with pytest.raises(SpecError, match="distill.bindings is empty"):
        _plan(tmp_path, "distill")


def test_plan_checks_do_not_import_torch(tmp_path):
    code = ("import sys; from tao_sdk import Workspace, plan_job\n"
            f"p = plan_job('rtdetr', 'quantize', workspace=Workspace({str(tmp_path / 'ws')!r}), "
            f"datasets={DATA!r}, spec_overrides={{'quantize.model_path': '/m.pth', 'quantize.layers': [{LINEAR!r}]}})\n"
            "print(p.backend.kind, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["worker", "False"], out.stderr[-2000:]
