"""distill and quantize through the SDK with the real worker: parent chaining from a train job,
results on S3 (moto server), plan-time refusals (unknown criterion, a quantize mode that cannot
run here) and the is_quantized contract of evaluate. Tiny configs on CPU; marked slow."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchao")

from tao_sdk import Workspace, create_job, wait_for_job  # noqa: E402
from tao_sdk.storage import storage_for  # noqa: E402
from tao_sdk.worker import registry  # noqa: E402
from tao_sdk.worker.errors import SpecError  # noqa: E402
from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset  # noqa: E402

pytestmark = pytest.mark.slow
SIZE = 64
BINDINGS = [{"student_module_name": "model.enc_score_head", "teacher_module_name": "model.enc_score_head",
             "criterion": "MSE", "weight": 1.0}]
STUDENT = {"model.hidden_dim": 32, "model.feat_channels": [32, 32, 32], "model.dim_feedforward": 64,
           "model.nheads": 2, "model.distillation_loss_coef": 1.0}


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "tao-e2e-cache"))


def _data(tmp_path: Path, bucket: str) -> dict:
    ds = make_coco_dataset(tmp_path / "data", n_train=8, n_val=4, size=SIZE, seed=1)
    store, out = storage_for(f"s3://{bucket}"), {}
    for split in ("train", "val"):
        for name in ("images.tar.gz", "annotations.json"):
            store.upload_file(str(Path(ds[split]["root"]) / name), f"s3://{bucket}/data/{split}/{name}")
        out[split] = f"s3://{bucket}/data/{split}"
    return out


def _wait(job, ws):
    return wait_for_job(job.id, timeout=600, poll_interval=0.5, workspace=ws)


def test_distill_and_quantize_chain_from_train_on_s3(env, s3_env, tmp_path):
    data = _data(tmp_path, s3_env)
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    datasets = {"train_datasets": [data["train"]], "eval_dataset": data["val"]}
    over = {**registry.get("rtdetr").demo_train_overrides(1, SIZE), "train.validation_interval": 1}
    train = _wait(create_job("rtdetr", "train", automl_policy="off", workspace=ws, spec_overrides=over,
                             datasets=datasets), ws)
    assert train.status.value == "SUCCESS", train.result.get("message")

    # plan-time refusals: nothing is submitted
    with pytest.raises(SpecError, match="criterion='cosine' is unknown; use one of L1"):
        create_job("rtdetr", "distill", parent_job_id=train.id, workspace=ws, datasets=datasets,
                   spec_overrides={**STUDENT, "distill.bindings": [{**BINDINGS[0], "criterion": "cosine"}]})
    if importlib.util.find_spec("mslk") is None:
        with pytest.raises(SpecError, match="int4.*cannot run here: torchao's int4 weight-only packing needs"):
            create_job("rtdetr", "quantize", parent_job_id=train.id, workspace=ws, datasets=datasets,
                       spec_overrides={"quantize.layers": [{"module_name": "*", "weights": {"dtype": "int4"}}]})

    distill = _wait(create_job("rtdetr", "distill", parent_job_id=train.id, workspace=ws, datasets=datasets,
                               spec_overrides={**STUDENT, "train.num_epochs": 1, "distill.bindings": BINDINGS}), ws)
    assert distill.status.value == "SUCCESS", distill.result.get("message")
    assert distill.spec["distill"]["pretrained_teacher_model_path"].startswith(
        f"s3://{s3_env}/tao/results/{train.id}/train/model_epoch_000")
    assert "val_mAP50" in distill.kpis
    assert any(a.endswith("distill/model_epoch_000.pth") for a in distill.artifacts())

    quant = _wait(create_job("rtdetr", "quantize", parent_job_id=train.id, workspace=ws, datasets=datasets,
                             spec_overrides={"quantize.backend": "torchao", "quantize.mode": "weight_only_ptq",
                                             "quantize.layers": [{"module_name": "*",
                                                                  "weights": {"dtype": "int8"}}]}), ws)
    assert quant.status.value == "SUCCESS", quant.result.get("message")
    assert quant.kpis["model_size_mb"] < quant.kpis["float_model_size_mb"]
    assert {"val_mAP50", "float_val_mAP50"} <= set(quant.kpis)

    ev = _wait(create_job("rtdetr", "evaluate", parent_job_id=quant.id, workspace=ws,
                          datasets={"eval_dataset": data["val"]},
                          spec_overrides={"evaluate.is_quantized": True}), ws)
    assert ev.status.value == "SUCCESS", ev.result.get("message")
    assert ev.spec["evaluate"]["checkpoint"].startswith(f"s3://{s3_env}/tao/results/{quant.id}/quantize/")
    assert ev.kpis["test_mAP50"] == pytest.approx(quant.kpis["val_mAP50"], abs=1e-6)
    bad = _wait(create_job("rtdetr", "evaluate", parent_job_id=quant.id, workspace=ws,
                           datasets={"eval_dataset": data["val"]}), ws)
    assert bad.status.value == "FAILURE" and "set evaluate.is_quantized=true" in bad.result["message"]
