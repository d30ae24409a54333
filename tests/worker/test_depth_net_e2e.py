"""FastFoundationStereo (depth_net) through the public SDK with the real worker: train ->
evaluate -> export (ONNX parity) -> inference on S3 (moto server), and a small AutoML run whose
trials all succeed. Tiny synthetic stereo pairs and the tiny network on CPU; marked slow."""

from __future__ import annotations

import importlib.util

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tao_sdk import Workspace, create_job, get_job, wait_for_job  # noqa: E402
from tao_sdk.storage import storage_for  # noqa: E402
from tao_sdk.worker.networks.depth_net import TINY_MODEL  # noqa: E402
from tao_sdk.worker.tasks.stereo import make_stereo_dataset  # noqa: E402

pytestmark = pytest.mark.slow
SKILL = "tao-train-fast-foundation-stereo"
H, W = 32, 64


def _overrides(epochs: int) -> dict:
    """The tiny network on 32x64 pairs, 2 iterations, no augmentation."""
    over = {f"model.{k}": v for k, v in TINY_MODEL.items()}
    over.update({"model.train_iters": 2, "model.valid_iters": 2, "train.num_epochs": epochs,
                 "train.checkpoint_interval": 1, "train.validation_interval": 1,
                 "train.optim.lr": 1e-3, "train.optim.warmup_steps": 0,
                 "dataset.train_dataset.batch_size": 2, "dataset.val_dataset.batch_size": 2,
                 "dataset.train_dataset.augmentation.crop_size": [H, W],
                 "wandb.enable": False})
    for name in ("spatial_aug_prob", "color_aug_prob", "eraser_aug_prob", "v_flip_prob",
                 "yjitter_prob", "h_flip_prob", "hshift_prob", "stretch_prob"):
        over[f"dataset.train_dataset.augmentation.{name}"] = 0.0
    return over


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")  # TAO's EdgeNeXt as one narrow block


@pytest.fixture(scope="module")
def local_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stereo")
    make_stereo_dataset(root / "train", 4, H, W, max_disparity=12, seed=1)
    make_stereo_dataset(root / "val", 2, H, W, max_disparity=12, seed=2)
    return {"train": str(root / "train"), "val": str(root / "val")}


def _upload(local: dict, bucket: str) -> dict:
    store = storage_for(f"s3://{bucket}")
    out = {}
    for split, root in local.items():
        for name in ("images.tar.gz", "annotations.txt"):
            store.upload_file(str(Path(root) / name), f"s3://{bucket}/stereo/{split}/{name}")
        out[split] = f"s3://{bucket}/stereo/{split}"
    return out


def _wait(job, ws):
    job = wait_for_job(job.id, timeout=400, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    return job


def test_train_evaluate_export_inference_on_s3(env, s3_env, tmp_path, local_data):
    data = _upload(local_data, s3_env)
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    model = {k: v for k, v in _overrides(2).items() if k.startswith("model.")}
    fmt = {"dataset_format": "GenericDataset"}
    train = _wait(create_job(SKILL, "train", automl_policy="off", workspace=ws, **fmt,
                             spec_overrides=_overrides(2),
                             datasets={"train_datasets": [data["train"]],
                                       "eval_dataset": data["val"]}), ws)
    assert train.progress.max_epoch == 1
    assert {"train_loss", "val_loss", "val_epe"} <= set(train.kpis)
    assert any("/train/model_epoch_001_step_" in a for a in train.artifacts())
    assert any(a.endswith("/train/dn_model_latest.pth") for a in train.artifacts())

    ev = _wait(create_job(SKILL, "evaluate", parent_job_id=train.id, workspace=ws, **fmt,
                          spec_overrides={**model, "dataset.test_dataset.batch_size": 2},
                          datasets={"eval_dataset": data["val"]}), ws)
    assert {"epe", "bp1", "bp2", "bp3", "d1"} <= set(ev.kpis)
    assert 0.0 <= float(ev.kpis["bp3"]) <= float(ev.kpis["bp1"]) <= 1.0
    if importlib.util.find_spec("matplotlib"):  # the evaluate job's error histogram, plotted
        from tao_sdk.plots import plot_job

        assert "error_histogram" in plot_job(ev.id, tmp_path / "ev.png", workspace=ws).panels

    export = _wait(create_job(SKILL, "export", parent_job_id=train.id, workspace=ws,
                              spec_overrides={**model, "export.input_height": H,
                                              "export.input_width": W,
                                              "export.valid_iters": 2}), ws)
    assert float(export.kpis["onnx_max_abs_diff"]) < 1e-3
    onnx_uri = next(a for a in export.artifacts() if a.endswith(".onnx"))
    local_onnx = tmp_path / "model.onnx"
    storage_for(onnx_uri).download_file(onnx_uri, local_onnx)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(local_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["left_image", "right_image"]

    inf = _wait(create_job(SKILL, "inference", parent_job_id=train.id, workspace=ws, **fmt,
                           spec_overrides={**model, "inference.save_raw_npy": True},
                           datasets={"inference_dataset": data["val"]}), ws)
    names = [a.split(f"/{inf.id}/", 1)[1] for a in inf.artifacts()]
    for folder, ext in (("disparity_png", "png"), ("disparity_pfm", "pfm"),
                        ("colorized", "png"), ("disparity_npy", "npy")):
        assert f"inference/{folder}/left/0000.{ext}" in names, names


def test_automl_trials_succeed_and_minimise_val_loss(env, tmp_path, local_data):
    ws = Workspace(tmp_path / "ws")
    job = create_job(SKILL, "train", workspace=ws, dataset_format="GenericDataset",
                     spec_overrides=_overrides(1),
                     datasets={"train_datasets": [local_data["train"]],
                               "eval_dataset": local_data["val"]},
                     automl={"algorithm": "random", "max_recommendations": 2,
                             "hyperparameters": ["train.optim.lr", "train.optim.weight_decay"],
                             "max_concurrent": 1})
    job = wait_for_job(job.id, timeout=600, poll_interval=1.0, workspace=ws)
    assert job.record.kind == "automl" and job.status.value == "SUCCESS", job.result.get("message")
    assert job.result["direction"] == "min" and job.result["metric"] in ("val/loss", "val_loss")
    trials = list(job.result["trials"].values())
    assert len(trials) == 2
    for trial in trials:
        child = get_job(trial["child_id"], workspace=ws)
        assert child.status.value == "SUCCESS", child.result.get("message")
    best = get_job(job.result["best_child_id"], workspace=ws)
    assert "val_loss" in best.kpis
    assert os.path.basename(best.spec["results_dir"]) == best.id
