"""The AutoML controller: runs trials as child train jobs, durably, and hands the best one on.

An AutoML job is a job record of kind ``automl`` (skill ``tao-run-automl``). Its controller runs
as a job of the platform the AutoML job was created with (``python -m tao_sdk.automl.controller
JOB``: a detached local process, or a Slurm job) and so do its trials. It loops:

1. observe finished child trials (their BEST epoch by the skill's monitoring metric and
   direction, read from the child's status.json; failed children are observed as failures);
2. ask the algorithm for suggestions while fewer than ``max_concurrent`` trials run; each becomes
   a normal child train job (``parent_id`` = the AutoML job, kind ``trial``);
3. when the algorithm is finished and nothing runs, record the best child and end.

Durability: the algorithm state and the trial table are written to the job store after every
suggest/observe, and a child's job id is chosen *before* it is submitted. Killing the controller
at any point and running :func:`resume_automl_job` (``tao-skills automl resume JOB``) continues
with no trial lost or repeated: finished trials are not re-run, running ones are re-attached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from .. import results
from ..bank import Skill, SkillBank, get_bank
from ..budget import job_budget
from ..errors import JobNotFoundError, ParentModelError, TaoSkillsError
from ..jobkinds import JobKind
from ..jobstore import JobRecord, JobStatus, new_job_id
from ..platforms import NODE_PYTHON, JobTask, get_platform
from ..platforms._supervise import process_identity
from ..schemapath import find_property
from ..workspace import Workspace
from .algorithms import Algorithm, Suggestion, algorithm_names, get_algorithm
from ..specrules import rule_caps
from .space import SearchSpace

#: Defaults like NVIDIA TAO AutoML (20 recommendations, 27 max epochs), plus concurrency.
DEFAULT_SETTINGS: dict[str, Any] = {
    "algorithm": "bayesian",
    "max_recommendations": 20,
    "max_epochs": None,            # None: the base spec's train.num_epochs
    "max_concurrent": 1,
    "reduction_factor": 3,
    "hyperparameters": None,       # dotted paths to search instead of the schema's default set
    "exclude": None,               # dotted paths never to search
    "overrides": None,             # per-path range/choice overrides
    "seed": 0,
    "poll_interval": 2.0,
    "early_stop": False,           # stop trials worse than the median of finished trials at the same epoch
    "early_stop_min_fraction": 0.34,  # ... once they have run this fraction of their epoch budget
}
_ALGO_OPTION_KEYS = {"max_recommendations", "max_epochs", "reduction_factor", "seed"}


def normalize_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge user AutoML settings with the defaults; unknown keys are errors with suggestions."""
    import difflib

    out = dict(DEFAULT_SETTINGS)
    for key, value in (settings or {}).items():
        if key not in DEFAULT_SETTINGS:
            close = difflib.get_close_matches(key, DEFAULT_SETTINGS, 1)
            raise TaoSkillsError(f"unknown AutoML setting '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
                                 + f" Settings: {', '.join(DEFAULT_SETTINGS)}")
        out[key] = value
    if out["algorithm"] not in algorithm_names():
        raise TaoSkillsError(f"unknown AutoML algorithm '{out['algorithm']}'; choose one of {', '.join(algorithm_names())}")
    if int(out["max_concurrent"]) < 1:
        raise TaoSkillsError("max_concurrent must be >= 1")
    return out


def build_space(skill: Skill, settings: Mapping[str, Any], spec_overrides: Mapping[str, Any] | None,
                base_spec: Mapping[str, Any], preset: str | None = None) -> SearchSpace:
    """The search space from the skill's packaged train schema and the user's choices.

    Fields the user fixed in ``spec_overrides`` are not searched (unless named explicitly in
    ``hyperparameters``): a fixed value is a decision, not a starting point. The skill's spec
    rules cap their fields (e.g. RT-DETR ``model.num_queries`` at the encoder positions of the
    base spec's image sizes), so no trial is sampled that the plan would reject. The model size a
    ``preset`` chooses (its ``model.*`` train settings) is fixed the same way; its schedule is
    searched.
    """
    from ..presets import load_preset

    include = settings.get("hyperparameters")
    exclude = list(settings.get("exclude") or [])
    chosen = load_preset(skill, preset)
    decided = [*(spec_overrides or {}), *(chosen.model_keys("train") if chosen else [])]
    fixed = [k for k in decided if not include or k not in include]
    schema = skill.schema("train")
    exclude += [k for k in fixed if _searchable_default(schema, k)]
    overrides = {k: dict(v) for k, v in (settings.get("overrides") or {}).items()}
    space = SearchSpace.from_schema(schema, include=include, exclude=exclude or None,
                                    overrides=overrides or None, base_spec=base_spec)
    capped = False
    for path, (cap, _why) in rule_caps(skill, "train", base_spec).items():
        row = next((r for r in space.describe() if r["name"] == path), None)
        if row is not None and row["high"] is not None and row["high"] > cap:
            overrides.setdefault(path, {})["maximum"] = cap
            capped = True
    if not capped:
        return space
    return SearchSpace.from_schema(schema, include=include, exclude=exclude or None, overrides=overrides,
                                   base_spec=base_spec)


def _searchable_default(schema: Mapping[str, Any], path: str) -> bool:
    return path in (schema.get("automl_default_parameters") or [])


def make_algorithm(skill: Skill, space: SearchSpace, settings: Mapping[str, Any], base_spec: Mapping[str, Any]) -> Algorithm:
    """Instantiate the configured algorithm with the skill's metric direction."""
    _metric, direction = skill.metric
    options = {k: settings[k] for k in _ALGO_OPTION_KEYS if settings.get(k) is not None}
    if "max_epochs" not in options:
        options["max_epochs"] = int(((base_spec.get("train") or {}).get("num_epochs")) or 27)
    from .algorithms import algorithm_options

    accepted = algorithm_options(settings["algorithm"])
    options = {k: v for k, v in options.items() if k in accepted}
    return get_algorithm(settings["algorithm"], space, direction, **options)


def automl_budget(cfg: Mapping[str, Any], base_spec: Mapping[str, Any]) -> dict[str, int]:
    """The most an AutoML job of settings ``cfg`` (:func:`normalize_settings`) on ``base_spec``
    spends: trials, epochs per trial (``max_epochs``, else the spec's ``train.num_epochs``),
    trials at a time and train epochs in all."""
    epochs = int(cfg.get("max_epochs") or ((base_spec.get("train") or {}).get("num_epochs")) or 27)
    trials = int(cfg["max_recommendations"])
    return {"max_recommendations": trials, "max_epochs_per_trial": epochs,
            "max_concurrent": int(cfg["max_concurrent"]), "max_total_epochs": trials * epochs}


def automl_plan(cfg: Mapping[str, Any], space: SearchSpace, base_spec: Mapping[str, Any]) -> dict[str, Any]:
    """What an AutoML job would run: algorithm, budget (:func:`automl_budget`) and the search
    space rows (name, kind, scale, range or choices, default, constraints)."""
    return {"algorithm": cfg["algorithm"], "budget": automl_budget(cfg, base_spec),
            "search_space": space.describe(), "skipped": [list(x) for x in getattr(space, "skipped", [])]}


# =========================================================================== creation (SDK side)
def plan_automl(plan: Any, model_skill: Skill, *, spec_overrides: Mapping[str, Any] | None,
                settings: Mapping[str, Any] | None) -> None:
    """Fill ``plan.automl`` (algorithm, budget, search space: each dimension with its range and
    scale) and a note, for a train action routed to ``tao-run-automl``. Everything is checked
    here, before anything starts: settings, the search space (unknown or disabled names -> error
    with suggestions) and that the algorithm accepts them."""
    cfg = normalize_settings(settings)
    space = build_space(model_skill, cfg, spec_overrides, plan.spec, plan.preset)
    make_algorithm(model_skill, space, cfg, plan.spec)
    plan.notes.append(f"AutoML {cfg['algorithm']} over {len(space)} hyperparameters: {', '.join(space.names)}")
    plan.automl = automl_plan(cfg, space, plan.spec)


def create_automl_job(plan: Any, model_skill: Skill, *, datasets: Mapping[str, Any] | None,
                      spec_overrides: Mapping[str, Any] | None, dataset_format: str | None, platform: str,
                      settings: Mapping[str, Any] | None, encryption_key: str | None,
                      workspace: Workspace, bank: SkillBank, base_spec: Mapping[str, Any] | None = None,
                      preset: str | None = None) -> Any:
    """Create the AutoML job of a plan routed to ``tao-run-automl`` (its ``plan.automl`` filled by
    :func:`plan_automl`) and start its controller.

    ``base_spec``: the user's spec file layer (nested, secrets already moved out); every trial is
    planned on it, and on ``preset`` (the skill preset, e.g. ``"tiny"``).
    """
    from ..jobs import Job

    cfg = normalize_settings(settings)
    metric, direction = model_skill.metric
    # the controller is SDK code: a container platform runs it elsewhere, its trials on `platform`
    record = JobRecord(
        id=plan.job_id, skill="tao-run-automl", action="train", kind="automl",
        platform=get_platform(platform).controller_platform or platform,
        spec=plan.spec, results_uri=plan.results_uri,
        result={"model_skill": model_skill.name, "settings": cfg, "datasets": dict(datasets or {}),
                "spec_overrides": dict(spec_overrides or {}), "base_spec": dict(base_spec or {}),
                "dataset_format": dataset_format, "preset": preset,
                "trial_platform": platform, "metric": metric, "direction": direction,
                "search_space": [row["name"] for row in plan.automl["search_space"]], "route": plan.route.reason,
                "algorithm_state": None, "trials": {}, "best_child_id": None,
                "budget": job_budget(plan).model_dump(), "submitter": process_identity()},
    )
    workspace.store.create(record)
    workspace.write_job_card(record)  # before it starts: `tao-skills jobs --recover` rebuilds it from there
    record = _launch_controller(workspace, record, encryption_key)
    return Job(record, workspace)


def _launch_controller(workspace: Workspace, record: JobRecord, encryption_key: str | None) -> JobRecord:
    from ..mappings import DEFAULT_ENCRYPTION_KEY, ENCRYPTION_KEY_ENV

    job_dir = workspace.job_dir(record.id)
    job_dir.mkdir(parents=True, exist_ok=True)
    env = {ENCRYPTION_KEY_ENV: encryption_key or os.environ.get(ENCRYPTION_KEY_ENV) or DEFAULT_ENCRYPTION_KEY,
           "TAO_SKILLS_WORKSPACE": str(workspace.root), "TAO_SKILLS_STORAGE": workspace.storage_root or "",
           # small GP fits: one BLAS thread is faster and keeps resumed runs bit-identical
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    command = [NODE_PYTHON, "-m", "tao_sdk.automl.controller", record.id, "--workspace", str(workspace.root),
               "--storage-root", workspace.storage_root or ""]
    task = JobTask(job_id=record.id, command=command, env=env, workdir=str(job_dir),
                   log_path=str(job_dir / "controller.log"))
    platform = get_platform(record.platform)
    try:
        handle = platform.submit(task)
    except Exception as exc:  # noqa: BLE001 - adopt a controller that started anyway, else record why
        from ..jobs import settle_failed_submit

        settled = settle_failed_submit(workspace, record, platform, exc)
        if settled.status is not JobStatus.RUNNING:
            raise
        handle = settled.platform_handle
        record = settled
    result = {**record.result, "interrupted": False}
    return workspace.store.set_status(record.id, JobStatus.RUNNING, platform_handle=handle, result=result)


def resume_automl_job(job_id: str, *, workspace: Workspace | None = None, encryption_key: str | None = None) -> Any:
    """Restart the controller of an interrupted AutoML job; finished trials are not re-run and
    running ones are re-attached. Errors when the job has ended or its controller still runs."""
    from ..jobs import Job
    from ..workspace import default_workspace

    workspace = workspace or default_workspace()
    record = workspace.store.get(job_id)
    if record.kind != "automl":
        raise TaoSkillsError(f"{job_id} is a {record.kind} job, not an AutoML job; nothing to resume")
    if record.status.is_terminal:
        raise TaoSkillsError(f"AutoML job {job_id} already ended ({record.status.value}); start a new one to search more")
    if record.platform_handle and get_platform(record.platform).poll(record.platform_handle).is_running:
        raise TaoSkillsError(f"the controller of {job_id} is still running; nothing to resume")
    return Job(_launch_controller(workspace, record, encryption_key), workspace)


# =========================================================================== tracking (SDK side)
def refresh_automl_record(workspace: Workspace, record: JobRecord) -> JobRecord:
    """Mark an AutoML job interrupted when its controller is gone before it finished."""
    state = get_platform(record.platform).poll(record.platform_handle)
    if state.is_running or state.state == "unknown":
        return record
    fresh = workspace.store.get(record.id)
    if fresh.status.is_terminal:
        return fresh
    if not fresh.result.get("interrupted"):
        fresh = workspace.store.update(record.id, result={**fresh.result, "interrupted": True,
                                                          "message": f"the controller stopped (exit {state.exit_code}) "
                                                                     f"before finishing; resume it with "
                                                                     f"`tao-skills automl resume {record.id}`"})
    return fresh


def cancel_automl_record(workspace: Workspace, record: JobRecord) -> None:
    """Stop the controller first (no new trials), then every running child trial."""
    from ..jobs import cancel_job

    if record.platform_handle:
        get_platform(record.platform).cancel(record.platform_handle)
    for child in workspace.store.children(record.id):
        if not child.status.is_terminal:
            cancel_job(child.id, workspace=workspace)


class AutomlKind(JobKind):
    """Job kind ``automl``: a controller job that runs trials as child train jobs."""

    has_task_status = False  # progress is the trial table, not a status.json
    resumes_from_checkpoint = False
    resume_hint = " (AutoML: `tao-skills automl resume`)"

    def model_source(self, store: Any, record: JobRecord) -> JobRecord:
        """The best trial (a child train job); ParentModelError while there is none yet."""
        best = (record.result or {}).get("best_child_id")
        if not best:
            raise ParentModelError(
                f"AutoML job {record.id} has no best child yet (status {record.status.value}); wait for it "
                f"(`tao-skills wait {record.id}`) or resume it (`tao-skills automl resume {record.id}`)"
            )
        return store.get(best)

    def plan(self, plan: Any, skill: Any, **options: Any) -> None:
        """:func:`plan_automl`."""
        plan_automl(plan, skill, **options)

    def create(self, plan: Any, skill: Any, **options: Any) -> Any:
        """:func:`create_automl_job`."""
        return create_automl_job(plan, skill, **options)

    def summary(self, job: Any, progress: Any) -> str:
        """The trial summary line (:func:`tao_sdk.automl.report.progress_line`)."""
        from .report import progress_line

        return progress_line(job.record)

    def fraction_done(self, record: JobRecord, progress: Any) -> float | None:
        """Trials finished (ok or failed) of the trials planned (1.0 once the job ended)."""
        if record.status.is_terminal:
            return 1.0
        planned = int((record.result.get("settings") or {}).get("max_recommendations") or 0)
        done = sum(t.get("status") in ("ok", "failed") for t in (record.result.get("trials") or {}).values())
        return min(1.0, done / planned) if planned else None

    def refresh(self, workspace: Workspace, record: JobRecord) -> JobRecord:
        """:func:`refresh_automl_record`."""
        return refresh_automl_record(workspace, record)

    def cancel(self, workspace: Workspace, record: JobRecord) -> None:
        """:func:`cancel_automl_record`."""
        cancel_automl_record(workspace, record)
        return None

    def progress_marker(self, record: JobRecord) -> Any:
        """The trial table (a finished or new trial is progress)."""
        return json.dumps(record.result.get("trials"), sort_keys=True, default=str)

    def stalled(self, record: JobRecord) -> str | None:
        """The controller stopped before finishing: waiting is pointless until it is resumed."""
        if record.result.get("interrupted"):
            return f"AutoML job {record.id}: {record.result.get('message')}"
        return None


AUTOML_KIND = AutomlKind()


# =========================================================================== the controller loop
class Controller:
    """Runs one AutoML job to completion (see module docstring)."""

    def __init__(self, job_id: str, workspace: Workspace, bank: SkillBank | None = None):
        self.job_id = job_id
        self.ws = workspace
        self.store = workspace.store
        self.bank = bank or get_bank()
        record = self.store.get(job_id)
        self.res = dict(record.result)
        self.base_spec = record.spec
        self.cfg = normalize_settings(self.res["settings"])
        self.skill = self.bank.get(self.res["model_skill"])
        self.metric, self.direction = self.skill.metric
        self.space = build_space(self.skill, self.cfg, self.res.get("spec_overrides"), self.base_spec,
                                 self.res.get("preset"))
        state = self.res.get("algorithm_state")
        self.algo = Algorithm.from_state(self.space, state) if state else \
            make_algorithm(self.skill, self.space, self.cfg, self.base_spec)
        self.trials: dict[str, dict[str, Any]] = dict(self.res.get("trials") or {})
        self.trials_by_child: dict[str, dict[str, Any]] = {}
        self.log(f"controller up: {self.cfg['algorithm']} over {len(self.space)} hyperparameters "
                 f"({', '.join(self.space.names)}); metric {self.metric} ({self.direction}); "
                 f"{len(self.trials)} trial(s) already recorded")

    @staticmethod
    def log(message: str) -> None:
        print(f"[automl {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def save(self, **extra: Any) -> None:
        """Persist algorithm state + trial table atomically (one record update)."""
        self.res.update(algorithm_state=self.algo.state(), trials=self.trials, **extra)
        self.store.update(self.job_id, result=self.res)

    # ---- trials
    def _child_overrides(self, entry: dict[str, Any]) -> dict[str, Any]:
        s = Suggestion.from_dict(entry)
        schema = self.skill.schema("train")
        overrides = dict(self.res.get("spec_overrides") or {})
        overrides.update(s.params)
        overrides["train.num_epochs"] = int(s.budget_epochs)
        for key, value in (("train.checkpoint_interval", s.checkpoint_interval),
                           ("train.validation_interval", s.validation_interval)):
            if find_property(schema, key) is not None:
                overrides[key] = int(value)
        if s.resume_from_trial is not None:
            self._attach_resume(entry)
            if entry["resume_checkpoint"]:
                overrides[entry["resume_key"]] = entry["resume_checkpoint"]
            else:
                self.log(f"trial {s.trial_id} trains from scratch: {entry['resume_note']}")
        return overrides

    def _attach_resume(self, entry: dict[str, Any]) -> None:
        """Record in ``entry`` the checkpoint a continuing trial starts from, once: the entry is
        saved with it before the child exists, so a controller killed mid-submission resumes with
        the same checkpoint and counts only the epochs the child really trains."""
        if "resume_key" in entry or entry.get("resume_from_trial") is None:
            return
        key, ckpt, note = self._resume_checkpoint(Suggestion.from_dict(entry))
        entry.update(resume_key=key, resume_checkpoint=ckpt, resume_note=note)

    def _resume_checkpoint(self, s: Suggestion) -> tuple[str | None, str | None, str]:
        """``(spec key, checkpoint, note)``: where trial ``s`` continues from.

        The key is the skill's train ``resume_model`` mapping (SKILL.md); the checkpoint is the
        latest one of the trial it continues (``resume_from_trial``: the same configuration at
        the lower rung, or the PBT member it copies), trained for exactly ``resume_epochs``.
        """
        from ..mappings import latest_checkpoint

        key = next((r.spec_field for r in self.skill.inference_mappings("train") if r.function == "resume_model"),
                   None)
        source = self.trials.get(str(s.resume_from_trial)) or {}
        if key is None:
            return None, None, f"{self.skill.name} has no train resume_model mapping in its SKILL.md"
        if not source.get("child_id"):
            return key, None, f"trial {s.resume_from_trial} it continues has no child job"
        ckpt = latest_checkpoint(self.store.get(source["child_id"]).results_uri)
        if ckpt is None:
            return key, None, f"trial {s.resume_from_trial} ({source['child_id']}) left no checkpoint"
        return key, ckpt, f"continues trial {s.resume_from_trial} after epoch {s.resume_epochs}"

    def submit(self, entry: dict[str, Any]) -> None:
        """Create the child train job with the pre-chosen id (idempotent on resume)."""
        from ..jobs import plan_job, submit_plan
        s = Suggestion.from_dict(entry)
        platform = self.res.get("trial_platform") or "local"
        try:
            plan = plan_job(self.skill, "train", datasets=self.res.get("datasets"),
                            spec_overrides=self._child_overrides(entry), base_spec=self.res.get("base_spec") or None,
                            dataset_format=self.res.get("dataset_format"), preset=self.res.get("preset"),
                            platform=platform,
                            # the datasets were validated when the AutoML job was planned
                            automl_policy="off", validate_datasets=False, workspace=self.ws, bank=self.bank,
                            job_id=entry["child_id"])
            plan.command = plan.backend.command(str(self.ws.job_dir(plan.job_id) / "spec.yaml"))
            submit_plan(plan, platform=platform, workspace=self.ws,
                        parent_id=self.job_id, kind="trial", extra_env=self._tracking_env())
        except TaoSkillsError as exc:
            self.log(f"trial {entry['trial_id']} could not start: {exc}")
            self.algo.observe(int(entry["trial_id"]), None, epochs=0, error=f"could not start: {exc}")
            entry.update(status="failed", error=f"could not start: {exc}")
            self.save()
            return
        entry["status"] = "running"
        self.save()
        self.log(f"trial {entry['trial_id']} -> {entry['child_id']} ({s.budget_epochs} epochs) {s.params}")

    def _tracking_env(self) -> dict[str, str]:
        """The trials' environment for MLflow: their runs nest under this job's run (made once,
        kept in the record so that a resumed controller reuses it). Empty without
        ``MLFLOW_TRACKING_URI``."""
        from ..tracking import MLFLOW_PARENT_ENV, mlflow_client, mlflow_enabled, mlflow_run

        if not mlflow_enabled():
            return {}
        if not self.res.get("mlflow_run_id"):
            client, experiment_id = mlflow_client()
            run_id, _ = mlflow_run(client, experiment_id, self.job_id, self.job_id,
                                   {"tao.kind": "automl", "tao.skill": self.skill.name,
                                    "tao.algorithm": str(self.cfg["algorithm"])})
            self.save(mlflow_run_id=run_id)
        return {MLFLOW_PARENT_ENV: self.res["mlflow_run_id"]}

    def _close_tracking(self, best_value: float | None) -> None:
        """End this job's MLflow run (when it has one) with the best trial's value."""
        from ..tracking import mlflow_client

        if not self.res.get("mlflow_run_id"):
            return
        client, _ = mlflow_client()
        if best_value is not None:
            client.log_metric(self.res["mlflow_run_id"], f"best/{self.metric}", float(best_value))
        client.set_terminated(self.res["mlflow_run_id"], "FINISHED" if best_value is not None else "FAILED")

    @staticmethod
    def _status(child: JobRecord) -> "results.TaskStatus | None":
        from ..jobs import task_status

        return task_status(child)

    def outcome(self, child: JobRecord) -> tuple[float | None, int | None, int, str | None]:
        """(best value, best epoch, epochs completed, error) of a finished child."""
        uri = results.status_file_for(child.results_uri, "train")
        status = self._status(child)
        epochs = (status.epoch + 1) if status and status.epoch is not None else 0
        if status is not None:
            curve = results.metric_by_epoch(status.history, self.metric)
            self.trials_by_child.setdefault(child.id, {})["curve"] = {str(k): v for k, v in curve.items()}
        if (child.result or {}).get("early_stopped"):
            best = results.best_epoch(status.history, self.metric, self.direction) if status else None
            if best is not None:
                return float(best[1]), int(best[0]), epochs, None
        if child.status != JobStatus.SUCCESS:
            return None, None, epochs, (child.result or {}).get("message") or f"trial job {child.status.value}"
        best = results.best_epoch(status.history, self.metric, self.direction) if status else None
        if best is None:
            return None, None, epochs, f"no {self.metric} in {uri}"
        return float(best[1]), int(best[0]), epochs, None

    def collect(self) -> int:
        """Observe every finished running trial; returns how many are still running."""
        from ..jobs import get_job

        running = 0
        for entry in self.trials.values():
            if entry["status"] == "submitting":
                self._resubmit_if_lost(entry)
            if entry["status"] != "running":
                continue
            child = get_job(entry["child_id"], workspace=self.ws).record
            if not child.status.is_terminal and self.cfg.get("early_stop") and self._hopeless(entry, child):
                child = self._stop(entry, child)
            if not child.status.is_terminal:
                running += 1
                continue
            value, epoch, epochs, error = self.outcome(child)
            self.algo.observe(int(entry["trial_id"]), value, epochs=epochs, error=error)
            continued = int(entry.get("resume_epochs") or 0) if entry.get("resume_checkpoint") else 0
            entry.update(status="ok" if error is None else "failed", value=value, best_epoch=epoch,
                         epochs=epochs, epochs_trained=max(0, epochs - continued), error=error,
                         curve=self.trials_by_child.get(child.id, {}).get("curve"),
                         early_stopped=bool((child.result or {}).get("early_stopped")))
            self.save()
            self.log(f"trial {entry['trial_id']} ({entry['child_id']}): "
                     + (f"best {self.metric}={value:.4g} at epoch {epoch}" if error is None else f"FAILED: {error}"))
        return running

    def _hopeless(self, entry: dict[str, Any], child: JobRecord) -> bool:
        """Median stopping rule: after ``early_stop_min_fraction`` of its budget, a trial whose best
        value so far is worse than the median of finished trials' best values up to the same epoch
        (same budget) is hopeless."""
        status = self._status(child)
        if status is None:
            return False
        curve = results.metric_by_epoch(status.history, self.metric)
        if not curve:
            return False
        epoch = max(curve)
        budget = int(entry.get("budget_epochs") or 1)
        if epoch + 1 < max(1, int(budget * float(self.cfg.get("early_stop_min_fraction") or 0.34))) or epoch + 1 >= budget:
            return False
        peers = []
        for other in self.trials.values():
            if other is entry or other.get("status") != "ok" or other.get("budget_epochs") != budget:
                continue
            values = [v for k, v in (other.get("curve") or {}).items() if int(k) <= epoch]
            if values:
                peers.append(results.best_item(values, self.direction))
        if len(peers) < 2:
            return False
        peers.sort()
        median = peers[len(peers) // 2] if len(peers) % 2 else (peers[len(peers) // 2 - 1] + peers[len(peers) // 2]) / 2
        mine = [v for k, v in curve.items() if k <= epoch]
        return results.better(median, results.best_item(mine, self.direction), self.direction)

    def _stop(self, entry: dict[str, Any], child: JobRecord) -> JobRecord:
        from ..jobs import cancel_job

        record = cancel_job(child.id, workspace=self.ws).record
        record = self.store.update(child.id, result={**record.result, "early_stopped": True,
                                                     "message": "stopped early by AutoML: worse than the median "
                                                                "of finished trials at the same epoch"})
        self.log(f"trial {entry['trial_id']} ({child.id}) stopped early (worse than the median at the same epoch)")
        return record

    def _resubmit_if_lost(self, entry: dict[str, Any]) -> None:
        """A trial left "submitting" by a controller that died mid-submission: track its child if
        it started; submit it (again, under a new child id when the old record never started)."""
        from ..jobs import get_job

        try:
            child = get_job(entry["child_id"], workspace=self.ws).record  # adopts or fails the orphan
        except JobNotFoundError:
            self.submit(entry)  # no record yet: nothing was created
            return
        if child.status == JobStatus.FAILURE and (child.result or {}).get("never_started"):
            old = entry["child_id"]
            entry["child_id"] = new_job_id()
            self.save()
            self.log(f"trial {entry['trial_id']}: {old} never started (submission interrupted); "
                     f"submitting it again as {entry['child_id']}")
            self.submit(entry)
            return
        entry["status"] = "running"
        self.save()

    def fill(self, running: int) -> int:
        """Start suggestions while slots are free; returns the number running."""
        while running < int(self.cfg["max_concurrent"]):
            s = self.algo.suggest()
            if s is None:
                break
            entry = {**s.to_dict(), "child_id": new_job_id(), "status": "submitting", "value": None,
                     "best_epoch": None, "epochs": None, "error": None}
            self._attach_resume(entry)
            self.trials[str(s.trial_id)] = entry
            self.save()  # the child id is durable before the child exists: no trial lost or repeated
            self.submit(entry)
            running += entry["status"] == "running"
        return running

    def finish(self) -> None:
        best = self.algo.best()
        if best is None:
            self.save()
            self.store.set_status(self.job_id, JobStatus.FAILURE,
                                  result={**self.res, "message": "every AutoML trial failed; see `tao-skills automl "
                                                                 f"trials {self.job_id}`"})
            self._close_tracking(None)
            self.log("finished: every trial failed")
            return
        trial_id, params, value = best
        entry = self.trials[str(trial_id)]
        summary = {"best_child_id": entry["child_id"], "best_trial": trial_id, "best_params": params,
                   "best_value": value, "best_epoch": entry.get("best_epoch"),
                   "epochs_trained": sum(int(t.get("epochs_trained") or 0) for t in self.trials.values()),
                   "message": f"best trial {trial_id} ({entry['child_id']}): {self.metric}={value:.4g} at epoch "
                              f"{entry.get('best_epoch')}"}
        self.save(**summary)
        self.store.set_status(self.job_id, JobStatus.SUCCESS, result=self.res)
        self._close_tracking(value)
        self.log("finished: " + summary["message"])

    def run(self) -> int:
        """The loop; returns the process exit status."""
        poll = float(self.cfg.get("poll_interval") or 2.0)
        while True:
            record = self.store.get(self.job_id)
            if record.status.is_terminal:
                self.log(f"job is {record.status.value}; stopping")
                return 0
            running = self.collect()
            running = self.fill(running)
            if running == 0:
                if self.algo.is_finished():
                    self.finish()
                    return 0
                if not self.algo.pending():
                    raise TaoSkillsError(f"the {self.cfg['algorithm']} algorithm has nothing to run and is not "
                                         "finished; this is a bug, please report it with the controller log")
            time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    """``python -m tao_sdk.automl.controller JOB --workspace DIR [--storage-root URI]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_id")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--storage-root", default=None)
    args = parser.parse_args(argv)
    workspace = Workspace(Path(args.workspace), storage_root=args.storage_root or None)
    try:
        return Controller(args.job_id, workspace).run()
    except TaoSkillsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        record = workspace.store.get(args.job_id)
        workspace.store.set_status(args.job_id, JobStatus.FAILURE, result={**record.result, "message": str(exc)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
