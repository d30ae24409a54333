"""What a planned job will spend, in one line: trials x epochs and GPUs.

>>> plan = plan_job("rtdetr", "train", datasets=..., spec_overrides={"dataset.num_classes": 3})
>>> job_budget(plan).summary
'AutoML: 20 trials x up to 20 epochs (bayesian) = up to 400 epochs on 1 GPU each, 1 at a time; automl_policy=off (--automl-policy off) to train once'

The CLI prints the summary before it submits an AutoML or multi-GPU / multi-node job
(:attr:`JobBudget.announce`); ``--json`` carries the whole :class:`JobBudget`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["JobBudget", "job_budget", "TRAINING_ACTIONS"]

#: Actions that train for ``train.num_epochs`` epochs.
TRAINING_ACTIONS = ("train", "distill")


class JobBudget(BaseModel):
    """The resources a planned job asks for (an upper bound for AutoML).

    Attributes:
        kind: ``automl`` (a search of several trials), ``distributed`` (one run on more than one
            GPU or node) or ``single`` (one run on one device).
        action: the action that runs (the routed train action for AutoML).
        trials: runs of the action (AutoML: ``max_recommendations``; else 1).
        epochs_per_trial: train epochs of each run (AutoML: the most a trial trains);
            ``None`` for actions that do not train.
        total_epochs: the most train epochs of all runs together (``None`` when not training).
        gpus_per_node / nodes: ``train.num_gpus`` / ``train.num_nodes`` of each run.
        concurrent: runs at the same time (AutoML ``max_concurrent``).
        total_gpus: the most GPUs in use at once (per run x concurrent runs).
        algorithm: the AutoML algorithm, else ``None``.
        announce: whether the CLI prints :attr:`summary` before submitting (AutoML or more
            than one GPU / node).
        summary: one line saying all of it.
    """

    kind: Literal["automl", "distributed", "single"]
    action: str
    trials: int = Field(1, ge=1)
    epochs_per_trial: int | None = None
    total_epochs: int | None = None
    gpus_per_node: int = Field(1, ge=0)
    nodes: int = Field(1, ge=1)
    concurrent: int = Field(1, ge=1)
    total_gpus: int = Field(1, ge=0)
    algorithm: str | None = None
    announce: bool = False
    summary: str


def _gpus(gpus: int, nodes: int) -> str:
    per_node = f"{gpus} GPU{'s' if gpus != 1 else ''}"
    return f"{nodes} nodes x {per_node} = {gpus * nodes} GPUs" if nodes > 1 else per_node


def job_budget(plan: Any) -> JobBudget:
    """The :class:`JobBudget` of a :class:`tao_sdk.jobs.JobPlan` from ``plan_job`` (for an AutoML
    route, ``plan_job`` fills ``plan.automl`` with the algorithm and budget the job will run)."""
    train = (plan.spec or {}).get("train") or {}
    gpus, nodes = int(train.get("num_gpus") or 1), int(train.get("num_nodes") or 1)
    epochs = (int(train.get("num_epochs") or 0) or None) if plan.action in TRAINING_ACTIONS else None
    if plan.route.automl:
        b = {"algorithm": plan.automl["algorithm"], **plan.automl["budget"]}
        trials, per_trial, at_once = int(b["max_recommendations"]), int(b["max_epochs_per_trial"]), int(b["max_concurrent"])
        summary = (f"AutoML: {trials} trials x up to {per_trial} epochs ({b['algorithm']}) = up to "
                   f"{int(b['max_total_epochs'])} epochs on {_gpus(gpus, nodes)} each, {at_once} at a time; "
                   "automl_policy=off (--automl-policy off) to train once")
        return JobBudget(kind="automl", action=plan.action, trials=trials, epochs_per_trial=per_trial,
                         total_epochs=int(b["max_total_epochs"]), gpus_per_node=gpus, nodes=nodes,
                         concurrent=at_once, total_gpus=gpus * nodes * at_once, algorithm=b["algorithm"],
                         announce=True, summary=summary)
    work = f"{epochs} epochs" if epochs else "one run"
    distributed = gpus * nodes > 1
    summary = (f"{plan.action}: {work} on {_gpus(gpus, nodes)}"
               + (" (train.num_gpus x train.num_nodes, data parallel)" if distributed else ""))
    return JobBudget(kind="distributed" if distributed else "single", action=plan.action,
                     epochs_per_trial=epochs, total_epochs=epochs, gpus_per_node=gpus, nodes=nodes,
                     total_gpus=gpus * nodes, announce=distributed, summary=summary)
