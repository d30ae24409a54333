"""Dotted spec paths and ``--set`` values: the one leaf module every layer uses.

A spec is a nested mapping; a *dotted path* names one value in it (``train.optim.lr``). The
SDK (:mod:`tao_sdk.spec`, :mod:`tao_sdk.specfile`), the worker (:mod:`tao_sdk.worker.spec`),
AutoML (:mod:`tao_sdk.automl.space`) and the benchmarks read and write specs through these
functions, and parse command-line overrides (``--set train.optim.lr=1e-4``) with
:func:`parse_value`, so a value means the same on every side of a job:

>>> spec = {}
>>> set_path(spec, "train.optim.lr", parse_value("1e-4"))
>>> get_path(spec, "train.optim.lr")
0.0001
>>> as_int(3.0, "train.num_epochs"), as_int("8", "dataset.batch_size")
(3, 8)

This module imports nothing of the package but :mod:`tao_sdk.errors` (it is a leaf: every
arrow points into it).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

import yaml

from .errors import TaoSkillsError

__all__ = ["MISSING", "get_path", "set_path", "delete_path", "flatten", "parse_value", "parse_assignment",
           "as_int"]

#: Returned by :func:`get_path` (as its default) for an absent path.
MISSING: Any = object()

# YAML 1.1 (PyYAML) reads "1e-4" (no dot in the mantissa) as a string; TAO's OmegaConf reads it
# as the float 0.0001, and so does every override parser here.
_EXP_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _parts(dotted: str, error: type[Exception]) -> list[str]:
    parts = str(dotted).split(".")
    if not all(parts):
        raise error(f"'{dotted}' is not a dotted spec key (empty part); write e.g. train.optim.lr")
    return parts


def get_path(tree: Any, dotted: str, default: Any = None) -> Any:
    """The value at ``dotted`` (``"train.optim.lr"``) of a nested mapping, or ``default`` when a
    part is absent (or a parent is not a mapping). A value that is present and ``None`` is
    returned as ``None``; pass ``default=MISSING`` to tell "absent" from "null"."""
    node = tree
    for part in str(dotted).split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_path(tree: dict[str, Any], dotted: str, value: Any, *, strict: bool = False, deep: bool = True,
             error: type[Exception] = TaoSkillsError) -> None:
    """Set ``dotted`` in ``tree`` to a deep copy of ``value`` (``value`` itself when not
    ``deep``), creating missing parents.

    A parent that is null or not a mapping is replaced by a mapping, unless ``strict``: then a
    non-mapping parent (other than null) raises ``error`` naming it. Raises ``error`` for an
    empty part (``train..lr``)."""
    parts = _parts(dotted, error)
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            if strict and nxt is not None:
                raise error(f"cannot set {dotted}: {'.'.join(parts[:i + 1])} is not a mapping in the spec")
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = copy.deepcopy(value) if deep else value


def delete_path(tree: dict[str, Any], dotted: str) -> bool:
    """Remove ``dotted`` from ``tree``; True when it was there."""
    *parents, last = str(dotted).split(".")
    node = get_path(tree, ".".join(parents)) if parents else tree
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted leaf path: value} (lists, scalars and empty mappings are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def parse_value(text: str) -> Any:
    """Parse the value of a ``--set key=value`` override: YAML scalars / lists / mappings, plus
    ``1e-4`` as the float 0.0001 (as TAO's OmegaConf reads it; plain YAML 1.1 says string).
    Text that is not valid YAML stays the text."""
    text = str(text).strip()
    if _EXP_FLOAT_RE.match(text):
        return float(text)
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def parse_assignment(text: str, *, error: type[Exception] = TaoSkillsError,
                     flag: str = "--set") -> tuple[str, Any]:
    """``"train.num_epochs=10"`` -> ``("train.num_epochs", 10)`` (value by :func:`parse_value`).

    Raises ``error`` when there is no ``=`` or the key is empty, naming ``flag``."""
    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise error(f"{flag} expects KEY=VALUE, a dotted.key=value such as train.num_epochs=10; got {text!r}")
    return key, parse_value(raw)


def as_int(value: Any, where: str, *, minimum: int | None = None, error: type[Exception] = TaoSkillsError,
           hint: str = "") -> int:
    """``value`` as an int: ints, integral floats (``3.0``) and integer text (``"8"``); never
    truncated (``3.7`` is an error, as are booleans). Raises ``error`` saying
    ``<where>=<value> must be an integer [>= minimum]`` (plus ``hint``, e.g. the default)."""
    want = f"an integer >= {minimum}" if minimum is not None else "an integer"
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if number is None or (minimum is not None and number < minimum):
        raise error(f"{where}={value!r} must be {want}{hint}")
    return number
