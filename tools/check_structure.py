#!/usr/bin/env python3
"""Structure checks of the code base (run by ``make test``; ``tests/test_structure.py`` too).

1. **No import cycle in tao_sdk.** The import graph is built from the source with :mod:`ast`:
   module-level *and* function-local imports (a function-local import hides a cycle from Python,
   not from a reader); ``if TYPE_CHECKING:`` imports are left out (they never run). An edge goes
   to the module imported (``from .x import name`` -> ``tao_sdk.x``; ``from . import x`` ->
   ``tao_sdk.x`` when ``x`` is a module, else the package). Every strongly connected component
   of more than one module is a cycle; each is printed with one import line per edge.
2. **Functions short enough to read at once.** Prints the longest functions of ``tao_sdk``,
   ``tools``, ``benchmarks`` and fails on any over :data:`MAX_LINES` lines (``def`` line to
   last line); generated code (:data:`GENERATED`) is left out.

    python tools/check_structure.py          # exit 1 on a new cycle or a new long function
    python tools/check_structure.py --top 20 # print the 20 longest functions
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tao_sdk"
SCANNED = ("tao_sdk", "tools", "benchmarks")
#: Generated code (tools/gen_*.py write these): not held to the length rule.
GENERATED = ("tools/_generated.py", "runners/")
MAX_LINES = 80


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` of ``path``."""

    source: str
    target: str
    path: str
    line: int


def module_name(path: Path) -> str:
    """``tao_sdk/worker/spec.py`` -> ``tao_sdk.worker.spec`` (``__init__`` -> the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers of statements under ``if TYPE_CHECKING:`` (never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(modules: dict[str, Path] | None = None) -> list[Edge]:
    """Every import from one tao_sdk module of another (see module docstring)."""
    modules = modules if modules is not None else _modules()
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_lines(tree)
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # import a.b.c where c is a name
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    edges.append(Edge(name, target, rel, node.lineno))
    return edges


def import_cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def function_lengths() -> list[tuple[int, str]]:
    """``(lines, "path::Qualified.name")`` of every function in :data:`SCANNED`, longest first."""
    out: list[tuple[int, str]] = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if any(rel.startswith(g) for g in GENERATED):
                continue
            _walk_functions(ast.parse(path.read_text(encoding="utf-8"), rel), rel, "", out)
    return sorted(out, reverse=True)


def _walk_functions(node: ast.AST, rel: str, prefix: str, out: list[tuple[int, str]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qual = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                out.append(((child.end_lineno or child.lineno) - child.lineno + 1, f"{rel}::{qual}"))
            _walk_functions(child, rel, qual + ".", out)
        else:
            _walk_functions(child, rel, prefix, out)


def check(top: int = 10, stream=sys.stdout) -> list[str]:
    """Run both checks; print the report to ``stream``; return the failures (empty: pass)."""
    failures: list[str] = []
    edges = import_edges()
    for cycle in import_cycles(edges):
        members = set(cycle)
        lines = [f"  {e.path}:{e.line}: {e.source} -> {e.target}" for e in edges
                 if e.source in members and e.target in members]
        failures.append("import cycle among " + ", ".join(cycle) + "\n" + "\n".join(sorted(set(lines))))
    lengths = function_lengths()
    print(f"longest functions (limit {MAX_LINES} lines):", file=stream)
    for n, where in lengths[:top]:
        print(f"  {n:4d}  {where}", file=stream)
    failures += [f"{where} is {n} lines (limit {MAX_LINES}): split it into functions that read at once"
                 for n, where in lengths if n > MAX_LINES]
    return failures


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit 1 when a check fails (each failure says what to change)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--top", type=int, default=10, help="how many of the longest functions to print")
    args = p.parse_args(argv)
    failures = check(args.top)
    for f in failures:
        print(f"ERROR: {f}", file=sys.stderr)
    print("structure: " + ("ok" if not failures else f"{len(failures)} problem(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
