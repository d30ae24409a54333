"""JSON Schemas by dotted spec path (``train.optim.lr``): navigate them and list a spec's
problems against them (:func:`spec_problems`). A leaf: it imports only :mod:`tao_sdk.errors`."""

from __future__ import annotations

import difflib
from typing import Any, Iterator, Mapping

import jsonschema

from .errors import SpecProblem


def _object_branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    branches = [node]
    for key in ("anyOf", "oneOf"):
        branches += [b for b in node.get(key, []) if isinstance(b, dict)]
    return branches


def find_property(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The schema node of ``dotted`` or None when the path does not exist.

    Keys inside a free-form dict field (``additionalProperties`` true or a schema) are accepted:
    ``dataset.test_data_sources.image_dir`` resolves when ``test_data_sources`` is a dict field.
    """
    node: Any = schema
    for part in dotted.split("."):
        nxt = None
        for branch in _object_branches(node):
            props = branch.get("properties")
            if isinstance(props, dict) and part in props:
                nxt = props[part]
                break
            extra = branch.get("additionalProperties")
            if extra not in (None, False) and _is_object(branch):
                nxt = extra if isinstance(extra, dict) else {}
                break
        if nxt is None:
            return None
        node = nxt
    return node


def _is_object(node: dict[str, Any]) -> bool:
    t = node.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t)


def leaf_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted path of the schema's properties (objects and leaves), depth first."""
    for branch in _object_branches(schema):
        for name, prop in (branch.get("properties") or {}).items():
            dotted = f"{prefix}.{name}" if prefix else name
            yield dotted
            if isinstance(prop, dict):
                yield from leaf_paths(prop, dotted)


def describe_allowed(node: dict[str, Any]) -> str | None:
    """Human description of what a schema node accepts (type, range, enum)."""
    if not node:
        return None
    parts = []
    for branch in _object_branches(node):
        if "enum" in branch:
            parts.append("one of " + ", ".join(repr(v) for v in branch["enum"]))
            continue
        t = branch.get("type")
        if t:
            parts.append("/".join(t) if isinstance(t, list) else t)
        lo, hi = branch.get("minimum"), branch.get("maximum")
        if lo is not None or hi is not None:
            parts.append(f"in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
    return ", ".join(dict.fromkeys(p for p in parts if p)) or None


def spec_problems(schema: dict[str, Any], spec: Mapping[str, Any], fillers: Mapping[str, str] | None = None,
                  validator: jsonschema.Draft202012Validator | None = None) -> list[SpecProblem]:
    """Every schema violation of ``spec`` as a :class:`SpecProblem` (empty list: valid).

    ``fillers`` maps dotted paths to the inference function that would fill them; a missing
    required path that has one says how to get it filled (e.g. pass parent_job_id).
    """
    problems: list[SpecProblem] = []
    all_paths = None
    validator = validator or jsonschema.Draft202012Validator(schema)
    for err in validator.iter_errors(spec):
        base = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            node_props = (err.schema or {}).get("properties", {})
            extras = [k for k in (err.instance or {}) if k not in node_props]
            for extra in extras:
                path = f"{base}.{extra}" if base else extra
                all_paths = all_paths if all_paths is not None else list(leaf_paths(schema))
                siblings = [f"{base}.{k}" if base else k for k in node_props]
                close = difflib.get_close_matches(path, siblings, 1, 0.6) or \
                    difflib.get_close_matches(path, all_paths, 1, 0.75)
                problems.append(SpecProblem(path, "unknown spec key", err.instance.get(extra),
                                            None, close[0] if close else None))
        elif err.validator == "required":
            for name in err.validator_value:
                if isinstance(err.instance, Mapping) and name in err.instance:
                    continue
                path = f"{base}.{name}" if base else name
                how = (fillers or {}).get(path)
                hint = (f"filled by the '{how}' inference mapping: pass parent_job_id" if how and "parent" in how
                        else f"filled by the '{how}' inference mapping" if how else "set it with spec_overrides")
                problems.append(SpecProblem(path, f"required field is missing ({hint})"))
        else:
            node = find_property(schema, base) if base else None
            problems.append(SpecProblem(base, err.message, err.instance,
                                        describe_allowed(node) if node else None))
    # de-duplicate (anyOf branches may repeat the same complaint)
    seen, unique = set(), []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
