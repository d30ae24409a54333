"""The Train Action Policy: does a train action go to AutoML (``tao-run-automl``) or straight to
the model skill?

Rules (SKILL.md "Train Action Policy"): an explicit ``automl_policy`` wins; otherwise phrases
such as "turn off AutoML", "disable AutoML", "no HPO", "plain training" in the request mean
``off`` for this run only; otherwise ``auto``. With ``auto``, a skill whose skill_info says
``automl_enabled: true`` and whose train schema + template are packaged routes train to
``tao-run-automl``. Only train is ever routed. The per-run policy never changes skill metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .bank import AUTOML_SKILL, Skill, SkillBank, get_bank
from .errors import TaoSkillsError

AUTOML_NOT_RUNNABLE = "AutoML enabled but not runnable until schemas are generated"

_AUTOML = r"(?:auto[\s-]?ml|hpo|hyper[\s-]?param(?:eter)?s?\s+(?:search|tuning|optimi[sz]ation|sweeps?)|" \
          r"hyper[\s-]?param(?:eter)?\s+(?:search|tuning|optimi[sz]ation)|tuning|sweeps?)"
_OFF_PATTERNS = [
    rf"\b(?:turn|switch|shut|toggle)(?:ing|ed)?\s+(?:the\s+)?{_AUTOML}\s+off\b",
    rf"\b(?:turn|switch|shut|toggle)(?:ing|ed)?\s+off\s+(?:the\s+)?{_AUTOML}",
    rf"\b(?:disable|disabling|disabled|skip|skipping|bypass|without|no|avoid|deactivate)\s+(?:the\s+|any\s+)?{_AUTOML}",
    rf"\b(?:don'?t|do\s+not|never)\s+(?:use|run|do|want|need)\s+(?:the\s+|any\s+)?{_AUTOML}",
    rf"\b{_AUTOML}\s*(?:=|:)?\s*(?:off|disabled|false|no)\b",
    r"\bplain(?:\s+|-)(?:old\s+)?train(?:ing)?\b",
    r"\b(?:direct|vanilla|regular|normal|simple|single)(?:\s+|-)train(?:ing)?\s+(?:run\s+)?(?:only|without)\b",
    r"\btrain(?:ing)?\s+directly\b",
    r"\bjust\s+train\b",
]
_NEGATED = re.compile(r"\b(?:don'?t|do\s+not|never|not)\s+(?:turn|switch|disable|skip)\b")
_OFF_RE = [re.compile(p, re.IGNORECASE) for p in _OFF_PATTERNS]


def policy_phrase(request: str | None) -> str | None:
    """The phrase in ``request`` that turns AutoML off, or None."""
    if not request:
        return None
    for pattern in _OFF_RE:
        match = pattern.search(request)
        if match:
            window = request[max(0, match.start() - 12): match.end()].lower()
            if _NEGATED.search(window):
                continue
            return match.group(0)
    return None


def resolve_automl_policy(skill: Skill | str | None = None, automl_policy: str | bool | None = None,
                          request: str | None = None) -> str:
    """``"auto"`` or ``"off"`` for this run.

    Args:
        skill: the model skill (accepted for symmetry with route_action; metadata is not changed).
        automl_policy: explicit value (``"auto"``, ``"off"``; also True/"on" -> auto, False -> off). Wins.
        request: the user's free-text request; "turn off AutoML", "disable AutoML", "no HPO",
            "plain training" and close variants mean off.
    """
    if automl_policy is not None and automl_policy != "":
        value = str(automl_policy).strip().lower()
        if value in ("auto", "on", "true", "enabled", "enable", "yes"):
            return "auto"
        if value in ("off", "false", "disabled", "disable", "no", "none"):
            return "off"
        raise TaoSkillsError(f"automl_policy must be 'auto' or 'off', not {automl_policy!r}")
    return "off" if policy_phrase(request) else "auto"


@dataclass(frozen=True)
class Route:
    """Where an action goes: ``target`` skill name, whether AutoML runs it, and why."""

    target: str
    automl: bool
    policy: str
    reason: str


def route_action(skill: Skill | str, action: str, automl_policy: str | bool | None = None,
                 request: str | None = None, *, bank: SkillBank | None = None) -> Route:
    """Decide where ``action`` of ``skill`` goes, with a human-readable reason."""
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    policy = resolve_automl_policy(skill, automl_policy, request)
    if action != "train":
        return Route(skill.name, False, policy, f"'{action}' is not a train action; it stays in {skill.name}")
    if policy == "off":
        why = ("automl_policy='off' was passed" if automl_policy not in (None, "")
               else f"the request says '{policy_phrase(request)}'")
        return Route(skill.name, False, policy, f"AutoML off for this run only ({why}); training directly")
    if not skill.info.get("automl_enabled"):
        return Route(skill.name, False, policy, f"{skill.name} is not AutoML-enabled; training directly")
    if not skill.automl_runnable():
        return Route(skill.name, False, policy,
                     f"{AUTOML_NOT_RUNNABLE} for {skill.name} (schemas/train.schema.json or "
                     "references/spec_template_train.yaml missing); training directly")
    return Route(AUTOML_SKILL, True, policy,
                 f"automl_policy auto and {skill.name} is AutoML-enabled with a packaged train schema; "
                 f"routing train through {AUTOML_SKILL}")
