"""TAO Skill Bank SDK: from a skill + datasets + overrides to a validated, tracked TAO job.

Python API (the CLI ``tao-skills`` mirrors it):

- :class:`SkillBank` / :class:`Skill` — the packaged skills, their schemas, templates, SKILL.md tables.
- :func:`build_data_source_overrides` — dataset root URIs -> the spec keys an action needs.
- :func:`build_spec` — template + data sources + overrides, validated (:class:`SpecValidationError`).
- :func:`resolve_automl_policy`, :func:`route_action` — the Train Action Policy.
- :func:`create_job`, :func:`get_job`, :func:`list_jobs`, :func:`wait_for_job`, :func:`job_logs`,
  :func:`cancel_job`, :func:`resume_job` — run and track jobs (local platform by default).
- :func:`check_bank` — the bank checker.
- :func:`cache_info`, :func:`clear_cache` — the worker's dataset cache (size cap, LRU eviction).
"""

from .bank import Skill, SkillBank
from .checker import check_bank
from .datacache import cache_info, clear_cache
from .datasources import build_data_source_overrides
from .errors import (
    BankFormatError,
    DataSourceError,
    JobNotFoundError,
    ParentModelError,
    PlatformError,
    SkillNotFoundError,
    SpecProblem,
    SpecValidationError,
    StorageError,
    TaoSkillsError,
)
from .jobs import (
    Job,
    JobPlan,
    cancel_job,
    create_job,
    get_job,
    job_logs,
    list_jobs,
    plan_job,
    resume_job,
    wait_for_job,
)
from .policy import Route, resolve_automl_policy, route_action
from .spec import build_spec, validate_spec
from .workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "BankFormatError", "DataSourceError", "Job", "JobNotFoundError", "JobPlan", "ParentModelError",
    "PlatformError", "Route", "Skill", "SkillBank", "SkillNotFoundError", "SpecProblem",
    "SpecValidationError", "StorageError", "TaoSkillsError", "Workspace", "build_data_source_overrides",
    "build_spec", "cache_info", "cancel_job", "check_bank", "clear_cache", "create_job", "get_job", "job_logs", "list_jobs", "plan_job",
    "resolve_automl_policy", "resume_job", "route_action", "validate_spec", "wait_for_job",
]
