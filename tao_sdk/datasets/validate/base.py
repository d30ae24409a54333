"""What every dataset validator shares: the run's :class:`Context` and the :class:`Validator` protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from ...errors import StorageError
from ...specfile import value_at
from ..problems import Problem
from ..reader import ArchiveScan, Reader, Wanted
from ..sources import Source


@dataclass
class Context:
    """One validation run: the skill and action, the final spec (the values checks depend on:
    ``dataset.num_classes``, ``dataset.max_disparity``...), the dataset format, the reader and
    every source of the action (a validator may need another one's file: OneFormer's label map)."""

    skill: Any
    action: str
    spec: Mapping[str, Any]
    dataset_format: str | None
    reader: Reader
    sources: list[Source] = field(default_factory=list)

    def get(self, dotted: str, default: Any = None) -> Any:
        """The spec value at ``dotted`` (``default`` when unset)."""
        value = value_at(self.spec, dotted)
        return default if value in (None, "???") else value


class Validator(Protocol):
    """A dataset format's checks (one module per format, registered in :mod:`tao_sdk.datasets.validate`)."""

    name: str

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """The table file names of ``source`` this validator checks (empty: it does not apply)."""

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """The spec values its verdict depends on (part of the cache key)."""

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Every problem of ``source``'s claimed files."""


def text_digest(ctx: Context, uri: str | None) -> str | None:
    """The content digest of a small file another source owns (part of a cache key), None if absent."""
    if uri is None or ctx.reader.stat(uri) is None:
        return None
    try:
        ctx.reader.text(uri)
    except StorageError:
        pass
    return ctx.reader.digest(uri)


def problem(file: str, record: str, message: str, fix: str, check: str, *, severity: str = "error",
            spec_key: str | None = None) -> Problem:
    """A :class:`Problem` (shorthand for the validators)."""
    return Problem(file=file, record=record, message=message, fix=fix, check=check, severity=severity,  # type: ignore[arg-type]
                   spec_key=spec_key)


def read_text(ctx: Context, uri: str, spec_key: str | None, what: str) -> tuple[str | None, list[Problem]]:
    """``(text or None, problems)``: a missing or non-UTF-8 file is one problem."""
    try:
        return ctx.reader.text(uri), []
    except StorageError as exc:
        return None, [problem(uri, "the file", f"cannot be read: {exc}", f"put the {what} at {uri} or fix {spec_key}",
                              "unreadable", spec_key=spec_key)]


def source_text(ctx: Context, source: Source, name: str, what: str
                ) -> tuple[str, str | None, str | None, list[Problem]]:
    """``(uri, spec key, text or None, problems)`` of the source's table file ``name``."""
    uri, key = source.uri(name), source.key(name)
    return (uri, key, *read_text(ctx, uri, key, what))  # type: ignore[return-value]


def read_json(ctx: Context, uri: str, spec_key: str | None, what: str) -> tuple[Any, list[Problem]]:
    """``(parsed JSON or None, problems)``: a missing, non-UTF-8 or invalid file is one problem."""
    text, out = read_text(ctx, uri, spec_key, what)
    if text is None:
        return None, out
    try:
        return ctx.reader.json(uri), []
    except ValueError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if hasattr(exc, "lineno") else "the file"
        return None, [problem(uri, where, f"is not valid JSON ({getattr(exc, 'msg', exc)})",
                              f"re-export the {what} as JSON", "invalid_json", spec_key=spec_key)]


def scan(ctx: Context, uri: str, spec_key: str | None, wanted: Wanted | None = None
         ) -> tuple[ArchiveScan | None, list[Problem]]:
    """``(scan, problems)`` of an archive or folder: absent, unreadable and cut-short scans are problems."""
    if not ctx.reader.exists(uri):
        return None, missing(ctx, uri, spec_key)
    result = ctx.reader.scan(uri, wanted)
    out = []
    if result.error:
        out.append(problem(uri, "the archive", f"is not a readable tar archive ({result.error})",
                           "re-create it with `tar -czf images.tar.gz -C <image folder> .`", "bad_archive",
                           spec_key=spec_key))
    if result.stopped:
        out.append(problem(uri, f"after {len(result.members):,} member(s)",
                           f"the validation budget ran out ({result.stopped}); later members were not checked",
                           "raise TAO_DATASET_VALIDATE_MAX_BYTES / TAO_DATASET_VALIDATE_MAX_SECONDS to check it all",
                           "budget", severity="warning", spec_key=spec_key))
    return result, out


def missing(ctx: Context, uri: str, spec_key: str | None) -> list[Problem]:
    """One problem when ``uri`` does not exist (nothing else is read)."""
    if ctx.reader.exists(uri):
        return []
    return [problem(uri, "the file", "does not exist", f"upload it, or point {spec_key} at the right file",
                    "missing_file", spec_key=spec_key)]


def count(n: int, what: str) -> str:
    """``"1 image"`` / ``"3 images"``."""
    return f"{n:,} {what}{'' if n == 1 else 's'}"
