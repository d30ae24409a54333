"""Data-source overrides: dataset root URIs -> the dotted spec keys an action needs.

The rules come from SKILL.md's Per-Action Dataset Requirements table (parsed at run time), so
adding a model never touches this module.

>>> build_data_source_overrides("rtdetr", "evaluate", {"eval_dataset": "s3://bucket/data/eval"})
{'dataset.test_data_sources': {'image_dir': 's3://bucket/data/eval/images.tar.gz',
                               'json_file': 's3://bucket/data/eval/annotations.json'}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

from .bank import Skill, SkillBank, get_bank
from .errors import DataSourceError
from .skillmd import DATASET_ROLES, ROOT_ITSELF, FileByFormat, FilePath, FileSpec, FormatPlaceholder

#: CLI flag for each dataset role (used in error messages).
ROLE_FLAGS = {
    "train_datasets": "--train-dataset",
    "eval_dataset": "--eval-dataset",
    "inference_dataset": "--inference-dataset",
    "calibration_dataset": "--calibration-dataset",
}


def normalize_datasets(datasets: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Validate a datasets mapping and return role -> list of root URIs.

    ``train_datasets`` may be a list or a single URI; the other roles take one URI (a one-item
    list is accepted). Unknown roles raise DataSourceError listing the valid ones.
    """
    out: dict[str, list[str]] = {}
    for role, value in (datasets or {}).items():
        if role not in DATASET_ROLES:
            raise DataSourceError(f"unknown dataset role '{role}'; use one of {', '.join(DATASET_ROLES)}")
        if value in (None, "", []):
            continue
        roots = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(r, str) and r.strip() for r in roots):
            raise DataSourceError(f"dataset role '{role}' must be a URI string (or a list of them for train_datasets)")
        if role != "train_datasets" and len(roots) > 1:
            raise DataSourceError(f"dataset role '{role}' takes one dataset root, got {len(roots)}; "
                                  "only train_datasets accepts several")
        out[role] = [r.strip().rstrip("/") for r in roots]
    return out


def _resolve_format(skill: Skill, dataset_format: str | None) -> str | None:
    if dataset_format is None:
        return None
    formats = skill.info.get("formats", [])
    for fmt in formats:
        if fmt.lower() == dataset_format.lower():
            return fmt
    raise DataSourceError(f"dataset format '{dataset_format}' is not supported by {skill.name}; "
                          f"use one of {', '.join(formats)}")


def _build(spec: FileSpec, root: str, fmt: str | None, skill: Skill, where: str) -> Any:
    if isinstance(spec, FilePath):
        uri = root if spec.name == ROOT_ITSELF else f"{root}/{spec.name}"
        return [uri] if spec.wrap else uri
    if isinstance(spec, FormatPlaceholder):
        if fmt is None:
            raise DataSourceError(f"{where} needs the dataset format; pass dataset_format= one of "
                                  f"{', '.join(skill.info.get('formats', []))} (CLI --dataset-format)")
        return fmt
    if isinstance(spec, FileByFormat):
        chosen = fmt or (skill.info.get("formats") or [None])[0]
        for option_format, path in spec.by_format:
            if chosen and option_format.lower() == chosen.lower():
                return _build(path, root, fmt, skill, where)
        if spec.default is None:
            raise DataSourceError(f"{where} has no file for dataset format '{chosen}'")
        return _build(spec.default, root, fmt, skill, where)
    return {key: _build(sub, root, fmt, skill, where) for key, sub in spec.items}


#: A spec key that holds a validation split (``dataset.val_data_sources``, ``dataset.val.images``,
#: ``dataset.validation_dataset.images_dir``, ``dataset.validate_dataset.data_path``): where the
#: table fills one from ``train_datasets`` (Deformable DETR validates on its training data, as
#: TAO's network config does), an explicit ``eval_dataset`` takes its place (see
#: :func:`plan_data_sources`).
VALIDATION_KEY_RE = re.compile(r"(^|\.)(val|validation|validate)(_[a-z_]+)?(\.|$)")


#: The layer name of values a chained job inherits from its train job (datasets given replace them).
INHERITED_LAYER = "the parent train job"


@dataclass
class DataSourcePlan:
    """What :func:`plan_data_sources` decided.

    Attributes:
        values: dotted spec key -> value (what :func:`build_data_source_overrides` returns).
        notes: every decision the user should read: a validation split the table takes from the
            train datasets (and whether the user's eval dataset or spec value replaced it), a
            dataset role given but not used by the action, a user spec value replaced by a role.
        substituted: spec keys filled from another role than the table names (key -> role used).
    """

    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    substituted: dict[str, str] = field(default_factory=dict)


def _user_sets(provided: Collection[str] | Mapping[str, str], key: str) -> str | None:
    """The layer name (or ``"the spec"``) where the user set ``key`` or a key below it."""
    for k in provided:
        if k == key or k.startswith(key + "."):
            return provided[k] if isinstance(provided, Mapping) else "the spec"
    return None


def _source_for(skill: Skill, action: str, req: Any, roots: Mapping[str, list[str]],
                provided: Collection[str] | Mapping[str, str], plan: DataSourcePlan) -> str | None:
    """The role a requirement row is built from (None: the user's own value is kept), noting
    every substitution (Deformable DETR's validation split from train_datasets)."""
    uses_eval = any(r.source == "eval_dataset" for r in skill.dataset_requirements(action))
    if req.source != "train_datasets" or uses_eval or not VALIDATION_KEY_RE.search(req.spec_key):
        return req.source
    where = f"{skill.name} {action}: {req.spec_key}"
    table = f"SKILL.md line {req.line} fills it from train_datasets (TAO's table validates on the training data)"
    layer = _user_sets(provided, req.spec_key)
    if layer is not None:
        plan.notes.append(f"{where}: the value from {layer} is kept; {table}")
        plan.substituted[req.spec_key] = layer
        return None
    if "eval_dataset" in roots:
        plan.notes.append(f"{where}: built from your eval dataset {roots['eval_dataset'][0]} as you asked; {table}")
        plan.substituted[req.spec_key] = "eval_dataset"
        return "eval_dataset"
    plan.notes.append(f"{where}: validates on the train datasets: {table}; pass --eval-dataset URI "
                      "(datasets={'eval_dataset': URI}) to validate on held-out data")
    return req.source


def plan_data_sources(
    skill: Skill | str,
    action: str,
    datasets: Mapping[str, Any] | None,
    dataset_format: str | None = None,
    *,
    provided: Collection[str] | Mapping[str, str] = (),
    bank: SkillBank | None = None,
) -> DataSourcePlan:
    """Dotted spec keys -> values for the dataset roots of ``action``, and a note for every
    dataset decision (see :class:`DataSourcePlan`); arguments as :func:`build_data_source_overrides`.

    No dataset is dropped without a word: where the table takes a validation split from
    ``train_datasets`` (:data:`VALIDATION_KEY_RE`), the user's own value for that key
    (``provided``: spec file / overrides) wins, else an explicit ``eval_dataset`` wins, else
    the train datasets are used; each case is noted. A role given that no row of the action
    reads is noted, and so is a user value a role replaces.
    """
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    roots = normalize_datasets(datasets)
    fmt = _resolve_format(skill, dataset_format)
    plan = DataSourcePlan()
    used: set[str] = set()
    for req in skill.dataset_requirements(action):
        where = f"{skill.name} {action} spec key '{req.spec_key}'"
        source = _source_for(skill, action, req, roots, provided, plan)
        if source is None:
            continue
        if source not in roots:
            if _user_sets(provided, req.spec_key) is not None:
                continue
            raise DataSourceError(
                f"{where} needs dataset role '{req.source}' (SKILL.md line {req.line}); pass datasets="
                f"{{'{req.source}': {'[URI]' if req.source == 'train_datasets' else 'URI'}}} "
                f"(CLI {ROLE_FLAGS[req.source]} URI)"
            )
        used.add(source)
        layer = _user_sets(provided, req.spec_key)
        if layer is not None and isinstance(provided, Mapping) and layer not in ("spec_overrides", INHERITED_LAYER):
            plan.notes.append(f"{req.spec_key}: the value from {layer} is replaced by the one built from {source} "
                              f"({ROLE_FLAGS[source]}); drop one of the two")
        sources: Sequence[str] = roots[source]
        if req.multiple:
            plan.values[req.spec_key] = [_build(req.files, root, fmt, skill, where) for root in sources]
        else:
            plan.values[req.spec_key] = _build(req.files, sources[0], fmt, skill, where)
    for role in sorted(set(roots) - used):
        plan.notes.append(f"{role} ({ROLE_FLAGS[role]} {', '.join(roots[role])}) is not used: {skill.name} {action} "
                          "reads no file from it (its SKILL.md dataset table has no row for that role)")
    return plan


def build_data_source_overrides(
    skill: Skill | str,
    action: str,
    datasets: Mapping[str, Any] | None,
    dataset_format: str | None = None,
    *,
    provided: Collection[str] = (),
    bank: SkillBank | None = None,
) -> dict[str, Any]:
    """Dotted spec keys -> values for the dataset roots of ``action``.

    Args:
        skill: a Skill, skill name or network name.
        action: the TAO action (``train``, ``evaluate``...).
        datasets: ``{"train_datasets": [uri, ...], "eval_dataset": uri, "inference_dataset": uri,
            "calibration_dataset": uri}`` — S3 (``s3://``) or local roots.
        provided: dotted spec keys the user already set (spec file, overrides): a requirement
            whose key (or a key below it) is there needs no dataset role.
        dataset_format: the dataset format, needed by stereo (``dataset_name``) and OneFormer's
            label map (defaults to the skill's first format where a file depends on it).

    The user's choice is never dropped silently: see :func:`plan_data_sources` (its notes say
    where a validation split came from).

    Raises:
        DataSourceError naming the action, spec key and dataset role when a required root is
        missing and the user did not set the key either (every table row is required: the
        table is the single source of truth on which roles an action needs).
    """
    return plan_data_sources(skill, action, datasets, dataset_format, provided=provided, bank=bank).values
