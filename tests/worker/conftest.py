"""Fixtures for the worker tests: a tiny synthetic COCO dataset and a job runner.

Every job runs in-process through ``tao_sdk.worker.cli.main`` (same code path as
``python -m tao_sdk.worker``, without paying the torch/transformers import per job), with
``TAO_WORKER_BACKBONE_SCALE=tiny`` and a per-test dataset cache.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """2-class synthetic dataset: 12 train + 4 val images of 64x64 pixels."""
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    root = tmp_path_factory.mktemp("synthetic")
    return make_coco_dataset(root, n_train=12, n_val=4, classes=("square", "disc"), size=64,
                             seed=3)


@pytest.fixture(autouse=True)
def worker_env(monkeypatch, tmp_path):
    """Tiny backbones and an isolated dataset cache / staging folder for every test."""
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache" / "datasets"))
    monkeypatch.setenv("TAO_WORKER_STAGING", str(tmp_path / "staging"))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI", "TAO_MLFLOW_PARENT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)  # tracking only where a test asks for it


def base_spec(network: str, ds: dict[str, dict[str, Path]], results_dir: str) -> dict[str, Any]:
    """A complete, tiny spec for ``network`` (train + evaluate + inference + export sections)."""
    train, val = ds["train"], ds["val"]
    spec: dict[str, Any] = {
        "results_dir": results_dir,
        "encryption_key": "tlt_encode",
        "dataset": {
            "train_data_sources": [{"image_dir": str(train["images"]),
                                    "json_file": str(train["annotations"])}],
            "val_data_sources": {"image_dir": str(val["images"]),
                                 "json_file": str(val["annotations"])},
            "test_data_sources": {"image_dir": str(val["images"]),
                                  "json_file": str(val["annotations"])},
            "infer_data_sources": {"image_dir": [str(val["images"])],
                                   "classmap": str(val["label_map"])},
            "num_classes": 3,
            "batch_size": 4,
            "workers": 0,
        },
        "model": {
            "backbone": "resnet_18",
            "num_queries": 12,
            "num_select": 12,
            "hidden_dim": 32,
            "nheads": 4,
            "dim_feedforward": 64,
            "enc_layers": 1,
            "dec_layers": 1,
        },
        "train": {
            "num_epochs": 2,
            "checkpoint_interval": 1,
            "validation_interval": 1,
            "optim": {"lr": 5e-4, "lr_backbone": 5e-4},
            "enable_ema": False,
        },
        "evaluate": {"checkpoint": f"{results_dir}/train/model_epoch_001.pth"},
        "inference": {"checkpoint": f"{results_dir}/train/model_epoch_001.pth",
                      "conf_threshold": 0.0},
        "export": {"checkpoint": f"{results_dir}/train/model_epoch_001.pth",
                   "onnx_file": f"{results_dir}/export/model.onnx",
                   "input_height": 64, "input_width": 64, "opset_version": 17},
        "gen_trt_engine": {"onnx_file": f"{results_dir}/export/model.onnx",
                           "trt_engine": f"{results_dir}/gen_trt_engine/model.engine"},
        "wandb": {"enable": False},
    }
    if network == "rtdetr":
        spec["model"].update(num_feature_levels=3, feat_channels=[32, 32, 32], dn_number=4)
        spec["dataset"]["augmentation"] = {"multi_scales": [64], "train_spatial_size": [64, 64],
                                           "eval_spatial_size": [64, 64],
                                           "distortion_prob": 0.5}
    else:
        spec["dataset"]["val_data_sources"] = [spec["dataset"]["val_data_sources"]]
        spec["model"].update(num_feature_levels=3, return_interm_indices=[1, 2, 3],
                             dec_layers=2, dropout_ratio=0.0)
        spec["dataset"]["augmentation"] = {"scales": [64], "test_random_resize": 64,
                                           "random_resize_max_size": 64}
    return spec


def run_job(network: str, action: str, spec: dict[str, Any], tmp_path: Path,
            *overrides: str) -> tuple[int, list[dict[str, Any]]]:
    """Write ``spec`` to a YAML file, run the worker in-process; return (exit code, status
    lines of the task) - the lines are read from local results folders only."""
    from tao_sdk.worker.cli import main

    spec_file = tmp_path / f"spec_{network}_{action}.yaml"
    spec_file.write_text(yaml.safe_dump(copy.deepcopy(spec)), encoding="utf-8")
    code = main([network, action, "-e", str(spec_file), *overrides])
    status = Path(str(spec["results_dir"])) / action / "status.json"
    lines = []
    if status.exists():
        lines = [json.loads(ln) for ln in status.read_text(encoding="utf-8").splitlines() if ln]
    return code, lines


@pytest.fixture
def make_spec(tiny_dataset, tmp_path):
    """``make_spec(network, results_dir=None)`` -> a tiny complete spec (see :func:`base_spec`)."""

    def _make(network: str, results_dir: str | None = None) -> dict[str, Any]:
        return base_spec(network, tiny_dataset, results_dir or str(tmp_path / "results"))

    return _make


@pytest.fixture
def run_worker(tmp_path):
    """``run_worker(network, action, spec, *overrides)`` -> (exit code, status lines)."""

    def _run(network: str, action: str, spec: dict[str, Any], *overrides: str):
        return run_job(network, action, spec, tmp_path, *overrides)

    return _run
