"""Numeric precision and device tuning of a job (``train.precision``), for every network.

- ``fp32``: float32; on CUDA with TF32 matmuls / convolutions where the GPU has them
  (Ampere and later).
- ``bf16``: ``torch.autocast`` to bfloat16 (CUDA: a GPU with bf16 support; CPU: works, on
  recent x86 CPUs with AVX512-BF16/AMX it is also faster). No gradient scaler is needed.
- ``fp16``: ``torch.autocast`` to float16 with a ``GradScaler`` (dynamic loss scaling); CUDA
  only - on CPU the job is refused with the fix (use bf16 or fp32).

Evaluate / inference follow ``train.precision`` where their spec has it (TAO's evaluate and
inference specs carry the ``train`` section) under autocast, without a scaler. The loss and
metrics are computed from float32 outputs (transformers' losses up-cast; metrics post-process
in float32).

Speed on CUDA (:func:`tune_model`, :func:`loader_options`): channels-last memory format for
plugins with convolutional backbones (``NetworkPlugin.channels_last``), pinned host memory and
non-blocking copies, persistent loader workers with prefetching, uint8 train batches scaled and
normalised on the GPU (``Collator.defer_normalize``: the loader workers skip the float
conversion, a quarter of the bytes cross PCIe), and the fused AdamW kernel
(:func:`fused_optimizer_kwargs`). ``torch.compile`` and CUDA graphs are not used: the DETR
step has data-dependent shapes (multi-scale training changes the input size per batch,
denoising groups depend on the number of boxes, the Hungarian matcher runs on the host with
scipy), so a compiled graph would recompile or break at every such point; the fused optimizer
and bf16 remove the largest launch and bandwidth costs without that risk.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError

__all__ = ["PRECISIONS", "Precision", "precision_from_spec", "tune_model",
           "fused_optimizer_kwargs", "loader_options"]

#: Accepted ``train.precision`` values.
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """How a job computes: ``name`` (fp32 / bf16 / fp16) on ``device_type`` (cuda / cpu)."""

    name: str
    device_type: str

    @property
    def dtype(self):
        """The autocast dtype (``None`` for fp32)."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        """A context manager running the forward pass (and loss) at this precision."""
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self):
        """A ``GradScaler`` for fp16 training, else ``None``."""
        if self.name != "fp16":
            return None
        import torch

        return torch.amp.GradScaler(self.device_type)

    def describe(self) -> str:
        """One phrase for the start line of ``status.json``."""
        if self.name == "fp32":
            return "precision fp32" + (" (TF32 matmuls)" if self.device_type == "cuda" else "")
        scaler = " + gradient scaler" if self.name == "fp16" else ""
        return f"precision {self.name} (autocast{scaler})"


def precision_from_spec(spec: dict[str, Any], device, key: str = "train.precision"
                        ) -> Precision:
    """The :class:`Precision` of ``spec[key]`` (default fp32) on ``device``; enables TF32 on
    CUDA. Raises :class:`SpecError` for an unknown value, fp16 on the CPU, or bf16 on a GPU
    without bf16 support - each with the fix."""
    import torch

    raw = S.get(spec, key, "fp32")
    value = str(raw).strip().lower()
    if value in ("32", "fp32", "float32", "32-true"):
        value = "fp32"
    if value not in PRECISIONS:
        raise SpecError(f"{key}={raw!r} is not supported: use one of {', '.join(PRECISIONS)}")
    device_type = device.type
    if device_type == "cpu" and value == "fp16":
        raise SpecError(
            f"{key}=fp16 needs a CUDA GPU (float16 autocast with a gradient scaler); this job "
            "runs on the CPU: set it to bf16 (CPU autocast) or fp32")
    if device_type == "cuda":
        if value == "bf16" and not torch.cuda.is_bf16_supported():
            raise SpecError(f"{key}=bf16: this GPU has no bfloat16 support; set fp16 or fp32")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Precision(value, device_type)


def tune_model(plugin, model, device):
    """Channels-last weights for plugins with convolutional backbones on CUDA (the input
    batches follow in ``plugin.forward`` through :func:`tao_sdk.worker.plugin.to_device`)."""
    if device.type == "cuda" and getattr(plugin, "channels_last", False):
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model


def fused_optimizer_kwargs(device) -> dict[str, Any]:
    """``{"fused": True}`` on CUDA (one kernel for the whole AdamW update), else ``{}``."""
    return {"fused": True} if device.type == "cuda" else {}


def loader_options(device, workers: int) -> dict[str, Any]:
    """DataLoader options: pinned memory on CUDA; persistent workers and a prefetch depth of
    4 batches per worker when there are loader workers."""
    opts: dict[str, Any] = {"pin_memory": device.type == "cuda"}
    if workers:
        opts.update(persistent_workers=True, prefetch_factor=4)
    return opts
