"""Shared contract suites, one per kind of plugin, parametrised over its registry: adding a
network plugin, a task, a job kind or an AutoML algorithm to its registry adds it here with no
test edit (AutoML algorithms: tests/automl/test_automl_algorithms.py runs over
``algorithm_names()``).

- every network plugin (``tao_sdk.worker.registry.names()``): the task's synthetic data and
  tiny spec -> ``build_arch`` / ``build_model`` -> one training batch through ``forward`` /
  ``loss`` / backward -> checkpoint name round trip through the SDK's parser -> ONNX export
  and its parity check against onnxruntime;
- every task of those plugins: synthetic splits, demo datasets per action, keys the engine reads;
- every job kind (``tao_sdk.jobkinds.job_kinds()``): the JobKind protocol on a record;
- the SDK's inference mapping functions: SKILL.md's function names and the mapping table agree.
"""

from __future__ import annotations

import math

import pytest

from tao_sdk import checkpoints
from tao_sdk.jobkinds import JobKind, job_kind, job_kinds
from tao_sdk.jobstore import JobRecord, JobStatus
from tao_sdk.worker import registry

SIZE = 64


def _tasks() -> dict[str, object]:
    return {registry.get(n).task.name: registry.get(n).task for n in registry.names()}


@pytest.fixture
def tiny_scale(monkeypatch):
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")


def _uninitialised(plugin, arch, torch) -> list[str]:
    """Tensors of a fresh model that keep ``torch.empty``'s memory (built with NaN-filled
    ``torch.empty``; uninitialised memory may hold anything, NaN included)."""
    real = torch.empty

    def nan_empty(*args, **kwargs):
        out = real(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    torch.empty = nan_empty
    try:
        state = plugin.build_model(arch).state_dict()
    finally:
        torch.empty = real
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


@pytest.mark.parametrize("network", registry.names())
def test_network_plugin_contract(network, tmp_path, tiny_scale):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from tao_sdk.worker.engine.drivers import onnx_export

    plugin = registry.get(network)
    assert plugin.name == network and plugin.display and plugin.task.name
    task = plugin.task
    data = task.write_synthetic(tmp_path / "data", n_train=2, n_val=1, size=SIZE, seed=0)
    spec = task.tiny_spec(plugin, data, str(tmp_path / "results"), SIZE, epochs=1)
    torch.manual_seed(0)
    arch = plugin.build_arch(spec)
    assert {"network", "num_classes", "backbone_desc"} <= set(arch) and plugin.describe(arch)
    model = plugin.build_model(arch)
    assert plugin.arch_diff(arch, plugin.build_arch(spec)) == []
    # every tensor initialised: built again with torch.empty handing out NaN, nothing is left NaN
    assert _uninitialised(plugin, arch, torch) == []

    # one training step
    samples, _ = task.load_train(spec, arch, None)
    dataset, collate = task.train_dataset(plugin, spec, arch, samples, seed=0)
    batch = collate([dataset[i] for i in range(min(2, len(dataset)))])
    model.train()
    loss = plugin.loss(plugin.forward(model, batch, torch.device("cpu"), True), arch)
    assert loss.numel() == 1 and math.isfinite(float(loss.detach()))
    loss.backward()
    assert any(p.grad is not None for p in model.parameters())

    # checkpoint names the SDK parses back (epoch, step, EMA; the latest link)
    for ema in (False, True):
        info = checkpoints.parse_checkpoint_name(f"s3://b/r/train/{plugin.checkpoint_name(4, 120, ema=ema)}")
        assert info is not None and info.epoch == 4 and info.ema is ema
        assert info.step == (120 if plugin.step_in_checkpoint_name else None)
    assert checkpoints.parse_checkpoint_name(plugin.latest_link).is_latest_link

    # ONNX export and parity with onnxruntime
    model.eval()
    job = plugin.onnx_export(model, arch, spec)
    out = tmp_path / "model.onnx"
    onnx_export(job, out, int(spec.get("export", {}).get("opset_version") or 17))
    diffs = job.check(out, tmp_path)
    assert diffs["max_abs_diff"] < 1e-3, diffs


@pytest.mark.parametrize("name", sorted(_tasks()))
def test_task_contract(name, tmp_path):
    task = _tasks()[name]
    plugin = next(registry.get(n) for n in registry.names() if registry.get(n).task is task)
    data = task.write_synthetic(tmp_path, n_train=2, n_val=1, size=SIZE, seed=0)
    assert {"train", "val"} <= set(data)
    spec = task.tiny_spec(plugin, data, str(tmp_path / "results"), SIZE, epochs=1)
    assert spec["results_dir"] == str(tmp_path / "results") and spec["wandb"] == {"enable": False}
    from tao_sdk.worker import spec as S

    assert S.get(spec, task.batch_size_key) is not None
    datasets = task.demo_datasets({"train": str(tmp_path / "train"), "val": str(tmp_path / "val")})
    assert "train" in datasets and all(isinstance(v, dict) for v in datasets.values())
    assert isinstance(task.demo_overrides("train", SIZE), dict)
    assert set(task.synthetic_keys) <= set(task.demo_overrides("train", SIZE)) | set(plugin.tiny_overrides(SIZE))


@pytest.mark.parametrize("name", job_kinds())
def test_job_kind_contract(name):
    kind = job_kind(name)
    assert isinstance(kind, JobKind) and job_kind(name) is kind
    assert isinstance(kind.has_task_status, bool) and isinstance(kind.resumes_from_checkpoint, bool)
    assert kind.resumes_from_checkpoint or kind.resume_hint, f"{name}: say how a job of this kind resumes"
    record = JobRecord(skill="tao-train-rtdetr", action="train", kind=name, status=JobStatus.SUCCESS,
                       result={"best_child_id": None})
    fraction = kind.fraction_done(record, None)
    assert fraction is None or 0.0 <= fraction <= 1.0
    assert kind.stalled(record) is None or isinstance(kind.stalled(record), str)
    from tao_sdk.errors import ParentModelError

    try:
        source = kind.model_source(None, record)
    except ParentModelError as exc:  # a kind that stands for another job says what to wait for
        assert record.id in str(exc)
    else:
        assert source is record


def test_every_inference_mapping_function_has_a_filler():
    from tao_sdk.mappings import MAPPING_FUNCTIONS
    from tao_sdk.skillmd import INFERENCE_FUNCTIONS

    assert set(MAPPING_FUNCTIONS) == set(INFERENCE_FUNCTIONS)
