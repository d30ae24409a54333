"""The Train Action Policy: does a train action go to AutoML (``tao-run-automl``) or straight to
the model skill?

Rules (SKILL.md "Train Action Policy"): explicit arguments beat request text. An explicit
``automl_policy`` wins; explicit AutoML settings (algorithm, trials...) ask for AutoML (``auto``)
whatever the request says, and contradict ``automl_policy="off"`` (an error); otherwise phrases
such as "turn off AutoML", "disable AutoML", "no HPO", "plain training" in the request mean
``off`` for this run only; otherwise ``auto``. With ``auto``, a skill whose skill_info says
``automl_enabled: true`` and whose train schema + template are packaged routes train to
``tao-run-automl``. Only train is ever routed. The per-run policy never changes skill metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

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
                          request: str | None = None, explicit_automl: bool = False) -> str:
    """``"auto"`` or ``"off"`` for this run.

    Args:
        skill: the model skill (accepted for symmetry with route_action; metadata is not changed).
        automl_policy: explicit value (``"auto"``, ``"off"``; also True/"on" -> auto, False -> off). Wins.
        request: the user's free-text request; "turn off AutoML", "disable AutoML", "no HPO",
            "plain training" and close variants mean off.
        explicit_automl: True when AutoML settings were passed explicitly: they mean ``auto``
            and beat the request text.
    """
    if automl_policy is not None and automl_policy != "":
        value = str(automl_policy).strip().lower()
        if value in ("auto", "on", "true", "enabled", "enable", "yes"):
            return "auto"
        if value in ("off", "false", "disabled", "disable", "no", "none"):
            return "off"
        raise TaoSkillsError(f"automl_policy must be 'auto' or 'off', not {automl_policy!r}")
    if explicit_automl:
        return "auto"
    return "off" if policy_phrase(request) else "auto"


#: AutoML settings that count things: each must be a positive integer when given.
POSITIVE_AUTOML_SETTINGS = ("max_recommendations", "max_epochs", "max_concurrent", "reduction_factor")
_CLI_FLAGS = {"algorithm": "--automl-algorithm", "max_recommendations": "--automl-trials",
              "hyperparameters": "--automl-param", "max_concurrent": "--automl-concurrency"}


def check_automl_arguments(automl_policy: str | bool | None, automl: Mapping[str, Any] | None) -> None:
    """Raise TaoSkillsError when AutoML arguments contradict each other or a count is not positive.

    ``automl_policy="off"`` together with AutoML settings is a contradiction (which one did the
    user mean?); ``max_recommendations`` (``--automl-trials``), ``max_epochs``,
    ``max_concurrent`` and ``reduction_factor`` must be integers >= 1 (``0`` is not "unset").
    """
    given = {k: v for k, v in (automl or {}).items() if v is not None}
    if given and automl_policy not in (None, "") and resolve_automl_policy(None, automl_policy) == "off":
        names = ", ".join(f"{k} ({_CLI_FLAGS[k]})" if k in _CLI_FLAGS else k for k in given)
        raise TaoSkillsError(f"automl_policy='off' contradicts the AutoML settings given ({names}); drop "
                             "--automl-policy off to run AutoML, or drop the AutoML settings to train directly")
    for key in POSITIVE_AUTOML_SETTINGS:
        value = given.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = f" ({_CLI_FLAGS[key]})" if key in _CLI_FLAGS else ""
            raise TaoSkillsError(f"AutoML {key}{flag} must be an integer >= 1, got {value!r}; omit it for the "
                                 "default")


@dataclass(frozen=True)
class Route:
    """Where an action goes: ``target`` skill name, whether AutoML runs it, and why."""

    target: str
    automl: bool
    policy: str
    reason: str

    @property
    def kind(self) -> str:
        """The job kind the route creates (:mod:`tao_sdk.jobkinds`): ``"automl"`` or ``"job"``."""
        return "automl" if self.automl else "job"


def route_action(skill: Skill | str, action: str, automl_policy: str | bool | None = None,
                 request: str | None = None, *, bank: SkillBank | None = None,
                 explicit_automl: bool = False) -> Route:
    """Decide where ``action`` of ``skill`` goes, with a human-readable reason.

    ``explicit_automl``: AutoML settings were passed explicitly (see :func:`resolve_automl_policy`);
    the reason then says that they beat the request text.
    """
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    policy = resolve_automl_policy(skill, automl_policy, request, explicit_automl)
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
    why = "automl_policy auto"
    phrase = policy_phrase(request)
    if explicit_automl and automl_policy in (None, ""):
        why = ("explicit AutoML arguments were given" + (f"; they beat the request text '{phrase}'" if phrase else ""))
    return Route(AUTOML_SKILL, True, policy,
                 f"{why} and {skill.name} is AutoML-enabled with a packaged train schema; "
                 f"routing train through {AUTOML_SKILL}")
