"""FastFoundationStereo with TensorRT on a real NVIDIA GPU: export (static and dynamic H/W) ->
gen_trt_engine (FP32 / FP16) -> TensorRT evaluate and inference, compared with the PyTorch
evaluation of the same checkpoint.

Skipped with the reason below where there is no NVIDIA GPU or no ``tensorrt`` package
(``pip install 'tao-skill-bank[gpu]'``); run ``pytest -m gpu tests/worker`` on a GPU node.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tao_sdk.demo import tensorrt_unavailable  # noqa: E402

_REASON = tensorrt_unavailable()
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


@pytest.mark.parametrize("data_type, dynamic_hw", [("FP32", False), ("FP16", False),
                                                   ("FP32", True)])
def test_engine_build_and_tensorrt_evaluate_inference(tmp_path, run_worker, data_type,
                                                      dynamic_hw):
    from tao_sdk.worker import registry

    plugin = registry.get("depth_net")
    data = plugin.task.write_synthetic(tmp_path / "data", 8, 4, 64)
    spec = plugin.task.tiny_spec(plugin, data, str(tmp_path / "results"), 64, 2)
    results = Path(spec["results_dir"])
    ckpt = str(results / "train" / plugin.latest_link)
    assert run_worker("depth_net", "train", spec)[0] == 0
    ev = copy.deepcopy(spec)
    ev["evaluate"] = {"checkpoint": ckpt}
    code, lines = run_worker("depth_net", "evaluate", ev)
    assert code == 0, lines[-1]
    torch_epe = lines[-1]["kpi"]["epe"]
    ex = copy.deepcopy(spec)
    ex["export"].update(checkpoint=ckpt, dynamic_hw=dynamic_hw, batch_size=1)
    assert run_worker("depth_net", "export", ex)[0] == 0
    gte = copy.deepcopy(spec)
    gte["gen_trt_engine"].update(trt_engine=str(results / f"m_{data_type}_{dynamic_hw}.engine"),
                                 tensorrt={"data_type": data_type, "workspace_size": 1024})
    if dynamic_hw:
        gte["gen_trt_engine"].update(min_height=32, opt_height=32, max_height=64,
                                     min_width=64, opt_width=64, max_width=128)
    code, lines = run_worker("depth_net", "gen_trt_engine", gte)
    assert code == 0, lines[-1]
    engine = gte["gen_trt_engine"]["trt_engine"]
    for action in ("evaluate", "inference"):
        trt_spec = copy.deepcopy(spec)
        trt_spec[action] = {"trt_engine": engine}
        code, lines = run_worker("depth_net", action, trt_spec)
        assert code == 0, lines[-1]
        assert (results / f"trt_{action}" / "status.json").exists()
        if action == "evaluate":
            tolerance = 0.05 if data_type == "FP32" else 0.3
            assert abs(lines[-1]["kpi"]["epe"] - torch_epe) <= tolerance
    assert list((results / "trt_inference" / "disparity_pfm").rglob("*.pfm"))
