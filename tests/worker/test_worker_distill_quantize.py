"""Worker end to end on CPU: distill (student + frozen teacher) and quantize (torchao, ModelOpt)
of a tiny RT-DETR, and the quantized checkpoint through evaluate / export with is_quantized."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

_BINDINGS = [{"student_module_name": "model.enc_score_head",
              "teacher_module_name": "model.enc_score_head", "criterion": "MSE", "weight": 1.0},
             {"student_module_name": "model.enc_bbox_head.layers.2",
              "teacher_module_name": "model.enc_bbox_head.layers.2", "criterion": "L1"}]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A 1-epoch tiny RT-DETR train job (the teacher / the model to quantize), once per module."""
    from tests.worker.conftest import base_spec, run_job

    tmp = tmp_path_factory.mktemp("trained")
    spec = base_spec("rtdetr", tiny_dataset, str(tmp / "results"))
    spec["train"]["num_epochs"] = 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
        mp.setenv("TAO_WORKER_CACHE", str(tmp / "cache"))
        code, _ = run_job("rtdetr", "train", spec, tmp)
    assert code == 0
    return spec, f"{spec['results_dir']}/train/model_epoch_000.pth"


def _own(spec: dict, tmp_path) -> dict:
    """``spec`` writing into this test's own results folder."""
    return {**spec, "results_dir": str(tmp_path / "results")}


def _student(spec: dict, teacher: str, bindings=None) -> dict:
    out = {**spec, "model": {**spec["model"], "hidden_dim": 16, "feat_channels": [16, 16, 16],
                             "dim_feedforward": 32, "nheads": 2, "distillation_loss_coef": 2.0}}
    out["distill"] = {"pretrained_teacher_model_path": teacher,
                      "teacher": {"backbone": "resnet_50"},
                      "bindings": bindings or _BINDINGS}
    return out


def test_distill_trains_student_with_teacher(trained, run_worker, tmp_path):
    spec, teacher = trained
    spec = _own(spec, tmp_path)
    code, lines = run_worker("rtdetr", "distill", _student(spec, teacher))
    assert code == 0, lines[-1]
    start = " ".join(ln.get("message", "") for ln in lines[:3])
    assert "teacher: model: RT-DETR" in start and "2 bound module pair(s)" in start
    assert "distill.teacher.backbone (checkpoint resnet_18, spec resnet_50)" in start
    assert lines[-1]["status"] == "SUCCESS" and "Distill finished" in lines[-1]["message"]
    assert "val_mAP50" in lines[-2]["kpi"]
    from pathlib import Path

    assert (Path(spec["results_dir"]) / "distill" / "model_epoch_000.pth").exists()


def test_distill_errors_name_the_field(trained, run_worker, tmp_path):
    spec, teacher = trained
    spec = _own(spec, tmp_path)
    bad = [{**_BINDINGS[0], "criterion": "cosine"}]
    code, lines = run_worker("rtdetr", "distill", _student(spec, teacher, bad))
    assert code != 0 and "criterion='cosine' is unknown; use one of L1" in lines[-1]["message"]
    bad = [{**_BINDINGS[0], "student_module_name": "model.enc_score_hed"}]
    code, lines = run_worker("rtdetr", "distill", _student(spec, teacher, bad))
    assert code != 0
    assert "student_module_name='model.enc_score_hed' matches no module; close names: " \
           "model.enc_score_head" in lines[-1]["message"]


@pytest.mark.parametrize("quant", [
    {"backend": "torchao", "mode": "weight_only_ptq",
     "layers": [{"module_name": "*", "weights": {"dtype": "int8"}}]},
    {"backend": "modelopt.pytorch", "mode": "static_ptq",
     "layers": [{"module_name": "model.decoder.*", "weights": {"dtype": "int8"},
                 "activations": {"dtype": "int8"}}]},
], ids=["torchao-int8", "modelopt-static"])
def test_quantize_then_evaluate_with_flag(trained, run_worker, quant, tmp_path):
    spec, ckpt = trained
    spec = _own(spec, tmp_path)
    qspec = {**spec, "quantize": {**quant, "model_path": ckpt}}
    qspec["dataset"] = {**spec["dataset"],
                        "quant_calibration_data_sources": spec["dataset"]["val_data_sources"]}
    code, lines = run_worker("rtdetr", "quantize", qspec)
    assert code == 0, lines[-1]
    kpi = lines[-2]["kpi"]
    assert {"val_mAP50", "float_val_mAP50", "model_size_mb", "float_model_size_mb"} <= set(kpi)
    if quant["backend"] == "torchao":
        assert kpi["model_size_mb"] < kpi["float_model_size_mb"]
    qckpt = f"{spec['results_dir']}/quantize/model_epoch_000.pth"
    ev = {**spec, "evaluate": {"checkpoint": qckpt, "is_quantized": True}}
    code, lines = run_worker("rtdetr", "evaluate", ev)
    assert code == 0, lines[-1]
    assert abs(lines[-2]["kpi"]["test_mAP50"] - kpi["val_mAP50"]) < 1e-6  # same images
    code, lines = run_worker("rtdetr", "evaluate", {**spec, "evaluate": {"checkpoint": qckpt}})
    assert code != 0 and "set evaluate.is_quantized=true" in lines[-1]["message"]
    code, lines = run_worker("rtdetr", "evaluate",
                             {**spec, "evaluate": {"checkpoint": ckpt, "is_quantized": True}})
    assert code != 0 and "is not a quantized checkpoint" in lines[-1]["message"]
    exp = {**spec, "export": {**spec["export"], "checkpoint": qckpt, "is_quantized": True}}
    code, lines = run_worker("rtdetr", "export", exp)
    if quant["backend"] == "torchao":
        assert code != 0 and "no ONNX representation" in lines[-1]["message"]
    else:
        assert code == 0, lines[-1]
