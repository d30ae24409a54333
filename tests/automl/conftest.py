"""Fixtures of the AutoML brain tests (search space + algorithms).

``fixture_schema``  the hand-written RT-DETR-like train schema (tests/automl/fixtures).
``mixed_schema``    a small schema exercising every dimension kind and TAO metadata rule.
``real_schema``     factory: ``real_schema("tao-train-rtdetr")`` -> the packaged train schema, or
                    ``pytest.skip`` with the reason when the bank has not generated it yet.
"""

from __future__ import annotations

import os

# The GP fits tiny matrices: BLAS threads only add contention on shared CPUs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
from automl_fixtures import HERE, MIXED, ROOT  # noqa: E402


@pytest.fixture
def mixed_schema() -> dict:
    return copy.deepcopy(MIXED)


@pytest.fixture
def fixture_schema() -> dict:
    return json.loads((HERE / "fixtures" / "rtdetr_like.schema.json").read_text())


@pytest.fixture
def real_schema():
    def load(skill: str) -> dict:
        path = ROOT / "skills" / skill / "schemas" / "train.schema.json"
        if not path.exists():
            pytest.skip(f"{path.relative_to(ROOT)} not generated yet (run `python tools/gen_schemas.py`)")
        return json.loads(path.read_text())
    return load
