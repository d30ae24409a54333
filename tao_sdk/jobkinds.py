"""Job kinds: what differs between a train/evaluate job and an AutoML job, behind one interface.

``tao_sdk.jobs`` tracks every record through :func:`job_kind` (``record.kind``) and never
imports AutoML; the AutoML controller builds on ``tao_sdk.jobs``. Kinds are registered by name
as ``"module:attribute"`` strings (imported on first use), so the registry itself imports
nothing.

- ``job`` / ``trial``: one task run by a platform (:class:`tao_sdk.jobs.TaskKind`); its state
  comes from the platform and the task's ``status.json``.
- ``automl``: a controller that runs trials as child jobs
  (:class:`tao_sdk.automl.controller.AutomlKind`); its state comes from the controller.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from .errors import TaoSkillsError
from .extras import import_optional

if TYPE_CHECKING:  # pragma: no cover
    from .jobstore import JobRecord
    from .workspace import Workspace

__all__ = ["JobKind", "job_kind", "register_job_kind", "job_kinds"]


class JobKind(abc.ABC):
    """The behaviour of one kind of job record (stateless; one instance per kind)."""

    #: whether the job's own results folder has a task ``status.json`` (progress, KPIs).
    has_task_status: bool = True

    @abc.abstractmethod
    def refresh(self, workspace: "Workspace", record: "JobRecord") -> "JobRecord":
        """The record brought up to date from wherever the job runs (a non-terminal record
        with a platform handle); returns the stored record."""

    @abc.abstractmethod
    def cancel(self, workspace: "Workspace", record: "JobRecord") -> "JobRecord | None":
        """Stop everything the (non-terminal) job runs; the caller marks it CANCELED. Returns
        the stored record instead when the job turned out to have ended on its own (its real
        outcome is kept), else None."""

    def create(self, plan: Any, skill: Any, **options: Any) -> Any:
        """Create and start a job of this kind from a routed plan (kinds that are created by
        routing, e.g. AutoML). Raises TaoSkillsError for kinds created otherwise."""
        raise TaoSkillsError(f"{type(self).__name__} jobs are not created by routing")

    def plan(self, plan: Any, skill: Any, **options: Any) -> None:
        """Complete a routed plan with what this kind will run (AutoML: algorithm, budget, search
        space in ``plan.automl``). Raises TaoSkillsError for kinds not created by routing."""
        raise TaoSkillsError(f"{type(self).__name__} jobs are not planned by routing")

    def summary(self, job: Any, progress: Any) -> str:
        """One progress line of a job of this kind (default: ``progress``, its status.json summary
        :class:`tao_sdk.results.TaskStatus` or None)."""
        from .results import format_progress

        return format_progress(progress) if progress else f"{job.action}: {job.status.value}"

    def fraction_done(self, record: "JobRecord", progress: Any) -> float | None:
        """How much of the whole job is done, 0..1 (default: ``progress.progress``), or None."""
        return None if progress is None else progress.progress

    def progress_marker(self, record: "JobRecord") -> Any:
        """Extra state whose change counts as progress for ``wait_for_job(on_progress=...)``."""
        return None

    def stalled(self, record: "JobRecord") -> str | None:
        """A message when the job stopped without ending and waiting is pointless (e.g. an
        interrupted AutoML controller: resume it), else None."""
        return None

    #: whether :func:`tao_sdk.jobs.resume_job` continues a train job of this kind from its
    #: latest checkpoint (``resume_hint`` says what to do instead when not).
    resumes_from_checkpoint: bool = True
    #: what resumes a job of this kind when it is not resumed from a checkpoint ("" when nothing).
    resume_hint: str = ""

    def model_source(self, store: Any, record: "JobRecord") -> "JobRecord":
        """The record whose model a child job of ``record`` uses (default: ``record`` itself; an
        AutoML job stands for its best trial). Raises :class:`~tao_sdk.errors.ParentModelError`
        saying what to wait for when there is none yet."""
        return record


_REGISTRY: dict[str, str | JobKind] = {
    "job": "tao_sdk.jobs:TASK_KIND",
    "trial": "tao_sdk.jobs:TASK_KIND",
    "automl": "tao_sdk.automl.controller:AUTOML_KIND",
}


def register_job_kind(name: str, kind: str | JobKind) -> None:
    """Register a kind: a :class:`JobKind` instance or ``"module:attribute"`` naming one."""
    _REGISTRY[name] = kind


def job_kinds() -> list[str]:
    """Registered kind names, sorted."""
    return sorted(_REGISTRY)


def job_kind(name: str) -> JobKind:
    """The :class:`JobKind` registered as ``name`` (``record.kind``); TaoSkillsError naming the
    known kinds otherwise."""
    kind = _REGISTRY.get(name)
    if kind is None:
        raise TaoSkillsError(f"unknown job kind {name!r}; known kinds: {', '.join(job_kinds())}")
    if isinstance(kind, str):
        module, _, attr = kind.partition(":")
        kind = _REGISTRY[name] = getattr(import_optional(module, f"the '{name}' job kind"), attr)
    return kind
