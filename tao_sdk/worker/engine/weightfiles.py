"""Reading a weights file or folder into one dict of tensors (no code is executed).

Accepted: a ``.safetensors`` file; a ``torch.save`` file (``.pth`` / ``.ckpt`` / ``.bin`` /
``.pt``, read with ``weights_only``); a Hugging Face checkpoint folder: ``config.json`` plus
``*.safetensors`` (one file or the shards of ``model.safetensors.index.json``), else
``pytorch_model.bin``, else the folder's one ``.pth``. What the dict means (layouts, key maps)
is the checkpoint loader's business (:mod:`tao_sdk.worker.engine.checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tao_sdk.worker.errors import WorkerError

__all__ = ["read_weights", "weight_files", "hf_renamed"]

_TORCH_SUFFIXES = (".pth", ".ckpt", ".bin", ".pt", ".tlt")


def weight_files(folder: Path, what: str) -> list[Path]:
    """The weight files of a checkpoint folder, in load order. Raises WorkerError naming what a
    folder must hold when it holds none."""
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        return shards
    for name in ("pytorch_model.bin",):
        if (folder / name).is_file():
            return [folder / name]
    single = sorted(p for p in folder.iterdir() if p.suffix in _TORCH_SUFFIXES and p.is_file())
    if len(single) == 1:
        return single
    raise WorkerError(
        f"{what}: folder {folder} holds no weights this worker reads ({len(single)} .pth-like files); "
        "give a Hugging Face folder (config.json + *.safetensors or pytorch_model.bin) or the checkpoint file")


def _read_one(path: Path, what: str) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(os.fspath(path), device="cpu")
        import torch

        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad file
        raise WorkerError(f"{what}: cannot read {path} ({type(exc).__name__}: {exc})") from None


def read_weights(path: str | os.PathLike[str], what: str) -> Any:
    """The content of the weights file ``path`` (a dict for checkpoints), or the merged tensors
    of every weight file of the folder ``path`` (see :func:`weight_files`)."""
    p = Path(path)
    if not p.is_dir():
        return _read_one(p, what)
    merged: dict[str, Any] = {}
    for file in weight_files(p, what):
        data = _read_one(file, what)
        merged.update(data.get("state_dict", data) if isinstance(data, dict) else {})
    return merged


def hf_renamed(model, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with Hugging Face checkpoint key names (the layout ``save_pretrained`` writes and
    the Hub holds, e.g. ``fc1`` for ``mlp.fc1``) renamed to the names of the transformers
    ``model``, through transformers' own renaming table; other models' keys are returned as
    they are. A name the table does not rename stays as it is (the load report counts it)."""
    try:
        from transformers import PreTrainedModel
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:
        return data
    if not isinstance(model, PreTrainedModel):
        return data
    renamings = [t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)]
    if not renamings:
        return data
    own = model.state_dict()
    out = {}
    for key, value in data.items():
        new = key if key in own else rename_source_key(key, renamings, [], model.base_model_prefix, own)[0]
        out[new] = value
    return out
