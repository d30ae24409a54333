"""TensorRT on a real NVIDIA GPU: export -> gen_trt_engine (FP32, FP16, INT8 with calibration) ->
TensorRT evaluate / inference, compared with the PyTorch evaluation of the same checkpoint.

Skipped with the reason below on machines without an NVIDIA GPU and the ``tensorrt`` package
(``pip install 'tao-skill-bank[gpu]'``); run ``pytest -m gpu tests/worker`` on a GPU node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")


def _tensorrt_ready() -> str | None:
    from tao_sdk.worker.trt import nvidia_gpu_visible

    if not nvidia_gpu_visible():
        return "TensorRT needs an NVIDIA GPU: none is visible on this machine"
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"TensorRT needs the tensorrt package on the GPU node: {exc}"
    return None


_REASON = _tensorrt_ready()
pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


@pytest.mark.parametrize("data_type", ["FP32", "FP16", "INT8"])
def test_engine_build_and_tensorrt_evaluate(make_spec, run_worker, tiny_dataset, data_type):
    spec = make_spec("rtdetr")
    results = Path(spec["results_dir"])
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    code, lines = run_worker("rtdetr", "evaluate", spec)
    assert code == 0, lines[-1]
    torch_map50 = lines[-1]["kpi"]["test_mAP50"]
    code, lines = run_worker("rtdetr", "export", spec)
    assert code == 0, lines[-1]
    gte = spec["gen_trt_engine"]
    gte["onnx_file"] = str(results / "export" / "model.onnx")
    gte["trt_engine"] = str(results / f"model_{data_type}.engine")
    gte["tensorrt"] = {"data_type": data_type, "workspace_size": 1024, "min_batch_size": 1, "opt_batch_size": 2,
                       "max_batch_size": 4,
                       "calibration": {"cal_image_dir": [str(tiny_dataset["train"]["images"])],
                                       "cal_cache_file": str(results / f"cal_{data_type}.bin"),
                                       "cal_batch_size": 2, "cal_batches": 2}}
    code, lines = run_worker("rtdetr", "gen_trt_engine", spec)
    assert code == 0, lines[-1]
    assert Path(gte["trt_engine"]).stat().st_size > 0
    if data_type == "INT8":
        assert Path(gte["tensorrt"]["calibration"]["cal_cache_file"]).exists()
    spec["evaluate"] = {**spec.get("evaluate", {}), "checkpoint": None, "trt_engine": gte["trt_engine"]}
    code, lines = run_worker("rtdetr", "evaluate", spec)
    assert code == 0, lines[-1]
    trt_map50 = lines[-1]["kpi"]["test_mAP50"]
    tolerance = 0.05 if data_type != "INT8" else 0.25
    assert abs(trt_map50 - torch_map50) <= tolerance, (data_type, trt_map50, torch_map50)
    assert (results / "trt_evaluate" / "status.json").exists()
