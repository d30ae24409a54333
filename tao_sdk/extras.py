"""Optional extras: one helper for every import that needs an extra of ``tao-skill-bank``.

The runtime install (``pip install tao-skill-bank``) validates specs, plans and tracks jobs.
Training, AutoML, plots, quantization, TensorRT and the MCP server need extras. A command that
needs a missing one raises :class:`MissingExtraError` (a :class:`TaoSkillsError`: the CLI prints
one line and exits 2) naming the extra and the ``pip install`` line, never a traceback:

>>> plt = require_extra("matplotlib.pyplot", "automl")
Traceback (most recent call last):
MissingExtraError: needs the 'automl' extra (No module named 'matplotlib'): pip install 'tao-skill-bank[automl]'
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import TaoSkillsError

__all__ = ["EXTRAS", "MODULE_EXTRAS", "MissingExtraError", "install_command", "require_extra", "require_installed",
           "import_optional", "have"]

#: extra -> the pip line that installs it. The worker pins torch first so that pip takes the
#: CPU / CUDA wheel you chose and no other torch.
EXTRAS: dict[str, str] = {
    "worker": "pip install torch==2.13.0 && pip install 'tao-skill-bank[worker]'",
    "automl": "pip install 'tao-skill-bank[automl]'",
    "quantize": "pip install 'tao-skill-bank[quantize]'",
    "gpu": "pip install 'tao-skill-bank[gpu]'",
    "mcp": "pip install 'tao-skill-bank[mcp]'",
    "bench": "pip install 'tao-skill-bank[bench]'",
    "tracking": "pip install 'tao-skill-bank[tracking]'",
    "maintainer": "pip install 'tao-skill-bank[maintainer]' && pip install --no-deps nvidia-tao-core==7.3.0",
}

#: top-level module -> the extra that brings it (used when a deeper import fails on it).
MODULE_EXTRAS: dict[str, str] = {
    "torch": "worker", "transformers": "worker", "onnx": "worker", "onnxruntime": "worker",
    "pycocotools": "worker", "PIL": "worker",
    "numpy": "automl", "scipy": "automl", "matplotlib": "automl", "threadpoolctl": "automl",
    "torchao": "quantize", "modelopt": "quantize",
    "tensorrt": "gpu",
    "mcp": "mcp",
    "optuna": "bench",
    "wandb": "tracking", "tensorboard": "tracking", "mlflow": "tracking",
    "omegaconf": "maintainer", "nvidia_tao_core": "maintainer",
}


class MissingExtraError(TaoSkillsError):
    """An optional dependency is not installed; the message names the extra and how to install it.

    Attributes:
        extra: the extra of ``tao-skill-bank`` that provides it (``automl``, ``worker``...).
        module: the module that failed to import.
    """

    def __init__(self, extra: str, module: str, purpose: str | None = None):
        self.extra, self.module = extra, module
        what = f"{purpose} needs" if purpose else "needs"
        super().__init__(f"{what} the '{extra}' extra (No module named '{module}'): {install_command(extra)}")


def install_command(extra: str) -> str:
    """The ``pip install`` line of ``extra`` (see :data:`EXTRAS`); KeyError names the extras."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")
    return EXTRAS[extra]


def require_extra(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (dotted) and return it; :class:`MissingExtraError` naming ``extra`` when
    it (or a module it needs) is not installed. ``purpose``: what needs it, for the message
    (``"tao-skills automl plot"``)."""
    install_command(extra)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(extra, exc.name or module, purpose) from None


def import_optional(module: str, purpose: str | None = None) -> ModuleType:
    """Import an SDK module whose imports may need an extra (e.g. ``tao_sdk.automl.controller``
    needs numpy / scipy): a missing third-party module listed in :data:`MODULE_EXTRAS` becomes
    :class:`MissingExtraError` with its extra; anything else propagates."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in MODULE_EXTRAS:
            raise MissingExtraError(MODULE_EXTRAS[top], exc.name or top, purpose) from None
        raise


def have(*modules: str) -> bool:
    """True when every module is importable (found without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def require_installed(extra: str, *modules: str, purpose: str | None = None) -> None:
    """:class:`MissingExtraError` naming ``extra`` unless every module is installed (checked
    without importing them: the caller runs them in another process, e.g. the worker)."""
    install_command(extra)
    for module in modules:
        if not have(module):
            raise MissingExtraError(extra, module, purpose)
