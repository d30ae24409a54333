"""MLflow runs of jobs, shared by the worker's tracker (:mod:`tao_sdk.worker.tracking`) and the
AutoML controller (the AutoML job's run, under which its trials' runs are nested).

``MLFLOW_TRACKING_URI`` names the store (a server, ``sqlite:///file.db`` or a folder: no server
needed); ``MLFLOW_EXPERIMENT_NAME`` the experiment (default ``tao-skills``). One run per job, found
again by its tag ``tao.job_id`` (a restarted job or controller continues its run). Needs the
``tracking`` extra.
"""

from __future__ import annotations

import os
from typing import Mapping

from .extras import require_extra

__all__ = ["MLFLOW_PARENT_ENV", "MLFLOW_EXPERIMENT", "mlflow_enabled", "mlflow_client", "mlflow_run"]

#: Environment variable naming the MLflow run a job's run is nested under (AutoML trials).
MLFLOW_PARENT_ENV = "TAO_MLFLOW_PARENT_RUN_ID"
#: Default MLflow experiment (``MLFLOW_EXPERIMENT_NAME`` wins).
MLFLOW_EXPERIMENT = "tao-skills"


def mlflow_enabled() -> bool:
    """True when ``MLFLOW_TRACKING_URI`` is set (jobs are then tracked in MLflow)."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def mlflow_client():
    """``(MlflowClient, experiment id)`` of ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME``
    (the experiment is created when missing)."""
    mlflow = require_extra("mlflow", "tracking", "MLFLOW_TRACKING_URI (or unset it)")
    client = mlflow.tracking.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    return client, (experiment.experiment_id if experiment else client.create_experiment(name))


def mlflow_run(client, experiment_id: str, job_id: str, name: str,
               tags: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``(run id, params it has)`` of job ``job_id`` (tag ``tao.job_id``): its existing run
    (a restarted job continues it), else a new one."""
    found = client.search_runs([experiment_id], f"tags.`tao.job_id` = '{job_id}'", max_results=1)
    if found:
        return found[0].info.run_id, dict(found[0].data.params)
    run = client.create_run(experiment_id, run_name=name, tags={"tao.job_id": job_id, **tags})
    return run.info.run_id, {}
