"""What a planned job will spend: trials x epochs and GPUs, in one model and one line.

:func:`job_budget` reads a :class:`tao_sdk.jobs.JobPlan` (its spec and, for an AutoML route,
its ``automl`` budget); the CLI and the MCP server say it before an AutoML or multi-GPU job is
submitted (``JobBudget.notable``).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JobBudget", "job_budget"]


class _Plan(Protocol):
    """The parts of a :class:`tao_sdk.jobs.JobPlan` a budget is computed from."""

    action: str
    spec: dict[str, Any]
    automl: dict[str, Any] | None


class JobBudget(BaseModel):
    """What a job will run: AutoML trials x epochs per trial, GPUs per node x nodes.

    ``epochs_per_trial`` / ``max_total_epochs`` are ``None`` for actions that do not train.
    ``notable``: an AutoML run or a multi-GPU / multi-node job, which the CLI and MCP announce
    before submitting. ``line``: the same in one sentence.
    """

    model_config = ConfigDict(extra="forbid")

    automl: bool
    algorithm: str | None = None
    trials: int = Field(description="train runs: AutoML max_recommendations, else 1")
    max_concurrent: int = 1
    epochs_per_trial: int | None
    max_total_epochs: int | None
    gpus_per_node: int
    nodes: int
    total_gpus: int = Field(description="GPUs one run occupies (gpus_per_node x nodes)")
    notable: bool
    line: str


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "", "???") else default
    except (TypeError, ValueError):
        return default


def job_budget(plan: _Plan) -> JobBudget:
    """The budget of ``plan``: for an AutoML route ``plan.automl['budget']`` (trials, epochs per
    trial, concurrency), else one run of ``train.num_epochs`` (train-like actions); GPUs from
    ``train.num_gpus`` x ``train.num_nodes``. Example line: ``AutoML bayesian: 20 trials x 20
    epochs (at most 400 train epochs, 1 at a time), 1 GPU per trial``."""
    train: Mapping[str, Any] = plan.spec.get("train") or {}
    gpus, nodes = max(1, _int(train.get("num_gpus"), 1)), max(1, _int(train.get("num_nodes"), 1))
    total = gpus * nodes
    where = f"{gpus} GPU{'s' if gpus > 1 else ''}" + (f" x {nodes} nodes" if nodes > 1 else "")
    automl = plan.automl
    if automl is not None:
        b = automl["budget"]
        trials, epochs, concurrent = int(b["max_recommendations"]), int(b["max_epochs_per_trial"]), int(b["max_concurrent"])
        line = (f"AutoML {automl['algorithm']}: {trials} trials x {epochs} epochs (at most {trials * epochs} train "
                f"epochs, {concurrent} at a time), {where} per trial")
        return JobBudget(automl=True, algorithm=str(automl["algorithm"]), trials=trials, max_concurrent=concurrent,
                         epochs_per_trial=epochs, max_total_epochs=trials * epochs, gpus_per_node=gpus, nodes=nodes,
                         total_gpus=total, notable=True, line=line)
    epochs_or_none = _int(train.get("num_epochs"), 0) or None if plan.action in ("train", "distill") else None
    runs = f"{epochs_or_none} epochs" if epochs_or_none else plan.action
    return JobBudget(automl=False, trials=1, epochs_per_trial=epochs_or_none, max_total_epochs=epochs_or_none,
                     gpus_per_node=gpus, nodes=nodes, total_gpus=total, notable=total > 1,
                     line=f"one {plan.action} run ({runs}) on {where}")
