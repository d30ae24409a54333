"""Pretrained weights through the SDK and the real worker: a Hugging Face checkpoint folder
(config.json + model.safetensors of the worker's own tiny RT-DETR, saved with another class
count) served by a loopback Hugging Face endpoint, given as ``--pretrained-model hf://...``;
the plan names it, the job downloads it into the cache and reports in status.json and its result
how many tensors were loaded, skipped (class head: shape mismatch) and left at init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tao_sdk import Workspace, create_job, plan_job, wait_for_job  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402
from tao_sdk.worker.engine.checkpoint import load_pretrained  # noqa: E402
from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset  # noqa: E402
from tests.weight_hubs import Hub  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture
def setting(tmp_path, monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    hub = Hub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, size=SIZE, seed=1)
    datasets = {"train_datasets": [str(ds["train"]["root"])], "eval_dataset": str(ds["val"]["root"])}
    over = {**registry.get("rtdetr").demo_train_overrides(1, SIZE), "train.validation_interval": 1}
    yield hub, datasets, over, Workspace(tmp_path / "ws")
    hub.close()


def _hf_folder(plan, folder: Path, extra_classes: int) -> dict:
    """Save the worker's model for ``plan``'s spec with ``extra_classes`` more classes as a
    Hugging Face folder; return its files."""
    plugin = registry.get("rtdetr")
    spec = json.loads(json.dumps(plan.spec))
    spec["dataset"]["num_classes"] += extra_classes
    model = plugin.build_model(plugin.build_arch(spec))
    model.save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_train_starts_from_hf_weights_with_counts(setting, tmp_path):
    hub, datasets, over, ws = setting
    uri = "hf://org/tiny-rtdetr"
    plan = plan_job("rtdetr", "train", automl_policy="off", datasets=datasets, spec_overrides=over,
                    pretrained_model=uri, workspace=ws)
    named = {w["spec_field"]: w for w in plan.to_dict()["weights"]}
    assert named["train.pretrained_model_path"]["source"] == "hf"
    assert named["train.pretrained_model_path"]["resolved"].startswith(hub.url + "/org/tiny-rtdetr/resolve/main/")
    hub.files.update(_hf_folder(plan, tmp_path / "hf", extra_classes=2))

    # the folder itself loads too (what --pretrained-model <folder> gives the loader)
    plugin = registry.get("rtdetr")
    model = plugin.build_model(plugin.build_arch(plan.spec))
    report = load_pretrained(model, tmp_path / "hf", "train.pretrained_model_path", plugin)
    n, total, bad = report.loaded, report.total, report.skipped.get("shape mismatch", [])
    assert bad and n + len(bad) == total  # HF names renamed to the model's (mlp.fc1 <- fc1...)

    job = create_job("rtdetr", "train", automl_policy="off", datasets=datasets, spec_overrides=over,
                     pretrained_model=uri, workspace=ws)
    job = wait_for_job(job.id, timeout=300, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    reports = {r["spec_field"]: r for r in job.result["weights"]}
    full = reports["train.pretrained_model_path"]
    assert full["uri"] == uri and full["loaded"] == n and full["file_tensors"] == total
    assert full["skipped"][0]["count"] == len(bad) and "class head" in full["skipped"][0]["reason"]
    assert full["left_at_init"] == full["model_tensors"] - n
    lines = [json.loads(x) for x in (Path(job.results_uri) / "train" / "status.json").read_text().splitlines()]
    load_line = next(x for x in lines if x.get("weights", {}).get("spec_field") == "train.pretrained_model_path")
    assert load_line["verbosity"] == "WARNING" and f"loaded {n} of {total} tensors from {uri}" in load_line["message"]
    assert any(x.get("download", {}).get("done") for x in lines)  # the download reported its progress
