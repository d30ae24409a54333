"""TAO experiment spec files in: read them, conform them the way TAO Core's OmegaConf does, and
validate them (``tao-skills validate SKILL ACTION -e FILE``).

The rule: **a spec that TAO Core's ExperimentConfig accepts is accepted**, and a rejection says
why. Concretely, before the JSON Schema check a spec is *conformed* to the action schema:

- YAML 1.1 numeric strings are numbers where the field is numeric (``lr: 1e-4`` reads as the
  string ``'1e-4'``; OmegaConf's FloatNode turns it into ``0.0001``); integer fields take
  ``"8"``; boolean fields take OmegaConf's words (``yes``/``no``/``on``/``off``/``true``...);
  string-only fields take numbers and booleans as their text, as OmegaConf's StringNode does.
- Enumerated values match case-insensitively and are normalised to the schema's spelling
  (``data_type: int8`` -> ``INT8``), as TAO does when it reads them.
- ``???`` (OmegaConf's MISSING) means "not set": the SDK fills it (data sources, parent job,
  output paths) or the validation says who must.
- ``${...}`` interpolations are left to OmegaConf (they resolve at run time).
- Sections of other actions (a TAO experiment file carries ``train``, ``evaluate``,
  ``export``... in one file) are allowed and validated against their own action's schema; they
  are kept out of the job's spec (the action ignores them).

>>> report = validate_spec_file("rtdetr", "train", "experiment.yaml")
>>> report.ok, [str(p) for p in report.problems], report.filled
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import yaml

from .dotted import flatten, get_path, set_path
from .errors import SpecProblem, TaoSkillsError
from .schemapath import find_property, spec_problems
from .specrules import rule_problems

if TYPE_CHECKING:  # pragma: no cover
    from .models import SpecReport

#: OmegaConf's "value missing" marker.
MISSING = "???"

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)
_BOOL_WORDS = {"y": True, "yes": True, "on": True, "true": True, "1": True,
               "n": False, "no": False, "off": False, "false": False, "0": False}
_DROP = object()


def is_interpolation(value: Any) -> bool:
    """True for an OmegaConf interpolation string such as ``${oc.env:TAO_ENCRYPTION_KEY}``."""
    return isinstance(value, str) and "${" in value and "}" in value


def load_spec_file(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A base spec as a nested dict: ``source`` is a YAML file path or an already nested mapping.

    Raises TaoSkillsError naming the file (and line) when it cannot be read or is not a mapping.
    """
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaoSkillsError(f"spec file {path}: cannot read it ({exc.strerror}); pass an existing YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TaoSkillsError(f"spec file {where}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TaoSkillsError(f"spec file {path}: the top level must be a mapping of spec sections "
                             f"(train:, dataset:, model: ...), not a {type(data).__name__}")
    return data


# =========================================================================== conforming values
def _branches(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = [node]
    for key in ("anyOf", "oneOf"):
        out += [b for b in node.get(key, []) if isinstance(b, dict)]
    return out


def _types(node: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for b in _branches(node):
        t = b.get("type")
        out |= set(t) if isinstance(t, list) else {t} if t else set()
    return out


def _enum(node: Mapping[str, Any]) -> list[Any] | None:
    values = [v for b in _branches(node) if "enum" in b for v in b["enum"]]
    return values or None


def _container_branch(node: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for b in _branches(node):
        t = b.get("type")
        if t == kind or (isinstance(t, list) and kind in t) or (kind == "object" and "properties" in b):
            return b
    return None


@dataclass
class Conformed:
    """What :func:`conform` changed: ``coerced`` (path, before, after) and ``unset`` (``???`` paths)."""

    coerced: list[tuple[str, Any, Any]] = field(default_factory=list)
    unset: list[str] = field(default_factory=list)


def conform(schema: Mapping[str, Any], spec: Mapping[str, Any], log: Conformed | None = None,
            prefix: str = "") -> dict[str, Any]:
    """A copy of ``spec`` conformed to ``schema`` as OmegaConf would (see module docstring).

    ``???`` leaves are removed (a list or mapping made only of them counts as unset) and listed
    in ``log.unset``; coercions are listed in ``log.coerced``. Nothing is ever invented: values
    that cannot be conformed are left for the schema check to report.
    """
    log = log if log is not None else Conformed()
    out = _conform_value(schema, spec, prefix, log)
    return {} if out is _DROP else out


def _conform_value(node: Mapping[str, Any] | None, value: Any, path: str, log: Conformed) -> Any:
    if isinstance(value, str) and value == MISSING:
        log.unset.append(path)
        return _DROP
    if isinstance(value, dict):
        return _conform_dict(node, value, path, log)
    if isinstance(value, list):
        return _conform_list(node, value, path, log)
    if node is None or is_interpolation(value):
        return value
    new = _conform_scalar(node, value)
    if new is not value and new != value or type(new) is not type(value):
        log.coerced.append((path, value, new))
    return new


def _conform_dict(node: Mapping[str, Any] | None, value: dict, path: str, log: Conformed) -> Any:
    branch = _container_branch(node, "object") if node is not None else None
    props = (branch or {}).get("properties") or {}
    extra = (branch or {}).get("additionalProperties")
    out = {}
    for key, item in value.items():
        child = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
        dotted = f"{path}.{key}" if path else str(key)
        new = _conform_value(child, item, dotted, log)
        if new is not _DROP:
            out[key] = new
    return _DROP if value and not out else out


def _conform_list(node: Mapping[str, Any] | None, value: list, path: str, log: Conformed) -> Any:
    branch = _container_branch(node, "array") if node is not None else None
    items = (branch or {}).get("items") if branch else None
    out = []
    for i, item in enumerate(value):
        sub = Conformed()
        new = _conform_value(items if isinstance(items, dict) else None, item, f"{path}.{i}", sub)
        if new is _DROP:  # a list with an unset entry is unset as a whole
            log.unset.append(path)
            return _DROP
        log.coerced += sub.coerced
        log.unset += sub.unset
        out.append(new)
    return out


def _conform_scalar(node: Mapping[str, Any], value: Any) -> Any:
    types = _types(node)
    enum = _enum(node)
    if enum is not None and value not in enum and isinstance(value, str):
        matches = [e for e in enum if isinstance(e, str) and e.lower() == value.lower()]
        if len(matches) == 1:
            return matches[0]
    if isinstance(value, str) and "string" not in types:
        text = value.strip()
        if "integer" in types and _INT_RE.match(text):
            return int(text)
        if "number" in types and _FLOAT_RE.match(text):
            number = float(text)
            return number if not math.isnan(number) else value
        if "boolean" in types and text.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[text.lower()]
    if types and types <= {"string", "null"} and isinstance(value, (bool, int, float)) and enum is None:
        return str(value)
    return value


# =========================================================================== other actions' sections
def action_sections(skill: Any) -> dict[str, tuple[str, bool]]:
    """Top-level section name -> (action, deploy) for every action section of ``skill``."""
    out: dict[str, tuple[str, bool]] = {}
    for action in skill.actions:
        for deploy in (False, True):
            if skill.has_schema(action, deploy) and action in skill.schema(action, deploy).get("properties", {}):
                out.setdefault(action, (action, deploy))
    return out


def split_sections(skill: Any, action: str, spec: Mapping[str, Any], deploy: bool = False
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(own, others)``: ``others`` holds the top-level sections of ``spec`` that belong to other
    actions of ``skill`` (absent from this action's schema); ``own`` the rest."""
    own_props = skill.schema(action, deploy).get("properties", {})
    sections = action_sections(skill)
    own, others = {}, {}
    for key, value in spec.items():
        if key not in own_props and key in sections:
            others[key] = value
        else:
            own[key] = value
    return own, others


def section_problems(skill: Any, sections: Mapping[str, Any]) -> list[SpecProblem]:
    """Problems of other actions' sections, each checked against its own action's schema node
    (wrong types, values out of range, unknown keys; missing values are that action's business)."""
    problems: list[SpecProblem] = []
    index = action_sections(skill)
    for name, value in sections.items():
        action, deploy = index[name]
        schema = skill.schema(action, deploy)
        node = schema["properties"][name]
        sub_schema = {"type": "object", "properties": {name: node}, "additionalProperties": False}
        conformed = conform(sub_schema, {name: value})
        problems += [p for p in spec_problems(sub_schema, conformed) if not p.message.startswith("required field")]
    return problems


# =========================================================================== the one pipeline
def read_base_layer(skill: Any, action: str, source: str | Path | Mapping[str, Any], deploy: bool = False
                    ) -> tuple[dict[str, Any], dict[str, Any], Conformed]:
    """A TAO experiment spec (file path or nested dict) read for ``action``: ``(own, others, log)``
    with ``own`` its sections of this action conformed to the action schema (as OmegaConf reads
    them), ``others`` the other actions' sections, ``log`` the conversions done. Used by
    :func:`tao_sdk.spec.compose_spec` (``base_spec=``) and :func:`validate_spec_file`."""
    own, others = split_sections(skill, action, load_spec_file(source), deploy)
    log = Conformed()
    return conform(skill.schema(action, deploy), own, log), others, log


def layer_values(layer: Mapping[str, Any]) -> dict[str, Any]:
    """A nested layer as dotted keys to lay over a template; an empty mapping merges nothing
    (as in OmegaConf): it does not wipe a section."""
    return {k: v for k, v in flatten(layer).items() if v != {}}


def spec_check(skill: Any, action: str, deploy: bool, spec: Mapping[str, Any], others: Mapping[str, Any], *,
               fillers: Mapping[str, str] | None = None,
               accounted: Callable[[SpecProblem], bool] | None = None) -> list[SpecProblem]:
    """Every problem of a composed ``spec``: its schema problems (less those ``accounted`` says
    the caller reports otherwise, e.g. fields the SDK fills), the other actions' sections; when
    those are clean, the skill's cross-field rules (:mod:`tao_sdk.specrules`). ``fillers`` (dotted
    path -> inference mapping) makes a missing field's message say how it gets filled."""
    problems = [p for p in spec_problems(skill.schema(action, deploy), spec, fillers, skill.validator(action, deploy))
                if accounted is None or not accounted(p)]
    problems += section_problems(skill, others)
    return problems or rule_problems(skill, action, spec)


# =========================================================================== validate a file
@dataclass
class SpecFileReport:
    """The verdict of :func:`validate_spec_file`.

    Attributes:
        ok: True when the spec is acceptable (exit 0 of ``tao-skills validate``).
        problems: every problem (dotted path, value, allowed, suggestion); empty when ok.
        filled: fields the SDK fills at run time: ``{path: how}`` (a parent job's checkpoint,
            the job's results folder, a dataset role, the encryption key from the environment).
        unset: ``???`` fields nobody fills automatically (set them before running).
        coerced: ``[path, before, after]`` conversions done as OmegaConf does them.
        sections: other actions' sections found in the file and validated as their own.
        warnings: values the SDK will replace or move (SDK-owned fields, secrets).
    """

    skill: str
    action: str
    deploy: bool
    source: str
    ok: bool = True
    problems: list[SpecProblem] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    coerced: list[list[Any]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def info(self) -> SpecReport:
        """The typed view (:class:`tao_sdk.models.SpecReport`; secret values redacted)."""
        from .models import Problem, SpecReport
        from .secrets import redact

        return SpecReport(skill=self.skill, action=self.action, deploy=self.deploy, source=self.source, ok=self.ok,
                          problems=[Problem.from_problem(p) for p in self.problems], filled_by_sdk=self.filled,
                          unset=self.unset, coerced=redact(self.coerced), other_sections=self.sections,
                          warnings=self.warnings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of :meth:`info` (``--json``)."""
        return self.info().to_json_dict()


def sdk_fillers(skill: Any, action: str) -> dict[str, str]:
    """Dotted path -> how the SDK fills it for ``action``: SKILL.md inference mappings and
    dataset requirements (the Per-Action Dataset Requirements table)."""
    from .datasources import ROLE_FLAGS

    out: dict[str, str] = {}
    for m in skill.inference_mappings(action):
        out[m.spec_field] = (f"'{m.function}' inference mapping" if m.function else f"literal {m.literal!r}")
    for r in skill.dataset_requirements(action):
        out.setdefault(r.spec_key, f"dataset role '{r.source}' ({ROLE_FLAGS[r.source]})")
    return out


def validate_spec_file(skill: Any, action: str, source: str | Path | Mapping[str, Any], *,
                       deploy: bool = False, bank: Any = None) -> SpecFileReport:
    """Validate a TAO experiment spec (file path or nested dict) for ``skill``/``action``.

    The file is laid over the action's template (as TAO merges a file over its ExperimentConfig
    defaults) and conformed (see module docstring); the skill's cross-field spec rules apply
    (:mod:`tao_sdk.specrules`). Fields the SDK fills at run time (results
    folder, encryption key, parent checkpoints, dataset roots) are listed in ``filled``, not
    reported as problems. Returns a :class:`SpecFileReport`; never raises for spec problems.
    """
    from .bank import get_bank
    from .secrets import secret_paths

    skill = (bank or get_bank()).get(skill)
    if action not in skill.actions:
        raise TaoSkillsError(f"{skill.name} has no action '{action}'; actions: {', '.join(skill.actions)}")
    if deploy and not skill.has_schema(action, deploy=True):
        raise TaoSkillsError(f"{skill.name} has no TensorRT variant of '{action}'; drop --deploy")
    report = SpecFileReport(skill.name, action, deploy, str(source) if not isinstance(source, Mapping) else "<dict>")
    layer, others, log = read_base_layer(skill, action, source, deploy)
    report.sections = sorted(others)
    schema = skill.schema(action, deploy)
    fillers = sdk_fillers(skill, action)
    for path in secret_paths(layer):
        report.warnings.append(f"{path}: a secret in the file; the SDK moves it to the job environment and "
                               "never stores it")
    for path, value in flatten(layer).items():
        if path in fillers and "mapping" in fillers[path] and path not in secret_paths(layer) and value is not None:
            report.warnings.append(f"{path}: the file's value {value!r} is SDK-owned and will be replaced "
                                   f"({fillers[path]})")
    spec = skill.template(action, deploy)
    for path, value in layer_values(layer).items():
        set_path(spec, path, value)
    report.coerced = [[p, a, b] for p, a, b in log.coerced]

    def filled_by_sdk(p: SpecProblem) -> bool:
        if p.path in fillers:
            report.filled[p.path] = fillers[p.path]
        return p.path in fillers or any(p.path.startswith(f + ".") for f in fillers)

    problems = spec_check(skill, action, deploy, spec, others, accounted=filled_by_sdk)
    for path in log.unset:
        if path in fillers or any(path.startswith(f + ".") for f in fillers):
            report.filled.setdefault(_filler_key(path, fillers), fillers[_filler_key(path, fillers)])
        else:
            report.unset.append(path)
    for path, how in fillers.items():
        if "mapping" in how or "literal" in how or value_at(spec, path) is None:
            report.filled.setdefault(path, how)
    problems += [SpecProblem(p, "value is '???' (unset) and nothing fills it", None, None, None)
                 for p in report.unset if _required(schema, p)]
    report.problems = problems
    report.ok = not problems
    return report


def _filler_key(path: str, fillers: Mapping[str, str]) -> str:
    if path in fillers:
        return path
    return next(f for f in fillers if path.startswith(f + "."))


def value_at(spec: Mapping[str, Any], dotted: str) -> Any:
    """The value at dotted path ``a.b.c`` of a nested spec, or None when it is absent."""
    return get_path(spec, dotted)


def _required(schema: Mapping[str, Any], dotted: str) -> bool:
    """True when ``dotted`` is a required field with no default (an unset value breaks the job)."""
    parts = dotted.split(".")
    parent = find_property(schema, ".".join(parts[:-1])) if len(parts) > 1 else schema
    node = find_property(schema, dotted)
    if parent is None or node is None:
        return False
    return parts[-1] in (parent.get("required") or []) and "default" not in node
