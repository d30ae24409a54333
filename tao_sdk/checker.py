"""The bank checker: is every skill folder complete, consistent and up to date?

``check_bank()`` (CLI: ``tao-skills check [SKILL...]``) returns a list of :class:`Problem`; an
empty list means the bank is healthy. Each problem names the file, the line or JSON path and
the fix. Nothing here needs TAO Core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from . import skillmd
from .bank import AUTOML_SKILL, Skill, SkillBank, _load_json, safe_load_yaml
from .errors import BankFormatError, TaoSkillsError
from .policy import AUTOML_NOT_RUNNABLE
from .schemapath import find_property


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a skill: ``where`` is ``file[:line]`` or ``file#json/path``."""

    skill: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def unfilled_template_fields(template_text: str) -> list[str]:
    """Dotted paths a template's header comment lists as 'fields without a default'."""
    out = []
    for line in template_text.splitlines():
        if not line.startswith("#"):
            break
        parts = line[1:].split()
        if line.startswith("#   ") and parts:
            out.append(parts[0])
    return out


class _Collector:
    def __init__(self, skill: Skill):
        self.skill = skill
        self.problems: list[Problem] = []

    def add(self, where: Path | str, message: str) -> None:
        self.problems.append(Problem(self.skill.name, str(where), message))


def _bank_meta_schema(bank: SkillBank, name: str) -> dict:
    """A bank meta-schema: the bank root's own copy, else the one shipped with the SDK (a bank
    root written by ``gen_schemas.py --out`` or pointed to by TAO_SKILLS_DIR may hold only skills/)."""
    here = Path(__file__).resolve().parent
    for root in (bank.root, here / "_bank", here.parent):
        path = root / "schemas" / name
        if path.is_file():
            data = _load_json(path)
            if not isinstance(data, dict):
                raise BankFormatError(f"{path}: a JSON Schema must be an object")
            return data
    raise BankFormatError(f"{bank.root / 'schemas' / name}: missing; copy schemas/{name} from the "
                          "tao-skill-bank source into the bank root")


def check_skill(bank: SkillBank, skill: Skill) -> list[Problem]:
    """Check one skill folder; see :func:`check_bank`."""
    out = _Collector(skill)
    doc = _check_doc(out, skill)
    if doc is None:
        return out.problems
    info_path = skill.dir / "references" / "skill_info.yaml"
    if skill.name == AUTOML_SKILL or not info_path.exists():
        if skill.name != AUTOML_SKILL:
            out.add(info_path, "missing; run `python tools/gen_schemas.py` (model skills need skill_info.yaml)")
        return out.problems
    info = _check_info(out, bank, skill, info_path)
    if info is None:
        return out.problems
    checked = _check_manifest(out, skill, info)
    if checked is None:
        return out.problems
    manifest, schemas = checked
    _check_tables(out, skill, doc, schemas)
    _check_generated_blocks(out, skill, doc, manifest)
    return out.problems


def _check_doc(out: _Collector, skill: Skill) -> Any:
    """SKILL.md: parsed (its tables) with agent-skill front matter; ``None`` when it does not parse."""
    md = skill.skill_md_path
    try:
        doc = skill.doc
    except BankFormatError as exc:
        # keep the file:line the parser names ("SKILL.md:12: row has 6 cells...")
        where, sep, rest = str(exc).partition(": ")
        if sep and where.startswith(str(md)):
            out.add(where, rest)
        else:
            out.add(md, str(exc))
        return None
    for message in skillmd.agent_skill_problems(doc.front_matter, skill.name):
        out.add(f"{md}:2", message)
    return doc


def _check_info(out: _Collector, bank: SkillBank, skill: Skill, info_path: Path) -> dict | None:
    """skill_info.yaml against the bank meta-schema; ``None`` when it does not load."""
    try:
        info = skill.info
        validator = jsonschema.Draft202012Validator(_bank_meta_schema(bank, "skill_info.schema.json"))
        for err in sorted(validator.iter_errors(info), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path) or "<root>"
            out.add(f"{info_path}#{path}", f"{err.message} (see schemas/skill_info.schema.json)")
    except BankFormatError as exc:
        out.add(info_path, str(exc))
        return None
    return info


def _check_manifest(out: _Collector, skill: Skill, info: dict) -> tuple[dict, dict[tuple[str, bool], dict]] | None:
    """The manifest, its schemas and templates: (manifest, readable schemas by (action, deploy)),
    ``None`` when there is no readable manifest."""
    manifest_path = skill.dir / "schemas" / "manifest.json"
    if not manifest_path.exists():
        if info.get("automl_enabled"):
            out.add(manifest_path, f"{AUTOML_NOT_RUNNABLE}: run `python tools/gen_schemas.py`")
        else:
            out.add(manifest_path, "missing; run `python tools/gen_schemas.py`")
        return None
    try:
        manifest = skill.manifest
    except BankFormatError as exc:
        out.add(manifest_path, str(exc))
        return None
    for action in info.get("actions", []):
        if action not in manifest.get("actions", {}):
            out.add(manifest_path, f"action '{action}' of skill_info.yaml is not in the manifest; "
                                   "run `python tools/gen_schemas.py`")
    schemas: dict[tuple[str, bool], dict] = {}
    for deploy, table in ((False, manifest.get("actions", {})), (True, manifest.get("deploy_actions", {}))):
        for action, entry in table.items():
            schema = _check_schema_file(out, skill, action, deploy, entry)
            if schema is None:
                continue
            schemas[(action, deploy)] = schema
            _check_template(out, skill, action, deploy, entry, schema)
    if info.get("automl_enabled") and ("train", False) not in schemas and "train" in info.get("actions", []):
        out.add(skill.dir / "schemas" / "train.schema.json",
                f"{AUTOML_NOT_RUNNABLE}: the train schema/template is missing or unreadable; "
                "run `python tools/gen_schemas.py`")
    return manifest, schemas


def _check_tables(out: _Collector, skill: Skill, doc: Any, schemas: dict[tuple[str, bool], dict]) -> None:
    """SKILL.md tables reference real spec keys: each dataset row's spec key and each inference
    row's spec field exists in its action's schema."""
    rows = [("dataset", "spec key", "key", req.action, req.spec_key, req.line) for req in doc.dataset_requirements]
    rows += [("inference", "spec field", "field", m.action, m.spec_field, m.line) for m in doc.inference_mappings]
    for table, what, noun, action, key, line in rows:
        where = f"{skill.skill_md_path}:{line}"
        schema = schemas.get((action, False))
        if schema is None:
            out.add(where, f"{table} table row for action '{action}', which has no schema")
        elif find_property(schema, key) is None:
            out.add(where, f"{table} table {what} '{key}' does not exist in the {action} schema; "
                           f"fix the {noun} or regenerate")


def _check_generated_blocks(out: _Collector, skill: Skill, doc: Any, manifest: dict) -> None:
    """Generated SKILL.md blocks are not hand-edited or stale (their digests in the manifest)."""
    md = skill.skill_md_path
    digests = manifest.get("generated_blocks", {})
    for name in skillmd.BLOCK_NAMES:
        try:
            content, line = skillmd.generated_block(doc.text, name, md)
        except BankFormatError as exc:
            out.add(md, str(exc).split(": ", 1)[-1])
            continue
        if name in digests and skillmd.block_digest(content) != digests[name]:
            out.add(f"{md}:{line}", f"generated block '{name}' differs from what tools/gen_schemas.py wrote "
                                    "(hand-edited or stale); run `python tools/gen_schemas.py`")
        elif name not in digests:
            out.add(f"{md}:{line}", f"generated block '{name}' has no digest in schemas/manifest.json; "
                                    "run `python tools/gen_schemas.py`")


def _check_schema_file(out: _Collector, skill: Skill, action: str, deploy: bool, entry: dict) -> dict | None:
    path = skill.dir / "schemas" / str(entry.get("schema"))
    if not path.exists():
        out.add(path, f"schema of action '{action}' listed in the manifest is missing; run `python tools/gen_schemas.py`")
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        out.add(f"{path}:{exc.lineno}", f"invalid JSON ({exc.msg}); regenerate with `python tools/gen_schemas.py`")
        return None
    error = meta_schema_error(schema)
    if error is not None:
        where, message = error
        out.add(f"{path}#{where}", f"not a valid JSON Schema (Draft 2020-12): {message}")
        return None
    return schema


#: subschema digest -> meta-schema error (json path, message) or None, shared by every check in
#: this process: the action schemas of a skill repeat the same model/dataset sections many times.
_META_CHECKED: dict[str, tuple[str, str] | None] = {}


def meta_schema_error(schema: dict) -> tuple[str, str] | None:
    """The first Draft 2020-12 meta-schema violation of ``schema`` as (json path, message), or None.

    Equivalent to ``Draft202012Validator.check_schema`` (the meta-schema applies to every subschema
    alike), but each top-level property subschema is checked once per distinct content."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return _meta_check(schema, "")
    shell = {k: v for k, v in schema.items() if k != "properties"}
    shell["properties"] = {}
    for name, sub in [("", shell), *((f"properties/{n}", p) for n, p in props.items())]:
        error = _meta_check(sub, name)
        if error is not None:
            return error
    return None


def _meta_check(schema: Any, prefix: str) -> tuple[str, str] | None:
    import hashlib

    key = hashlib.sha256(json.dumps(schema, sort_keys=True).encode("utf-8")).hexdigest()
    if key not in _META_CHECKED:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
            _META_CHECKED[key] = None
        except jsonschema.SchemaError as exc:
            _META_CHECKED[key] = ("/".join(str(p) for p in exc.absolute_path), exc.message)
    error = _META_CHECKED[key]
    if error is None:
        return None
    where = "/".join(p for p in (prefix, error[0]) if p) or "<root>"
    return where, error[1]


def _check_template(out: _Collector, skill: Skill, action: str, deploy: bool, entry: dict, schema: dict) -> None:
    path = skill.dir / "references" / str(entry.get("template"))
    if not path.exists():
        out.add(path, f"template of action '{action}' listed in the manifest is missing; run `python tools/gen_schemas.py`")
        return
    text = path.read_text(encoding="utf-8")
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        out.add(f"{path}:{mark.line + 1}" if mark else path, f"invalid YAML ({getattr(exc, 'problem', exc)})")
        return
    to_fill = set(unfilled_template_fields(text))
    for err in jsonschema.Draft202012Validator(schema).iter_errors(data):
        base = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "required":
            missing = [m for m in err.validator_value if m not in (err.instance or {})]
            missing = [f"{base}.{m}" if base else m for m in missing]
            missing = [m for m in missing if m not in to_fill]
            if not missing:
                continue
            out.add(path, f"{', '.join(missing)} required by {entry.get('schema')} but neither set nor listed "
                          "in the header as a field to fill; regenerate")
            continue
        out.add(f"{path}#{base or '<root>'}", f"does not validate against {entry.get('schema')}: {err.message}")


def check_bank(bank: SkillBank | None = None, skills: Iterable[str] | None = None) -> list[Problem]:
    """Check the bank (or the named skills) and return every problem found.

    Checks: front matter (the Agent Skills format: name = folder, lowercase-hyphen, <= 64
    characters; description 1-1024 characters); manifest actions have schema + template files; schemas are valid
    Draft 2020-12; templates validate against their schemas (fields listed as 'to fill' in a
    template header may be absent); SKILL.md table spec keys exist in the action schema;
    skill_info.yaml validates against ``schemas/skill_info.schema.json``; AutoML-enabled skills have
    a runnable train schema/template; generated SKILL.md blocks match their recorded digests.
    """
    bank = bank or SkillBank()
    problems: list[Problem] = []
    for name in (list(skills) if skills else bank.names()):
        try:
            skill = bank.get(name)
        except TaoSkillsError as exc:
            problems.append(Problem(name, str(bank.skills_dir), str(exc)))
            continue
        problems += check_skill(bank, skill)
    return problems
