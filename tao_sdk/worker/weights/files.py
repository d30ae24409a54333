"""Reading a weights file into plain Python (tensors, dicts, lists) without running its code.

``torch.load(weights_only=True)`` first. A Lightning checkpoint written by TAO also pickles
its hyper-parameters (OmegaConf objects ...), which ``weights_only`` refuses: such a file is
read again with an unpickler that builds tensors through torch's own allowlist and turns
every other named class into an inert :class:`Opaque` record (its constructor and state are
ignored; nothing from the file is imported or called). ``*.safetensors`` files are read
with ``safetensors``. A Hugging Face checkpoint folder (``config.json`` plus ``*.safetensors``
shards, else ``pytorch_model.bin``, else the folder's one ``.pth``) reads as the merged tensors
of its files (:func:`weight_files`); :func:`hf_renamed` maps the Hub's key names onto a
transformers model's.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from tao_sdk.worker.errors import WorkerError

__all__ = ["Opaque", "hf_renamed", "module_state_dict", "read_weights_file", "weight_files"]

_TORCH_SUFFIXES = (".pth", ".ckpt", ".bin", ".pt", ".tlt")


class Opaque:
    """Stand-in for a class a checkpoint names outside its tensors (never executed). A pickled
    ``nn.Module`` (NVIDIA's research ``*_serialize.pth`` files pickle whole models) keeps the
    module state it was given (``_parameters`` / ``_buffers`` / ``_modules``) as plain data,
    for :func:`module_state_dict`; any other state is dropped."""

    _module_state: dict | None = None

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> "Opaque":
        return Opaque()

    def __setstate__(self, state) -> None:
        if isinstance(state, dict) and isinstance(state.get("_modules"), dict):
            self._module_state = {k: state.get(k) for k in _MODULE_STATE}

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        """Ignored (list-like pickled content)."""

    def extend(self, values) -> None:
        """Ignored (list-like pickled content)."""


#: The parts of a pickled ``nn.Module``'s state that make its ``state_dict``.
_MODULE_STATE = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


def module_state_dict(obj: Any, prefix: str = "") -> dict[str, Any] | None:
    """The ``state_dict`` of a pickled ``nn.Module`` read inertly (an :class:`Opaque` with
    module state): its parameters and persistent buffers, recursively, under dotted names, as
    ``nn.Module.state_dict`` names them. ``None`` when ``obj`` is no pickled module."""
    state = getattr(obj, "_module_state", None) if isinstance(obj, Opaque) else None
    if state is None:
        return None
    out: dict[str, Any] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is not None and name not in skip:
                out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        out.update(module_state_dict(child, f"{prefix}{name}.") or {})
    return out


def _allowed() -> dict[str, Any]:
    import torch
    from torch import _weights_only_unpickler as W

    allowed = dict(W._get_allowed_globals())
    # plain containers a pickled module's state holds (its non-persistent buffer names)
    for module in ("builtins", "__builtin__"):  # protocol-2 files name builtins the Python 2 way
        allowed.update({f"{module}.set": set, f"{module}.frozenset": frozenset})
    for obj in torch.serialization.get_safe_globals():
        target = obj[0] if isinstance(obj, tuple) else obj
        allowed[f"{target.__module__}.{target.__name__}"] = target
    return allowed


class _InertUnpickler(pickle.Unpickler):
    """Tensors through torch's allowlist; any other global becomes :class:`Opaque`."""

    _globals: dict[str, Any] | None = None

    def find_class(self, module: str, name: str):
        if _InertUnpickler._globals is None:
            _InertUnpickler._globals = _allowed()
        found = _InertUnpickler._globals.get(f"{module}.{name}")
        return found if found is not None else type(name, (Opaque,), {"__module__": module})


class _InertPickle:
    """The ``pickle_module`` handed to ``torch.load`` for the inert read."""

    Unpickler = _InertUnpickler
    __name__ = "tao_sdk_inert_pickle"

    @staticmethod
    def load(fh, **kwargs):
        """Legacy (non-zip) ``torch.save`` files."""
        return _InertUnpickler(fh, **kwargs).load()


def weight_files(folder: Path, what: str) -> list[Path]:
    """The weight files of a checkpoint folder, in load order. Raises WorkerError naming what a
    folder must hold when it holds none."""
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        return shards
    if (folder / "pytorch_model.bin").is_file():
        return [folder / "pytorch_model.bin"]
    single = sorted(p for p in folder.iterdir() if p.suffix in _TORCH_SUFFIXES and p.is_file())
    if len(single) == 1:
        return single
    raise WorkerError(
        f"{what}: folder {folder} holds no weights this worker reads ({len(single)} .pth-like files); "
        "give a Hugging Face folder (config.json + *.safetensors or pytorch_model.bin) or the checkpoint file")


def read_weights_file(path: str | os.PathLike[str], what: str) -> Any:
    """The content of a ``.pth`` / ``.ckpt`` / ``.bin`` / ``.safetensors`` file, or the merged
    tensors of every weight file of the folder ``path`` (:func:`weight_files`). Raises
    :class:`WorkerError` naming ``what`` (the spec key) when a file cannot be read."""
    if Path(path).is_dir():
        merged: dict[str, Any] = {}
        for file in weight_files(Path(path), what):
            data = _read_one(file, what)
            merged.update(data.get("state_dict", data) if isinstance(data, dict) else {})
        return merged
    return _read_one(path, what)


def _read_one(path: str | os.PathLike[str], what: str) -> Any:
    import torch

    from tao_sdk.worker.quantization import allow_library_tensors

    path = os.fspath(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if allow_library_tensors(str(exc)):  # a quantized checkpoint's library tensors
                return torch.load(path, map_location="cpu", weights_only=True)
            return torch.load(path, map_location="cpu", weights_only=False,
                              pickle_module=_InertPickle)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise WorkerError(
            f"{what}: cannot read {path} ({type(exc).__name__}: {str(exc)[:300]}); point {what} "
            "at a .pth / .ckpt / .safetensors weights file"
        ) from None


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
    return {(key if key in own else rename_source_key(key, renamings, [], model.base_model_prefix, own)[0]): value
            for key, value in data.items()}
