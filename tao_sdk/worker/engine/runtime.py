"""What every engine action shares: device, seeding, loaders, staging, start line, model loading.

Nothing here names a network: network specifics come from the job's plugin
(``ctx.plugin``, a :class:`tao_sdk.worker.plugin.NetworkPlugin`).
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker import spec as S
from tao_sdk.worker.engine.checkpoint import load_checkpoint
from tao_sdk.worker.engine.loadreport import load_report, report_load
from tao_sdk.worker.weights import LoadReport, checkpoint_state
from tao_sdk.worker.errors import SpecError, WorkerError
from tao_sdk.worker.staging import fetch_file, stage_spec

__all__ = ["device", "seed_everything", "stage", "report_start", "loader", "workers",
           "batch_size", "write_json", "model_from_checkpoint", "build_checkpoint_model",
           "load_model"]


def stage(ctx) -> None:
    """Download / extract the files the action reads (the task's :meth:`~tao_sdk.worker.tasks.Task.staged_keys`
    and the model files) and point ``ctx.spec`` at local copies
    (``ctx.given_spec`` keeps the URIs as given, for the load reports); long weight downloads
    write progress lines to status.json."""
    from tao_sdk.secrets import redact

    ctx.given_spec = ctx.spec
    data_keys = ctx.plugin.task.staged_keys(ctx.action) if ctx.plugin is not None else []
    ctx.spec = stage_spec(ctx.spec, ctx.action, ctx.log.info, data_keys=data_keys,
                          progress=lambda message, fields: ctx.status.running(redact(message), **redact(fields)))


def device():
    """The current CUDA device (set per rank in a distributed job), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def seed_everything(spec: dict) -> int:
    """Seed python / numpy / torch from ``train.seed`` and set the cuDNN flags; return it."""
    import numpy as np
    import torch

    seed = int(S.get(spec, "train.seed", 1234))
    torch.backends.cudnn.benchmark = bool(S.get(spec, "train.cudnn.benchmark", False))
    torch.backends.cudnn.deterministic = bool(S.get(spec, "train.cudnn.deterministic", True))
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return seed


def report_start(ctx, arch: dict | None = None, extra: list[str] | None = None) -> None:
    """One RUNNING line naming the model built and the spec fields not honoured."""
    ignored = ctx.plugin.unhonoured(ctx.action, ctx.spec)
    parts = []
    if arch is not None:
        parts.append(f"{ctx.plugin.describe(arch)}, device {device().type}")
    parts += list(extra or [])
    if ignored:
        parts.append("spec fields not honoured by this implementation: " + "; ".join(ignored))
    if parts:
        ctx.status.running(". ".join(parts))


def workers(spec: dict, key: str = "dataset.workers") -> int:
    """DataLoader workers: ``spec[key]`` capped at (CPU cores - 1) shared by the processes of
    this node; 0 when training on the CPU, where loader processes only compete with the model
    for the same cores."""
    if device().type == "cpu":
        return 0
    requested = int(S.get(spec, key, 0))
    per_node = max(1, D.state().local_world_size)
    return max(0, min(requested, ((os.cpu_count() or 1) - 1) // per_node))


def loader(dataset, collator, batch: int, shuffle: bool, num_workers: int, seed: int,
           sampler=None):
    """A DataLoader over ``dataset``; with ``sampler`` (a ``DistributedSampler``) the sampler
    decides the order and ``shuffle`` is not used. ``dataset.rng`` / ``collator.rng`` (when
    present) are reseeded per loader worker. On CUDA batches come in pinned memory; loader
    workers persist across epochs and prefetch (:func:`precision.loader_options`)."""
    import torch

    from tao_sdk.worker.engine.precision import loader_options

    def _init(worker_id: int) -> None:
        s = (torch.initial_seed() + worker_id) % (2 ** 32)
        if hasattr(dataset, "rng"):
            dataset.rng.seed(s)
        if hasattr(collator, "rng"):
            collator.rng.seed(s + 7)

    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=shuffle if sampler is None else False,
        sampler=sampler, num_workers=num_workers,
        collate_fn=collator, worker_init_fn=_init if num_workers else None, generator=gen,
        drop_last=False, **loader_options(device(), num_workers),
    )


def batch_size(spec: dict, key: str | None = None) -> int:
    """``spec[key]`` (``-1``/unset: ``dataset.batch_size``) as a batch size >= 1."""
    value = S.get(spec, key, -1) if key else -1
    if value in (None, -1):
        value = S.get(spec, "dataset.batch_size", 4)
    value = int(value)
    if value < 1:
        raise SpecError(f"{key or 'dataset.batch_size'}={value} must be >= 1")
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    from tao_sdk.worker.status import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2))


def model_from_checkpoint(ctx, key: str):
    """Load ``spec[key]`` (a checkpoint of this worker or of TAO's trainer) -> ``(model, arch,
    ckpt, notes)``.

    A TAO checkpoint has no architecture record: the spec's ``model`` section and
    ``dataset.num_classes`` describe it (every tensor must fit). Otherwise the checkpoint's
    architecture is used (through ``plugin.checkpoint_arch``, which applies
    the spec's post-processing settings); differences with the spec's ``model`` section are
    reported, a different ``dataset.num_classes`` is an error.
    """
    plugin = ctx.plugin
    uri = S.require(ctx.spec, key, "the .pth checkpoint to use (model_epoch_XXX.pth)")
    path = fetch_file(str(uri), key)
    ckpt = load_checkpoint(path, key, research=getattr(plugin, "research_keys", None) is not None)
    notes = []
    try:
        spec_arch = plugin.build_arch(ctx.spec)
    except SpecError as exc:
        if ckpt["arch"] is None:
            raise SpecError(f"{key}: {path} is a TAO checkpoint, whose architecture the spec's "
                            f"model section describes, and that section is invalid: {exc}"
                            ) from None
        spec_arch = None
        notes.append(f"model section not used ({exc})")
    if ckpt["arch"] is None:
        if ckpt.get("tao_model", ctx.network) != ctx.network:
            raise WorkerError(f"{key}: {path} is TAO's {ckpt['tao_model']} checkpoint, not "
                              f"{ctx.network}; use a checkpoint of this network")
        ckpt["arch"] = spec_arch
        kind = "research" if ckpt["layout"] == "research" else "TAO"
        notes.append(f"{kind} checkpoint: architecture from the spec's model section and "
                     "dataset.num_classes")
    if ckpt["arch"].get("network") != ctx.network:
        raise WorkerError(
            f"{key}: {path} is a {ckpt['arch'].get('network')} checkpoint, not {ctx.network}; "
            "use a checkpoint from this network's train job"
        )
    arch = copy.deepcopy(ckpt["arch"])
    if spec_arch is not None:
        diffs = plugin.arch_diff(arch, spec_arch)
        if diffs:
            notes.append("The checkpoint's architecture is used; it differs from the spec in "
                         + ", ".join(diffs))
        if spec_arch["num_classes"] != arch["num_classes"]:
            raise SpecError(
                f"dataset.num_classes={spec_arch['num_classes']} but {path} was trained with "
                f"{arch['num_classes']} classes; set dataset.num_classes={arch['num_classes']}"
            )
    arch = plugin.checkpoint_arch(arch, spec_arch)
    model = build_checkpoint_model(ctx, key, path, ckpt, arch)
    if ckpt.get("quantization"):
        notes.append(f"quantized checkpoint ({ckpt['quantization']['backend']} "
                     f"{ckpt['quantization']['mode']}, "
                     f"{len(ckpt['quantization']['modules'])} modules)")
    return model, arch, ckpt, notes


#: Spec sections whose ``is_quantized`` flag says whether their checkpoint is quantized.
QUANTIZED_FLAG_SECTIONS = ("evaluate", "inference", "export")


def build_checkpoint_model(ctx, key: str, path: Path, ckpt: dict, arch: dict):
    """The model of a loaded checkpoint: built from ``arch``, the quantized structure restored
    when the checkpoint is quantized, the weights loaded.

    ``<section>.is_quantized`` (evaluate / inference / export) must say whether the checkpoint
    is quantized; any other key (a teacher, the model to quantize) needs a float checkpoint.
    Raises :class:`SpecError` on a mismatch and :class:`WorkerError` for a damaged file.
    """
    from tao_sdk.worker import quantization as Q

    section = key.split(".")[0]
    record = ckpt.get("quantization")
    if section in QUANTIZED_FLAG_SECTIONS:
        Q.check_flag(ckpt, bool(S.get(ctx.spec, f"{section}.is_quantized", False)), section,
                     str(path))
    elif record:
        raise SpecError(
            f"{key}: {path} is a quantized checkpoint ({record.get('backend')} "
            f"{record.get('mode')}); {key} needs the float checkpoint of a train or distill job "
            "(quantize last: use that job as the parent)")
    model = ctx.plugin.build_model(arch)
    if record:
        model = Q.restore(model, record)
    try:
        missing, unexpected = model.load_state_dict(
            checkpoint_state(ckpt, ctx.plugin, model, key), strict=False, assign=bool(record))
    except RuntimeError as exc:
        missing, unexpected = [str(exc).splitlines()[0]], []
    if missing or unexpected:
        raise WorkerError(
            f"{key}: {path} does not fit the architecture (missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}); a TAO checkpoint needs the spec's model "
            "section it was trained with, a worker checkpoint is damaged - use another one"
        )
    ctx.log.info("loaded %s (epoch %s, step %s)", path, ckpt.get("epoch"), ckpt.get("global_step"))
    given = S.get(getattr(ctx, "given_spec", ctx.spec), key) or str(path)
    n = len(ckpt["state_dict"])
    report_load(ctx, load_report(key, str(given), str(path),
                                 LoadReport(str(path), ckpt.get("layout") or "worker", n, n)))
    return model


def load_model(ctx, section: str):
    """The model an evaluate / inference job runs: ``(model, arch, notes, input size)``.

    A TensorRT job (``<section>.trt_engine`` set, no checkpoint) checks for TensorRT first,
    then stages the data and loads the engine through the plugin's TensorRT adapter (the
    engine's input size is returned); otherwise the checkpoint is loaded (input size
    ``None``: the task reads it from the spec).
    """
    if S.is_tensorrt_job(ctx.spec, section):
        from tao_sdk.worker.trt import TrtRunner, require_tensorrt

        require_tensorrt()  # fails at once without an NVIDIA GPU / tensorrt
        stage(ctx)
        key = f"{section}.trt_engine"
        engine = fetch_file(str(S.get(ctx.spec, key)), key)
        runner = TrtRunner(engine, key, ctx.plugin.trt_outputs)
        arch = ctx.plugin.postprocess_arch(ctx.spec)
        return (ctx.plugin.task.trt_model(runner), arch,
                [f"TensorRT engine {engine.name}, input {runner.input_hw}, "
                 f"max batch {runner.max_batch}"], runner.input_hw)
    stage(ctx)
    model, arch, _ckpt, notes = model_from_checkpoint(ctx, f"{section}.checkpoint")
    return model, arch, notes, None
