"""Detection label maps: ``label_map.txt`` (one class name per line, or ``<id> <name>``).

Checks: the file is UTF-8 and not empty; its count against ``dataset.num_classes`` by the rule the
worker reads it with (``num_classes`` names for ids from 0, ``num_classes - 1`` for COCO ids from
1, the skill's +1 convention; explicit ids below ``num_classes``); duplicate names; and, when an
``annotations.json`` lies beside it, its names against the categories in id order.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import StorageError
from ..problems import Problem
from ..sources import Source
from .base import Context, problem, source_text, text_digest

LABEL_MAP = "label_map.txt"
_EXPLICIT = re.compile(r"^(\d+)\s*[:\s]\s*(.+)$")


def label_names(text: str) -> dict[int, str] | list[str]:
    """Explicit ``{id: name}`` when every line is ``<id> <name>``, else the names in order."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    explicit = [_EXPLICIT.match(ln) for ln in lines]
    if lines and all(explicit):
        return {int(m.group(1)): m.group(2).strip() for m in explicit if m}
    return lines


class LabelMapTxt:
    """The ``label_map.txt`` validator (see the module docstring)."""

    name = "label_map_txt"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """``label_map.txt`` when the source has one."""
        return (LABEL_MAP,) if LABEL_MAP in source.files else ()

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """The class count, and the annotation file beside the label map (its names are compared)."""
        return {"num_classes": ctx.get("dataset.num_classes"), "beside": text_digest(ctx, _beside(source.uri(LABEL_MAP)))}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Every problem of the label map."""
        uri, key, text, out = source_text(ctx, source, LABEL_MAP, "class list")
        if text is None:
            return out
        names = label_names(text)
        if not names:
            return [problem(uri, "the file", "is empty", "write one class name per line", "empty_label_map",
                            spec_key=key)]
        by_id = names if isinstance(names, dict) else None
        out = _count(names, ctx.get("dataset.num_classes"), uri, key)
        values = list(by_id.values()) if by_id else names
        for name in sorted({n for n in values if values.count(n) > 1}):
            out.append(problem(uri, f"name {name!r}", f"appears {values.count(name)} times",
                               "give each class its own name", "duplicate_label", severity="warning", spec_key=key))
        return out + _against_categories(ctx, uri, names, key)


def _count(names: dict[int, str] | list[str], num_classes: Any, uri: str, key: str | None) -> list[Problem]:
    if not isinstance(num_classes, int):
        return []
    if isinstance(names, dict):
        over = sorted(i for i in names if i >= num_classes)
        return [problem(uri, f"id {i} ({names[i]!r})", f"is not below dataset.num_classes {num_classes}",
                        f"use ids below {num_classes} or set dataset.num_classes to {max(names) + 1}", "label_id",
                        spec_key=key) for i in over]
    if len(names) in (num_classes, num_classes - 1):
        return []
    return [problem(uri, f"{len(names)} line(s)", f"lists {len(names)} class names but dataset.num_classes is "
                    f"{num_classes}", f"write {num_classes - 1} names (category ids 1..{num_classes - 1}, the skill's "
                    f"+1 convention) or {num_classes} (ids from 0); or set dataset.num_classes to {len(names) + 1}",
                    "label_count", spec_key=key)]


def _beside(uri: str) -> str:
    """The ``annotations.json`` in the folder of ``uri``."""
    return uri.rsplit("/", 1)[0] + "/annotations.json"


def _against_categories(ctx: Context, uri: str, names: dict[int, str] | list[str], key: str | None) -> list[Problem]:
    """Names against the ``categories`` of an ``annotations.json`` next to the label map."""
    beside = _beside(uri)
    try:
        data = ctx.reader.json(beside) if ctx.reader.stat(beside) else None
    except (StorageError, ValueError):
        return []  # that file is validated (or reported) where a table row names it
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in cats):
        return []
    ordered = sorted((c["id"], str(c.get("name"))) for c in cats)
    if isinstance(names, dict):
        wanted = dict(ordered)
        bad = [(i, n, wanted.get(i)) for i, n in sorted(names.items()) if wanted.get(i) not in (None, n)]
    else:
        start = 1 if ordered and ordered[0][0] >= 1 else 0
        if [i for i, _ in ordered] != list(range(start, start + len(ordered))):
            return []  # sparse ids (MSCOCO): a name list has no position per id to compare
        listed = dict(enumerate(names, start)) if len(names) < len(ordered) + 1 else dict(enumerate(names))
        bad = [(i, listed.get(i), n) for i, n in ordered if listed.get(i) not in (None, n)]
    return [problem(uri, f"class {i}", f"is named {mine!r} here but category {i} of {beside} is {theirs!r}",
                    f"write the category names in category-id order ({', '.join(n for _, n in ordered)})",
                    "label_mismatch", spec_key=key) for i, mine, theirs in bad]
