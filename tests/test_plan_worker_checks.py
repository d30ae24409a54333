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


def _arch(network):
    return lambda spec: registry.get(network).build_arch(spec)


def _optimizer(network):
    from tao_sdk.worker.engine.train import build_optimizer

    return lambda spec: build_optimizer(registry.get(network), spec, None)


def _export(network):
    return lambda spec: registry.get(network).onnx_export(None, {}, spec)  # checks before the model


def _schedule(network):
    from tao_sdk.worker.engine.train import build_lr_schedule

    return lambda spec: build_lr_schedule(registry.get(network), spec, None, 1)


#: network -> (plan arguments). Every plan is a train plan without dataset checks.
_NETWORKS = {
    "rtdetr": {"spec_overrides": {"dataset.num_classes": 3}},
    "deformable_detr": {"spec_overrides": {"dataset.num_classes": 3}},
    "oneformer": {"spec_overrides": {}},
    "depth_net": {"spec_overrides": {}, "dataset_format": "GenericDataset"},
}

#: (network, override, the worker's own check on the spec, a text its message names). One case
#: per kind of check the worker makes from the spec before it trains or exports: the
#: architecture record (each network's build_arch), the optimiser, a network's own schedule
#: (OneFormer), the export section (each export implementation's checks before the model).
WORKER_CHECKS = [
    ("deformable_detr", {"model.dec_layers": 1}, _arch, "model.dec_layers"),
    ("rtdetr", {"model.feat_strides": [8, 16]}, _arch, "model.feat_strides"),
    ("oneformer", {"model.one_former.hidden_dim": 250}, _arch, "model.one_former.hidden_dim"),
    ("depth_net", {"model.max_disparity": 191}, _arch, "model.max_disparity"),
    ("depth_net", {"model.spx_gru_out": 8}, _arch, "model.spx_gru_out"),
    ("deformable_detr", {"train.optim.lr": 0}, _optimizer, "train.optim.lr"),
    ("oneformer", {"train.optim.max_iter": 0}, _schedule, "train.optim.max_iter"),
    ("rtdetr", {"export.input_height": 100}, _export, "export.input_height"),
    ("deformable_detr", {"export.opset_version": 13}, _export, "export.opset_version"),
    ("oneformer", {"export.input_width": 100}, _export, "export.input_height/input_width"),
    # the schema refuses the rest of the train section's checks first (num_epochs, intervals,
    # optimizer and scheduler names are schema enums / minimums)
]


@pytest.mark.parametrize("network,override,worker_check,names", WORKER_CHECKS,
                         ids=[f"{c[0]}-{next(iter(c[1]))}" for c in WORKER_CHECKS])
def test_every_worker_spec_check_refuses_the_dry_run_with_the_same_message(network, override, worker_check,
                                                                            names):
    from tao_sdk.dotted import set_path

    args = _NETWORKS[network]
    action = "export" if worker_check is _export else "train"
    own = {"export.checkpoint": "/m/model.pth"} if action == "export" else {}

    def plan(extra):
        return plan_job(network, action, datasets=DATA, automl_policy="off", validate_datasets=False,
                        **{**args, "spec_overrides": {**args["spec_overrides"], **own, **extra}})

    spec = plan({}).spec  # valid: the worker accepts it
    for key, value in override.items():
        set_path(spec, key, value)
    with pytest.raises(SpecError) as worker:
        worker_check(network)(spec)
    with pytest.raises(SpecError) as planned:
        plan(override)
    assert str(planned.value) == str(worker.value) and names in str(planned.value)
