"""Run (or dry-run) a chain of jobs where each step's parent is an earlier step.

>>> chain = Chain("rtdetr", datasets={"train_datasets": [T], "eval_dataset": E}, dry_run=True)
>>> chain.step("train", "train", overrides={"dataset.num_classes": 3})
>>> chain.step("evaluate", "evaluate", parent="train", overrides={"dataset.num_classes": 3})

Dry runs resolve and validate every spec of the chain (parents that have not run are written as
``<results>/<best artifact, chosen at submit>`` placeholders) and submit nothing. Real runs create
each job, wait for it with a progress display, and stop at the first failure.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .errors import TaoSkillsError
from .jobs import Job, JobPlan, create_job, plan_job, wait_for_job
from .results import format_progress


class Chain:
    """A sequence of jobs of one skill; steps refer to earlier steps by name as their parent."""

    def __init__(self, skill: str, *, datasets: Mapping[str, Any], dataset_format: str | None = None,
                 automl_policy: str | None = None, platform: str = "local", dry_run: bool = False,
                 echo: Callable[[str], None] = print, **job_options: Any):
        self.skill = skill
        self.datasets = dict(datasets)
        self.dataset_format = dataset_format
        self.automl_policy = automl_policy
        self.platform = platform
        self.dry_run = dry_run
        self.echo = echo
        self.job_options = job_options
        self.done: dict[str, Job | JobPlan] = {}

    def step(self, name: str, action: str, *, parent: str | None = None,
             overrides: Mapping[str, Any] | None = None) -> Job | JobPlan:
        """Plan (dry run) or run one step; returns the plan or the finished job."""
        if parent is not None and parent not in self.done:
            raise TaoSkillsError(f"step '{name}' names parent '{parent}', which has not run; steps so far: "
                                 f"{', '.join(self.done) or 'none'}")
        kwargs = dict(datasets=self.datasets, spec_overrides=dict(overrides or {}),
                      dataset_format=self.dataset_format, automl_policy=self.automl_policy, **self.job_options)
        if self.dry_run:
            planned = self.done.get(parent) if parent else None
            plan = plan_job(self.skill, action, planned_parent=planned, platform=self.platform, **kwargs)
            plan.backend.require()
            self.echo(f"[dry-run] {name}: {action} spec valid -> {plan.route.target} on {plan.backend.kind}"
                      + (f" (parent: {plan.parent.uri})" if plan.parent else ""))
            self.done[name] = plan
            return plan
        parent_id = self.done[parent].id if parent else None
        job = create_job(self.skill, action, parent_job_id=parent_id, platform=self.platform, **kwargs)
        self.echo(f"{name}: submitted {job.id} ({job.skill} {job.action})")
        job = wait_for_job(job.id, on_progress=lambda j: self.echo(
            "  " + (format_progress(j.progress) if j.progress else j.status.value)))
        self.echo(f"{name}: {job.status.value} {job.kpis}")
        if job.status.value != "SUCCESS":
            raise TaoSkillsError(f"step '{name}' ({job.id}) ended {job.status.value}: {job.result.get('message')}")
        self.done[name] = job
        return job
