"""OneFormer through the worker's command line: train -> evaluate -> inference -> export, and
the TensorRT path (GPU + tensorrt only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.worker.conftest import run_job


@pytest.fixture(scope="module")
def seg_dataset(tmp_path_factory):
    """A synthetic COCO panoptic dataset: 8 train + 4 val images of 64 px."""
    from tao_sdk.worker.tasks.segmentation import TASK

    return TASK.write_synthetic(tmp_path_factory.mktemp("seg"), 8, 4, 64, seed=2)


def _spec(data, results: Path, epochs: int = 2) -> dict:
    from tao_sdk.worker.registry import get

    plugin = get("oneformer")
    spec = plugin.task.tiny_spec(plugin, data, str(results), 64, epochs)
    ckpt = f"{results}/train/oneformer_model_latest.pth"
    for section in ("evaluate", "inference", "export"):
        spec.setdefault(section, {})["checkpoint"] = ckpt
    return spec


def _kpi(lines):
    return [ln["kpi"] for ln in lines if ln.get("kpi")][-1]


@pytest.mark.slow
def test_oneformer_train_evaluate_inference_export(seg_dataset, tmp_path):
    results = tmp_path / "results"
    spec = _spec(seg_dataset, results)
    code, lines = run_job("oneformer", "train", spec, tmp_path)
    assert code == 0, lines[-1]
    assert lines[-1]["status"] == "SUCCESS"
    start = next(ln["message"] for ln in lines if "model: OneFormer" in ln["message"])
    assert "not honoured" in start and "train.pretrained_backbone" not in start
    kpi = _kpi(lines)
    assert {"train_loss", "mIoU", "ACC_all"} <= set(kpi)
    train_dir = results / "train"
    assert (train_dir / "model_epoch_001_step_00004.pth").exists()
    assert (train_dir / "oneformer_model_latest.pth").exists()

    code, lines = run_job("oneformer", "evaluate", spec, tmp_path)
    assert code == 0, lines[-1]
    kpi = _kpi(lines)
    assert 0 <= kpi["mIoU"] <= 100 and 0 < kpi["ACC_all"] <= 100
    res = json.loads((results / "evaluate" / "results.json").read_text())
    assert set(res["iou_per_class"]) == {"background", "square", "disc", "triangle"}
    assert res["images"] == 4
    if importlib.util.find_spec("matplotlib"):  # the per-class IoU bars of `tao-skills plot`
        from tao_sdk import Workspace
        from tao_sdk.jobstore import JobRecord
        from tao_sdk.plots import plot_job

        ws = Workspace(tmp_path / "ws")
        ws.store.create(JobRecord(id="job-seg-eval", skill="tao-train-oneformer", action="evaluate",
                                  results_uri=str(results), platform="local"))
        assert "categorical:IoU_per_class" in plot_job("job-seg-eval", tmp_path / "seg.png",
                                                       workspace=ws).panels

    code, lines = run_job("oneformer", "inference", spec, tmp_path)
    assert code == 0, lines[-1]
    out = results / "inference"
    labels = sorted((out / "labels").glob("*.png"))
    assert len(labels) == 4 and len(list((out / "masks").glob("*.png"))) == 4
    assert len(list((out / "overlays").glob("*.jpg"))) == 4
    assert np.asarray(Image.open(labels[0])).max() < 4
    code, lines = run_job("oneformer", "inference", spec, tmp_path, "inference.mode=panoptic")
    assert code != 0 and "inference.mode" in lines[-1]["message"]

    code, lines = run_job("oneformer", "export", spec, tmp_path)
    assert code == 0, lines[-1]
    assert (results / "export" / "model.onnx").exists()
    info = json.loads((results / "export" / "export_info.json").read_text())
    assert info["parity"]["max_abs_diff"] < 1e-3 and info["parity"]["checked_batch"] == 2


def test_oneformer_bad_inputs_fail_with_the_key(seg_dataset, tmp_path):
    results = tmp_path / "results"
    spec = _spec(seg_dataset, results)
    spec["model"]["sem_seg_head"]["num_classes"] = 5
    code, lines = run_job("oneformer", "train", spec, tmp_path)
    assert code != 0 and "model.sem_seg_head.num_classes: 4" in lines[-1]["message"]
    spec = _spec(seg_dataset, results)
    del spec["dataset"]["train"]["panoptic"]
    code, lines = run_job("oneformer", "train", spec, tmp_path)
    assert code != 0 and "dataset.train.panoptic" in lines[-1]["message"]


def _tensorrt_reason() -> str | None:
    from tao_sdk.worker.trt import nvidia_gpu_visible

    if not nvidia_gpu_visible():
        return "TensorRT needs an NVIDIA GPU (none visible)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (import tensorrt failed)"
    return None


@pytest.mark.gpu
def test_oneformer_tensorrt_engine_evaluate_inference(seg_dataset, tmp_path):
    reason = _tensorrt_reason()
    if reason:
        pytest.skip(reason)
    results = tmp_path / "results"
    spec = _spec(seg_dataset, results, epochs=1)
    for action in ("train", "export", "gen_trt_engine"):
        code, lines = run_job("oneformer", action, spec, tmp_path)
        assert code == 0, (action, lines[-1])
    torch_kpi = _kpi(run_job("oneformer", "evaluate", spec, tmp_path)[1])
    engine = str(results / "gen_trt_engine" / "model.engine")
    for section in ("evaluate", "inference"):
        spec[section] = {"trt_engine": engine, "checkpoint": None}
    code, lines = run_job("oneformer", "evaluate", spec, tmp_path)
    assert code == 0, lines[-1]
    assert abs(_kpi(lines)["mIoU"] - torch_kpi["mIoU"]) < 1.0
    code, lines = run_job("oneformer", "inference", spec, tmp_path)
    assert code == 0, lines[-1]
    assert len(list((results / "trt_inference" / "labels").glob("*.png"))) == 4


@pytest.mark.slow
def test_oneformer_train_from_tao_backbone_ptm_and_tao_checkpoint(seg_dataset, tmp_path):
    """``train.pretrained_backbone`` (a TAO Swin PTM: ``{"model": {patch_embed..., layers...}}``,
    keys as TAO's ``load_backbone_weights`` reads them) and ``train.pretrained_model`` (a
    checkpoint in TAO's Lightning layout) load through the one weights entry point, every
    tensor used, each with its load report in status.json."""
    import torch

    from tao_sdk.worker.registry import get
    from tao_sdk.worker.weights import tao_state

    plugin = get("oneformer")
    spec = _spec(seg_dataset, tmp_path / "results", epochs=1)
    source = plugin.build_model(plugin.build_arch(spec))
    _layout, tao = tao_state(plugin, source.state_dict())
    head = "model.backbone."
    backbone = {k[len(head):]: v for k, v in tao.items() if k.startswith(head)}
    torch.save({"model": backbone}, tmp_path / "swin_ptm.pth")
    torch.save({"state_dict": tao, "tao_model": "oneformer",
                "pytorch-lightning_version": "2.4.0"}, tmp_path / "tao_oneformer.pth")
    spec["train"].update(pretrained_backbone=str(tmp_path / "swin_ptm.pth"),
                         pretrained_model=str(tmp_path / "tao_oneformer.pth"))
    code, lines = run_job("oneformer", "train", spec, tmp_path)
    assert code == 0, lines[-1]
    loads = {ln["weights"]["spec_field"]: ln["weights"] for ln in lines if ln.get("weights")}
    assert set(loads) == {"train.pretrained_backbone", "train.pretrained_model"}
    bb, full = loads["train.pretrained_backbone"], loads["train.pretrained_model"]
    # counts are the worker's tensors (TAO's fused qkv is three of them): every one is loaded
    assert bb["layout"] == "TAO backbone PTM" and bb["file_tensors"] == len(backbone) > 0
    assert bb["loaded"] == bb["model_tensors"] and bb["left_at_init"] == 0
    assert full["layout"] == "tao" and full["loaded"] == full["model_tensors"] > len(backbone)
    assert not bb["skipped"] and not full["skipped"] and full["left_at_init"] == 0
