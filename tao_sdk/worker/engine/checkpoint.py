"""Checkpoint files of the worker: loading, pretrained weights, saving in TAO's layout.

A checkpoint is what TAO's Lightning trainer writes (``epoch``, ``global_step``,
``pytorch-lightning_version``, ``state_dict`` in TAO's keys, ``optimizer_states``,
``lr_schedulers``, ``hyper_parameters``, ``tao_model``; no ``loops`` / ``callbacks``, which
Lightning then does not restore), so TAO's
own evaluate / inference / export load it, plus what the SDK needs alongside: ``format``
(:data:`CHECKPOINT_FORMAT`), ``network``, ``arch`` (the plugin's architecture record, so
evaluate / inference / export rebuild exactly the trained network), ``state_dict_layout``
(``"tao"``; networks without a TAO key table keep the worker's keys, ``"worker"``),
``ema_state_dict``, ``kpi``, ``world_size``. File names follow the plugin
(:meth:`NetworkPlugin.checkpoint_name`), plus the ``<prefix>model_latest.pth`` link. Reading
any layout (TAO's, the worker's, PTMs) is :mod:`tao_sdk.worker.weights`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker.errors import WorkerError
from tao_sdk.worker.weights import (
    CHECKPOINT_FORMAT,
    LoadReport,
    file_state_dict,
    load_weights,
    tao_state,
)
from tao_sdk.worker.weights.files import read_weights_file

__all__ = ["CHECKPOINT_FORMAT", "LIGHTNING_VERSION", "load_checkpoint", "load_pretrained",
           "save_checkpoint", "write_checkpoint"]

#: ``pytorch-lightning_version`` written into checkpoints (the Lightning 2.x format TAO 7.3.0
#: reads; Lightning only migrates checkpoints older than 2.0).
LIGHTNING_VERSION = "2.5.0"


def load_checkpoint(path: str | os.PathLike[str], what: str, research: bool = False
                    ) -> dict[str, Any]:
    """Load a checkpoint of this worker or of TAO's own trainer (no code from the file runs);
    with ``research`` (the network reads NVIDIA's research checkpoints,
    :attr:`NetworkPlugin.research_keys`), also a bare state dict or pickled model, as layout
    ``"research"``, as TAO's evaluate / inference / export scripts read FastFoundationStereo's.

    The result carries ``layout`` (``"worker"`` / ``"tao"`` / ``"research"``: the keys of its
    ``state_dict``, see :func:`tao_sdk.worker.weights.checkpoint_state`) and ``arch`` (the
    worker's architecture record; ``None`` for TAO's and research files: the spec's ``model``
    section describes them). Raises :class:`WorkerError` naming ``what`` (the spec key) when
    the file is unreadable, encrypted, or (without ``research``) a bare state dict.
    """
    ckpt = read_weights_file(path, what)
    layout, sd = file_state_dict(ckpt, path, what)
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT and "arch" in ckpt:
        return {**ckpt, "layout": layout}
    if layout == "tao" and isinstance(ckpt.get("state_dict"), dict):
        return {**ckpt, "layout": layout, "arch": None}
    if research and layout == "state-dict":
        return {"state_dict": sd, "layout": "research", "arch": None}
    raise WorkerError(
        f"{what}: {path} is neither a checkpoint of this worker (architecture record) nor a "
        "TAO training checkpoint (Lightning state_dict, tao_model); evaluate/inference/export/"
        "resume need a model_epoch_*.pth from a train action (use train.pretrained_model_path "
        "to start training from other weights)"
    )


def load_pretrained(model, path: str | os.PathLike[str], what: str, plugin, prefix: str = ""
                    ) -> LoadReport:
    """Copy the tensors of a weights file or Hugging Face folder (any layout
    :mod:`tao_sdk.worker.weights` reads: TAO checkpoints and backbone PTMs, this worker's
    checkpoints, bare / Hugging Face state dicts, ``.safetensors``) into ``model`` where they
    fit; ``prefix`` restricts loading to the module at that attribute path
    (``"model.backbone"``). Returns the :class:`LoadReport` (loaded, skipped with reasons, left
    at initial values; class heads reinitialised when class counts differ). Raises
    :class:`WorkerError` when nothing matches."""
    return load_weights(model, path, plugin, what, prefix)


def payload_bytes(obj: Any, _seen: set | None = None) -> int:
    """Bytes ``torch.save`` needs for ``obj``: each distinct tensor storage once (views share
    one), plus a little per tensor and value for the zip entries and the pickled structure.
    The free-space check before a checkpoint uses it."""
    seen = set() if _seen is None else _seen
    if hasattr(obj, "untyped_storage"):
        try:
            storage = obj.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # tensor subclasses (torchao quantized) hold no plain storage
            return _subclass_bytes(obj) + 512
        size = 0 if key in seen else storage.nbytes()
        seen.add(key)
        return size + 512
    if isinstance(obj, dict):
        return sum(payload_bytes(v, seen) + 64 for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v, seen) + 16 for v in obj)
    return 64


def _subclass_bytes(tensor: Any) -> int:
    """Bytes of a tensor subclass without a plain storage: its inner tensors'
    (``__tensor_flatten__``), else numel x element size."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ctx = flatten()
        return sum(_subclass_bytes(getattr(tensor, n)) for n in names)
    try:
        storage = tensor.untyped_storage()
        return int(storage.nbytes())
    except (RuntimeError, NotImplementedError):
        return int(tensor.numel() * tensor.element_size())


def _disk_fix(ctx) -> str:
    """The setting a full-disk error names for ``ctx``'s task folder (results or staging)."""
    from tao_sdk.diskspace import RESULTS_FIX

    return getattr(ctx, "disk_fix", RESULTS_FIX)


def _save(ctx, payload: dict, name: str) -> Path:
    import torch

    from tao_sdk.diskspace import guarded_write

    path = ctx.task_dir / name
    tmp = path.with_name(".tao-tmp-" + name)
    with guarded_write(tmp, f"checkpoint {name}", needed=payload_bytes(payload), fix=_disk_fix(ctx)):
        torch.save(payload, tmp)
        os.replace(tmp, path)
    return path


def _update_latest(ctx, target: Path) -> None:
    """Point ``<prefix>model_latest.pth`` at ``target`` (relative symlink; copy if links fail)."""
    name = ctx.plugin.latest_link
    link = ctx.task_dir / name
    tmp = ctx.task_dir / (".tao-tmp-" + name)
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        os.symlink(target.name, tmp)
    except OSError:
        from tao_sdk.diskspace import guarded_write

        with guarded_write(tmp, f"checkpoint copy {name}", needed=target.stat().st_size, fix=_disk_fix(ctx)):
            shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def save_checkpoint(ctx, model, optimizer, scheduler, ema, arch, epoch: int, step: int,
                    kpi: dict, partial_epoch: int | None = None, scaler=None) -> Path | None:
    """Write ``model_epoch_...pth`` (+ ``-EMA``), update the latest link, upload (rank 0 only;
    the other ranks of a distributed job return ``None``). ``scaler``: the fp16 job's
    ``GradScaler``, stored as ``native_amp_scaling_state`` (PyTorch Lightning's key) so a resumed
    fp16 job continues with the loss scale it had reached."""
    from tao_sdk.worker.spec import redact

    if not ctx.main:
        return None
    plugin = ctx.plugin
    layout, state = tao_state(plugin, model.state_dict())
    ema_state = tao_state(plugin, ema.module.state_dict())[1] if ema is not None else None
    payload = {
        **_lightning_keys(plugin, epoch, step, layout, state),
        "arch": arch,
        "ema_state_dict": ema_state,
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        **({"native_amp_scaling_state": scaler.state_dict()} if scaler is not None else {}),
        "kpi": dict(kpi),
        "world_size": D.state().world_size,
        "hyper_parameters": {"experiment_spec": json.loads(json.dumps(redact(ctx.spec),
                                                                      default=str))},
    }
    name_epoch = max(0, partial_epoch if partial_epoch is not None else epoch)
    if ema is not None:
        ema_payload = {**_lightning_keys(plugin, epoch, step, layout, ema_state),
                       "format": CHECKPOINT_FORMAT, "arch": arch, "kpi": dict(kpi), "ema": True}
        _save(ctx, ema_payload, plugin.checkpoint_name(name_epoch, step, ema=True))
    return write_checkpoint(ctx, payload, plugin.checkpoint_name(name_epoch, step))


def _lightning_keys(plugin, epoch: int, step: int, layout: str, state: dict) -> dict:
    """The keys of TAO's Lightning checkpoint, plus the SDK's network and layout tags (no
    ``loops``: the worker's loop state is not Lightning's; Lightning skips what is absent)."""
    return {"epoch": epoch, "global_step": step, "pytorch-lightning_version": LIGHTNING_VERSION,
            "state_dict": state, "tao_model": plugin.name,
            "network": plugin.name, "state_dict_layout": layout}


def write_checkpoint(ctx, payload: dict, name: str) -> Path:
    """Save ``payload`` (tagged with :data:`CHECKPOINT_FORMAT`) as ``name`` in the task folder,
    point the latest link at it and upload the folder; return the file's path."""
    path = _save(ctx, {"format": CHECKPOINT_FORMAT, **payload}, name)
    _update_latest(ctx, path)
    ctx.log.info("saved checkpoint %s", path.name)
    ctx.upload_now()
    return path
