"""Navigate JSON Schemas by dotted spec path (``train.optim.lr``)."""

from __future__ import annotations

from typing import Any, Iterator


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
