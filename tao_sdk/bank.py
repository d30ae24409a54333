"""The skill bank: find skills, read their schemas, templates, skill_info and SKILL.md tables.

>>> from tao_sdk import SkillBank
>>> bank = SkillBank()                    # packaged bank; TAO_SKILLS_DIR overrides
>>> skill = bank.get("rtdetr")            # network name or skill name
>>> skill.actions
['train', 'distill', 'quantize', 'evaluate', 'export', 'inference', 'gen_trt_engine']
>>> skill.dataset_requirements("train")[0].spec_key
'dataset.train_data_sources'
"""

from __future__ import annotations

import difflib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import yaml

from . import skillmd
from .errors import BankFormatError, SkillNotFoundError

AUTOML_SKILL = "tao-run-automl"


def default_bank_root() -> Path:
    """Where the bank lives: ``$TAO_SKILLS_DIR``, else the copy packaged in the wheel, else the
    source checkout this module was imported from."""
    env = os.environ.get("TAO_SKILLS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent
    packaged = here / "_bank"
    if (packaged / "skills").is_dir():
        return packaged
    return here.parent


#: libyaml's safe loader when PyYAML was built with it (same results, ~10x faster on templates).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through libyaml when available (bank templates are large)."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader


def _read_text(path: Path) -> str:
    """A bank file's text; BankFormatError saying to regenerate when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BankFormatError(f"{path}: cannot read ({exc.strerror}); run `python tools/gen_schemas.py`") from None


def _load_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BankFormatError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)}); "
                              "regenerate it with `python tools/gen_schemas.py`") from None


def _generated_mapping(path: Path, load: Callable[[Path], Any], valid: Callable[[Any], bool],
                       problem: str) -> dict[str, Any]:
    """A generated file of a skill as a dict: ``{}`` when it does not exist, BankFormatError
    (``problem``, and to regenerate) when ``valid`` refuses what ``load`` read."""
    if not path.exists():
        return {}
    data = load(path)
    if not valid(data):
        raise BankFormatError(f"{path}: {problem}; regenerate with `python tools/gen_schemas.py`")
    return data  # type: ignore[no-any-return]


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BankFormatError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}); "
                              "regenerate it with `python tools/gen_schemas.py`") from None


class Skill:
    """One skill folder. Files are read lazily and cached.

    Attributes:
        name: skill name (folder name), e.g. ``tao-train-rtdetr``.
        dir: the folder.
    """

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.name = self.dir.name
        self._schemas: dict[str, dict] = {}
        self._templates: dict[str, dict] = {}

    def __repr__(self) -> str:
        return f"Skill({self.name!r})"

    # ---- files
    @property
    def skill_md_path(self) -> Path:
        """Path of SKILL.md."""
        return self.dir / "SKILL.md"

    @cached_property
    def doc(self) -> skillmd.SkillDoc:
        """Parsed SKILL.md (front matter and the generated tables)."""
        return skillmd.load_skill_doc(self.skill_md_path)

    @property
    def description(self) -> str:
        """The front matter description (what agents match requests against)."""
        return str(self.doc.front_matter.get("description", "")).strip()

    @cached_property
    def info(self) -> dict[str, Any]:
        """``references/skill_info.yaml`` as a dict ({} for skills without one, e.g. tao-run-automl)."""
        return _generated_mapping(self.dir / "references" / "skill_info.yaml", _load_yaml,
                                  lambda data: isinstance(data, dict), "expected a mapping")

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """``schemas/manifest.json`` ({} when the skill has no generated schemas)."""
        return _generated_mapping(self.dir / "schemas" / "manifest.json", _load_json,
                                  lambda data: isinstance(data, dict) and isinstance(data.get("actions"), dict),
                                  "'actions' mapping missing")

    @property
    def is_model(self) -> bool:
        """True for model skills (they have skill_info.yaml with kind: model)."""
        return self.info.get("kind") == "model"

    @property
    def network(self) -> str | None:
        """TAO network name (``rtdetr``, ``depth_net``...), None for non-model skills."""
        return self.info.get("network")

    @property
    def actions(self) -> list[str]:
        """Actions the skill supports (from skill_info.yaml, else the manifest)."""
        return list(self.info.get("actions") or self.manifest.get("actions", {}).keys())

    @property
    def metric(self) -> tuple[str, str]:
        """(monitoring metric name, direction 'max'|'min') from skill_info.yaml."""
        m = self.info.get("monitoring_metric") or {}
        if not m.get("name") or m.get("direction") not in ("max", "min"):
            raise BankFormatError(f"{self.dir / 'references/skill_info.yaml'}: monitoring_metric needs name and "
                                  "direction (max|min)")
        return m["name"], m["direction"]

    def _entry(self, action: str, deploy: bool) -> dict[str, str]:
        table = self.manifest.get("deploy_actions" if deploy else "actions", {})
        if action not in table:
            known = sorted(self.manifest.get("deploy_actions" if deploy else "actions", {}))
            kind = "TensorRT (deploy) " if deploy else ""
            hint = difflib.get_close_matches(action, known, 1)
            raise BankFormatError(
                f"{self.name} has no {kind}schema for action '{action}'"
                + (f"; did you mean '{hint[0]}'?" if hint else "")
                + (f" Known: {', '.join(known)}." if known else
                   " It has no generated schemas at all; run `python tools/gen_schemas.py`.")
            )
        return table[action]

    def has_schema(self, action: str, deploy: bool = False) -> bool:
        """True when the manifest lists a schema for the action and the file exists."""
        table = self.manifest.get("deploy_actions" if deploy else "actions", {})
        return action in table and (self.dir / "schemas" / table[action]["schema"]).exists()

    def schema_path(self, action: str, deploy: bool = False) -> Path:
        """Path of the action's JSON schema (``deploy=True``: the TensorRT variant)."""
        return self.dir / "schemas" / self._entry(action, deploy)["schema"]

    def template_path(self, action: str, deploy: bool = False) -> Path:
        """Path of the action's spec template."""
        return self.dir / "references" / self._entry(action, deploy)["template"]

    def schema(self, action: str, deploy: bool = False) -> dict[str, Any]:
        """The action's JSON Schema (Draft 2020-12) as a dict."""
        key = f"{'deploy:' if deploy else ''}{action}"
        if key not in self._schemas:
            self._schemas[key] = _load_json(self.schema_path(action, deploy))
        return self._schemas[key]

    def validator(self, action: str, deploy: bool = False):
        """A cached ``jsonschema`` Draft 2020-12 validator for the action's schema."""
        import jsonschema

        key = f"validator:{'deploy:' if deploy else ''}{action}"
        if key not in self._schemas:
            self._schemas[key] = jsonschema.Draft202012Validator(self.schema(action, deploy))
        return self._schemas[key]

    def template(self, action: str, deploy: bool = False) -> dict[str, Any]:
        """The action's spec template (a fresh deep copy each call: safe to mutate)."""
        key = f"{'deploy:' if deploy else ''}{action}"
        if key not in self._templates:
            data = _load_yaml(self.template_path(action, deploy))
            if not isinstance(data, dict):
                raise BankFormatError(f"{self.template_path(action, deploy)}: template must be a mapping")
            self._templates[key] = data
        return json.loads(json.dumps(self._templates[key]))

    def dataset_requirements(self, action: str) -> list[skillmd.DatasetRequirement]:
        """Rows of SKILL.md's Per-Action Dataset Requirements table for ``action``."""
        return [r for r in self.doc.dataset_requirements if r.action == action]

    def inference_mappings(self, action: str) -> list[skillmd.InferenceMapping]:
        """Rows of SKILL.md's Spec Param / Parent Model Inference table for ``action``."""
        return [r for r in self.doc.inference_mappings if r.action == action]

    def automl_runnable(self) -> bool:
        """True when the packaged train schema and template exist and parse."""
        try:
            self.schema("train")
            self.template("train")
        except BankFormatError:
            return False
        return True


_BANKS: dict[Path, "SkillBank"] = {}


def get_bank(root: str | Path | None = None) -> "SkillBank":
    """A shared :class:`SkillBank` for ``root`` (default bank when None); files are parsed once."""
    resolved = Path(root).resolve() if root else default_bank_root()
    if resolved not in _BANKS:
        _BANKS[resolved] = SkillBank(resolved)
    return _BANKS[resolved]


class SkillBank:
    """The set of skills under ``<root>/skills``.

    Args:
        root: bank root holding ``skills/`` (default: :func:`default_bank_root`).
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else default_bank_root()
        self.skills_dir = self.root / "skills"
        if not self.skills_dir.is_dir():
            raise SkillNotFoundError(
                f"no skills/ folder under {self.root}; set TAO_SKILLS_DIR to a bank root or reinstall tao-skill-bank"
            )
        self._cache: dict[str, Skill] = {}
        self._infos: dict[str, dict[str, Any]] = {}

    def names(self) -> list[str]:
        """Sorted skill names."""
        return sorted(p.name for p in self.skills_dir.iterdir() if (p / "SKILL.md").is_file())

    def skills(self) -> list[Skill]:
        """All skills, sorted by name."""
        return [self.get(n) for n in self.names()]

    def get(self, name: str | Skill) -> Skill:
        """A skill by skill name (``tao-train-rtdetr``), network (``rtdetr``) or network config
        (``depth_net_stereo``). Raises SkillNotFoundError with close matches."""
        if isinstance(name, Skill):
            return name
        if name in self._cache:
            return self._cache[name]
        names = self.names()
        found = None
        if name in names:
            found = name
        else:
            matches = [c for c in names if self._answers_to(c, name)]
            shared = [c for c in names if self._peek_info(c).get("network") == name]
            if len(matches) > 1 or (not matches and len(shared) > 1):
                raise SkillNotFoundError(f"'{name}' names several skills ({', '.join(matches or shared)}); "
                                         "use the skill name or its network config")
            found = matches[0] if matches else None
        if found is None:
            aliases = names + sorted({self._peek_info(n).get("network") for n in names if self._peek_info(n).get("network")})
            close = difflib.get_close_matches(name, aliases, 3)
            raise SkillNotFoundError(
                f"no skill '{name}' in {self.skills_dir}"
                + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "")
                + f" Available: {', '.join(names)}."
            )
        skill = self._cache.setdefault(found, Skill(self.skills_dir / found))
        self._cache[name] = skill
        return skill

    def _answers_to(self, skill: str, name: str) -> bool:
        """True when ``name`` is the skill's network config, ``tao-train-<name>``, or its network
        (only for the skill skill_info marks ``network_alias``, where several share a network)."""
        info = self._peek_info(skill)
        if name in (info.get("network_config"), f"tao-train-{name}"):
            return True
        return name == info.get("network") and info.get("network_alias", True)

    def _peek_info(self, name: str) -> dict[str, Any]:
        """skill_info.yaml of a skill folder ({} when absent or unreadable), read once per bank."""
        if name not in self._infos:
            self._infos[name] = self._read_info(self.skills_dir / name / "references" / "skill_info.yaml")
        return self._infos[name]

    @staticmethod
    def _read_info(path: Path) -> dict[str, Any]:
        if not path.exists():
            return {}
        try:
            data = safe_load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}
