"""Cross-field spec rules of a skill: limits a JSON Schema cannot express, checked at plan time
and honoured by the AutoML search space.

Rules are data: each skill declares them in ``skill_info.yaml`` (``spec_rules``, generated from
``tools/bank_sources.yaml``); this module holds the rule *kinds* in a registry. A rule caps one
integer field (``field``) by a value computed from the rest of the spec:

``encoder_tokens``
    DETR-family models that pick their decoder queries with ``topk`` over the encoder's tokens
    (RT-DETR) fail with "selected index k out of range" when ``field`` (``model.num_queries``)
    exceeds the number of tokens: ``sum over strides s of ceil(h/s) * ceil(w/s)`` at the
    *smallest* image size used (``image_sizes``: dotted paths holding ``[h, w]``, a side, or a
    list of sides / ``[h, w]`` pairs such as ``multi_scales``; ``strides``: a dotted path to the
    feature strides, or a literal list).

``product``
    ``field`` may not exceed the product of ``factors`` (dotted paths), e.g. post-processing
    ``model.num_select`` <= ``model.num_queries * dataset.num_classes`` (``topk`` over all scores).

>>> problems = rule_problems(skill, "train", spec)   # [] when every rule holds
>>> caps = rule_caps(skill, "train", spec)           # {"model.num_queries": (4725, "...")}
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .errors import BankFormatError, SpecProblem
from .dotted import get_path as value_at

#: rule kind -> function(rule, spec) -> (cap, explanation) or None when it does not apply.
RULE_KINDS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[int, str] | None]] = {}
#: rule kind -> the fix besides lowering the field (the fields the cap grows with).
_FIX = {"encoder_tokens": lambda r: "use larger images (" + ", ".join(r["image_sizes"]) + ")",
        "product": lambda r: "raise " + " or ".join(r["factors"])}


def rule_kind(name: str):
    """Register a rule kind (decorator)."""
    def register(fn):
        RULE_KINDS[name] = fn
        return fn
    return register


def _sizes(value: Any) -> list[tuple[int, int]]:
    """``[h, w]``, a side, or a list of sides / pairs -> [(h, w), ...] (ignores what is not a size)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(int(value), int(value))]
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [(int(value[0]), int(value[1]))]
        return [s for item in value for s in _sizes(item)]
    return []


@rule_kind("encoder_tokens")
def _encoder_tokens(rule: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[int, str] | None:
    strides = rule["strides"] if isinstance(rule["strides"], list) else value_at(spec, rule["strides"])
    if not strides or not all(isinstance(s, int) and s > 0 for s in strides):
        return None
    sizes = [(p, hw) for p in rule["image_sizes"] for hw in _sizes(value_at(spec, p)) if min(hw) > 0]
    if not sizes:
        return None
    path, (h, w) = min(sizes, key=lambda item: sum(math.ceil(item[1][0] / s) * math.ceil(item[1][1] / s)
                                                   for s in strides))
    terms = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
    tokens = sum(a * b for a, b in terms)
    detail = (f"the encoder has {tokens} positions at {h}x{w} ({path}; strides {', '.join(map(str, strides))}: "
              + " + ".join(f"{a}x{b}" for a, b in terms) + ")")
    return tokens, detail


@rule_kind("product")
def _product(rule: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[int, str] | None:
    values = [value_at(spec, f) for f in rule["factors"]]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    cap = math.prod(values)
    return cap, " x ".join(f"{f} ({v})" for f, v in zip(rule["factors"], values)) + f" = {cap}"


def skill_rules(skill: Any, action: str) -> list[Mapping[str, Any]]:
    """The ``spec_rules`` of ``skill`` (skill_info.yaml) that apply to ``action``."""
    rules = skill.info.get("spec_rules") or []
    for rule in rules:
        if rule.get("rule") not in RULE_KINDS:
            raise BankFormatError(f"{skill.name} skill_info.yaml: unknown spec rule kind {rule.get('rule')!r}; "
                                  f"known: {', '.join(sorted(RULE_KINDS))} (fix tools/bank_sources.yaml)")
    return [r for r in rules if not r.get("actions") or action in r["actions"]]


def rule_caps(skill: Any, action: str, spec: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """``{field: (largest allowed value, explanation)}`` of every applicable rule for ``spec``."""
    caps: dict[str, tuple[int, str]] = {}
    for rule in skill_rules(skill, action):
        found = RULE_KINDS[rule["rule"]](rule, spec)
        if found is not None and (rule["field"] not in caps or found[0] < caps[rule["field"]][0]):
            caps[rule["field"]] = (found[0], f"{found[1]}; {rule['why']}")
    return caps


def rule_problems(skill: Any, action: str, spec: Mapping[str, Any]) -> list[SpecProblem]:
    """One :class:`SpecProblem` per violated rule, with the numbers and the fix."""
    problems = []
    for path, (cap, why) in rule_caps(skill, action, spec).items():
        value = value_at(spec, path)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            fixes = " or ".join(_FIX[r["rule"]](r) for r in skill_rules(skill, action) if r["field"] == path)
            problems.append(SpecProblem(path, f"{value} is more than {cap}: {why}. Set {path} <= {cap}, or {fixes}",
                                        value, f"<= {cap}"))
    return problems
