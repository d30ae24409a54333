"""Presets: named spec layers a skill ships in ``references/preset_<name>.yaml``.

``preset="tiny"`` (CLI ``--preset tiny``) makes a small model that trains in minutes on a CPU:
the built-in worker's demo configuration of the network (``tao-skills demo --network NET
--quick``), generated into the skill by ``tools/gen_presets.py`` for the four networks the worker
runs (RT-DETR, Deformable DETR, OneFormer, FastFoundationStereo). ``preset="full"`` (or ``None``)
adds no layer: the skill's template as TAO ships it.

A preset file holds, per action, dotted spec overrides, and the environment the job needs
(``TAO_WORKER_BACKBONE_SCALE=tiny``: the worker builds the named backbone with one narrow block
per stage). The layer sits over your spec file (``base_spec``) and under ``spec_overrides`` /
``--set``, which win; dataset roots and SDK-owned fields are never in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import BankFormatError, TaoSkillsError

if TYPE_CHECKING:  # pragma: no cover
    from .bank import Skill, SkillBank

__all__ = ["PRESETS", "FULL", "Preset", "load_preset", "preset_path", "skills_with_preset"]

#: Preset names ``--preset`` accepts. ``full`` is the template itself (no file).
PRESETS = ("tiny", "full")
FULL = "full"


@dataclass(frozen=True)
class Preset:
    """One preset of one skill.

    Attributes:
        name: ``tiny``...
        skill: the skill it belongs to.
        path: the ``references/preset_<name>.yaml`` it was read from.
        description: what it makes (model size, image size, epochs) and where it comes from.
        env: environment variables the job runs with (not secrets; e.g. the worker's
            ``TAO_WORKER_BACKBONE_SCALE``).
        actions: action -> dotted spec overrides.
    """

    name: str
    skill: str
    path: Path
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides(self, action: str) -> dict[str, Any]:
        """The dotted overrides of ``action``; TaoSkillsError naming the covered actions."""
        if action not in self.actions:
            raise TaoSkillsError(
                f"the {self.name} preset of {self.skill} covers {', '.join(self.actions)}, not {action}: "
                f"drop --preset / preset= for this job, or set what you need with --set")
        return dict(self.actions[action])

    def model_keys(self, action: str) -> list[str]:
        """The ``model.*`` keys of ``action``: the model size the preset chooses (AutoML keeps
        them fixed)."""
        return [k for k in self.overrides(action) if k.startswith("model.")]


def preset_path(skill: "Skill", name: str) -> Path:
    """Where ``skill`` keeps preset ``name``: ``<skill>/references/preset_<name>.yaml``."""
    return skill.dir / "references" / f"preset_{name}.yaml"


def skill_presets(skill: "Skill") -> list[str]:
    """The presets ``skill`` offers (``--preset``): always ``full``, plus each one it ships."""
    return [n for n in PRESETS if n == FULL or preset_path(skill, n).exists()]


def skills_with_preset(bank: "SkillBank", name: str) -> list[str]:
    """The skills of ``bank`` that ship preset ``name``."""
    return [s.name for s in bank.skills() if preset_path(s, name).exists()]


def load_preset(skill: "Skill", name: str | None, bank: "SkillBank | None" = None) -> Preset | None:
    """Preset ``name`` of ``skill``; ``None`` for ``None`` / ``"full"`` (no layer).

    Raises:
        TaoSkillsError: an unknown name (the names are listed), or a skill that ships no such
            preset (the skills that do are listed).
        BankFormatError: a malformed preset file (regenerate it: ``python tools/gen_presets.py``).
    """
    if name is None or name == FULL:
        return None
    if name not in PRESETS:
        raise TaoSkillsError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)} (full = the skill's "
                             "template as TAO ships it)")
    path = preset_path(skill, name)
    if not path.exists():
        from .bank import get_bank

        others = skills_with_preset(bank or get_bank(), name)
        raise TaoSkillsError(f"{skill.name} ships no '{name}' preset ({path} is missing); the skills that do: "
                             f"{', '.join(others) or 'none'}. Use preset 'full' (the template) and set the "
                             "model size with --set / spec_overrides")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    actions = data.get("actions")
    if not isinstance(actions, dict) or not all(isinstance(v, dict) for v in actions.values()):
        raise BankFormatError(f"{path}: 'actions' must map each action to dotted overrides; regenerate it with "
                              "`python tools/gen_presets.py`")
    return Preset(name=name, skill=skill.name, path=path, description=str(data.get("description") or ""),
                  env={str(k): str(v) for k, v in (data.get("env") or {}).items()}, actions=actions)
