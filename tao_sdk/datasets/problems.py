"""What dataset validation reports: one :class:`Problem` per defect, gathered in a :class:`DatasetReport`.

A problem names the file (URI), the record in it (``annotation id 12``, ``image id 3 (a.jpg)``,
``line 4``, ``member left/0001.png``), what is wrong and the fix. ``error`` problems stop a job
before it is submitted; ``warning`` problems (unused categories, images without boxes, a scan cut
short by the budget) are shown and the job goes on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

#: At most this many problems of one kind (same check, same file) are listed; one more problem
#: then says how many were left out (``dataset validate --json`` counts them all).
MAX_PER_CHECK = 20


class Problem(BaseModel):
    """One dataset defect: ``file`` (URI), ``record`` (where in it), ``message``, ``fix``.

    ``check`` is a stable code (``undeclared_category``, ``missing_image``...), ``severity``
    ``error`` (the job would fail or train wrongly) or ``warning``; ``spec_key`` the data-source
    key that reads the file.
    """

    file: str
    record: str
    message: str
    fix: str
    severity: Literal["error", "warning"] = "error"
    check: str = ""
    spec_key: str | None = None

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.record}: {self.message}; fix: {self.fix}"


class BudgetUse(BaseModel):
    """What a validation read, against its limits (``TAO_DATASET_VALIDATE_MAX_BYTES`` /
    ``TAO_DATASET_VALIDATE_MAX_SECONDS``)."""

    bytes_read: int = 0
    byte_limit: int = 0
    seconds: float = 0.0
    time_limit: float = 0.0
    complete: bool = True

    def __str__(self) -> str:
        return (f"read {self.bytes_read:,} of {self.byte_limit:,} bytes in {self.seconds:.1f} of "
                f"{self.time_limit:.0f} s" + ("" if self.complete else " (budget exhausted: not every file was read)"))


class CheckedSource(BaseModel):
    """One dataset as an action reads it: the files checked, by the validator that read them."""

    validator: str
    files: dict[str, str]
    spec_keys: list[str] = Field(default_factory=list)
    digest: str = ""
    cached: bool = False
    problems: int = 0


class DatasetReport(BaseModel):
    """The result of :func:`tao_sdk.validate_datasets`: ``ok`` is False when any problem is an error."""

    skill: str
    action: str
    problems: list[Problem] = Field(default_factory=list)
    sources: list[CheckedSource] = Field(default_factory=list)
    budget: BudgetUse = Field(default_factory=BudgetUse)
    notes: list[str] = Field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """The error-severity problems."""
        return [p for p in self.problems if p.severity == "error"]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``--json``), ``ok`` included."""
        return self.model_dump(mode="json")

    def lines(self) -> list[str]:
        """Human-readable lines: a summary, then every problem, then the notes."""
        head = (f"datasets of {self.skill} {self.action}: {len(self.errors)} error(s), "
                f"{len(self.problems) - len(self.errors)} warning(s) in {len(self.sources)} source(s); {self.budget}")
        return [head, *(f"  - {p}" for p in self.problems), *(f"  note: {n}" for n in self.notes)]


def capped(problems: list[Problem]) -> list[Problem]:
    """``problems`` with at most :data:`MAX_PER_CHECK` per (file, check) and a count of the rest.

    A problem found twice (one file read under two roles, e.g. the same root as ``train_datasets``
    and ``eval_dataset``) is listed once.
    """
    seen: dict[tuple[str, str], int] = {}
    out: list[Problem] = []
    unique: dict[tuple[str, str, str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.file, p.record, p.check, p.message), p)
    problems = list(unique.values())
    for p in problems:
        key = (p.file, p.check)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= MAX_PER_CHECK:
            out.append(p)
    for (file, check), count in seen.items():
        if count > MAX_PER_CHECK:
            first = next(p for p in problems if (p.file, p.check) == (file, check))
            out.append(first.model_copy(update={
                "record": f"{count - MAX_PER_CHECK} more record(s)",
                "message": f"{count} problems of this kind ({check}) in all; the first {MAX_PER_CHECK} are listed"}))
    return out
