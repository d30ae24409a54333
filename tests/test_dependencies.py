"""Runtime dependencies are exactly what runtime code imports: every package of pyproject's
``dependencies`` is imported by SDK code (outside the worker, which has its own extra), and every
third-party package SDK code imports (module level or inside a function) is declared in
``dependencies`` or an extra."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Distributions that are not installed in the dev venv (GPU machines only) -> their module.
NOT_INSTALLED = {"tensorrt": "tensorrt"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _project() -> dict:
    if tomllib is None:
        pytest.skip("needs Python 3.11 tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imports(files) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it (module level and function-local)."""
    out: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("tao_sdk", "__future__", "_supervise"):
                    out.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return out


def _distributions(module: str) -> set[str]:
    dists = packages_distributions().get(module) or ([NOT_INSTALLED[module]] if module in NOT_INSTALLED else [])
    return {d.lower().replace("_", "-") for d in dists}


def test_runtime_dependencies_are_what_runtime_code_imports():
    project = _project()
    runtime = {_name(r) for r in project["dependencies"]}
    declared = runtime | {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    sdk = [p for p in (REPO / "tao_sdk").rglob("*.py") if "worker" not in p.relative_to(REPO / "tao_sdk").parts]
    used = {d for module in _imports(sdk) for d in _distributions(module)}
    assert runtime <= used, f"declared runtime dependencies no SDK code imports: {sorted(runtime - used)}"
    everywhere = _imports((REPO / "tao_sdk").rglob("*.py"))
    undeclared = {m: sorted(files)[:3] for m, files in everywhere.items() if not _distributions(m) & declared}
    assert not undeclared, f"imported but declared in no dependency list of pyproject.toml: {undeclared}"
