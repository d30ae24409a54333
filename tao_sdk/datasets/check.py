"""``validate_datasets``: check every file an action reads before any job exists.

Which files: the rows of the skill's SKILL.md dataset table for the action, at the values of the
final spec (so a spec file's own data sources are checked too). How: the validators of the
skill's dataset type (:mod:`tao_sdk.datasets.validate`), within one time and byte budget
(:mod:`tao_sdk.datasets.budget`). Verdicts are cached per validator and file digest (sha256 of
each annotation / list / label-map file, size + mtime of each archive, the spec values the verdict
depends on) in ``<workspace>/dataset-checks/``, so a second plan of the same data reads only the
small files again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ..bank import Skill, SkillBank, get_bank
from ..errors import StorageError
from .budget import Budget
from .problems import CheckedSource, DatasetReport, Problem, capped
from .reader import Reader, is_archive
from .sources import Source, action_sources
from .validate import DEFAULT_LAYOUT, LAYOUTS, VALIDATORS, Context, Validator

#: Bump when a validator's verdict for the same files changes (old cache entries are then ignored).
CACHE_VERSION = 1


def validate_datasets(
    skill: Skill | str,
    action: str,
    datasets: Mapping[str, Any] | None = None,
    dataset_format: str | None = None,
    spec: Mapping[str, Any] | None = None,
    *,
    spec_overrides: Mapping[str, Any] | None = None,
    base_spec: Any = None,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    byte_limit: int | None = None,
    time_limit: float | None = None,
    bank: SkillBank | None = None,
) -> DatasetReport:
    """Check every dataset file ``action`` of ``skill`` reads; returns a :class:`DatasetReport`.

    Args:
        skill / action: as for :func:`tao_sdk.create_job`.
        datasets: dataset roots by role (``train_datasets``, ``eval_dataset``...), local or ``s3://``.
        dataset_format: the dataset format (stereo ``dataset_name``, OneFormer label map).
        spec: the final nested spec (``plan_job`` passes its own); without it the spec is built
            from the action's template, ``base_spec`` (a TAO spec file) and ``spec_overrides``
            (dotted keys), so ``dataset.num_classes`` and the like are the job's.
        use_cache / cache_dir: reuse verdicts of unchanged files (default
            ``<workspace>/dataset-checks``).
        byte_limit / time_limit: the budget (default ``TAO_DATASET_VALIDATE_MAX_BYTES`` /
            ``TAO_DATASET_VALIDATE_MAX_SECONDS``); what was spent is in ``report.budget``.

    Each problem names the file, the record in it and the fix; ``report.ok`` is False when one
    is an error. Raises DataSourceError when a role the action needs is missing (as ``plan_job``).
    """
    bank = bank or get_bank()
    skill = skill if isinstance(skill, Skill) else bank.get(skill)
    notes: list[str] = []
    if spec is None:
        from ..spec import compose_spec

        composed = compose_spec(skill, action, spec_overrides, datasets, base_spec=base_spec,
                                dataset_format=dataset_format, validate=False, bank=bank)
        spec, notes = composed.spec, composed.notes
    budget = Budget(byte_limit, time_limit)
    ctx = Context(skill, action, spec, dataset_format, Reader(budget))
    ctx.sources = action_sources(skill, action, spec)
    layout = LAYOUTS.get(str(skill.info.get("dataset_type")), DEFAULT_LAYOUT)
    cache = Path(cache_dir) if cache_dir else _default_cache_dir()
    problems: list[Problem] = []
    checked: list[CheckedSource] = []
    for source in ctx.sources:
        claimed: set[str] = set()
        for name in (*layout, "files"):
            validator = VALIDATORS[name]
            names = [n for n in validator.claims(ctx, source) if n not in claimed]
            if not names:
                continue
            claimed.update(names)
            part = Source(source.role, source.index, {n: source.files[n] for n in names},
                          {n: source.keys[n] for n in names}, source.fields)
            found, record = _run(validator, ctx, part, cache if use_cache else None)
            problems += found
            checked.append(record)
    return DatasetReport(skill=skill.name, action=action, problems=capped(problems), sources=checked,
                         budget=budget.use(), notes=notes)


def _default_cache_dir() -> Path:
    from ..workspace import default_workspace

    return default_workspace().root / "dataset-checks"


def _digest(validator: Validator, ctx: Context, source: Source) -> str:
    """The cache key: validator, its spec settings and each file's digest."""
    files = {}
    for name, uris in sorted(source.files.items()):
        for uri in uris:
            if not is_archive(uri) and name != ".":
                try:
                    ctx.reader.text(uri)
                except StorageError:
                    pass
            files[f"{name}:{uri}"] = ctx.reader.digest(uri)
    blob = json.dumps({"v": CACHE_VERSION, "validator": validator.name, "settings": validator.settings(ctx, source),
                       "fields": source.fields, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _run(validator: Validator, ctx: Context, source: Source, cache: Path | None) -> tuple[list[Problem], CheckedSource]:
    """Problems of one validator on one source, from the cache when the files are unchanged."""
    digest = _digest(validator, ctx, source)
    record = CheckedSource(validator=validator.name, files={n: ", ".join(u) for n, u in source.files.items()},
                           spec_keys=sorted(set(source.keys.values())), digest=digest)
    entry = cache / f"{digest}.json" if cache else None
    if entry is not None and entry.is_file():
        try:
            found = [Problem(**p) for p in json.loads(entry.read_text(encoding="utf-8"))]
            record.cached, record.problems = True, len(found)
            return found, record
        except (OSError, ValueError, TypeError):
            pass  # a damaged entry: check again
    found = validator.validate(ctx, source)
    record.problems = len(found)
    if entry is not None and not any(p.check == "budget" for p in found):
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(json.dumps([p.model_dump() for p in found]), encoding="utf-8")
        tmp.replace(entry)
    return found, record
