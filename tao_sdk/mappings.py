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
from typing import Any, Mapping

from . import checkpoints, results
from .bank import Skill, SkillBank, get_bank
from .errors import ParentModelError, StorageError
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
    """An AutoML parent stands for its best child train job."""
    if parent.kind == "automl":
        best = (parent.result or {}).get("best_child_id")
        if not best:
            raise ParentModelError(
                f"AutoML job {parent.id} has no best child yet (status {parent.status.value}); wait for it "
                f"(`tao-skills wait {parent.id}`) or resume it (`tao-skills automl resume {parent.id}`)"
            )
        return store.get(best)
    return parent


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
    own_latest: list[str | None] = []  # listed at most once, only when a row needs it

    def latest_own() -> str | None:
        if not own_latest:
            own_latest.append(latest_checkpoint(results_uri))
        return own_latest[0]

    for row in rows:
        key = row.spec_field
        if key in user_keys:
            continue
        if row.function is None:
            literal = row.literal
            if isinstance(literal, dict) and "destination_path" in literal:
                out.downloads.append({"spec_field": key, "link": str(literal.get("link", "")),
                                      "destination_path": str(literal["destination_path"])})
                out.values[key] = literal["destination_path"]
            else:
                out.values[key] = literal
            continue
        fn = row.function
        if fn == "output_dir":
            out.values[key] = results_uri
        elif fn == "key":
            out.values[key] = ENCRYPTION_KEY_REF
        elif fn in ("parent_model", "parent_model_folder"):
            if artifact is None:
                continue
            is_engine_field = key.endswith("trt_engine")
            if out.deploy != is_engine_field and key.split(".")[-1] in ("checkpoint", "trt_engine"):
                continue  # evaluate/inference: checkpoint for PyTorch parents, trt_engine for engines
            out.values[key] = artifact.uri if fn == "parent_model" else posixpath.dirname(artifact.uri)
        elif fn == "resume_model":
            resume_uri = latest_own()
            if resume_uri:
                out.values[key] = resume_uri
                out.notes.append(f"resuming from {resume_uri}")
        elif fn == "ptm_if_no_resume_model":
            if pretrained_model and not latest_own():
                out.values[key] = pretrained_model
        elif fn == "create_onnx_file":
            out.values[key] = storage.join(results_uri, "model.onnx")
        elif fn == "create_engine_file":
            out.values[key] = storage.join(results_uri, "model.engine")
        elif fn == "create_cal_cache":
            out.values[key] = storage.join(results_uri, "cal.bin")
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
