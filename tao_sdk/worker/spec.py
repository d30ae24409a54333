"""Experiment-spec handling for the worker: load, override, read dotted keys, redact secrets.

A spec is the full nested TAO experiment YAML (``dataset.*``, ``model.*``, ``train.*``,
``evaluate.*``, ``inference.*``, ``export.*``, ``gen_trt_engine.*``, ``results_dir``,
``encryption_key``). The worker never writes the spec back with secrets in it: see
:func:`redact`.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import yaml

from tao_sdk.dotted import get_path, parse_assignment, set_path
from tao_sdk.secrets import REDACTED, redact  # noqa: F401  (re-exported for the worker)
from tao_sdk.worker.errors import SpecError

__all__ = [
    "REDACTED",
    "load_spec",
    "parse_override",
    "apply_overrides",
    "get",
    "set_value",
    "redact",
    "task_results_dir",
    "task_name",
    "is_tensorrt_job",
    "require",
    "resolve_interpolations",
]

#: What a secret value is replaced with in ``experiment.yaml`` and logs.
_MISSING = object()


def load_spec(uri: str) -> dict[str, Any]:
    """Read and parse the YAML spec at ``uri`` (a local path or an ``s3://`` URI).

    Raises :class:`SpecError` naming the file when it is missing, not YAML, or not a mapping.
    """
    text: str
    from tao_sdk.storage import is_remote, storage_for

    if is_remote(uri):

        text = storage_for(uri).read_text(uri)
    else:
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if not os.path.isfile(path):
            raise SpecError(f"spec file {uri} does not exist: pass the spec YAML with -e <file>")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"spec file {uri} is not valid YAML ({exc}); fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            f"spec file {uri} must hold a mapping (dataset:, model:, train: ...), "
            f"found a {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one command-line override ``a.b.c=value`` (value parsed as the SDK's ``--set`` does:
    YAML, ``3``, ``[1,2]``, and ``1e-4`` as the float 0.0001; see :func:`tao_sdk.dotted.parse_value`).

    Raises :class:`SpecError` when the text has no ``=`` or an empty key.
    """
    return parse_assignment(text, error=SpecError, flag="override")


def apply_overrides(spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``spec`` with each ``dotted.key=value`` override applied."""
    out = copy.deepcopy(spec)
    for item in overrides:
        key, value = parse_override(item)
        set_value(out, key, value)
    return out


def get(spec: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """Return the value at ``dotted`` (``"train.optim.lr"``) or ``default`` when absent/None."""
    value = get_path(spec, dotted, default)
    return default if value is None else value


def set_value(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in ``spec`` to ``value``, creating intermediate mappings as needed."""
    set_path(spec, dotted, value, deep=False, error=SpecError)


def require(spec: dict[str, Any], dotted: str, what: str) -> Any:
    """Return the value at ``dotted``; raise :class:`SpecError` when it is missing or empty.

    ``what`` says in words what the value is for (used in the message), e.g.
    ``"the checkpoint to evaluate"``. TAO's ``???`` (mandatory, unset) counts as missing.
    """
    value = get(spec, dotted, _MISSING)
    if value is _MISSING or value in ("", "???") or value == []:
        raise SpecError(f"{dotted} is not set: set it to {what}")
    return value


def is_tensorrt_job(spec: dict[str, Any], action: str) -> bool:
    """True for a TAO Deploy evaluate / inference job: ``<action>.trt_engine`` is set and
    ``<action>.checkpoint`` is not."""
    if action not in ("evaluate", "inference"):
        return False
    engine = get(spec, f"{action}.trt_engine")
    ckpt = get(spec, f"{action}.checkpoint")
    return engine not in (None, "", "???") and ckpt in (None, "", "???")


def task_name(spec: dict[str, Any], action: str) -> str:
    """The task folder name of ``action``: the action itself, or ``trt_evaluate`` /
    ``trt_inference`` for TensorRT (TAO Deploy) jobs."""
    return f"trt_{action}" if is_tensorrt_job(spec, action) else action


def task_results_dir(spec: dict[str, Any], task: str) -> str:
    """Return the results folder of ``task``: ``<task>.results_dir`` when set, else
    ``<results_dir>/<task folder>`` (TAO's rule; the folder is ``trt_evaluate`` /
    ``trt_inference`` for TensorRT jobs). Raises :class:`SpecError` when neither is set."""
    folder = task_name(spec, task)
    own = get(spec, f"{task}.results_dir")
    if own not in (None, "", "???"):
        return str(own)
    root = get(spec, "results_dir")
    if root in (None, "", "???"):
        raise SpecError(
            "results_dir is not set: set results_dir (the job's results folder, a local path or "
            f"s3:// URI) or {task}.results_dir"
        )
    root = str(root)
    return root.rstrip("/") + "/" + folder


_INTERP_RE = re.compile(r"\$\{([^${}]+)\}")


def resolve_interpolations(spec: dict[str, Any], env: dict[str, str] | None = None
                           ) -> dict[str, Any]:
    """Return a copy of ``spec`` with OmegaConf-style interpolations resolved, as TAO's
    Hydra/OmegaConf loader does: ``${oc.env:NAME}`` / ``${oc.env:NAME,default}`` (environment
    variables; the SDK passes the encryption key as ``${oc.env:TAO_ENCRYPTION_KEY}``) and
    ``${dotted.key}`` (another value of the spec). A value that is exactly one interpolation
    takes the referenced value's type. Raises :class:`SpecError` naming the key for an unset
    variable without default, an unknown reference or a reference cycle.
    """
    environ = os.environ if env is None else env
    root = copy.deepcopy(spec)

    def resolve_str(text: str, where: str, depth: int) -> Any:
        """Resolve the interpolations of one string value found at ``where``."""
        if depth > 20:
            raise SpecError(f"{where}: interpolation cycle in {text!r}")

        def one(expr: str) -> Any:
            """The value of one ``${...}`` expression."""
            expr = expr.strip()
            if expr.startswith("oc.env:"):
                name, _, default = expr[len("oc.env:"):].partition(",")
                name = name.strip()
                if name in environ:
                    return environ[name]
                if _:
                    return default.strip().strip("'\"")
                raise SpecError(
                    f"{where}: environment variable {name} is not set (the spec says "
                    f"${{oc.env:{name}}}); export {name} for the job"
                )
            if ":" in expr:
                raise SpecError(f"{where}: unsupported interpolation ${{{expr}}}; only "
                                "${oc.env:NAME} and ${dotted.key} are resolved")
            value = get(root, expr, _MISSING)
            if value is _MISSING:
                raise SpecError(f"{where}: ${{{expr}}} refers to {expr}, which the spec does "
                                "not set")
            return resolve_value(value, expr, depth + 1)

        whole = _INTERP_RE.fullmatch(text)
        if whole:
            return one(whole.group(1))
        return _INTERP_RE.sub(lambda m: str(one(m.group(1))), text)

    def resolve_value(value: Any, where: str, depth: int = 0) -> Any:
        """Resolve every string inside ``value`` (any nesting)."""
        if isinstance(value, dict):
            return {k: resolve_value(v, f"{where}.{k}" if where else str(k), depth)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [resolve_value(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return resolve_str(value, where, depth)
        return value

    return resolve_value(root, "")
