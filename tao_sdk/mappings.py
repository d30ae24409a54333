"""Resolve SKILL.md's Spec Param / Parent Model Inference mappings for a job being created.

Each row maps a spec field to an inference function (``output_dir``, ``key``, ``parent_model``,
``parent_model_folder``, ``resume_model``, ``ptm_if_no_resume_model``, ``create_onnx_file``,
``create_engine_file``, ``create_cal_cache``) or a literal (e.g. ``StereoDataset``, or a PTM
download descriptor ``{'link': ..., 'destination_path': ...}`` -> the destination path, with the
download recorded for the worker).

Checkpoint choice depends on the action (see :func:`tao_sdk.checkpoints.mode_for`): best by the
skill's monitoring metric for evaluate/inference/export of a train parent, the ``.onnx`` for
gen_trt_engine of an export parent, the ``.engine`` for TensorRT evaluate/inference, the latest
for resume.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import checkpoints, results
from .bank import Skill, SkillBank, get_bank
from .errors import BankFormatError, ParentModelError, StorageError
from .jobkinds import job_kind
from .jobstore import JobRecord, JobStatus, JobStore
from .storage import storage_for

#: Environment variable carrying the model encryption key to the job (never written to files).
ENCRYPTION_KEY_ENV = "TAO_ENCRYPTION_KEY"
#: What the spec holds instead of the key: OmegaConf/Hydra (TAO) and our worker resolve it.
ENCRYPTION_KEY_REF = "${oc.env:" + ENCRYPTION_KEY_ENV + "}"
DEFAULT_ENCRYPTION_KEY = "tlt_encode"


@dataclass
class ParentArtifact:
    """The artifact chosen from a parent job: which job, which file, why."""

    job_id: str
    uri: str
    mode: str
    reason: str
    warning: str | None = None


@dataclass
class ResolvedMappings:
    """Values to write into the spec, plus what the SDK learned while resolving them."""

    values: dict[str, Any] = field(default_factory=dict)
    parent: ParentArtifact | None = None
    deploy: bool = False
    downloads: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _listing(uri: str) -> list[str]:
    try:
        return [o.uri for o in storage_for(uri).list(uri, recursive=True)]
    except StorageError as exc:
        raise ParentModelError(f"cannot list results folder {uri}: {exc}") from None


def effective_parent(store: JobStore, parent: JobRecord) -> JobRecord:
    """The record whose model a child of ``parent`` uses: its job kind says
    (:meth:`tao_sdk.jobkinds.JobKind.model_source`; an AutoML parent stands for its best child)."""
    return job_kind(parent.kind).model_source(store, parent)


def select_parent_artifact(store: JobStore, bank: SkillBank, parent: JobRecord, action: str) -> ParentArtifact:
    """Pick the parent's checkpoint / ONNX / engine for ``action`` (see module docstring)."""
    source = effective_parent(store, parent)
    if source.status in (JobStatus.PENDING, JobStatus.RUNNING):
        raise ParentModelError(f"parent job {source.id} is still {source.status.value}; wait for it "
                               f"(`tao-skills wait {source.id}`) before starting {action}")
    if not source.results_uri:
        raise ParentModelError(f"parent job {source.id} has no results folder recorded")
    mode = checkpoints.mode_for(action, source.action)
    where = f"job {source.id} results {source.results_uri}"
    uris = _listing(source.results_uri)
    history = metric = direction = None
    if mode == "best":
        skill = bank.get(source.skill)
        metric, direction = skill.metric
        status_uri = results.status_file_for(source.results_uri, "train")
        try:
            text = storage_for(status_uri).read_text(status_uri)
            history = results.summarize_status(text).history
        except StorageError:
            history = []
    selection = checkpoints.select_checkpoint(uris, mode=mode, history=history, metric=metric,
                                              direction=direction, where=where)
    warning = selection.warning
    if source.status != JobStatus.SUCCESS:
        extra = f"parent job {source.id} ended {source.status.value}; using its artifact anyway"
        warning = f"{warning}; {extra}" if warning else extra
    return ParentArtifact(source.id, selection.uri, mode, selection.reason, warning)


@dataclass
class _MappingContext:
    """What a mapping function fills from: the values so far, the parent's artifact, the job's
    results folder (its storage), the pretrained model given; the job's own latest checkpoint is
    listed at most once, only when a row needs it."""

    out: ResolvedMappings
    artifact: ParentArtifact | None
    results_uri: str
    storage: Any
    pretrained_model: str | None
    _latest: list[str | None] = field(default_factory=list)

    def latest_own(self) -> str | None:
        if not self._latest:
            self._latest.append(latest_checkpoint(self.results_uri))
        return self._latest[0]


def _literal(ctx: _MappingContext, key: str, literal: Any) -> None:
    if isinstance(literal, dict) and "destination_path" in literal:
        ctx.out.downloads.append({"spec_field": key, "link": str(literal.get("link", "")),
                                  "destination_path": str(literal["destination_path"])})
        ctx.out.values[key] = literal["destination_path"]
    else:
        ctx.out.values[key] = literal


def _parent_model(ctx: _MappingContext, key: str, fn: str) -> None:
    if ctx.artifact is None:
        return
    is_engine_field = key.endswith("trt_engine")
    if ctx.out.deploy != is_engine_field and key.split(".")[-1] in ("checkpoint", "trt_engine"):
        return  # evaluate/inference: checkpoint for PyTorch parents, trt_engine for engines
    ctx.out.values[key] = ctx.artifact.uri if fn == "parent_model" else posixpath.dirname(ctx.artifact.uri)


def _resume_model(ctx: _MappingContext, key: str, fn: str) -> None:
    resume_uri = ctx.latest_own()
    if resume_uri:
        ctx.out.values[key] = resume_uri
        ctx.out.notes.append(f"resuming from {resume_uri}")


def _ptm_if_no_resume_model(ctx: _MappingContext, key: str, fn: str) -> None:
    if ctx.pretrained_model and not ctx.latest_own():
        ctx.out.values[key] = ctx.pretrained_model


def _own_file(name: str) -> Callable[[_MappingContext, str, str], None]:
    def fill(ctx: _MappingContext, key: str, fn: str) -> None:
        ctx.out.values[key] = ctx.storage.join(ctx.results_uri, name)
    return fill


def _set(value: Callable[[_MappingContext], Any]) -> Callable[[_MappingContext, str, str], None]:
    def fill(ctx: _MappingContext, key: str, fn: str) -> None:
        ctx.out.values[key] = value(ctx)
    return fill


#: SKILL.md inference mapping function -> filler ``(context, spec field, function name)``.
MAPPING_FUNCTIONS: dict[str, Callable[[_MappingContext, str, str], None]] = {
    "output_dir": _set(lambda ctx: ctx.results_uri),
    "key": _set(lambda ctx: ENCRYPTION_KEY_REF),
    "parent_model": _parent_model,
    "parent_model_folder": _parent_model,
    "resume_model": _resume_model,
    "ptm_if_no_resume_model": _ptm_if_no_resume_model,
    "create_onnx_file": _own_file("model.onnx"),
    "create_engine_file": _own_file("model.engine"),
    "create_cal_cache": _own_file("cal.bin"),
}


def resolve_mappings(
    skill: Skill,
    action: str,
    *,
    results_uri: str,
    parent: JobRecord | None = None,
    store: JobStore | None = None,
    bank: SkillBank | None = None,
    user_keys: Mapping[str, Any] | None = None,
    pretrained_model: str | None = None,
    planned_parent_results: str | None = None,
    planned_parent_action: str | None = None,
) -> ResolvedMappings:
    """Compute the values of the action's inference mappings.

    Args:
        results_uri: the new job's results folder (``output_dir``).
        parent: the parent job record (``parent_job_id``), or None.
        user_keys: dotted keys the user set explicitly; those rows are left alone.
        pretrained_model: URI of a pretrained model for ``ptm_if_no_resume_model``.
        planned_parent_results / planned_parent_action: dry runs of a chain, where the parent
            has not run yet: paths are written as ``<results>/<best checkpoint>`` placeholders.
    """
    out = ResolvedMappings()
    rows = skill.inference_mappings(action)
    user_keys = user_keys or {}
    storage = storage_for(results_uri)
    artifact: ParentArtifact | None = None
    needs_parent = any(r.function in ("parent_model", "parent_model_folder") and r.spec_field not in user_keys
                       for r in rows)
    if needs_parent and parent is not None:
        artifact = select_parent_artifact(store, bank or get_bank(), parent, action)
    elif needs_parent and planned_parent_results:
        mode = checkpoints.mode_for(action, planned_parent_action or "train")
        artifact = ParentArtifact("<planned>", f"{planned_parent_results}/<{mode} artifact, chosen at submit>",
                                  mode, "dry run: the parent has not run yet")
    if artifact:
        out.parent = artifact
        out.deploy = artifact.mode == "engine"
        out.notes.append(f"parent {artifact.job_id}: {artifact.reason}")
        if artifact.warning:
            out.warnings.append(artifact.warning)
    ctx = _MappingContext(out, artifact, results_uri, storage, pretrained_model)
    for row in rows:
        if row.spec_field in user_keys:
            continue
        if row.function is None:
            _literal(ctx, row.spec_field, row.literal)
            continue
        fill = MAPPING_FUNCTIONS.get(row.function)
        if fill is None:
            raise BankFormatError(f"{skill.name} SKILL.md: unknown inference mapping function {row.function!r} for "
                                  f"{row.spec_field}; known: {', '.join(sorted(MAPPING_FUNCTIONS))}")
        fill(ctx, row.spec_field, row.function)
    return out


def latest_checkpoint(results_uri: str) -> str | None:
    """The latest TAO checkpoint under a results folder (recursive), or None when it has none.

    A folder that does not exist yet lists as empty; storage access errors propagate.
    """
    uris = [o.uri for o in storage_for(results_uri).list(results_uri, recursive=True)]
    if not any(checkpoints.parse_checkpoint_name(u) for u in uris):
        return None
    try:
        return checkpoints.select_checkpoint(uris, mode="latest", where=results_uri).uri
    except ParentModelError:
        return None
