"""Data-source overrides: dataset root URIs -> the dotted spec keys an action needs.

The rules come from SKILL.md's Per-Action Dataset Requirements table (parsed at run time), so
adding a model never touches this module.

>>> build_data_source_overrides("rtdetr", "evaluate", {"eval_dataset": "s3://bucket/data/eval"})
{'dataset.test_data_sources': {'image_dir': 's3://bucket/data/eval/images.tar.gz',
                               'json_file': 's3://bucket/data/eval/annotations.json'}}
"""

from __future__ import annotations

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

    Raises:
        DataSourceError naming the action, spec key and dataset role when a required root is
        missing and the user did not set the key either (every table row is required: the
        table is the single source of truth on which roles an action needs).
    """
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    roots = normalize_datasets(datasets)
    fmt = _resolve_format(skill, dataset_format)
    out: dict[str, Any] = {}
    for req in skill.dataset_requirements(action):
        where = f"{skill.name} {action} spec key '{req.spec_key}'"
        if req.source not in roots:
            if any(k == req.spec_key or k.startswith(req.spec_key + ".") for k in provided):
                continue
            raise DataSourceError(
                f"{where} needs dataset role '{req.source}' (SKILL.md line {req.line}); pass datasets="
                f"{{'{req.source}': {'[URI]' if req.source == 'train_datasets' else 'URI'}}} "
                f"(CLI {ROLE_FLAGS[req.source]} URI)"
            )
        sources: Sequence[str] = roots[req.source]
        if req.multiple:
            out[req.spec_key] = [_build(req.files, root, fmt, skill, where) for root in sources]
        else:
            out[req.spec_key] = _build(req.files, sources[0], fmt, skill, where)
    return out
