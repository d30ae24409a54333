"""Build and validate full nested specs: template -> data sources -> mappings -> user overrides.

>>> spec = build_spec("rtdetr", "train",
...                   spec_overrides={"train.num_epochs": 10, "dataset.num_classes": 3},
...                   datasets={"train_datasets": ["s3://b/train"], "eval_dataset": "s3://b/eval"})
>>> spec["train"]["num_epochs"]
10

Validation errors raise :class:`~tao_sdk.errors.SpecValidationError` listing every problem with
its dotted path, the offending value, what is allowed and a close match for unknown keys.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any, Mapping

import jsonschema
import yaml

from .bank import Skill, SkillBank, get_bank
from .datasources import build_data_source_overrides
from .errors import SpecProblem, SpecValidationError, TaoSkillsError
from .schemapath import describe_allowed, find_property, leaf_paths

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def set_dotted(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating (or replacing null/non-dict) parents."""
    parts = key.split(".")
    if not all(parts):
        raise TaoSkillsError(f"'{key}' is not a dotted spec key (empty part); write e.g. train.optim.lr")
    node = spec
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted leaf path: value} (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def apply_overrides(spec: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply dotted-key overrides in order (list/dict values replace, they do not merge)."""
    for key, value in (overrides or {}).items():
        set_dotted(spec, key, value)
    return spec


def parse_override_value(text: str) -> Any:
    """Parse a CLI ``--set key=value`` value: YAML scalars/lists/dicts, plus ``1e-4`` as a float
    (plain YAML reads it as a string)."""
    text = text.strip()
    if _FLOAT_RE.match(text):
        return float(text)
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["train.num_epochs=10", ...]`` -> ``{"train.num_epochs": 10}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TaoSkillsError(f"--set expects KEY=VALUE (e.g. train.num_epochs=10), got '{item}'")
        out[key.strip()] = parse_override_value(value)
    return out


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


def validate_spec(skill: Skill, action: str, spec: Mapping[str, Any], *, deploy: bool = False,
                  fillers: Mapping[str, str] | None = None) -> None:
    """Raise SpecValidationError listing every problem of ``spec`` against the action schema."""
    problems = spec_problems(skill.schema(action, deploy), spec, fillers, skill.validator(action, deploy))
    if problems:
        raise SpecValidationError(skill.name, f"{'TensorRT ' if deploy else ''}{action}", problems)


def build_spec(
    skill: Skill | str,
    action: str,
    spec_overrides: Mapping[str, Any] | None = None,
    datasets: Mapping[str, Any] | None = None,
    *,
    dataset_format: str | None = None,
    mapped_values: Mapping[str, Any] | None = None,
    deploy: bool = False,
    validate: bool = True,
    bank: SkillBank | None = None,
) -> dict[str, Any]:
    """The full nested spec for ``action``, validated against the packaged schema.

    Layers, later wins: the action's spec template; data-source overrides built from
    ``datasets`` (see :func:`~tao_sdk.datasources.build_data_source_overrides`); ``mapped_values``
    (resolved SKILL.md inference mappings, e.g. results_dir, evaluate.checkpoint); the user's
    ``spec_overrides`` (dotted keys, list/dict values replace).

    Args:
        deploy: use the TensorRT variant of evaluate/inference (engine instead of checkpoint).
        validate: set False to get the merged spec without validation (e.g. to inspect it).

    Raises:
        SpecValidationError: every problem, each with dotted path, value, allowed values and a
            close-match suggestion for unknown keys.
        DataSourceError: a dataset role the action needs is missing.
    """
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    if action not in skill.actions:
        close = difflib.get_close_matches(action, skill.actions, 1)
        raise TaoSkillsError(f"{skill.name} has no action '{action}'"
                             + (f"; did you mean '{close[0]}'?" if close else "")
                             + f" Actions: {', '.join(skill.actions)}")
    spec = skill.template(action, deploy)
    if datasets:
        apply_overrides(spec, build_data_source_overrides(skill, action, datasets, dataset_format))
    apply_overrides(spec, mapped_values)
    apply_overrides(spec, spec_overrides)
    if validate:
        fillers = {m.spec_field: m.function for m in skill.inference_mappings(action) if m.function}
        validate_spec(skill, action, spec, deploy=deploy, fillers=fillers)
    return spec
