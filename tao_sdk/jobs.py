"""Jobs: create (resolve + validate + submit), track, wait, read logs and KPIs, cancel.

>>> from tao_sdk import create_job, wait_for_job
>>> train = create_job("rtdetr", "train", automl_policy="off",
...                    datasets={"train_datasets": ["s3://b/train"], "eval_dataset": "s3://b/eval"},
...                    spec_overrides={"train.num_epochs": 10, "dataset.num_classes": 3})
>>> wait_for_job(train.id).kpis
{'train_loss': 0.41, 'val_mAP50': 0.62, ...}
>>> evaluate = create_job("rtdetr", "evaluate", parent_job_id=train.id,
...                       datasets={"eval_dataset": "s3://b/eval"}, spec_overrides={"dataset.num_classes": 3})

The job's spec never contains secrets: the encryption key travels in ``TAO_ENCRYPTION_KEY``
(the spec holds ``${oc.env:TAO_ENCRYPTION_KEY}``), S3 credentials in the standard AWS variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, overload

import yaml

from . import results
from .backends import Backend, resolve_backend, skill_backend
from .bank import Skill, SkillBank, get_bank
from .errors import ParentModelError, PlatformError, StorageError, TaoSkillsError
from .jobkinds import JobKind, job_kind
from .budget import job_budget
from .jobstore import JobRecord, JobStatus, new_job_id
from .mappings import DEFAULT_ENCRYPTION_KEY, ENCRYPTION_KEY_ENV, ParentArtifact, resolve_mappings
from .models import BackendInfo, JobInfo, ParentInfo, PlanInfo, Progress, RouteInfo
from .platforms import JobTask, Platform, get_platform
from .platforms._supervise import identity_alive, process_identity
from .policy import Route, check_automl_arguments, route_action
from .secrets import redact
from .ptm import plan_weights, resolve_pretrained
from .spec import ComposedSpec, compose_spec
from .storage import storage_for
from .workspace import Workspace, default_workspace



# =========================================================================== Job
class Job:
    """A job as the SDK sees it: the stored record plus live views (progress, KPIs, artifacts).

    Use :func:`get_job` to obtain one; call :meth:`refresh` to re-read status.
    """

    def __init__(self, record: JobRecord, workspace: Workspace):
        self.record = record
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.skill} {self.action}, {self.status.value})"

    @property
    def id(self) -> str:
        """Job id (``job-...``)."""
        return self.record.id

    @property
    def skill(self) -> str:
        """Skill name."""
        return self.record.skill

    @property
    def action(self) -> str:
        """Action name."""
        return self.record.action

    @property
    def status(self) -> JobStatus:
        """PENDING, RUNNING, SUCCESS, FAILURE or CANCELED (as last refreshed)."""
        return self.record.status

    @property
    def parent_id(self) -> str | None:
        """The parent job id, if any."""
        return self.record.parent_id

    @property
    def results_uri(self) -> str | None:
        """Where the job writes results (local path or s3://)."""
        return self.record.results_uri

    @property
    def spec(self) -> dict[str, Any]:
        """The validated spec the job runs with (secrets redacted)."""
        return self.record.spec

    @property
    def result(self) -> dict[str, Any]:
        """Outcome details: exit code, message, KPIs, parent artifact, AutoML best child."""
        return self.record.result

    def refresh(self) -> "Job":
        """Re-read the job's state from its platform and its status.json; returns self."""
        self.record = _refresh_record(self.workspace, self.record)
        return self

    @property
    def progress(self) -> results.TaskStatus | None:
        """The action's status.json summary (epoch/max_epoch, ETA, latest KPIs) or None."""
        return task_status(self.record)

    @property
    def kpis(self) -> dict[str, Any]:
        """Latest KPIs from status.json ({} when none yet)."""
        return self._kpis(self.progress)

    def _kpis(self, status: results.TaskStatus | None) -> dict[str, Any]:
        if status is not None and status.kpis:
            return dict(status.kpis)
        return dict(self.record.result.get("kpis") or {})

    def artifacts(self) -> list[str]:
        """Every file under the job's results folder (recursive; local or S3)."""
        if not self.results_uri:
            return []
        # a folder that does not exist yet lists as []; access errors (credentials...) propagate
        return [o.uri for o in storage_for(self.results_uri).list(self.results_uri, recursive=True)]

    def logs(self) -> str:
        """The job's combined stdout/stderr so far."""
        return job_logs(self.id, False, workspace=self.workspace)

    @property
    def summary(self) -> str:
        """One progress line (status.json progress, or the AutoML trial summary)."""
        return job_kind(self.record.kind).summary(self, self.progress)

    def info(self) -> JobInfo:
        """The typed view (:class:`tao_sdk.models.JobInfo`): record (secrets redacted), progress,
        KPIs, how much is done, summary (status.json is read once)."""
        status = self.progress
        kind = job_kind(self.record.kind)
        progress = None if status is None else Progress(
            status=status.status, epoch=status.epoch, max_epoch=status.max_epoch, progress=status.progress,
            eta=status.eta, kpis=dict(status.kpis), message=status.message,
            weights=[dict(w) for w in status.weights])
        return JobInfo.from_record(self.record.to_dict(), progress=progress, kpis=self._kpis(status),
                                   fraction_done=kind.fraction_done(self.record, status),
                                   summary=kind.summary(self, status))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view of :meth:`info` for ``--json`` output."""
        return self.info().to_json_dict()


# =========================================================================== planning
@dataclass
class JobPlan:
    """Everything decided before submission (:func:`plan_job` returns one: the dry run).

    Attributes:
        job_id: the id the job gets (or got) in the store.
        skill / action: the model skill and action (for AutoML, the routed train action).
        route: where the action goes and why (AutoML or direct).
        spec: the full validated spec.
        deploy: True for TensorRT evaluate/inference (engine parents).
        parent: the artifact chosen from the parent job, if any.
        command: the argv the platform runs (``None`` for AutoML controller jobs).
        results_uri: the job's results folder.
        downloads: PTM downloads the worker performs (link -> destination).
        weights: which weights the job starts from: per checkpoint field set, its ``uri``,
            ``source`` (local, s3, https, hf, ngc), ``resolved`` location and ``size`` when known
            (:func:`tao_sdk.ptm.plan_weights`).
        warnings / notes: things the user should know.
        automl: for an AutoML route, the algorithm, budget and search space (each dimension,
            range, scale) that would run.
        secret_env: secrets moved out of the spec (NAME -> value) for the job's environment;
            never printed, written or stored.
        backend: what will run it here (built-in worker, TAO entrypoint, or none; see
            :mod:`tao_sdk.backends`); ``create_job`` refuses a plan whose backend is none.
        preset: the skill preset the spec was built on (``"tiny"``), or ``None``.
        env: environment the job runs with besides secrets (the preset's, e.g.
            ``TAO_WORKER_BACKBONE_SCALE=tiny``).
        datasets: the dataset validation report (:class:`tao_sdk.datasets.DatasetReport`; warnings
            only, since errors stop the plan), ``None`` when validation was turned off.
    """

    job_id: str
    skill: str
    action: str
    route: Route
    spec: dict[str, Any]
    deploy: bool
    parent: ParentArtifact | None
    results_uri: str
    command: list[str] | None = None
    downloads: list[dict[str, str]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backend: Backend | None = None
    automl: dict[str, Any] | None = None
    datasets: Any = None
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    preset: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def info(self) -> PlanInfo:
        """The typed view (:class:`tao_sdk.models.PlanInfo`), with its :func:`tao_sdk.budget.job_budget`
        (secrets are never part of it)."""
        return PlanInfo(job_id=self.job_id, skill=self.skill, action=self.action, route=RouteInfo(**self.route.__dict__),
                        command=self.command, backend=BackendInfo(**self.backend.to_dict()) if self.backend else None,
                        deploy=self.deploy, parent=ParentInfo(**self.parent.__dict__) if self.parent else None,
                        results_uri=self.results_uri, warnings=self.warnings, notes=self.notes,
                        automl=redact(self.automl), weights=redact(self.weights), downloads=self.downloads,
                        preset=self.preset, env=dict(self.env),
                        datasets=self.datasets.to_dict() if self.datasets is not None else None,
                        spec=redact(self.spec), budget=job_budget(self))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view of :meth:`info` for ``--json`` dry runs."""
        return self.info().to_json_dict()


def worker_command(network: str, action: str, spec_path: str, model_type: str | None = None) -> list[str]:
    """argv that runs one job, from :func:`tao_sdk.backends.resolve_backend`: ``$TAO_SKILLS_ENTRYPOINT``
    when set, else the project's worker when it is installed and supports (network, action), else the
    TAO container entrypoint ``<network> <action> -e spec.yaml`` on PATH (``model_type``: the skill's pinned
    ``model.model_type``, see :func:`tao_sdk.backends.resolve_backend`). Raises PlatformError naming
    what to install when none can run it."""
    return resolve_backend(network, action, model_type=model_type).command(spec_path)


def _plan_backend(skill: Skill, action: str, deploy: bool, platform: str, image: str | None, route: Route,
                  composed: ComposedSpec) -> Backend:
    """The backend that would run the planned job (the platform's answer, else the skill's;
    ``image`` replaces its container image); a plain route runs its plan-time checks of the spec
    (:meth:`Backend.preflight`), and worker-only settings on another backend get a note."""
    backend = get_platform(platform).plan_backend(skill, action, deploy, image) or skill_backend(skill, action, deploy)
    if image and backend.image != image:
        from dataclasses import replace

        backend = replace(backend, image=image)
    if not route.automl:
        backend.preflight(composed.spec)
    if composed.env and backend.kind != "worker":
        composed.notes.append(f"{', '.join(composed.env)} is the built-in worker's setting; {backend.kind} "
                              f"backends ignore it ({backend.detail})")
    return backend


def plan_job(
    skill: Skill | str,
    action: str,
    *,
    datasets: Mapping[str, Any] | None = None,
    spec_overrides: Mapping[str, Any] | None = None,
    base_spec: str | Path | Mapping[str, Any] | None = None,
    parent_job_id: str | None = None,
    dataset_format: str | None = None,
    automl_policy: str | bool | None = None,
    request: str | None = None,
    automl: Mapping[str, Any] | None = None,
    pretrained_model: str | None = None,
    preset: str | None = None,
    planned_parent: "JobPlan | None" = None,
    job_id: str | None = None,
    platform: str = "local",
    image: str | None = None,
    validate_datasets: bool | None = None,
    workspace: Workspace | None = None,
    bank: SkillBank | None = None,
) -> JobPlan:
    """Resolve and validate a job without submitting it: the dry run (see :func:`create_job` for
    arguments). Returns the :class:`JobPlan` (``plan.info()``: the typed :class:`tao_sdk.models.PlanInfo`):
    route, validated spec, backend and the command it runs, parent artifact, warnings, for an AutoML
    route the algorithm, budget and search space (``plan.automl``). ``plan.backend.require()``
    raises when nothing here can run it.

    ``planned_parent``: a plan of a parent that has not run yet (dry runs of a whole chain).
    ``job_id``: use this id instead of a new one (AutoML chooses trial ids before submitting).
    ``platform`` / ``image``: where it will run and the job's own container image (the docker
    platform answers which image and command run it, see :meth:`Platform.plan_backend`).

    Plan-time errors (nothing is submitted): AutoML arguments that contradict each other or are
    not positive; a parent on an action that takes none; a setting that must equal the parent's
    train job (class count, model section, input size) but does not; a dataset role the action
    needs that is neither given nor set in the spec; every spec problem; every error of the
    datasets the job would read (:class:`~tao_sdk.errors.DatasetValidationError`, see
    :func:`tao_sdk.datasets.validate_datasets`; ``validate_datasets=False`` skips it).
    """
    workspace = workspace or default_workspace()
    bank = bank or get_bank()
    skill = bank.get(skill)
    check_automl_arguments(automl_policy, automl)
    route = route_action(skill, action, automl_policy, request, bank=bank, explicit_automl=bool(automl))
    if automl and not route.automl:
        raise TaoSkillsError(f"AutoML settings ({', '.join(sorted(automl))}) were given but this job does not run "
                             f"AutoML: {route.reason}. Drop the AutoML settings (--automl-*)")
    job_id = job_id or new_job_id()
    results_uri = workspace.results_uri(job_id)
    _check_takes_parent(skill, action, parent_job_id or (planned_parent.job_id if planned_parent else None))
    parent = workspace.store.get(parent_job_id) if parent_job_id else None
    mapped = resolve_mappings(
        skill, action, results_uri=results_uri, parent=parent, store=workspace.store, bank=bank,
        pretrained_model=resolve_pretrained(skill, pretrained_model, _backbone(skill, action, spec_overrides)),
        planned_parent_results=planned_parent.results_uri if planned_parent else None,
        planned_parent_action=planned_parent.action if planned_parent else None,
    )
    deploy = mapped.deploy and skill.has_schema(action, deploy=True)
    inherited, source = _parent_settings(workspace, skill, action, parent, deploy, mapped.notes)
    composed = compose_spec(skill, action, spec_overrides, datasets, base_spec=base_spec,
                            dataset_format=dataset_format, inherited=inherited, sdk_values=mapped.values,
                            deploy=deploy, preset=preset, bank=bank)
    if source is not None:
        _check_parent_agreement(source, composed.spec, inherited, own_model=action in OWN_MODEL_ACTIONS)
        mapped.notes.extend(input_size_notes(skill, action, source, composed.spec))
    report = check_datasets(skill, action, composed.spec, dataset_format, validate_datasets, workspace, bank)
    backend = _plan_backend(skill, action, deploy, platform, image, route, composed)
    plan = JobPlan(job_id, skill.name, action, route, composed.spec, deploy, mapped.parent, results_uri,
                   None, mapped.downloads, plan_weights(action, composed.spec), mapped.warnings + composed.warnings,
                   mapped.notes + composed.notes, backend, datasets=report, secret_env=composed.secret_env,
                   preset=preset, env=composed.env)
    if route.automl:  # the algorithm, budget and search space the AutoML job would run
        job_kind(route.kind).plan(plan, skill, spec_overrides=spec_overrides, settings=automl)
    elif backend.available:
        plan.command = backend.command(str(workspace.job_dir(job_id) / "spec.yaml"))
    return plan


def _backbone(skill: Skill, action: str, spec_overrides: Mapping[str, Any] | None) -> Any:
    """The job's ``model.backbone`` as far as it is known before the spec is composed (the
    override, else the action's template), to pick NVIDIA's pretrained model for it."""
    if spec_overrides and "model.backbone" in spec_overrides:
        return spec_overrides["model.backbone"]
    model = skill.template(action).get("model") if skill.has_schema(action) else None
    return model.get("backbone") if isinstance(model, dict) else None


#: Environment switch of plan-time dataset validation (``0`` turns it off where no argument says).
VALIDATE_DATASETS_ENV = "TAO_SKILLS_VALIDATE_DATASETS"


def check_datasets(skill: Skill, action: str, spec: Mapping[str, Any], dataset_format: str | None,
                   enabled: bool | None, workspace: Workspace, bank: SkillBank) -> Any:
    """Validate the datasets ``spec`` names (:func:`tao_sdk.datasets.validate_datasets`); the report,
    or None when turned off (``enabled`` False, or None with ``$TAO_SKILLS_VALIDATE_DATASETS=0``).
    Raises DatasetValidationError listing every problem when one is an error."""
    if enabled is None:
        enabled = os.environ.get(VALIDATE_DATASETS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    if not enabled:
        return None
    from .datasets.check import validate_datasets as _validate
    from .errors import DatasetValidationError

    report = _validate(skill, action, spec=spec, dataset_format=dataset_format,
                       cache_dir=workspace.root / "dataset-checks", bank=bank)
    if not report.ok:
        raise DatasetValidationError(report)
    return report


def _check_takes_parent(skill: Skill, action: str, parent_job_id: str | None) -> None:
    """A parent job only makes sense for an action with a parent-model mapping in SKILL.md."""
    if not parent_job_id:
        return
    if any(m.function in ("parent_model", "parent_model_folder") for m in skill.inference_mappings(action)):
        return
    takes = [a for a in skill.actions if any(m.function in ("parent_model", "parent_model_folder")
                                             for m in skill.inference_mappings(a))]
    raise TaoSkillsError(
        f"{skill.name} {action} takes no parent job (SKILL.md has no parent_model mapping for it), but "
        f"parent {parent_job_id} was given. Drop --parent / parent_job_id; to continue an interrupted train "
        f"use `tao-skills resume {parent_job_id}`, to start from trained weights pass pretrained_model= "
        f"(--pretrained-model URI). Actions that take a parent: {', '.join(takes) or 'none'}")


#: Settings of a chained job (evaluate, export, inference...) that must equal the train job it
#: descends from, because the checkpoint is built from them: the class count, the model
#: architecture and the input size. Regexes on the dotted spec path.
PARENT_MUST_MATCH = (
    r"^dataset\.num_classes$",
    r"^model\.",
    r"^dataset\.augmentation\.[^.]*(spatial_size|input_size)$",
)
#: ...except model fields that do not shape the weights: paths, post-processing (num_select),
#: losses and matching costs, training-only switches. Regex on the last path segment.
PARENT_MAY_DIFFER = (r"path|checkpoint|pretrained|num_select|_coef$|_cost$|^alpha$|^gamma$|loss|clip_max_norm|"
                     r"dropout|train_backbone|frozen|precise|activation_checkpoint|distill|dn_number")
_MUST_MATCH_RE = [re.compile(p) for p in PARENT_MUST_MATCH]
_MAY_DIFFER_RE = re.compile(PARENT_MAY_DIFFER)


#: Actions whose ``model`` section describes a new network rather than the parent's checkpoint
#: (the distill student: it starts from the teacher's settings and may change any of them).
OWN_MODEL_ACTIONS = ("distill",)


def _check_parent_agreement(source: JobRecord, spec: Mapping[str, Any], inherited: Mapping[str, Any],
                            own_model: bool = False) -> None:
    """Raise when the user set a must-match setting to something else than the train job used
    (``own_model``: the ``model`` section is the job's own, see :data:`OWN_MODEL_ACTIONS`)."""
    from .dotted import flatten

    final = flatten(spec)
    bad = []
    for key, trained in inherited.items():
        if not any(r.match(key) for r in _MUST_MATCH_RE) or key not in final or \
                _MAY_DIFFER_RE.search(key.rsplit(".", 1)[-1]) or (own_model and key.startswith("model.")):
            continue
        if final[key] != trained:
            bad.append(f"{key} = {final[key]!r} but train job {source.id} used {trained!r}")
    if bad:
        raise TaoSkillsError(
            "settings that must match the parent's training differ: " + "; ".join(bad)
            + ". The checkpoint was built with the train job's values: drop these overrides (the SDK "
            "inherits them) or train a new model with the values you want.")

#: Spec prefixes a downstream job takes from the train job it descends from (unless the user sets
#: them): the model definition, the class count and the image preprocessing must match training.
INHERITED_PREFIXES = ("model.", "dataset.num_classes", "dataset.augmentation.")


def _train_ancestor(workspace: Workspace, record: JobRecord | None) -> JobRecord | None:
    seen = set()
    while record is not None and record.id not in seen:
        seen.add(record.id)
        try:
            source = job_kind(record.kind).model_source(workspace.store, record)
        except ParentModelError:
            return None
        if source is not record:  # a kind that stands for another job (AutoML: its best child)
            record = source
            continue
        if record.action in ("train", *OWN_MODEL_ACTIONS):  # a distill job trained its own model
            return record
        record = workspace.store.get(record.parent_id) if record.parent_id else None
    return None


def _parent_settings(workspace: Workspace, skill: Skill, action: str, parent: JobRecord | None, deploy: bool,
                     notes: list[str]) -> tuple[dict[str, Any], JobRecord | None]:
    """What a child job (not a train) inherits from the train job its parent descends from
    (:func:`inherited_settings`, plus the input size: :func:`inherited_input_size`) and that
    train job's record; appends the plan note saying how many settings it inherited."""
    if parent is None or action == "train":
        return {}, None
    inherited, source = inherited_settings(workspace, skill, action, parent, {}, deploy)
    if source is not None:
        inherited.update(inherited_input_size(skill, action, source))
    if inherited and source is not None:
        notes.append(f"inherited {len(inherited)} model/preprocessing setting(s) from train job {source.id}")
    return inherited, source


def _input_size_fact(skill: Skill, action: str, source: JobRecord) -> tuple[str, list[str], list[Any]] | None:
    """``(train key, [height key, width key] of action, trained [height, width])`` from the
    skill's ``input_size`` fact (skill_info.yaml), or None when the network has none for
    ``action`` or the train job recorded no ``[height, width]`` there."""
    from .dotted import get_path

    fact = skill.info.get("input_size") or {}
    keys = (fact.get("to") or {}).get(action)
    trained = get_path(source.spec, fact.get("from", ""), None) if keys else None
    if not keys or not isinstance(trained, (list, tuple)) or len(trained) != 2:
        return None
    return fact["from"], list(keys), list(trained)


def inherited_input_size(skill: Skill, action: str, source: JobRecord) -> dict[str, Any]:
    """The ``[height, width]`` keys of ``action`` (e.g. ``export.input_height`` /
    ``export.input_width``) set to the size train job ``source`` trained at (the skill's
    ``input_size`` fact names the train key): an export of a model trained at 160x256 runs at
    160x256, not at the schema's 640x640. Values the user sets win (:func:`input_size_notes`
    says so in the plan). Empty when the network has no fixed input size."""
    found = _input_size_fact(skill, action, source)
    return {} if found is None else dict(zip(found[1], found[2]))


def input_size_notes(skill: Skill, action: str, source: JobRecord, spec: Mapping[str, Any]) -> list[str]:
    """Plan notes on the input size of a child job: inherited from the train job, or set to
    another size than the model was trained at (naming the keys and both values)."""
    from .dotted import get_path

    found = _input_size_fact(skill, action, source)
    if found is None:
        return []
    train_key, keys, trained = found
    final = [get_path(spec, k, None) for k in keys]
    where = f"{'/'.join(keys)}"
    if final == trained:
        return [f"{where} = {trained[0]}x{trained[1]}: the input size train job {source.id} trained at "
                f"({train_key} = {trained})"]
    return [f"{where} = {final[0]}x{final[1]} but train job {source.id} trained at {trained[0]}x{trained[1]} "
            f"({train_key} = {trained}): this {action} runs at another input size than training; drop the "
            f"override to use the trained size"]


def inherited_settings(workspace: Workspace, skill: Skill, action: str, parent: JobRecord,
                       user_overrides: Mapping[str, Any], deploy: bool = False
                       ) -> tuple[dict[str, Any], JobRecord | None]:
    """Model / num_classes / preprocessing values of the train job ``parent`` descends from (and
    that train job's record), as dotted keys valid in this action's schema and not set in
    ``user_overrides``; also the data sources of this action's SKILL.md dataset rows that the
    train job had (e.g. Deformable DETR export lists the training sets): datasets given to this
    job replace them. Not the destinations of the train job's PTM downloads (``/ptm/...``): those
    were that job's own files."""
    from .schemapath import find_property
    from .dotted import flatten

    source = _train_ancestor(workspace, parent)
    if source is None or source.skill != skill.name:
        return {}, None
    schema = skill.schema(action, deploy)
    data_keys = tuple(r.spec_key for r in skill.dataset_requirements(action))
    downloaded = {d.get("spec_field") for d in (source.result or {}).get("downloads") or []}
    out = {}
    for key, value in flatten(source.spec).items():
        inherited_data = any(key == k or key.startswith(k + ".") for k in data_keys)
        if key in downloaded or not (key.startswith(INHERITED_PREFIXES) or key == "dataset.num_classes"
                                     or inherited_data):
            continue
        if any(key == u or key.startswith(u + ".") or u.startswith(key + ".") for u in user_overrides):
            continue
        if find_property(schema, key) is not None:
            out[key] = value
    return out, source


# =========================================================================== create / submit
def create_job(
    skill: Skill | str,
    action: str,
    *,
    datasets: Mapping[str, Any] | None = None,
    spec_overrides: Mapping[str, Any] | None = None,
    base_spec: str | Path | Mapping[str, Any] | None = None,
    parent_job_id: str | None = None,
    platform: str = "local",
    automl_policy: str | bool | None = None,
    request: str | None = None,
    dataset_format: str | None = None,
    pretrained_model: str | None = None,
    encryption_key: str | None = None,
    automl: Mapping[str, Any] | None = None,
    preset: str | None = None,
    image: str | None = None,
    validate_datasets: bool | None = None,
    plan: JobPlan | None = None,
    workspace: Workspace | None = None,
    bank: SkillBank | None = None,
) -> Job:
    """Create a job: route (AutoML policy), resolve mappings, build + validate the spec, submit.

    Args:
        skill: skill name (``tao-train-rtdetr``) or network (``rtdetr``).
        action: ``train``, ``evaluate``, ``inference``, ``export``, ``gen_trt_engine``...
        datasets: dataset roots by role: ``train_datasets`` (list), ``eval_dataset``,
            ``inference_dataset``, ``calibration_dataset`` (``s3://`` or local paths).
        spec_overrides: dotted keys -> values, applied over ``base_spec`` (they win over it).
        base_spec: your TAO experiment spec (a YAML path or a nested dict), the layer under
            ``spec_overrides``; read as TAO Core does (``1e-4`` strings, lower-case enum values,
            ``???``, other actions' sections). SDK-owned fields in it (results_dir, parent
            checkpoints, output paths) are replaced with a warning; a secret in it (e.g.
            ``encryption_key``) moves to the job's environment and is never stored.
        parent_job_id: upstream job (train/export/gen_trt_engine/AutoML) whose artifact feeds
            this one (checkpoint by the monitoring metric, ONNX or engine, by action).
        platform: ``"local"`` (default, this machine), ``"slurm"`` (sbatch on the cluster of
            ``SLURM_CONF``; settings in ``<workspace>/platforms/slurm.yaml`` / ``TAO_SLURM_*``) or
            ``"docker"`` (a container of the skill's TAO image, docker or podman; settings in
            ``<workspace>/platforms/docker.yaml`` / ``TAO_DOCKER_*``); see references/platforms.md.
        automl_policy: ``"auto"``/``"off"``; ``request`` text like "no HPO" also turns it off.
            With auto, train of an AutoML-enabled skill runs through ``tao-run-automl``.
        dataset_format: dataset format where files depend on it (stereo, OneFormer label map).
        pretrained_model: URI of pretrained weights (``ptm_if_no_resume_model`` fields).
        encryption_key: model key; passed by environment, never written (default ``tlt_encode``
            or ``$TAO_ENCRYPTION_KEY``). It wins over a key found in ``base_spec`` /
            ``spec_overrides``.
        automl: AutoML settings when routed there (algorithm, max_recommendations, max_epochs,
            max_concurrent, hyperparameters, overrides). Giving them asks for AutoML: they beat
            request text such as "plain training" and contradict ``automl_policy="off"`` (error).
        preset: ``"tiny"``: the skill's small-model layer (``references/preset_tiny.yaml``: a
            model that trains in minutes on a CPU; RT-DETR, Deformable DETR, OneFormer,
            FastFoundationStereo), over ``base_spec`` and under ``spec_overrides``; AutoML trials
            get it too. ``"full"`` / ``None``: the template as TAO ships it.
        image: the container image this job runs in (docker: beats the settings and the skill's
            TAO image; slurm: pyxis ``--container-image``).
        validate_datasets: check every dataset file the job reads first (default: on, unless
            ``$TAO_SKILLS_VALIDATE_DATASETS=0``); an error in one raises DatasetValidationError
            before any job exists, warnings land in ``plan.datasets``. ``False`` skips it (data
            this machine cannot read).
        plan: :func:`plan_job`'s result for these arguments, submitted as is (no second plan).

    Returns:
        The submitted :class:`Job` (``job.info()``: the typed :class:`tao_sdk.models.JobInfo`). For a
        dry run (resolve + validate, submit nothing) call :func:`plan_job` with the same arguments.
    """
    workspace = workspace or default_workspace()
    bank = bank or get_bank()
    plan = plan or plan_job(skill, action, datasets=datasets, spec_overrides=spec_overrides, base_spec=base_spec,
                            parent_job_id=parent_job_id, dataset_format=dataset_format, automl_policy=automl_policy,
                            request=request, automl=automl, pretrained_model=pretrained_model, preset=preset,
                            platform=platform, image=image, validate_datasets=validate_datasets,
                            workspace=workspace, bank=bank)
    _ready_to_submit(plan, encryption_key)
    if plan.route.automl:
        return _create_automl(plan, bank.get(plan.skill), datasets=datasets, base_spec=base_spec,
                              spec_overrides=spec_overrides, dataset_format=dataset_format, platform=platform,
                              settings=automl, preset=preset, workspace=workspace, bank=bank)
    return submit_plan(plan, platform=platform, workspace=workspace)


def _ready_to_submit(plan: JobPlan, encryption_key: str | None) -> None:
    """Add the caller's encryption key to the plan's secrets; raise PlatformError naming what to
    install when nothing here can run the plan (before anything starts)."""
    if encryption_key:
        plan.secret_env[ENCRYPTION_KEY_ENV] = encryption_key
    if plan.backend is None:  # pragma: no cover - plan_job always decides one
        raise PlatformError(f"no backend was decided for {plan.skill} {plan.action}")
    plan.backend.require()


def _create_automl(plan: JobPlan, model_skill: Skill, *, base_spec: str | Path | Mapping[str, Any] | None,
                   spec_overrides: Mapping[str, Any] | None, **kwargs: Any) -> Job:
    """Hand an AutoML-routed plan to its job kind (``kwargs``: datasets, dataset_format, platform,
    settings, preset, workspace, bank as given to :func:`create_job`). Trials get the inputs
    without secrets; only the encryption key travels to them (by environment)."""
    from .secrets import extract_secrets
    from .specfile import load_spec_file

    others = sorted(set(plan.secret_env) - {ENCRYPTION_KEY_ENV})
    if others:
        raise TaoSkillsError(f"AutoML hands only the encryption key to its trials, but the spec has other secrets "
                             f"({', '.join(others)}); run plain training (automl_policy='off') or export them "
                             f"in the environment and reference them as ${{oc.env:NAME}} in the spec")
    base = extract_secrets(load_spec_file(base_spec))[0] if base_spec is not None else None
    job: Job = job_kind(plan.route.kind).create(plan, model_skill, base_spec=base,
                                                spec_overrides=extract_secrets(spec_overrides, dotted=True)[0],
                                                encryption_key=plan.secret_env.get(ENCRYPTION_KEY_ENV), **kwargs)
    return job


def submit_plan(plan: JobPlan, *, platform: str = "local", encryption_key: str | None = None,
                workspace: Workspace | None = None, parent_id: str | None = None, kind: str = "job",
                extra_env: Mapping[str, str] | None = None) -> Job:
    """Write the plan's spec, record the job and start it on ``platform``; returns the Job.

    The spec written (``jobs/<id>/spec.yaml`` and ``<results>/spec.yaml``) holds no secret: they
    travel in the job's environment (``plan.secret_env``, ``encryption_key``). A submission that
    gives up before the record exists (a locked store, a full disk) removes the job folder it
    made. When the platform's submit raises, the record is settled with what really happened
    before the error propagates: a job that had started anyway is adopted (returned, with a
    warning; a PlatformError instead stops it), one that had not is blocked from starting.
    """
    workspace = workspace or default_workspace()
    if plan.command is None:
        raise PlatformError(f"job {plan.job_id} has no command to run")
    job_dir = workspace.job_dir(plan.job_id)
    spec_text = yaml.safe_dump(plan.spec, sort_keys=False, default_flow_style=False, width=1000)
    record = JobRecord(
        id=plan.job_id, skill=plan.skill, action=plan.action, parent_id=parent_id or (
            plan.parent.job_id if plan.parent and plan.parent.job_id != "<planned>" else None),
        platform=platform, spec=plan.spec, results_uri=plan.results_uri, kind=kind,
        result={"deploy": plan.deploy, "warnings": plan.warnings, "notes": plan.notes,
                "downloads": plan.downloads,
                "parent_artifact": plan.parent.uri if plan.parent else None,
                "preset": plan.preset, "env": plan.env,
                "budget": job_budget(plan).model_dump(), "submitter": process_identity()},
    )
    store = workspace.store
    with _no_litter(job_dir):
        _write_spec(job_dir / "spec.yaml", spec_text)
        workspace.write_job_card(record)
        record = store.create(record)
    # the spec also lands next to the results (no secrets in it: the key is an env reference)
    try:
        storage_for(plan.results_uri).write_text(
            storage_for(plan.results_uri).join(plan.results_uri, "spec.yaml"), spec_text)
    except StorageError as exc:
        store.set_status(plan.job_id, JobStatus.FAILURE, result={**record.result, "message": str(exc)})
        raise
    env = {**plan.env, **plan.secret_env, "TAO_SKILLS_JOB_ID": plan.job_id}
    env[ENCRYPTION_KEY_ENV] = (encryption_key or plan.secret_env.get(ENCRYPTION_KEY_ENV)
                               or os.environ.get(ENCRYPTION_KEY_ENV) or DEFAULT_ENCRYPTION_KEY)
    env.update(extra_env or {})
    task = job_task(plan, env, str(job_dir))
    runner = get_platform(platform)
    try:
        handle = runner.submit(task)
    except Exception as exc:  # noqa: BLE001 - the record must say what really happened
        settled = settle_failed_submit(workspace, record, runner, exc)
        if settled.status is JobStatus.RUNNING:
            return Job(settled, workspace)
        raise
    record = store.set_status(plan.job_id, JobStatus.RUNNING, platform_handle=handle)
    return Job(record, workspace)


@contextmanager
def _no_litter(job_dir: Path) -> Iterator[None]:
    """Remove ``job_dir`` when the block fails and the folder did not exist before it."""
    existed = job_dir.exists()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(job_dir, ignore_errors=True)
        raise


def _write_spec(path: Path, text: str) -> None:
    """Write a job folder's spec.yaml (folder created); a full or read-only workspace raises
    DiskFullError naming TAO_SKILLS_WORKSPACE."""
    from .diskspace import WORKSPACE_FIX, disk_fault, disk_full_error, guarded_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fault = disk_fault(exc)
        if fault is None or fault.errno is None:
            raise
        raise disk_full_error(path.parent.parent, "the job folder", code=fault.errno, fix=WORKSPACE_FIX) from None
    data = text.encode("utf-8")
    with guarded_write(path, path.name, needed=len(data), fix=WORKSPACE_FIX):
        path.write_bytes(data)


def settle_failed_submit(workspace: Workspace, record: JobRecord, platform: Platform,
                          exc: Exception) -> JobRecord:
    """``platform.submit`` raised ``exc``: record what really happened. A job that started anyway
    is adopted (RUNNING, with a warning), or stopped when the platform refused it (PlatformError);
    one that did not is blocked from starting late, and the record says FAILURE."""
    workdir = str(workspace.job_dir(record.id))
    why = f"{type(exc).__name__}: {exc}"
    adopt = not isinstance(exc, PlatformError)
    adopted = _adopt(workspace, record, platform) if adopt else None
    if adopted is None:
        platform.block_start(workdir)  # a start still in flight never happens...
        adopted = _adopt(workspace, record, platform) if adopt else None  # ...unless it just did
    if adopted is not None:
        note = f"the platform's submit raised {why} after the job had started; the SDK adopted it"
        return workspace.store.update(record.id, result={
            **adopted.result, "warnings": [*(adopted.result.get("warnings") or []), note]})
    handle = platform.recover_handle(workdir)
    if handle is None:
        return workspace.store.set_status(record.id, JobStatus.FAILURE, result={
            **record.result, "never_started": True,
            "message": f"submit failed: {why}; nothing started and nothing will; fix the cause and create the job again"})
    try:
        platform.cancel(handle)
        stopped = "it had started and was stopped"
    except TaoSkillsError as cancel_exc:
        stopped = f"it had started and stopping it failed ({cancel_exc})"
    return workspace.store.set_status(record.id, JobStatus.FAILURE, platform_handle=handle, result={
        **record.result, "message": f"submit failed: {why}; {stopped}"})


def _local_paths(value: Any, key: str = "") -> dict[str, str]:
    """Absolute local paths in a spec, by dotted key (``[i]`` for list items)."""
    if isinstance(value, Mapping):
        return {k: v for sub, item in value.items()
                for k, v in _local_paths(item, f"{key}.{sub}" if key else str(sub)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _local_paths(item, f"{key}[{i}]").items()}
    return {key: value} if isinstance(value, str) and value.startswith("/") else {}


def job_task(plan: JobPlan, env: dict[str, str], workdir: str) -> JobTask:
    """The platform-neutral :class:`JobTask` of a planned job: its command, env, GPUs and nodes
    (``train.num_gpus`` / ``train.num_nodes``), the skill's GPU-selection variable (skill_info
    ``launch.visible_devices_env``) and the local paths of its spec (a cluster platform checks
    that its nodes can see them; not the destinations of the PTM downloads the job makes itself,
    e.g. TAO's ``/ptm/...``)."""
    train = plan.spec.get("train") or {}
    downloaded = {d.get("spec_field") for d in plan.downloads or []}
    paths = {k: v for k, v in _local_paths(plan.spec).items() if k not in downloaded}
    launch = get_bank().get(plan.skill).info.get("launch") or {}
    return JobTask(job_id=plan.job_id, command=list(plan.command or []), env=env, workdir=workdir,
                   num_gpus=int(train.get("num_gpus") or 0), num_nodes=int(train.get("num_nodes") or 1),
                   gpu_ids=[int(i) for i in train.get("gpu_ids") or []],
                   image=plan.backend.image if plan.backend else None,
                   processes_per_node=max(1, int(train.get("num_gpus") or 1)),
                   visible_devices_env=launch.get("visible_devices_env"), data_paths=paths)


# =========================================================================== tracking
def _task_folders(record: JobRecord) -> list[str]:
    if record.result.get("deploy"):
        return [f"trt_{record.action}", record.action]
    return [record.action]


def task_status(record: JobRecord) -> results.TaskStatus | None:
    """Summary of a job's own status.json (its task folder; trt_* for TensorRT jobs), or None."""
    if not record.results_uri or not job_kind(record.kind).has_task_status:
        return None
    storage = storage_for(record.results_uri)
    for task in _task_folders(record):
        uri = results.status_file_for(record.results_uri, task)
        try:
            text = storage.read_text(uri)
        except StorageError:
            continue
        return results.summarize_status(text, task=task)
    return None


def _log_tail(record: JobRecord, lines: int = 20) -> str:
    path = record.platform_handle.get("log_path")
    if not path or not Path(path).exists():
        return ""
    text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _last_error_line(tail: str) -> str | None:
    """The message of the last ``ERROR: ...`` line the worker printed (its failure), or None."""
    errors = [line[len("ERROR: "):] for line in tail.splitlines() if line.startswith("ERROR: ")]
    return errors[-1] if errors else None


#: seconds after which a PENDING record without a handle whose submitter cannot be checked
#: (created by an older SDK) counts as an interrupted submission
ORPHAN_GRACE_S = 120.0


def _adopt(workspace: Workspace, record: JobRecord, platform: Platform) -> JobRecord | None:
    """Track the job that started from the record's job folder (its supervisor wrote its handle),
    or None when nothing started there."""
    workdir = str(workspace.job_dir(record.id))
    handle = platform.recover_handle(workdir)
    if not handle:
        return None
    platform.allow_start(workdir)
    return workspace.store.set_status(record.id, JobStatus.RUNNING, platform_handle=handle)


def _adopt_or_fail(workspace: Workspace, record: JobRecord) -> JobRecord:
    """A PENDING record without a handle: adopt the job if it started, leave it while its
    submitter still runs, else make sure it never starts and record the interrupted submission."""
    platform = get_platform(record.platform)
    adopted = _adopt(workspace, record, platform)
    if adopted is not None:
        return adopted
    submitter = record.result.get("submitter")
    alive = identity_alive(submitter)
    if alive or (alive is None and (submitter or time.time() - record.created_at < ORPHAN_GRACE_S)):
        return record  # still being submitted (or submitted from a machine we cannot check)
    platform.block_start(str(workspace.job_dir(record.id)))
    adopted = _adopt(workspace, record, platform)  # it may have started meanwhile
    if adopted is not None:
        return adopted
    who = f"process {submitter['pid']}" if submitter else "the submitting process"
    return workspace.store.set_status(record.id, JobStatus.FAILURE, result={
        **record.result, "never_started": True,
        "message": f"submission interrupted: {who} died after recording the job and before starting it; "
                   "nothing ran and nothing will start; create the job again"})


def _signal_text(code: int) -> str:
    import signal as _signal

    try:
        name = _signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}" + (" (out of memory, or a SIGKILL of its process group?)" if name == "SIGKILL" else "")


def _close_status(record: JobRecord, status: results.TaskStatus | None, message: str) -> str:
    """Append a closing FAILURE line to the job's status.json when its processes died before
    writing one; returns ``message`` (with a note when status.json could not be written)."""
    if status is not None and status.finished or not record.results_uri:
        return message
    storage = storage_for(record.results_uri)
    uri = results.status_file_for(record.results_uri, _task_folders(record)[0])
    try:
        text = storage.read_text(uri) if storage.exists(uri) else ""
        if text and not text.endswith("\n"):
            text += "\n"
        storage.write_text(uri, text + results.failure_line(message) + "\n")
    except StorageError as exc:
        return f"{message} (could not close {uri}: {exc})"
    return message


def _refresh_record(workspace: Workspace, record: JobRecord) -> JobRecord:
    if record.status.is_terminal:
        return record
    if not record.platform_handle:
        record = _adopt_or_fail(workspace, record)
        if record.status.is_terminal or not record.platform_handle:
            return record
    return job_kind(record.kind).refresh(workspace, record)


def _refresh_task_record(workspace: Workspace, record: JobRecord) -> JobRecord:
    """A task job's record from its platform state and its status.json."""
    state = get_platform(record.platform).poll(record.platform_handle)
    if state.is_running or state.state == "unknown":
        return record
    status = task_status(record)
    message = status.message if status else ""
    kpis = dict(status.kpis) if status else {}
    weights = {"weights": status.weights} if status and status.weights else {}
    if state.exit_code == 0 and not (status and status.failed):
        return workspace.store.set_status(record.id, JobStatus.SUCCESS,
                                          result={**record.result, "exit_code": 0, "message": message, "kpis": kpis,
                                                  **weights})
    died = state.exit_code is None or state.exit_code < 0
    if died or not message or (status and not status.failed):
        tail = _log_tail(record, 5)
        last = f"; last status line: {message}" if message and died else ""
        if state.exit_code is None:
            what = f"the job's processes died without an exit status ({state.detail})"
        elif state.exit_code < 0:
            what = f"the job's processes died: {_signal_text(state.exit_code)}"
        else:
            what = f"exit code {state.exit_code}"
        error = _last_error_line(tail) if not (status and status.failed) else None
        if error:  # the job said why on stderr but could not write its status.json (full disk...)
            what = f"{error} ({what}; the job could not record it in its status.json)"
        message = what + last + (f"; log tail:\n{tail}" if tail else "")
    message = _close_status(record, status, message)
    return workspace.store.set_status(record.id, JobStatus.FAILURE,
                                      result={**record.result, "exit_code": state.exit_code, "message": message,
                                              "kpis": kpis, **weights})


def get_job(job_id: str, *, workspace: Workspace | None = None) -> Job:
    """The job with ``job_id``, refreshed from its platform (re-attaches after an SDK restart)."""
    workspace = workspace or default_workspace()
    return Job(workspace.store.get(job_id), workspace).refresh()


def list_jobs(*, skill: str | None = None, status: str | None = None, parent_id: str | None = None,
              limit: int | None = 50, workspace: Workspace | None = None) -> list[Job]:
    """Jobs newest first, refreshed (filters: skill name, status, parent job id)."""
    workspace = workspace or default_workspace()
    return [Job(r, workspace).refresh() for r in
            workspace.store.list(skill=skill, status=status, parent_id=parent_id, limit=limit)]


def wait_for_job(job_id: str, timeout: float | None = None, *, poll_interval: float = 1.0,
                 on_progress: Callable[[Job], None] | None = None, workspace: Workspace | None = None) -> Job:
    """Block until the job ends (or ``timeout`` seconds pass) and return it.

    ``on_progress(job)`` is called whenever status.json changes (epoch, ETA, KPIs): use
    ``tao_sdk.results.format_progress(job.progress)`` for a one-line display. Raises
    TaoSkillsError on timeout, naming the job and how to keep waiting.
    """
    workspace = workspace or default_workspace()
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        job = get_job(job_id, workspace=workspace)
        if on_progress is not None:
            progress = job.progress
            marker = (job.status, progress.lines if progress else 0, job_kind(job.record.kind).progress_marker(job.record))
            if marker != last:
                last = marker
                on_progress(job)
        if job.status.is_terminal:
            return job
        stalled = job_kind(job.record.kind).stalled(job.record)
        if stalled:
            raise TaoSkillsError(stalled)
        if deadline is not None and time.monotonic() >= deadline:
            raise TaoSkillsError(f"job {job_id} is still {job.status.value} after {timeout:.0f} s; keep waiting "
                                 f"with `tao-skills wait {job_id}` or stop it with `tao-skills cancel {job_id}`")
        time.sleep(poll_interval)


@overload
def job_logs(job_id: str, follow: Literal[False] = False, *, workspace: Workspace | None = None,
             poll_interval: float = 0.5) -> str: ...
@overload
def job_logs(job_id: str, follow: Literal[True], *, workspace: Workspace | None = None,
             poll_interval: float = 0.5) -> Iterator[str]: ...
def job_logs(job_id: str, follow: bool = False, *, workspace: Workspace | None = None,
             poll_interval: float = 0.5) -> str | Iterator[str]:
    """The job's log text; with ``follow=True`` an iterator of new lines until the job ends."""
    workspace = workspace or default_workspace()
    record = workspace.store.get(job_id)
    path = get_platform(record.platform).logs_path(record.platform_handle) if record.platform_handle else None
    if not follow:
        if not path or not Path(path).exists():
            return ""
        return Path(path).read_text(encoding="utf-8", errors="replace")
    return _follow(job_id, path, workspace, poll_interval)


def _follow(job_id: str, path: str | None, workspace: Workspace, poll_interval: float) -> Iterator[str]:
    position = 0
    while True:
        done = get_job(job_id, workspace=workspace).status.is_terminal
        if path and Path(path).exists():
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(position)
                chunk = fh.read()
                position = fh.tell()
            yield from chunk.splitlines()
        if done:
            return
        time.sleep(poll_interval)


def resume_job(job_id: str, *, platform: str | None = None, encryption_key: str | None = None,
               workspace: Workspace | None = None, bank: SkillBank | None = None) -> Job:
    """Continue an interrupted (failed, canceled, killed) train job from its latest checkpoint.

    A new train job is created with the same spec, ``parent_id`` = the old job, its own results
    folder, and ``train.resume_training_checkpoint_path`` = the latest checkpoint found
    (recursively) in the old job's results. The old record is never modified. Raises
    ParentModelError when the old job left no checkpoint (start it again instead).
    """
    from . import checkpoints
    from .mappings import ENCRYPTION_KEY_REF

    workspace = workspace or default_workspace()
    bank = bank or get_bank()
    old = workspace.store.get(job_id)
    if old.action != "train" or not job_kind(old.kind).resumes_from_checkpoint:
        raise TaoSkillsError(f"{job_id} is a {old.kind} {old.action} job; only train jobs resume from checkpoints"
                             + job_kind(old.kind).resume_hint)
    old = get_job(job_id, workspace=workspace).record
    if not old.status.is_terminal:
        raise TaoSkillsError(f"{job_id} is still {old.status.value}; cancel it first or wait for it")
    if not old.results_uri:
        raise TaoSkillsError(f"{job_id} has no results folder, so no checkpoint to resume from; start it again")
    uris = [o.uri for o in storage_for(old.results_uri).list(old.results_uri, recursive=True)]
    latest = checkpoints.select_checkpoint(uris, mode="latest", where=f"job {job_id} results {old.results_uri}")
    skill = bank.get(old.skill)
    spec = json.loads(json.dumps(old.spec))
    new_id = new_job_id()
    results_uri = workspace.results_uri(new_id)
    spec["results_dir"] = results_uri
    if "encryption_key" in spec:
        spec["encryption_key"] = ENCRYPTION_KEY_REF
    spec.setdefault("train", {})["resume_training_checkpoint_path"] = latest.uri
    if "***" in json.dumps(spec):
        raise TaoSkillsError(f"the stored spec of {job_id} has redacted secret values; create a new job instead")
    from .spec import validate_spec

    validate_spec(skill, "train", spec)
    route = Route(skill.name, False, "off", f"resuming {job_id} from {latest.uri}")
    plan = JobPlan(new_id, skill.name, "train", route, spec, False, ParentArtifact(job_id, latest.uri, "latest",
                   latest.reason), results_uri, notes=[f"resumed from {job_id}: {latest.uri}"],
                   preset=old.result.get("preset"), env=dict(old.result.get("env") or {}))
    target = platform or old.platform
    plan.backend = get_platform(target).plan_backend(skill, "train") or skill_backend(skill, "train")
    plan.command = plan.backend.command(str(workspace.job_dir(new_id) / "spec.yaml"))
    return submit_plan(plan, platform=target, encryption_key=encryption_key, workspace=workspace,
                       parent_id=job_id, kind=old.kind)


def cancel_job(job_id: str, *, workspace: Workspace | None = None) -> Job:
    """Stop the job (its whole process tree) and mark it CANCELED; no-op once it has ended.

    The record is refreshed first: a job that already finished keeps its real outcome (a job
    that exited 0 stays SUCCESS). A job still being submitted by another process is stopped
    from starting (or, if it just started, adopted and stopped)."""
    workspace = workspace or default_workspace()
    record = _refresh_record(workspace, workspace.store.get(job_id))  # it may have ended already
    if record.status.is_terminal:
        return Job(record, workspace)
    ended = job_kind(record.kind).cancel(workspace, record)
    if ended is not None:  # it finished before the cancel reached it: keep its real outcome
        return Job(ended, workspace)
    record = workspace.store.set_status(job_id, JobStatus.CANCELED,
                                        result={**record.result, "message": "canceled by user"})
    return Job(record, workspace)


class TaskKind(JobKind):
    """Job kind of a train/evaluate/... job (and an AutoML trial): one task on a platform."""

    def refresh(self, workspace: Workspace, record: JobRecord) -> JobRecord:
        """Poll the platform; on exit, SUCCESS/FAILURE from the exit code and status.json."""
        return _refresh_task_record(workspace, record)

    def cancel(self, workspace: Workspace, record: JobRecord) -> JobRecord | None:
        """Cancel the task on its platform (the whole process tree / every Slurm step); a task
        still being submitted by another process is stopped from starting (or adopted and
        stopped). Returns the refreshed record when it finished (exit 0) before the cancel."""
        platform = get_platform(record.platform)
        if not record.platform_handle:  # its submitter is still starting it: stop that start
            platform.block_start(str(workspace.job_dir(record.id)))
            record = _adopt(workspace, record, platform) or record
        if record.platform_handle:
            platform.cancel(record.platform_handle)
            state = platform.poll(record.platform_handle)
            if state.is_exited and state.exit_code == 0:
                return _refresh_record(workspace, record)
        return None


TASK_KIND = TaskKind()

__all__ = ["Job", "JobPlan", "TaskKind", "cancel_job", "create_job", "get_job", "job_logs", "job_task", "list_jobs", "plan_job",
           "resume_job", "settle_failed_submit", "submit_plan", "wait_for_job", "worker_command"]
