"""Reading a weights file into plain Python (tensors, dicts, lists) without running its code.

``torch.load(weights_only=True)`` first. A Lightning checkpoint written by TAO also pickles
its hyper-parameters (OmegaConf objects ...), which ``weights_only`` refuses: such a file is
read again with an unpickler that builds tensors through torch's own allowlist and turns
every other named class into an inert :class:`Opaque` record (its constructor and state are
ignored; nothing from the file is imported or called). ``*.safetensors`` files are read
with ``safetensors``.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from tao_sdk.worker.errors import WorkerError

__all__ = ["Opaque", "read_weights_file"]


class Opaque:
    """Stand-in for a class a checkpoint names outside its tensors (never executed)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> "Opaque":
        return Opaque()

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        """Ignored (list-like pickled content)."""

    def extend(self, values) -> None:
        """Ignored (list-like pickled content)."""


def _allowed() -> dict[str, Any]:
    import torch
    from torch import _weights_only_unpickler as W

    allowed = dict(W._get_allowed_globals())
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


def read_weights_file(path: str | os.PathLike[str], what: str) -> Any:
    """The content of a ``.pth`` / ``.ckpt`` / ``.safetensors`` file. Raises
    :class:`WorkerError` naming ``what`` (the spec key) when the file cannot be read."""
    import torch

    from tao_sdk.worker.quantize import allow_library_tensors

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
