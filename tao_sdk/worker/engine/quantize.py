"""The quantize action of the engine: post-training quantization of a trained checkpoint.

Loads ``quantize.model_path`` (a float checkpoint; the SDK fills it with the parent train
job's best one), quantizes it as the ``quantize`` section says (:mod:`tao_sdk.worker.quantization`:
torchao weight-only, or ModelOpt static / weight-only PTQ calibrated on
``dataset.quant_calibration_data_sources``), and writes one checkpoint named as train names
them (the parent's epoch) with the recipe under ``"quantization"``; evaluate / inference /
export load it with ``<action>.is_quantized: true``. KPIs: the parameter sizes
(``float_model_size_mb``, ``model_size_mb``, ``size_ratio``) and, when
``dataset.val_data_sources`` is set, the task's validation KPIs of the quantized model
(``val_*``) next to the float model's (``float_val_*``).
"""

from __future__ import annotations

import json
from typing import Any

from tao_sdk.worker import quantization as Q
from tao_sdk.worker.engine import runtime as R
from tao_sdk.worker.engine.checkpoint import write_checkpoint
from tao_sdk.worker.errors import SpecError

__all__ = ["quantize"]

_CALIBRATION_KEY = "dataset.quant_calibration_data_sources"


def _calibration(ctx, arch: dict, plan: Q.QuantPlan, device):
    """``calibrate(model)`` over the calibration data for static PTQ (``None`` otherwise)."""
    if plan.mode != "static_ptq":
        return None
    data = ctx.plugin.task.eval_data(ctx, arch, _CALIBRATION_KEY)
    if not data:
        raise SpecError(f"quantize.mode=static_ptq calibrates activation ranges on "
                        f"{_CALIBRATION_KEY}, which is not set; give the job a calibration "
                        "dataset (create_job datasets calibration_dataset / train_datasets) or "
                        "use quantize.mode=weight_only_ptq")
    loader = ctx.plugin.task.batches(ctx, ctx.plugin, arch, data, R.batch_size(ctx.spec))

    def calibrate(model) -> None:
        """Forward every calibration batch through ``model`` (no gradients)."""
        import torch

        model.eval()
        with torch.no_grad():
            for batch in loader:
                ctx.plugin.forward(model, batch, device, with_labels=False)

    return calibrate


def quantize(ctx) -> str:
    """Quantize ``quantize.model_path``; write the quantized checkpoint and the KPIs."""
    from tao_sdk.worker.spec import redact

    plan = Q.plan_from_spec(ctx.spec)
    R.stage(ctx)
    model, arch, ckpt, notes = R.model_from_checkpoint(ctx, "quantize.model_path")
    R.report_start(ctx, arch, notes + [f"quantize: {plan.backend} {plan.mode} "
                                       f"({plan.algorithm})"])
    device = R.device()
    model.to(device).eval()
    task, batch = ctx.plugin.task, R.batch_size(ctx.spec)
    val = task.eval_data(ctx, arch, "dataset.val_data_sources")
    kpi: dict[str, Any] = {}
    if val:
        kpi.update({f"float_{k}": v for k, v in
                    task.validate(ctx, ctx.plugin, model, arch, val, batch).items()})
    model, record, report = Q.quantize_model(model, plan, _calibration(ctx, arch, plan, device))
    if val:
        kpi.update(task.validate(ctx, ctx.plugin, model, arch, val, batch))
    kpi.update({"float_model_size_mb": report.float_bytes / 1e6,
                "model_size_mb": report.quantized_bytes / 1e6,
                "size_ratio": report.quantized_bytes / max(1, report.float_bytes)})
    epoch, step = int(ckpt.get("epoch", 0)), int(ckpt.get("global_step", 0))
    payload = {"network": ctx.network, "arch": arch, "state_dict": model.state_dict(),
               "epoch": epoch, "global_step": step, "kpi": kpi, "quantization": record,
               "parent_kpi": dict(ckpt.get("kpi") or {}),
               "hyper_parameters": {"experiment_spec": json.loads(json.dumps(
                   redact(ctx.spec), default=str))}}
    path = write_checkpoint(ctx, payload, ctx.plugin.checkpoint_name(max(0, epoch), step))
    ctx.status.running(f"Quantization metrics generated: {report.summary()}", kpi=kpi,
                       epoch=epoch)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in kpi.items() if isinstance(v, float))
    return (f"Quantize finished successfully: {plan.backend} {plan.mode}, "
            f"{report.summary()}; {shown}; checkpoint {path.name} (load it with "
            "<action>.is_quantized: true).")
