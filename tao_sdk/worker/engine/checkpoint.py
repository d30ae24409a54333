"""Checkpoint files of the worker: the format tag, loading, pretrained weights, saving.

A checkpoint is a ``torch.save`` dict with ``format`` (:data:`CHECKPOINT_FORMAT`), ``network``,
``arch`` (the plugin's architecture record, so evaluate / inference / export rebuild exactly
the trained network), ``state_dict``, ``ema_state_dict``, ``epoch``, ``global_step``,
``optimizer_states``, ``lr_schedulers``, ``kpi``, ``world_size`` and ``hyper_parameters``.
File names follow the plugin (:meth:`NetworkPlugin.checkpoint_name`), plus the
``<prefix>model_latest.pth`` link.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker.errors import WorkerError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "load_pretrained", "save_checkpoint",
           "write_checkpoint"]

#: Tag stored in every checkpoint this worker writes.
CHECKPOINT_FORMAT = "tao-skill-bank-worker/1"


def load_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Load a checkpoint written by this worker (``weights_only``: no code is executed).

    Raises :class:`WorkerError` naming ``what`` (the spec key) when the file is unreadable or
    was not written by this worker.
    """
    import torch

    from tao_sdk.worker.quantize import allow_library_tensors

    try:
        try:
            ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a quantized checkpoint's library tensors
            if not allow_library_tensors(str(exc)):
                raise
            ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise WorkerError(
            f"{what}: cannot read checkpoint {path} ({type(exc).__name__}: {exc}); point "
            f"{what} at a .pth written by this worker's train action"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "arch" not in ckpt:
        raise WorkerError(
            f"{what}: {path} is not a checkpoint written by this worker (no architecture "
            "record); evaluate/inference/export need a model_epoch_*.pth from this worker's "
            "train action (use train.pretrained_model_path to start training from other weights)"
        )
    return ckpt


def load_pretrained(model, path: str | os.PathLike[str], what: str, prefix: str = ""
                    ) -> tuple[int, int, list[str]]:
    """Copy the tensors of a checkpoint / state dict into ``model`` where names and shapes match.

    ``prefix`` restricts loading to the module at that attribute path (``"model.backbone"``)
    and is prepended to the file's keys when they lack it. Accepts this worker's checkpoints,
    Lightning-style ``{"state_dict": ...}`` files and bare state dicts.

    ``path`` may also be a ``.safetensors`` file or a Hugging Face folder
    (:func:`tao_sdk.worker.engine.weightfiles.read_weights`).

    Returns ``(loaded, total tensors in the file, skipped names with a shape mismatch)``.
    Raises :class:`WorkerError` when nothing matches (wrong file for this network/backbone).
    """
    import torch

    from tao_sdk.worker.engine.weightfiles import hf_renamed, read_weights

    data = read_weights(path, what)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    elif isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise WorkerError(f"{what}: {path} holds no state dict")
    data = hf_renamed(model, data)
    own = model.state_dict()
    loaded: dict[str, Any] = {}
    mismatched = []
    for key, value in data.items():
        if not hasattr(value, "shape"):
            continue
        for cand in (key, f"{prefix}.{key}" if prefix else key):
            if cand in own and (not prefix or cand.startswith(prefix)):
                if tuple(own[cand].shape) == tuple(value.shape):
                    loaded[cand] = value
                else:
                    mismatched.append(cand)
                break
    if not loaded:
        sample = ", ".join(list(data)[:3])
        raise WorkerError(
            f"{what}: no tensor of {path} matches this {'backbone' if prefix else 'model'} "
            f"(file keys look like: {sample}); use weights saved from the same architecture "
            "(model.backbone, TAO_WORKER_BACKBONE_SCALE) or leave the field empty"
        )
    with torch.no_grad():
        for key, value in loaded.items():
            own[key].copy_(value)
    return len(loaded), len([v for v in data.values() if hasattr(v, "shape")]), mismatched


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
    payload = {
        "format": CHECKPOINT_FORMAT,
        "network": ctx.network,
        "arch": arch,
        "state_dict": model.state_dict(),
        "ema_state_dict": ema.module.state_dict() if ema is not None else None,
        "epoch": epoch,
        "global_step": step,
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
        ema_payload = {"format": CHECKPOINT_FORMAT, "network": ctx.network, "arch": arch,
                       "state_dict": ema.module.state_dict(), "epoch": epoch,
                       "global_step": step, "kpi": dict(kpi), "ema": True}
        _save(ctx, ema_payload, plugin.checkpoint_name(name_epoch, step, ema=True))
    return write_checkpoint(ctx, payload, plugin.checkpoint_name(name_epoch, step))


def write_checkpoint(ctx, payload: dict, name: str) -> Path:
    """Save ``payload`` (tagged with :data:`CHECKPOINT_FORMAT`) as ``name`` in the task folder,
    point the latest link at it and upload the folder; return the file's path."""
    path = _save(ctx, {"format": CHECKPOINT_FORMAT, **payload}, name)
    _update_latest(ctx, path)
    ctx.log.info("saved checkpoint %s", path.name)
    ctx.upload_now()
    return path
