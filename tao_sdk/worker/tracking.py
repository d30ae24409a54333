"""Experiment tracking of train jobs: one seam, three trackers (W&B, TensorBoard, MLflow).

The train engine calls :class:`Tracking` at the points where it writes ``status.json``: every
optimizer step (``train/loss_step`` and the learning rates), every epoch (the same KPI dict as
the epoch's status line, plus ``epoch`` and the learning rates) and once at the end (the final
checkpoint's KPIs). Networks need no change. Only rank 0 of a distributed job tracks.

Trackers (:data:`TRACKERS`, a registry: name -> factory) and when they run:

- ``wandb``: the spec's ``wandb`` section (``enable``, ``project``, ``entity``, ``group``,
  ``tags``, ``name``, ``run_id`` (+ ``resume="allow"``), ``reinit``, ``save_code``,
  ``sync_tensorboard``), when W&B can log: ``WANDB_API_KEY`` set (a secret: it travels in the
  environment, never in a spec, log or record) or ``WANDB_MODE=offline`` (no network; files
  under ``<results>/train/wandb/``, upload later with ``wandb sync``). Enabled without either:
  a start-line note says so and the job trains without W&B (TAO does the same).
- ``tensorboard``: event files in ``<results>/train/tensorboard/`` for every train job when the
  ``tracking`` extra is installed (``TAO_WORKER_TENSORBOARD=0`` turns it off).
- ``mlflow``: when ``MLFLOW_TRACKING_URI`` is set (a server, or ``sqlite:///file.db`` / a
  folder with no server). One run per job (a restarted job continues its run, found by the tag
  ``tao.job_id``); experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``tao-skills``). An AutoML
  trial's run is nested under its AutoML run (:data:`MLFLOW_PARENT_ENV`, set by the controller).

Every tracker sees the same scalars; the config they record is the redacted spec plus system
facts (device, torch, processes, host).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from tao_sdk.extras import install_command, require_extra
from tao_sdk.tracking import MLFLOW_PARENT_ENV, mlflow_client, mlflow_enabled, mlflow_run
from tao_sdk.worker import spec as S

__all__ = ["Tracker", "RunInfo", "Tracking", "TRACKERS", "open_tracking",
           "system_facts", "lr_scalars"]



class Tracker(Protocol):
    """One experiment tracker of a train job (see :data:`TRACKERS`)."""

    name: str

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars of optimizer step ``step`` (global, 1-based after the step)."""

    def log_epoch(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars of an epoch (its KPIs, ``epoch``, learning rates) at global ``step``."""

    def finish(self, final: Mapping[str, float], checkpoint: str | None, ok: bool) -> None:
        """Record the final KPIs and checkpoint and close the run (``ok``: the job succeeded)."""


@dataclass
class RunInfo:
    """What a tracker factory gets: the job, its spec (with secrets), where to write, facts."""

    spec: dict[str, Any]
    task_dir: Path
    job_id: str
    network: str
    action: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The redacted spec with the system facts under ``system`` (what trackers record)."""
        return {**S.redact(self.spec), "system": dict(self.facts)}


def system_facts(device, world_size: int, precision: str) -> dict[str, Any]:
    """Device, torch version, processes, CPU count, host and Python of this job."""
    import torch

    facts: dict[str, Any] = {"device": device.type, "torch": torch.__version__,
                             "world_size": world_size, "precision": precision,
                             "cpu_count": os.cpu_count() or 1, "host": platform.node(),
                             "python": platform.python_version()}
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
    return facts


def lr_scalars(optimizer) -> dict[str, float]:
    """``lr`` (first parameter group) and ``lr/group_<i>`` for the others."""
    groups = optimizer.param_groups
    out = {"lr": float(groups[0]["lr"])}
    for i, group in enumerate(groups[1:], start=1):
        out[f"lr/group_{i}"] = float(group["lr"])
    return out


def _floats(scalars: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in scalars.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ------------------------------------------------------------------------------------- wandb
class _WandbTracker:
    name = "wandb"

    def __init__(self, run, mirror_tensorboard: bool) -> None:
        self.run = run
        self.own_logging = not mirror_tensorboard  # sync_tensorboard: W&B mirrors the events

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.own_logging:
            self.run.log(dict(scalars), step=step)

    def log_epoch(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.own_logging:
            self.run.log(dict(scalars), step=step)

    def finish(self, final: Mapping[str, float], checkpoint: str | None, ok: bool) -> None:
        self.run.summary.update({**{f"final/{k}": v for k, v in final.items()},
                                 "checkpoint": checkpoint or ""})
        self.run.finish(exit_code=0 if ok else 1)


def _wandb(info: RunInfo) -> tuple[Tracker | None, str]:
    """W&B from the spec's ``wandb`` section (see the module doc for when it runs)."""
    section = S.get(info.spec, "wandb") or {}
    if not section or not bool(section.get("enable", True)):
        return None, ""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "disabled":
        return None, "wandb.enable=true but WANDB_MODE=disabled: not logged to W&B"
    if mode not in ("offline", "dryrun") and not os.environ.get("WANDB_API_KEY"):
        return None, ("wandb.enable=true but W&B is not logged in: set WANDB_API_KEY (a secret, "
                      "in the job's environment) or WANDB_MODE=offline, or set wandb.enable=false")
    wandb = require_extra("wandb", "tracking", "wandb.enable=true (or set wandb.enable=false)")
    run_id = str(section.get("run_id") or "") or None
    out = info.task_dir / "wandb"
    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=section.get("project") or None, entity=section.get("entity") or None,
        group=section.get("group") or None, tags=list(section.get("tags") or []) or None,
        name=section.get("name") or None, id=run_id, resume="allow" if run_id else None,
        reinit=bool(section.get("reinit", False)) or None,
        save_code=bool(section.get("save_code", False)),
        sync_tensorboard=bool(section.get("sync_tensorboard", False)),
        dir=str(info.task_dir), config=info.config, job_type=info.action,
        settings=wandb.Settings(silent=True, console="off"))
    where = f"offline in {out}" if mode in ("offline", "dryrun") else f"run {run.id}"
    return _WandbTracker(run, bool(section.get("sync_tensorboard", False))), f"W&B: {where}"


# ------------------------------------------------------------------------------- tensorboard
class _TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, writer) -> None:
        self.writer = writer

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def log_epoch(self, step: int, scalars: Mapping[str, float]) -> None:
        self.log_step(step, scalars)
        self.writer.flush()

    def finish(self, final: Mapping[str, float], checkpoint: str | None, ok: bool) -> None:
        if checkpoint:
            self.writer.add_text("checkpoint", checkpoint)
        self.writer.close()


def _tensorboard(info: RunInfo) -> tuple[Tracker | None, str]:
    """TensorBoard event files in ``<task dir>/tensorboard`` (see the module doc)."""
    if os.environ.get("TAO_WORKER_TENSORBOARD", "1").strip() == "0":
        return None, ""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None, ("no TensorBoard event files: the tensorboard package is missing "
                      f"({install_command('tracking')})")
    logdir = info.task_dir / "tensorboard"
    return _TensorBoardTracker(SummaryWriter(log_dir=str(logdir))), f"TensorBoard: {logdir}"


# ------------------------------------------------------------------------------------ mlflow
class _MlflowTracker:
    name = "mlflow"
    #: Seconds between uploads of the buffered per-step metrics.
    FLUSH_EVERY_S = 10.0

    def __init__(self, client, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.buffer: list = []
        self.flushed = time.monotonic()

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer += [Metric(_mlflow_key(k), v, now, step) for k, v in scalars.items()]
        if time.monotonic() - self.flushed > self.FLUSH_EVERY_S:
            self.flush()

    def log_epoch(self, step: int, scalars: Mapping[str, float]) -> None:
        self.log_step(step, scalars)
        self.flush()

    def flush(self) -> None:
        """Upload the buffered metrics (batches of 1000, MLflow's limit)."""
        while self.buffer:
            chunk, self.buffer = self.buffer[:1000], self.buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)
        self.flushed = time.monotonic()

    def finish(self, final: Mapping[str, float], checkpoint: str | None, ok: bool) -> None:
        self.flush()
        if checkpoint:
            self.client.set_tag(self.run_id, "tao.checkpoint", checkpoint)
        for key, value in final.items():
            self.client.log_metric(self.run_id, _mlflow_key(f"final/{key}"), value)
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def _mlflow_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _mlflow(info: RunInfo) -> tuple[Tracker | None, str]:
    """MLflow when ``MLFLOW_TRACKING_URI`` is set (see the module doc)."""
    if not mlflow_enabled():
        return None, ""
    client, experiment_id = mlflow_client()
    parent = os.environ.get(MLFLOW_PARENT_ENV, "")
    if parent:
        experiment_id = client.get_run(parent).info.experiment_id
    tags = {"tao.network": info.network, "tao.action": info.action,
            **({"mlflow.parentRunId": parent} if parent else {})}
    run_id, known = mlflow_run(client, experiment_id, info.job_id, info.job_id, tags)
    params = [p for p in _mlflow_params(info.config) if p.key not in known]  # values are final
    for i in range(0, len(params), 100):  # MLflow takes 100 params per batch
        client.log_batch(run_id, params=params[i:i + 100])
    nested = f", nested under {parent}" if parent else ""
    return _MlflowTracker(client, run_id), f"MLflow: run {run_id}{nested}"


def _mlflow_params(config: Mapping[str, Any]) -> list:
    """The flattened config as MLflow params (values cut at MLflow's 6000 characters)."""
    from mlflow.entities import Param

    from tao_sdk.spec import flatten

    return [Param(_mlflow_key(k)[:250], str(v)[:6000]) for k, v in sorted(flatten(config).items())]


#: Tracker name -> factory ``(RunInfo) -> (tracker or None, note for the start line)``.
TRACKERS: dict[str, Callable[[RunInfo], tuple[Tracker | None, str]]] = {
    "wandb": _wandb,
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
}


class Tracking:
    """The trackers of one train job; the engine's only handle on them."""

    def __init__(self, trackers: list[Tracker], notes: list[str]) -> None:
        self.trackers, self.notes = trackers, notes
        self.closed = False

    def step(self, step: int, loss: float, optimizer) -> None:
        """After optimizer step ``step``: its loss and the optimizer's learning rates."""
        if self.trackers:
            scalars = {"train/loss_step": loss, **lr_scalars(optimizer)}
            for tracker in self.trackers:
                tracker.log_step(step, scalars)

    def epoch(self, epoch: int, step: int, kpi: Mapping[str, Any], optimizer) -> None:
        """At the end of epoch ``epoch``: its status-line KPIs and the learning rates."""
        if not self.trackers:
            return
        scalars = {**_floats(kpi), "epoch": float(epoch), **lr_scalars(optimizer)}
        for tracker in self.trackers:
            tracker.log_epoch(step, scalars)

    def finish(self, final: Mapping[str, Any], checkpoint: str | None, ok: bool) -> None:
        """Close every run once (``ok``: the job succeeded)."""
        if self.closed:
            return
        self.closed = True
        for tracker in self.trackers:
            tracker.finish(_floats(final), checkpoint, ok)


def open_tracking(ctx, facts: Mapping[str, Any]) -> Tracking:
    """The trackers of ``ctx``'s train job (none on the ranks other than 0)."""
    if not getattr(ctx, "main", True):
        return Tracking([], [])
    info = RunInfo(spec=ctx.spec, task_dir=Path(ctx.task_dir),
                   job_id=os.environ.get("TAO_SKILLS_JOB_ID") or Path(ctx.task_dir).parent.name,
                   network=ctx.network, action=ctx.action, facts=dict(facts))
    trackers, notes = [], []
    for factory in TRACKERS.values():
        tracker, note = factory(info)
        if tracker is not None:
            trackers.append(tracker)
        if note:
            notes.append(note)
    return Tracking(trackers, notes)
