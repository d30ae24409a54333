"""SKILL.md parsing: front matter, generated blocks and the two tables the SDK runs on.

SKILL.md is the single source of truth for per-model dataset requirements and spec-param
inference mappings (see ``references/skill-format.md``). This module parses it at run time;
``tools/gen_schemas.py`` writes the generated blocks with :func:`replace_generated_block`.
Every parse error is a :class:`~tao_sdk.errors.BankFormatError` naming the file, the line and
the fix.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import BankFormatError

BLOCK_NAMES = ("backend", "training-requirements", "dataset-requirements", "inference-mappings")
_BEGIN = "<!-- BEGIN GENERATED {name}: tools/gen_schemas.py, do not edit -->"
_END = "<!-- END GENERATED {name} -->"
_BEGIN_RE = re.compile(r"<!-- BEGIN GENERATED ([a-z-]+)[^>]*-->")

DATASET_ROLES = ("train_datasets", "eval_dataset", "inference_dataset", "calibration_dataset")

#: Inference functions the SDK computes (any other value in the table is a literal).
INFERENCE_FUNCTIONS = {
    "output_dir": "current job results directory",
    "key": "encryption key",
    "parent_model": "model file inferred from the parent job results folder",
    "parent_model_folder": "folder of the model file inferred from the parent job results folder",
    "resume_model": "latest checkpoint in the current job results folder (resume after restart)",
    "ptm_if_no_resume_model": "pretrained model, only when there is no checkpoint to resume",
    "create_onnx_file": "output ONNX path (<results>/model.onnx)",
    "create_engine_file": "output TensorRT engine path (<results>/model.engine)",
    "create_cal_cache": "INT8 calibration cache path (<results>/cal.bin)",
}


# --------------------------------------------------------------------------- front matter
def parse_front_matter(text: str, path: Path | str = "SKILL.md") -> dict[str, Any]:
    """Return the YAML front matter of a SKILL.md as a dict.

    Raises BankFormatError when the file does not start with a ``---`` block holding at least
    ``name`` and ``description``.
    """
    if not text.startswith("---"):
        raise BankFormatError(
            f"{path}:1: missing YAML front matter; start the file with '---', then "
            "'name: <skill-folder-name>' and 'description: <one sentence agents match on>', then '---'"
        )
    end = text.find("\n---", 3)
    if end < 0:
        raise BankFormatError(f"{path}:1: front matter is not closed; add a line '---' after it")
    try:
        data = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as exc:
        raise BankFormatError(f"{path}: front matter is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BankFormatError(f"{path}:1: front matter must be a mapping with name and description")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise BankFormatError(f"{path}:1: front matter lacks '{key}'; add '{key}: ...'")
    return data


#: Agent Skills format (agentskills.io): the front matter keys a SKILL.md may have, and limits.
AGENT_SKILL_KEYS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
AGENT_SKILL_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
AGENT_SKILL_NAME_MAX = 64
AGENT_SKILL_DESCRIPTION_MAX = 1024


def agent_skill_problems(front_matter: dict[str, Any], folder: str) -> list[str]:
    """What keeps a SKILL.md front matter from the Agent Skills format (empty: it keeps to it):
    ``name`` equal to the folder, lowercase letters / digits / single hyphens, at most 64
    characters; ``description`` non-empty, at most 1024 characters; no other keys than
    :data:`AGENT_SKILL_KEYS`."""
    out = []
    name, description = front_matter.get("name"), front_matter.get("description")
    if name != folder:
        out.append(f"front matter name is {name!r}; it must equal the folder name {folder!r}")
    if not isinstance(name, str) or not AGENT_SKILL_NAME_RE.match(name) or len(name) > AGENT_SKILL_NAME_MAX:
        out.append(f"front matter name {name!r} must be lowercase letters, digits and single hyphens "
                   f"(no leading/trailing hyphen), at most {AGENT_SKILL_NAME_MAX} characters")
    if not isinstance(description, str) or not description.strip():
        out.append("front matter description is empty; say in one or two sentences what the skill does and when")
    elif len(description) > AGENT_SKILL_DESCRIPTION_MAX:
        out.append(f"front matter description has {len(description)} characters; the Agent Skills format allows "
                   f"{AGENT_SKILL_DESCRIPTION_MAX}: shorten it (details go in the body)")
    extra = sorted(set(front_matter) - set(AGENT_SKILL_KEYS))
    if extra:
        out.append(f"front matter keys {', '.join(extra)} are not in the Agent Skills format "
                   f"({', '.join(AGENT_SKILL_KEYS)}); move them to 'metadata:' or the body")
    return out


# --------------------------------------------------------------------------- generated blocks
def begin_marker(name: str) -> str:
    """The opening marker line of generated block ``name``."""
    return _BEGIN.format(name=name)


def end_marker(name: str) -> str:
    """The closing marker line of generated block ``name``."""
    return _END.format(name=name)


def _block_span(text: str, name: str, path: Path | str) -> tuple[int, int]:
    start_match = re.search(r"<!-- BEGIN GENERATED " + re.escape(name) + r"\b[^>]*-->", text)
    end_idx = text.find(end_marker(name))
    if start_match is None or end_idx < 0:
        raise BankFormatError(
            f"{path}: generated block '{name}' is missing; add the two lines\n"
            f"  {begin_marker(name)}\n  {end_marker(name)}\n"
            "under the right heading and run `python tools/gen_schemas.py`"
        )
    if end_idx < start_match.end():
        raise BankFormatError(f"{path}: the END marker of block '{name}' comes before its BEGIN marker")
    return start_match.end(), end_idx


def generated_block(text: str, name: str, path: Path | str = "SKILL.md") -> tuple[str, int]:
    """Return (content, first line number) of generated block ``name``."""
    start, end = _block_span(text, name, path)
    return text[start:end].strip("\n"), text.count("\n", 0, start) + 2


def replace_generated_block(text: str, name: str, content: str, path: Path | str = "SKILL.md") -> str:
    """Return ``text`` with generated block ``name`` replaced by ``content`` (markers kept)."""
    start, end = _block_span(text, name, path)
    body = "\n" + content.strip("\n") + "\n" if content.strip() else "\n"
    return text[:start] + body + text[end:]


def block_digest(content: str) -> str:
    """sha256 of a generated block's content (whitespace at both ends ignored)."""
    import hashlib

    return hashlib.sha256(content.strip("\n").encode("utf-8")).hexdigest()


def block_names(text: str) -> list[str]:
    """Names of all generated blocks present in ``text``, in order."""
    return _BEGIN_RE.findall(text)


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class TableRow:
    """One row of a markdown table: cells by header name, plus its 1-based line number."""

    cells: dict[str, str]
    line: int


def _strip_cell(cell: str) -> str:
    cell = cell.strip()
    if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`"):
        cell = cell[1:-1]
    return cell.strip()


def parse_table(content: str, first_line: int, path: Path | str, expected: tuple[str, ...]) -> list[TableRow]:
    """Parse the first markdown table in ``content``; its header must equal ``expected``."""
    lines = content.splitlines()
    rows: list[TableRow] = []
    header: list[str] | None = None
    for offset, raw in enumerate(lines):
        line_no = first_line + offset
        stripped = raw.strip()
        if not stripped.startswith("|"):
            if header is not None and rows:
                break
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        if header is None:
            header = [_strip_cell(c) for c in cells]
            if tuple(header) != expected:
                raise BankFormatError(
                    f"{path}:{line_no}: table header is {header}; expected columns {list(expected)}. "
                    "Regenerate the block with `python tools/gen_schemas.py`"
                )
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        if len(cells) != len(header):
            raise BankFormatError(
                f"{path}:{line_no}: row has {len(cells)} cells, the table has {len(header)} columns "
                f"({' | '.join(header)}); fix the row (a '|' inside a cell must be escaped)"
            )
        rows.append(TableRow({h: _strip_cell(c) for h, c in zip(header, cells)}, line_no))
    if header is None:
        raise BankFormatError(f"{path}:{first_line}: no table found in the generated block")
    return rows


# --------------------------------------------------------------------------- file specs
#: The Files-cell name that stands for the dataset root itself (TAO data sources with an empty path).
ROOT_ITSELF = "."


@dataclass(frozen=True)
class FilePath:
    """A file joined to the dataset root (:data:`ROOT_ITSELF`: the root itself); ``wrap`` puts the
    value in a list."""

    name: str
    wrap: bool = False


@dataclass(frozen=True)
class FormatPlaceholder:
    """The dataset format itself (e.g. ``dataset_name: <dataset_format>``)."""


@dataclass(frozen=True)
class FileByFormat:
    """A file chosen by dataset format; ``default`` applies to formats not listed."""

    by_format: tuple[tuple[str, FilePath], ...]
    default: FilePath | None


@dataclass(frozen=True)
class FileMapping:
    """A dict value: sub-key -> file spec."""

    items: tuple[tuple[str, "FileSpec"], ...]


FileSpec = Union[FilePath, FormatPlaceholder, FileByFormat, FileMapping]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/*]+$")


def _parse_single(text: str, where: str) -> FilePath | FormatPlaceholder | FileByFormat:
    text = text.strip()
    if text == "<dataset_format>":
        return FormatPlaceholder()
    if " if format is " in text:
        options: list[tuple[str, FilePath]] = []
        default: FilePath | None = None
        for part in [p.strip() for p in text.split(",")]:
            if part.startswith("else "):
                default = _parse_path(part[5:], where)
                continue
            m = re.match(r"^(.+?) if format is (\S+)$", part)
            if not m:
                raise BankFormatError(f"{where}: cannot read '{part}'; write 'FILE if format is FMT, else FILE'")
            options.append((m.group(2), _parse_path(m.group(1), where)))
        return FileByFormat(tuple(options), default)
    return _parse_path(text, where)


def _parse_path(text: str, where: str) -> FilePath:
    text = text.strip()
    wrap = text.startswith("[") and text.endswith("]")
    name = text[1:-1].strip() if wrap else text
    if not name or not _NAME_RE.match(name):
        raise BankFormatError(
            f"{where}: '{text}' is not a file name; use a name like images.tar.gz, "
            "[images.tar.gz] for a list, . for the dataset root itself, or <dataset_format>"
        )
    return FilePath(name, wrap)


def parse_files(text: str, where: str) -> FileSpec:
    """Parse the Files cell of the dataset requirements table (see references/skill-format.md)."""
    text = text.strip()
    if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*:", text):
        items = []
        for part in [p.strip() for p in re.split(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*:)", text)]:
            key, _, value = part.partition(":")
            items.append((key.strip(), _parse_single(value, where)))
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise BankFormatError(f"{where}: repeated sub-key in '{text}'")
        return FileMapping(tuple(items))
    return _parse_single(text, where)


def render_files(spec: FileSpec) -> str:
    """Inverse of :func:`parse_files` (used by the generator)."""
    if isinstance(spec, FormatPlaceholder):
        return "<dataset_format>"
    if isinstance(spec, FilePath):
        return f"[{spec.name}]" if spec.wrap else spec.name
    if isinstance(spec, FileByFormat):
        parts = [f"{render_files(p)} if format is {fmt}" for fmt, p in spec.by_format]
        if spec.default is not None:
            parts.append(f"else {render_files(spec.default)}")
        return ", ".join(parts)
    return ", ".join(f"{k}: {render_files(v)}" for k, v in spec.items)


# --------------------------------------------------------------------------- parsed rows
@dataclass(frozen=True)
class DatasetRequirement:
    """One row of the Per-Action Dataset Requirements table.

    Attributes:
        action: TAO action (train, evaluate, ...).
        spec_key: dotted spec key the value is written to.
        source: dataset role (train_datasets, eval_dataset, inference_dataset, calibration_dataset).
        files: what to build from each dataset root (see :data:`FileSpec`).
        multiple: True -> a list with one entry per dataset of the role.
        line: line number in SKILL.md (for error messages).
    """

    action: str
    spec_key: str
    source: str
    files: FileSpec
    multiple: bool
    line: int = 0


@dataclass(frozen=True)
class InferenceMapping:
    """One row of the Spec Param / Parent Model Inference table.

    ``function`` is an inference function name (see :data:`INFERENCE_FUNCTIONS`) or ``None``
    for a literal; ``literal`` then holds the value to write (a PTM download descriptor is a dict).
    """

    action: str
    spec_field: str
    function: str | None
    literal: Any = None
    meaning: str = ""
    line: int = 0


@dataclass
class SkillDoc:
    """A parsed SKILL.md."""

    path: Path
    text: str
    front_matter: dict[str, Any]
    dataset_requirements: list[DatasetRequirement] = field(default_factory=list)
    inference_mappings: list[InferenceMapping] = field(default_factory=list)


DATASET_COLUMNS = ("Action", "Spec Key", "Source", "Files", "List?")
INFERENCE_COLUMNS = ("Action", "Spec Field", "Inference Function", "Meaning")


def parse_literal(value: str) -> Any:
    """Parse a literal table value: a python/JSON dict (PTM descriptor), number, bool or string."""
    value = value.strip()
    if value.startswith("{") or value.startswith("["):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def parse_dataset_requirements(text: str, path: Path | str = "SKILL.md") -> list[DatasetRequirement]:
    """Parse the generated Per-Action Dataset Requirements block of a SKILL.md text."""
    content, first = generated_block(text, "dataset-requirements", path)
    out = []
    for row in parse_table(content, first, path, DATASET_COLUMNS):
        where = f"{path}:{row.line}"
        source = row.cells["Source"]
        if source not in DATASET_ROLES:
            raise BankFormatError(f"{where}: Source '{source}' is not a dataset role; use one of {', '.join(DATASET_ROLES)}")
        multiple = row.cells["List?"].lower()
        if multiple not in ("yes", "no"):
            raise BankFormatError(f"{where}: List? must be Yes or No, not '{row.cells['List?']}'")
        key = row.cells["Spec Key"]
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", key):
            raise BankFormatError(f"{where}: Spec Key '{key}' is not a dotted spec path")
        out.append(DatasetRequirement(row.cells["Action"], key, source, parse_files(row.cells["Files"], where),
                                      multiple == "yes", row.line))
    return out


def parse_inference_mappings(text: str, path: Path | str = "SKILL.md") -> list[InferenceMapping]:
    """Parse the generated Spec Param / Parent Model Inference block of a SKILL.md text."""
    content, first = generated_block(text, "inference-mappings", path)
    out = []
    for row in parse_table(content, first, path, INFERENCE_COLUMNS):
        value = row.cells["Inference Function"]
        key = row.cells["Spec Field"]
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", key):
            raise BankFormatError(f"{path}:{row.line}: Spec Field '{key}' is not a dotted spec path")
        if value in INFERENCE_FUNCTIONS:
            out.append(InferenceMapping(row.cells["Action"], key, value, None, row.cells["Meaning"], row.line))
        else:
            out.append(InferenceMapping(row.cells["Action"], key, None, parse_literal(value), row.cells["Meaning"], row.line))
    return out


def load_skill_doc(path: Path) -> SkillDoc:
    """Read and parse a SKILL.md (front matter + both tables)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BankFormatError(f"{path}: cannot read SKILL.md ({exc.strerror})") from None
    doc = SkillDoc(Path(path), text, parse_front_matter(text, path))
    if "dataset-requirements" in block_names(text):
        doc.dataset_requirements = parse_dataset_requirements(text, path)
    if "inference-mappings" in block_names(text):
        doc.inference_mappings = parse_inference_mappings(text, path)
    return doc
