"""Exceptions raised by the SDK.

Every error an agent can hit is a :class:`TaoSkillsError`. Its message says what was wrong
*and what to change* (a file and line, a dotted spec path, allowed values). The CLI prints the
message without a traceback and exits with status 2 for these expected errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TaoSkillsError(Exception):
    """Base class of every expected SDK error (bad input, missing file, unknown name...)."""


class SkillNotFoundError(TaoSkillsError):
    """A skill name or network name that the bank does not hold."""


class BankFormatError(TaoSkillsError):
    """A skill file (SKILL.md, schema, template, skill_info.yaml) is malformed.

    The message names the file, the line or JSON path, and the fix.
    """


class DataSourceError(TaoSkillsError):
    """A dataset role required by an action is missing or malformed."""


class ConversionError(TaoSkillsError):
    """A dataset cannot be converted (unknown format pair, source layout not found, no usable
    sample); the message names the file or option and the fix."""


class StorageError(TaoSkillsError):
    """A storage operation failed (missing object, bad URI, S3 error)."""


class DiskFullError(StorageError):
    """A write failed (or would fail) because its filesystem is full, over quota or read-only;
    the message names the folder, its free space, the bytes needed and the setting to change
    (see :mod:`tao_sdk.diskspace`)."""


class JobStoreDamagedError(TaoSkillsError):
    """The job store file is damaged (not a database, failed integrity check, emptied while job
    folders exist); the message says how to recover (``tao-skills jobs --recover``)."""


class JobNotFoundError(TaoSkillsError):
    """No job with that id exists in the job store."""


class ParentModelError(TaoSkillsError):
    """A parent job has no usable artifact for the requested action."""


class PlatformError(TaoSkillsError):
    """A platform cannot run the job (no entrypoint, scheduler error...)."""


@dataclass
class SpecProblem:
    """One problem found while validating a spec.

    Attributes:
        path: dotted spec path (``train.optim.lr``), ``""`` for the root.
        message: what is wrong.
        value: the offending value (``None`` when the key is missing).
        allowed: allowed range / enum / type, human readable, or ``None``.
        suggestion: a close-match key for unknown keys, or ``None``.
    """

    path: str
    message: str
    value: Any = None
    allowed: str | None = None
    suggestion: str | None = None

    def __str__(self) -> str:  # pragma: no cover - trivial formatting
        parts = [f"{self.path or '<root>'}: {self.message}"]
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        if self.suggestion:
            parts.append(f"did you mean '{self.suggestion}'?")
        return "; ".join(parts)


@dataclass
class SpecValidationError(TaoSkillsError):
    """A spec failed validation against its action schema; ``problems`` lists every issue."""

    skill: str
    action: str
    problems: list[SpecProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in the {self.skill} {self.action} spec:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DatasetValidationError(TaoSkillsError):
    """A dataset the job would read has errors (found at plan time, before any job exists).

    ``report`` is the :class:`tao_sdk.datasets.DatasetReport`; the message lists every problem with
    its file, record and fix. Turn the check off with ``validate_datasets=False``
    (CLI ``--no-validate-datasets``) only for data the SDK cannot read from here.
    """

    def __init__(self, report: Any) -> None:
        self.report = report
        lines = report.lines()
        super().__init__("\n".join([lines[0].replace("datasets of", "the datasets of", 1)
                                    + "; nothing was submitted", *lines[1:]]))

    def details(self) -> dict[str, Any]:
        """The report as JSON (``--json`` error output)."""
        return {"datasets": self.report.to_dict()}
