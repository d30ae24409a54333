"""Typed results of the public API: pydantic models shared by the Python API, ``--json`` and MCP.

Every model has a JSON Schema (``Model.model_json_schema()``), so the MCP server publishes one
per tool and a ``--json`` consumer can validate what it reads. Models hold no secret: whatever
comes from a job record or a spec passes through :func:`tao_sdk.secrets.redact` on the way in.

- :class:`SkillSummary` / :class:`SkillDetail` / :class:`ActionDetail` — the bank (``list``, ``show``).
- :class:`PlanInfo` — what :func:`tao_sdk.plan_job` decided (``run --dry-run --json``).
- :class:`JobInfo` with :class:`Progress` — a job (``status --json``, ``jobs --json``).
- :class:`TrialTable` with :class:`Trial` — an AutoML job's trials (``automl trials --json``).
- :class:`SpecReport` — the verdict on a spec file (``validate --json``).
- :class:`ErrorInfo` with :class:`Problem` — an expected error (``--json`` errors, MCP tool errors).
- :class:`tao_sdk.budget.JobBudget` — what a job will spend (trials x epochs, GPUs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .budget import JobBudget
from .secrets import REDACTED, is_secret_entry, redact

if TYPE_CHECKING:  # pragma: no cover
    from .bank import Skill
    from .errors import SpecProblem

__all__ = ["ActionDetail", "ArtifactList", "BackendInfo", "DatasetRow", "ErrorInfo", "JobBudget", "JobInfo",
           "MappingRow", "ParentInfo", "PlanInfo", "Problem", "Progress", "RouteInfo", "SkillDetail",
           "SkillSummary", "SpecReport", "Trial", "TrialTable", "skill_summary"]

JobState = Literal["PENDING", "RUNNING", "SUCCESS", "FAILURE", "CANCELED"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``--json`` prints and MCP returns as structured content)."""
        return self.model_dump(mode="json")


# =========================================================================== the bank
class BackendInfo(_Model):
    """What runs one (network, action) here: ``worker``, ``entrypoint`` or ``none`` (and why)."""

    network: str
    action: str
    kind: str
    argv: list[str]
    detail: str = Field(description="which backend and why, or for 'none' what to install")
    image: str | None = Field(None, description="the container image the job runs in (docker platform), else null")


class SkillSummary(_Model):
    """One row of ``tao-skills list`` / MCP ``list_skills``."""

    skill: str
    network: str
    task: str
    actions: list[str]
    metric: str | None
    automl_enabled: bool
    backend: str = Field(description="summary of the backends of the skill's actions")
    backends: dict[str, str] = Field(description="action -> backend kind")
    description: str


class DatasetRow(_Model):
    """One row of the SKILL.md Per-Action Dataset Requirements table."""

    spec_key: str
    source: str = Field(description="dataset role: train_datasets, eval_dataset, inference_dataset, "
                                    "calibration_dataset")
    files: str
    list: bool = Field(description="one entry per dataset of the role")


class MappingRow(_Model):
    """One row of the SKILL.md Spec Param / Parent Model Inference table (filled by the SDK)."""

    spec_field: str
    function: str | None
    literal: Any = None
    meaning: str = ""


class ActionDetail(_Model):
    """One action of a skill: schema and template files, dataset table, SDK mappings, backend."""

    skill: str
    action: str
    schema_path: str = Field(alias="schema", serialization_alias="schema")
    template: str
    dataset_requirements: list[DatasetRow]
    inference_mappings: list[MappingRow]
    backend: BackendInfo | None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``schema`` key as ``show --action --json`` always printed it)."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_skill(cls, skill: Skill, action: str) -> ActionDetail:
        """The detail of ``action`` of ``skill`` (tables parsed from its SKILL.md)."""
        from .backends import skill_backend
        from .skillmd import render_files

        backend = skill_backend(skill, action) if skill.network else None
        return cls(skill=skill.name, action=action, schema_path=str(skill.schema_path(action)),
                   template=str(skill.template_path(action)),
                   dataset_requirements=[DatasetRow(spec_key=r.spec_key, source=r.source, files=render_files(r.files),
                                                    list=r.multiple) for r in skill.dataset_requirements(action)],
                   inference_mappings=[MappingRow(spec_field=m.spec_field, function=m.function, literal=m.literal,
                                                  meaning=m.meaning) for m in skill.inference_mappings(action)],
                   backend=BackendInfo(**backend.to_dict()) if backend else None)


class SkillDetail(_Model):
    """A skill: description, skill_info, actions and each action's backend (``show --json``);
    ``action_details`` (MCP ``describe_skill``) adds each action's dataset table and mappings."""

    skill: str
    dir: str
    description: str
    info: dict[str, Any]
    actions: list[str]
    backends: dict[str, BackendInfo]
    presets: list[str] = Field(default_factory=list, description="spec presets: 'full' and e.g. 'tiny' (--preset)")
    action_details: list[ActionDetail] | None = None

    @classmethod
    def from_skill(cls, skill: Skill, *, with_actions: bool = False) -> SkillDetail:
        """The detail of ``skill``; ``with_actions``: also every action's :class:`ActionDetail`."""
        from .backends import skill_backends
        from .presets import skill_presets

        backends = {a: BackendInfo(**b.to_dict()) for a, b in skill_backends(skill).items()}
        details = [ActionDetail.from_skill(skill, a) for a in skill.actions] if with_actions else None
        return cls(skill=skill.name, dir=str(skill.dir), description=skill.description, info=redact(skill.info),
                   actions=skill.actions, backends=backends, presets=skill_presets(skill), action_details=details)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``action_details`` left out when not asked for)."""
        out = self.model_dump(mode="json", by_alias=True)
        if self.action_details is None:
            out.pop("action_details")
        return out


def skill_summary(skill: Skill) -> SkillSummary:
    """The :class:`SkillSummary` of ``skill`` (its row in ``tao-skills list``)."""
    from .backends import skill_backends, summary

    info = skill.info
    backends = skill_backends(skill)
    return SkillSummary(skill=skill.name, network=info.get("network", "-"),
                        task=info.get("task") or info.get("dataset_type") or "-", actions=skill.actions,
                        metric=(info.get("monitoring_metric") or {}).get("name"),
                        automl_enabled=bool(info.get("automl_enabled", False)), backend=summary(backends),
                        backends={a: b.kind for a, b in backends.items()}, description=skill.description)


# =========================================================================== plans and jobs
class RouteInfo(_Model):
    """Where an action goes (``target`` skill), whether AutoML runs it, the policy and why."""

    target: str
    automl: bool
    policy: str
    reason: str


class ParentInfo(_Model):
    """The artifact chosen from a parent job: job, file, selection mode and why."""

    job_id: str
    uri: str
    mode: str
    reason: str
    warning: str | None = None


class PlanInfo(_Model):
    """Everything decided before submission (:func:`tao_sdk.plan_job`; ``run --dry-run --json``).

    ``automl``: for an AutoML route, the algorithm, budget and search space. ``budget``: what the
    job will spend (trials x epochs, GPUs), see :func:`tao_sdk.budget.job_budget`.
    """

    dry_run: bool = True
    job_id: str
    skill: str
    action: str
    route: RouteInfo
    command: list[str] | None
    backend: BackendInfo | None
    deploy: bool
    parent: ParentInfo | None
    results_uri: str
    warnings: list[str]
    notes: list[str]
    automl: dict[str, Any] | None
    weights: list[dict[str, Any]] = Field(default_factory=list, description="which weights the job starts from: "
                                          "spec field, uri, source, resolved location, size")
    downloads: list[dict[str, Any]] = Field(default_factory=list, description="PTM downloads the worker performs")
    preset: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    datasets: dict[str, Any] | None = Field(None, description="the plan-time dataset validation report "
                                                               "(null when turned off)")
    spec: dict[str, Any]
    budget: JobBudget


class Progress(_Model):
    """A task's status.json summary: status, epoch / max_epoch (0-based, as TAO writes them),
    progress 0..1, ETA seconds, the latest KPIs and message."""

    status: str | None = None
    epoch: int | None = None
    max_epoch: int | None = None
    progress: float | None = None
    eta: float | None = Field(default=None, description="seconds left, when known")
    kpis: dict[str, Any] = Field(default_factory=dict)
    message: str | None = None
    weights: list[dict[str, Any]] = Field(default_factory=list, description="every weights load of the job: "
                                          "tensors loaded, skipped (with the reason) and left at their initial values")


class JobInfo(_Model):
    """A job (``status --json``, MCP ``job_status``): the stored record (secrets redacted), its
    progress, KPIs and a one-line ``summary``."""

    id: str
    skill: str
    action: str
    kind: str = Field(description="job, trial or automl")
    status: JobState
    parent_id: str | None = None
    platform: str
    spec: dict[str, Any]
    results_uri: str | None = None
    created_at: float
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    platform_handle: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    progress: Progress | None = None
    kpis: dict[str, Any] = Field(default_factory=dict)
    fraction_done: float | None = Field(default=None, description="0..1 of the whole job (AutoML: trials "
                                                                  "finished of planned), when known")
    summary: str = Field(description="one progress line, as `tao-skills status` prints it")

    @classmethod
    def from_record(cls, record: dict[str, Any], **extra: Any) -> JobInfo:
        """From a job record dict (``JobRecord.to_dict()``), secrets redacted, plus ``extra``."""
        return cls(**redact({**record, **extra}))


class ArtifactList(_Model):
    """Every file under a job's results folder (local paths or ``s3://`` URIs)."""

    job_id: str
    results_uri: str | None
    files: list[str]


class Trial(_Model):
    """One AutoML trial: its child train job, status, epoch budget, metric value, best epoch,
    hyperparameters, error."""

    trial: int
    child_job: str | None
    status: str | None
    budget_epochs: int | None
    value: float | None
    best_epoch: int | None
    params: dict[str, Any]
    error: str | None


class TrialTable(_Model):
    """An AutoML job's trials and its best result (``automl trials --json``, MCP ``automl_trials``)."""

    job: str
    status: JobState
    metric: str | None = None
    direction: str | None = None
    best_child_id: str | None = None
    best_params: dict[str, Any] | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    trials: list[Trial]


class SpecReport(_Model):
    """The verdict on a spec file or dict (:func:`tao_sdk.specfile.validate_spec_file`;
    ``tao-skills validate --json``, MCP ``validate_spec``): ``ok``, every problem, the fields the
    SDK fills at run time, ``???`` fields left unset, values read as TAO does, other actions'
    sections validated, warnings."""

    skill: str
    action: str
    deploy: bool
    source: str
    ok: bool
    problems: list[Problem]
    filled_by_sdk: dict[str, str]
    unset: list[str]
    coerced: list[list[Any]]
    other_sections: list[str]
    warnings: list[str]


# =========================================================================== errors
class Problem(_Model):
    """One spec problem: dotted ``path``, what is wrong, the ``value``, what is ``allowed``, a
    close-match ``suggestion`` (the fields of :class:`tao_sdk.errors.SpecProblem`)."""

    path: str
    message: str
    value: Any = None
    allowed: str | None = None
    suggestion: str | None = None

    @classmethod
    def from_problem(cls, problem: SpecProblem) -> Problem:
        """From a :class:`tao_sdk.errors.SpecProblem` (the value of a secret field is ``***``)."""
        secret = is_secret_entry(problem.path.rsplit(".", 1)[-1], problem.value)
        return cls(path=problem.path, message=problem.message, value=REDACTED if secret else redact(problem.value),
                   allowed=problem.allowed, suggestion=problem.suggestion)


class ErrorInfo(_Model):
    """An expected SDK error: its class name, the message (what is wrong and what to change) and,
    for a spec that failed validation, every problem."""

    error: str
    message: str
    problems: list[Problem] = Field(default_factory=list)
    datasets: dict[str, Any] | None = Field(None, description="DatasetValidationError: the dataset report "
                                                               "(every problem with its file, record and fix)")

    @classmethod
    def from_exception(cls, exc: Exception) -> ErrorInfo:
        """From a :class:`tao_sdk.errors.TaoSkillsError` (``problems`` of a SpecValidationError,
        ``datasets`` of a DatasetValidationError)."""
        problems = [Problem.from_problem(p) for p in getattr(exc, "problems", None) or []]
        report = getattr(exc, "report", None)
        datasets = report.to_dict() if report is not None and hasattr(report, "to_dict") else None
        return cls(error=type(exc).__name__, message=str(redact(str(exc))), problems=problems, datasets=datasets)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``datasets`` only for a dataset validation error."""
        out = self.model_dump(mode="json")
        if self.datasets is None:
            out.pop("datasets")
        return out
