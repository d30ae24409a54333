"""The structure check of ``make test`` (tools/check_structure.py): no import cycle in tao_sdk
(function-local imports count), no new function over 80 lines; and the check itself finds a
cycle hidden by a function-local import."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import check_structure as C  # noqa: E402


def test_tree_has_no_import_cycle_and_no_new_long_function():
    out = io.StringIO()
    assert C.check(top=5, stream=out) == []
    assert "longest functions" in out.getvalue()


def test_a_function_local_import_cycle_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / C.PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n    return x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    monkeypatch.setattr(C, "ROOT", tmp_path)
    edges = C.import_edges()
    assert C.import_cycles(edges) == [[f"{C.PACKAGE}.a", f"{C.PACKAGE}.b"]]
    assert not any(e.source.endswith(".c") for e in edges)  # TYPE_CHECKING imports never run
