"""Build the built-in worker's container image without a registry: a root filesystem, imported locally.

``make worker-image`` builds the image from the ``Containerfile`` when a registry is reachable
(``python:3.11-slim`` + pip). Where none is (the test machines), this script makes the same image
from this machine's files (stdlib only, about 1.4 GB, ~40-60 s the first time):

- the runtime of ``tools/container_test_image.py`` (this Python at its own path, its standard
  library, ``/bin/sh``, the shared libraries they load; ``/usr/bin/python3`` points at it);
- the installed distributions the worker needs: the project's ``dependencies`` and its ``worker``
  extra (read from ``pyproject.toml``) and everything they require, as installed in this Python's
  environment (torch CPU, transformers, numpy, scipy, pillow, pycocotools, onnx, onnxruntime...),
  at the paths they have here, without test folders, C headers and static libraries; plus every
  system library their extension modules load;
- this checkout's ``tao_sdk`` with the bank (``skills``, ``schemas``, ``references``) under
  ``tao_sdk/_bank``, as the wheel ships it, in ``/opt/tao-skill-bank``;
- ``PYTHONPATH`` naming both, ``HOME=/tmp``, ``PYTHONUNBUFFERED=1``.

The tag is a hash of everything that goes in (``localhost/tao-skill-bank-worker:<hash>``): an
image that exists already is reused (about 2 s to check), so the build is paid once per machine.
Use it as the docker platform's ``worker_image`` (``TAO_DOCKER_WORKER_IMAGE=<printed name>``):
the four seed networks then run ``python3 -m tao_sdk.worker <network> <action> -e spec.yaml`` in it.

    python tools/container_worker_image.py [--cli podman]    # prints the image name
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from fnmatch import fnmatch
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from container_test_image import add_libraries, base_files, digest, image_cli, import_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILDER_VERSION = "worker-2"
IN_IMAGE = "/opt/tao-skill-bank"
#: Folders no job imports (tests, C/C++ headers, CMake files), by name anywhere in a distribution.
_SKIP_DIRS = {"test", "tests", "include", "share", "testing_data"}
_SKIP_SUFFIXES = (".a", ".pyi", ".h", ".hpp", ".cuh")
#: Files of the installed packages no job needs (test programs and libraries, protobuf's compiler).
_SKIP_GLOBS = ("torch/bin/*[Tt]est*", "torch/bin/protoc*", "torch/bin/*.pt*", "torch/lib/lib*test*.so")
_BANK = ("skills", "schemas", "references")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def worker_requirements() -> list[str]:
    """The project's ``dependencies`` plus its ``worker`` extra, as written in ``pyproject.toml``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["worker"]]


def distributions(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of ``requirements`` and of everything they require (markers
    evaluated for this Python, no extras). Raises SystemExit naming a requirement not installed."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if _normal(req.name) in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} (a requirement of the worker) is not installed in {sys.prefix}: "
                             "run `make venv` (pip install -e '.[worker]') first") from None
        found[_normal(req.name)] = dist
        todo += [Requirement(r) for r in dist.requires or []]
        todo = [r for r in todo if r.marker is None or r.marker.evaluate({"extra": ""})]
    return [found[name] for name in sorted(found)]


def transformers_models(site: Path) -> set[str]:
    """The folders of ``transformers/models`` the worker uses: those defining a ``...Config`` class
    that ``tao_sdk/worker`` names, ``auto``, and every model folder they import from (``from ..x``).
    The other ~400 models (150 MB) stay out of the image; transformers finds its models by listing
    that folder, so the rest of it works unchanged."""
    models = site / "transformers" / "models"
    named = {m for path in (REPO / "tao_sdk" / "worker").rglob("*.py")
             for m in re.findall(r"\b([A-Z][A-Za-z0-9]*Config)\b", path.read_text(encoding="utf-8"))}
    todo = {"auto"} | {path.parent.name for path in models.glob("*/configuration_*.py")
                       if any(f"class {name}(" in path.read_text(encoding="utf-8") for name in named)}
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        keep.add(name)
        for path in (models / name).glob("*.py"):
            todo |= set(re.findall(r"from \.\.([a-z0-9_]+)", path.read_text(encoding="utf-8"))) - keep
    return {name for name in keep if (models / name).is_dir()}


def _kept(relative: str, models: set[str]) -> bool:
    parts = Path(relative).parts
    if parts[:2] == ("transformers", "models") and len(parts) > 3 and parts[2] not in models:
        return False
    return (not parts[0].startswith("..") and not _SKIP_DIRS.intersection(parts[:-1])
            and not relative.endswith(_SKIP_SUFFIXES) and not any(fnmatch(relative, g) for g in _SKIP_GLOBS))


def _distribution_files(dist: metadata.Distribution, models: set[str]) -> list[Path]:
    """The installed files of ``dist`` (its RECORD, with the byte-code compiled since), pruned."""
    out = []
    cached: dict[Path, set[str]] = {}  # __pycache__ folder -> its files (one listing per folder)
    for entry in dist.files or []:
        path = Path(dist.locate_file(entry))
        if _kept(str(entry), models) and path.is_file():
            out.append(path)
            if path.suffix == ".py":
                folder = path.parent / "__pycache__"
                if folder not in cached:
                    cached[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
                pyc = f"{path.stem}.{sys.implementation.cache_tag}.pyc"
                out += [folder / pyc] if pyc in cached[folder] else []
    return out


def _project_files() -> list[tuple[Path, str]]:
    """(file of this checkout, path in the image) of ``tao_sdk`` and the bank under ``tao_sdk/_bank``."""
    files = [(path, f"tao_sdk/{path.relative_to(REPO / 'tao_sdk')}") for path in sorted((REPO / "tao_sdk").rglob("*"))
             if path.is_file() and not {"__pycache__", "_bank"}.intersection(path.parts)]
    files += [(path, f"tao_sdk/_bank/{path.relative_to(REPO)}") for top in _BANK
              for path in sorted((REPO / top).rglob("*")) if path.is_file() and "__pycache__" not in path.parts]
    return files


def base_contents() -> dict[str, tuple[bytes | Path, int]]:
    """arcname -> (file on this machine or bytes, mode) of the base image: the runtime and the
    worker's installed packages (not the project, which changes far more often)."""
    files = base_files()
    binaries = []
    models = transformers_models(Path(sysconfig.get_paths()["purelib"]))
    for dist in distributions(worker_requirements()):
        for path in _distribution_files(dist, models):
            executable = os.access(path, os.X_OK) or ".so" in path.name
            files[str(path)] = (path, 0o755 if executable else 0o644)
            if ".so" in path.name:
                binaries.append(str(path))
    add_libraries(files, binaries)
    return {name.lstrip("/"): value for name, value in files.items()}


def image_env() -> dict[str, str]:
    """The environment the image sets: where the packages and the project are, a writable HOME."""
    site = sysconfig.get_paths()["purelib"]
    return {"PYTHONPATH": f"{IN_IMAGE}:{site}", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}


def _add_project(cli: str, base: str) -> str:
    """The worker image: ``base`` plus this checkout's project files, one small layer added with
    ``<cli> build`` (``FROM`` the local base: nothing is pulled). Returns its name (reused when present)."""
    project = _project_files()
    tag = digest({base: (b"", 0), **{dest: (path, 0o644) for path, dest in project}}, BUILDER_VERSION)
    name = f"localhost/tao-skill-bank-worker:{tag}"
    if subprocess.run([cli, "image", "inspect", name], capture_output=True).returncode == 0:
        return name
    with tempfile.TemporaryDirectory(prefix="tao-worker-image-") as ctx:
        for path, dest in project:
            target = Path(ctx, "project", dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        Path(ctx, "Containerfile").write_text(f"FROM {base}\nCOPY project/ {IN_IMAGE}/\n"
                                              'LABEL org.tao-skill-bank.worker="1"\n')
        proc = subprocess.run([cli, "build", "-q", "-t", name, "-f", str(Path(ctx, "Containerfile")), ctx],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cli} build (the project layer on {base}) failed: {proc.stderr.strip()}")
    return name


def build(cli: str = "podman") -> str:
    """Build (or reuse) the worker image with the engine CLI ``cli``; return its name. Two steps,
    each reused while its inputs are unchanged: the base (runtime + packages, ``<cli> import``,
    ~40-60 s) and the project layer on it (``<cli> build``, ~1-2 s)."""
    files = base_contents()
    env = image_env()
    tag = digest({**files, "ENV": (repr(sorted(env.items())).encode(), 0)}, BUILDER_VERSION)
    base = import_image(cli, f"localhost/tao-skill-bank-worker-base:{tag}", files, env)
    return _add_project(cli, base)


def main(argv: list[str] | None = None) -> int:
    """CLI: build the worker image and print its name."""
    return image_cli(build, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
