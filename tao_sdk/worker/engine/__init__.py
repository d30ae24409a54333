"""The worker's engine: runs an action for any registered network plugin.

- :mod:`~tao_sdk.worker.engine.train`: optimiser, schedule, EMA, train loop, checkpoints,
  resume, data-parallel training;
- :mod:`~tao_sdk.worker.engine.distill`: the distill action (train with a frozen teacher's
  outputs; the methods are :mod:`tao_sdk.worker.distillation`);
- :mod:`~tao_sdk.worker.engine.quantize`: the quantize action (post-training quantization of a
  checkpoint; the methods are :mod:`tao_sdk.worker.quantization`);
- :mod:`~tao_sdk.worker.engine.drivers`: evaluate, inference, export (ONNX + parity check),
  gen_trt_engine;
- :mod:`~tao_sdk.worker.engine.checkpoint`: the checkpoint format, loading and saving;
- :mod:`~tao_sdk.worker.engine.runtime`: device, seeding, loaders, staging, model loading.

Every action takes a :class:`tao_sdk.worker.job.JobContext` (``ctx.plugin`` is the network's
plugin), writes its artifacts into the task folder and RUNNING lines into ``status.json``,
and returns the SUCCESS message; failures raise (see :mod:`tao_sdk.worker.errors`).
The engine names no network: see :mod:`tao_sdk.worker.plugin` for the hooks it calls.
"""

from __future__ import annotations

from tao_sdk.worker.engine.distill import distill
from tao_sdk.worker.engine.drivers import evaluate, export, gen_trt_engine, inference
from tao_sdk.worker.engine.quantize import quantize
from tao_sdk.worker.engine.train import train

__all__ = ["ACTIONS", "train", "distill", "quantize", "evaluate", "inference", "export", "gen_trt_engine"]

#: action name -> the engine function that runs it.
ACTIONS = {
    "train": train,
    "distill": distill,
    "quantize": quantize,
    "evaluate": evaluate,
    "inference": inference,
    "export": export,
    "gen_trt_engine": gen_trt_engine,
}
