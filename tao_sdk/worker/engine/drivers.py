"""The evaluate, inference, export and gen_trt_engine drivers of the engine.

Evaluate and inference run under ``train.precision`` (their TAO specs carry the ``train``
section; see :mod:`tao_sdk.worker.engine.precision`); export traces in float32.

Evaluate / inference load the model (a checkpoint of this worker, rebuilt from its ``arch``,
or a TensorRT engine through the task's adapter) and hand it to the task
(``plugin.task.evaluate`` / ``plugin.task.inference``), which reads its data, computes the
metrics or writes the outputs and returns the SUCCESS message. Export asks the plugin what to
export (:meth:`NetworkPlugin.onnx_export`), writes and checks the ONNX file and compares
onnxruntime with PyTorch (the plugin's parity check). gen_trt_engine builds a TensorRT engine
(:mod:`tao_sdk.worker.trt`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from tao_sdk.worker import spec as S
from tao_sdk.worker.engine import runtime as R
from tao_sdk.worker.engine.precision import precision_from_spec
from tao_sdk.worker.errors import WorkerError

__all__ = ["evaluate", "inference", "export", "gen_trt_engine", "ONNX_TOLERANCE",
           "onnx_export"]

#: Largest accepted difference between ONNX Runtime and PyTorch outputs.
ONNX_TOLERANCE = 1e-3


def _run_task(ctx, section: str, run) -> str:
    """Load the model of ``section`` (checkpoint or TensorRT engine), report it, and call the
    task's ``run(ctx, plugin, model, arch, input_size)`` under ``train.precision``."""
    model, arch, notes, size = R.load_model(ctx, section)
    precision = precision_from_spec(ctx.spec, R.device())
    R.report_start(ctx, arch, notes + [precision.describe()])
    model.to(R.device())
    with precision.autocast():
        return run(ctx, ctx.plugin, model, arch, size)


def evaluate(ctx) -> str:
    """Evaluate a checkpoint (or TensorRT engine) on the task's test data; the task writes the
    KPIs (``test_*``) and its results file."""
    return _run_task(ctx, "evaluate", ctx.plugin.task.evaluate)


def inference(ctx) -> str:
    """Run a checkpoint (or TensorRT engine) on the task's inference data; the task writes
    its outputs."""
    return _run_task(ctx, "inference", ctx.plugin.task.inference)


def onnx_export(job, path: Path, opset: int) -> None:
    """Write ``job`` (an :class:`tao_sdk.worker.plugin.OnnxExport`) to ``path`` (atomically,
    TorchScript-based exporter)."""
    import warnings

    import torch

    from tao_sdk.diskspace import guarded_write

    tmp = path.with_name(".tao-tmp-" + path.name)
    with guarded_write(tmp, f"ONNX file {path.name}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(job.module, tuple(job.example_inputs), str(tmp),
                          input_names=job.input_names, output_names=job.output_names,
                          opset_version=opset, dynamic_axes=job.dynamic_axes,
                          do_constant_folding=True, dynamo=False)
        os.replace(tmp, path)


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    """Store ``props`` in the ONNX file's metadata_props (deploy tools and INT8 calibration
    read the preprocessing from there)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, props)
    from tao_sdk.diskspace import guarded_write

    tmp = path.with_name(".tao-tmp-" + path.name)
    with guarded_write(tmp, f"ONNX file {path.name}", needed=model.ByteSize()):
        onnx.save(model, str(tmp))
        os.replace(tmp, path)


def export(ctx) -> str:
    """Export a checkpoint to ONNX (``export.onnx_file``), check it with onnx and onnxruntime,
    and report the largest output difference against PyTorch."""
    R.stage(ctx)
    import onnx

    model, arch, ckpt, notes = R.model_from_checkpoint(ctx, "export.checkpoint")
    if ckpt.get("quantization"):
        from tao_sdk.worker.quantization import refuse_export

        refuse_export(ckpt["quantization"], str(S.get(ctx.spec, "export.checkpoint")))
    R.report_start(ctx, arch, notes)
    onnx_uri = S.require(ctx.spec, "export.onnx_file",
                         "the ONNX file to write (e.g. <results_dir>/export/model.onnx)")
    opset = int(S.get(ctx.spec, "export.opset_version", 17))
    model = model.cpu().eval()
    job = ctx.plugin.onnx_export(model, arch, ctx.spec)
    out_path = ctx.output_path(str(onnx_uri), "export.onnx_file")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    onnx_export(job, out_path, opset)
    export_s = time.monotonic() - t0
    _add_metadata(out_path, {"tao_worker.network": ctx.network, **job.metadata})
    onnx.checker.check_model(str(out_path))
    diffs = job.check(out_path, ctx.task_dir)
    note = diffs.pop("note", "")
    diff = diffs["max_abs_diff"]
    R.write_json(ctx.task_dir / "export_info.json", {
        "onnx_file": str(onnx_uri), "opset_version": opset, **job.info,
        "parity": diffs, "export_seconds": export_s,
    })
    detail = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()
                       if isinstance(v, float) and k != "max_abs_diff")
    ctx.status.running(f"ONNX export checked with onnxruntime at batch {diffs['checked_batch']}: "
                       f"max abs difference vs PyTorch {diff:.3g} ({detail}){note}",
                       kpi={"onnx_max_abs_diff": diff})
    if not math.isfinite(diff) or diff > ONNX_TOLERANCE:
        raise WorkerError(
            f"export.onnx_file {onnx_uri}: onnxruntime outputs differ from PyTorch by {diff:.3g} "
            f"(> {ONNX_TOLERANCE}); try another export.opset_version (now {opset}) or a fixed "
            "export.batch_size"
        )
    return (f"Export finished successfully: {onnx_uri} ({out_path.stat().st_size / 1e6:.1f} MB, "
            f"opset {opset}, input {job.describe}); onnxruntime max abs diff {diff:.3g}.")


def gen_trt_engine(ctx) -> str:
    """Build a TensorRT engine from ``gen_trt_engine.onnx_file`` (NVIDIA GPU + tensorrt only)."""
    from tao_sdk.worker.trt import build_engine, require_tensorrt

    require_tensorrt()  # fails at once without an NVIDIA GPU / tensorrt
    return build_engine(ctx)
