"""The job-kind seam: jobs never import AutoML; kinds come from a small registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tao_sdk import TaoSkillsError
from tao_sdk.jobkinds import JobKind, job_kind, job_kinds

REPO = Path(__file__).resolve().parents[1]


def test_jobs_module_never_imports_automl():
    tree = ast.parse((REPO / "tao_sdk" / "jobs.py").read_text(encoding="utf-8"))
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "automl" in m]


def test_registry_resolves_each_kind_and_names_the_known_ones():
    assert job_kinds() == ["automl", "job", "trial"]
    task, automl = job_kind("job"), job_kind("automl")
    assert isinstance(task, JobKind) and job_kind("trial") is task and task.has_task_status
    assert not automl.has_task_status and type(automl).__name__ == "AutomlKind"
    with pytest.raises(TaoSkillsError, match="known kinds: automl, job, trial"):
        job_kind("sweep")
    with pytest.raises(TaoSkillsError, match="not created by routing"):
        task.create(None, None)
