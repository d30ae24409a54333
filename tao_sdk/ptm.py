"""Pretrained weights at plan time: NVIDIA's catalog names -> ``ngc://`` URIs, and the plan's
``weights`` list (which weights a job starts from).

A skill's ``references/skill_info.yaml`` lists ``pretrained_models`` (generated from TAO Core's
PTM catalog, ``microservices/pretrained_models.csv``): ``name`` (the NGC version tag), ``uri``
(``ngc://ORG/TEAM/MODEL:VERSION``), ``display_name`` and ``backbone`` (backbone-only weights).
``pretrained_model="nvidia"`` (CLI ``--pretrained-model nvidia``) picks the skill's end-to-end
entry (the one whose name holds the job's ``model.backbone`` when there are several);
``"nvidia:NAME"`` picks the entry NAME. Torch-free: the SDK calls it.
"""

from __future__ import annotations

from typing import Any, Mapping

from tao_sdk.errors import TaoSkillsError

__all__ = ["resolve_pretrained", "catalog", "plan_weights", "NVIDIA"]

#: The name that stands for NVIDIA's pretrained model of a skill.
NVIDIA = "nvidia"


def catalog(skill) -> list[dict[str, Any]]:
    """The skill's NVIDIA pretrained models (``skill_info.yaml`` ``pretrained_models``)."""
    return list(skill.info.get("pretrained_models") or [])


def _choices(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"nvidia:{e['name']}{' (backbone)' if e.get('backbone') else ''}" for e in entries)


def resolve_pretrained(skill, value: str | None, backbone: str | None = None) -> str | None:
    """``"nvidia"`` / ``"nvidia:NAME"`` -> the catalog entry's ``ngc://`` URI; any other value is
    returned as it is (a path or URI). ``backbone``: the job's ``model.backbone``, which picks
    among several end-to-end entries. Raises TaoSkillsError listing the names that exist."""
    if not value or not (value == NVIDIA or value.startswith(NVIDIA + ":")):
        return value
    entries = catalog(skill)
    if not entries:
        raise TaoSkillsError(
            f"--pretrained-model {value}: TAO Core's pretrained-model catalog names no NVIDIA model for "
            f"{skill.name}; give the weights as a URI instead (ngc://ORG/[TEAM/]MODEL:VERSION[/FILE], "
            "hf://ORG/NAME[@REV], https://..., s3://..., or a local path)")
    name = value.split(":", 1)[1] if ":" in value else None
    if name is None:
        full = [e for e in entries if not e.get("backbone")]
        if len(full) > 1 and backbone:
            full = [e for e in full if str(backbone) in e["name"]]
        if len(full) == 1:
            return full[0]["uri"]
        raise TaoSkillsError(f"--pretrained-model nvidia: {skill.name} has {len(full)} end-to-end NVIDIA models "
                             f"for model.backbone={backbone}; name one: {_choices(entries)}")
    match = [e for e in entries if e["name"] == name]
    if not match:
        raise TaoSkillsError(f"--pretrained-model {value}: {skill.name} has no NVIDIA model {name!r}; "
                             f"choose one of {_choices(entries)}")
    return match[0]["uri"]


def _weight_fields(action: str) -> list[str]:
    from tao_sdk.worker.staging import STAGED_KEYS

    return [key for key, kind in STAGED_KEYS.get(action, []) if kind == "weights"]


def plan_weights(action: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which weights the job starts from: per checkpoint field set in ``spec``, its ``spec_field``,
    ``uri``, ``source``, ``resolved`` location and ``size`` when known without a download.
    A malformed or unsupported URI raises TaoSkillsError at plan time (nothing is submitted)."""
    from tao_sdk import sources
    from tao_sdk.dotted import flatten

    flat, out = flatten(spec), []
    for key in _weight_fields(action):
        value = flat.get(key)
        if not isinstance(value, str) or value in ("", "???") or "<" in value or "${" in value:
            continue
        out.append({"spec_field": key, **sources.describe(value, key)})
    return out
