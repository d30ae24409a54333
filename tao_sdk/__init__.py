"""TAO Skill Bank SDK: from a skill + datasets + overrides to a validated, tracked TAO job.

Python API (the CLI ``tao-skills`` mirrors it):

- :class:`SkillBank` / :class:`Skill` — the packaged skills, their schemas, templates, SKILL.md tables.
- :func:`build_data_source_overrides` — dataset root URIs -> the spec keys an action needs.
- :func:`build_spec` — template + data sources + overrides, validated (:class:`SpecValidationError`).
- :func:`resolve_automl_policy`, :func:`route_action` — the Train Action Policy.
- :func:`plan_job` (the dry run), :func:`create_job`, :func:`get_job`, :func:`list_jobs`, :func:`wait_for_job`, :func:`job_logs`,
  :func:`cancel_job`, :func:`resume_job` — run and track jobs (local platform by default).
- :func:`validate_datasets` — every dataset file an action reads, checked at plan time
  (``create_job`` / ``plan_job`` run it first; :class:`DatasetValidationError` lists every problem).
- :func:`check_bank` — the bank checker.
- Typed results (pydantic, :mod:`tao_sdk.models`): :class:`JobInfo` (``job.info()``), :class:`PlanInfo`
  (``plan.info()``), :class:`SpecReport`, :class:`TrialTable`, :class:`ErrorInfo`; :func:`job_budget`
  -> :class:`JobBudget` (trials x epochs, GPUs). ``tao-skills mcp`` serves them over MCP.
- :func:`cache_info`, :func:`clear_cache` — the worker's dataset cache (size cap, LRU eviction).
- :func:`recover_job_store` — rebuild a damaged or emptied job store from the job folders.
- :func:`convert_dataset` — KITTI / VOC / YOLO / LabelMe / masks / Cityscapes / stereo data into
  the layout a skill's data-source table names (:class:`ConversionReport`).
"""

from importlib import import_module
from typing import Any

# Names are imported on first use (PEP 562), so that ``import tao_sdk.worker`` on a compute
# node does not pull the SDK's planning side (jsonschema, sqlite3, the job store).
_EXPORTS = {
    "Skill": "bank", "SkillBank": "bank", "check_bank": "checker",
    "cache_info": "datacache", "clear_cache": "datacache",
    "build_data_source_overrides": "datasources", "validate_datasets": "datasets.check",
    "DatasetReport": "datasets.problems",
    "BankFormatError": "errors", "DataSourceError": "errors", "DatasetValidationError": "errors", "JobNotFoundError": "errors",
    "ParentModelError": "errors", "PlatformError": "errors", "SkillNotFoundError": "errors",
    "SpecProblem": "errors", "SpecValidationError": "errors", "StorageError": "errors",
    "TaoSkillsError": "errors",
    "Job": "jobs", "JobPlan": "jobs", "cancel_job": "jobs", "create_job": "jobs",
    "get_job": "jobs", "job_logs": "jobs", "list_jobs": "jobs", "plan_job": "jobs",
    "resume_job": "jobs", "wait_for_job": "jobs",
    "Route": "policy", "resolve_automl_policy": "policy", "route_action": "policy",
    "build_spec": "spec", "validate_spec": "spec", "Workspace": "workspace",
    "DiskFullError": "errors", "JobStoreDamagedError": "errors", "recover_job_store": "recovery",
    "JobBudget": "budget", "job_budget": "budget",
    "ErrorInfo": "models", "JobInfo": "models", "PlanInfo": "models", "Progress": "models",
    "SpecReport": "models", "TrialTable": "models",
    "ConversionError": "errors", "ConversionReport": "datasets.convert", "convert_dataset": "datasets.convert",
}


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]):
    """``(__getattr__, __dir__)`` of a package whose public names (``exports``: name -> module
    below ``package``) are imported on first use (PEP 562) and then kept in ``namespace``."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(list(namespace) + list(exports))

    return getattr_, dir_


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__version__ = "0.1.0"

__all__ = [
    "BankFormatError", "DataSourceError", "DatasetReport", "DatasetValidationError", "ErrorInfo", "Job",
    "JobBudget", "JobInfo", "JobNotFoundError",
    "JobPlan", "ParentModelError", "PlanInfo", "Progress", "SpecReport", "TrialTable", "job_budget",
    "PlatformError", "Route", "Skill", "SkillBank", "SkillNotFoundError", "SpecProblem",
    "SpecValidationError", "StorageError", "TaoSkillsError", "Workspace", "build_data_source_overrides",
    "build_spec", "cache_info", "cancel_job", "check_bank", "clear_cache", "create_job", "get_job", "job_logs", "list_jobs", "plan_job",
    "resolve_automl_policy", "resume_job", "route_action", "validate_datasets", "validate_spec", "wait_for_job",
    "DiskFullError", "JobStoreDamagedError", "recover_job_store",
    "ConversionError", "ConversionReport", "convert_dataset",
]
