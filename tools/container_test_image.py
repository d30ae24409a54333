"""Build the container image the `docker` tests run: a minimal root filesystem, imported locally.

No image registry is reachable from the test machines, so the image is made from this machine's
files (stdlib only, about 2 s and 60 MB):

- the Python running this script (its binary, the shared libraries ``ldd`` lists for it and for its
  extension modules, its standard library without tests / tkinter / site-packages), at the same
  paths, with ``/usr/bin/python3`` pointing at it;
- PyYAML (pure Python part) and the few ``tao_sdk`` modules the TAO-entrypoint test double needs,
  under ``/opt/tao-test``;
- ``tests/fake_tao.py`` (the test double of TAO's container entrypoint) as the TAO commands NVIDIA's
  images have on PATH: ``/usr/local/bin/<network>`` for every network of the bank, so
  ``rtdetr train -e spec.yaml`` runs in the container as in ``nvcr.io/nvidia/tao/tao-toolkit:*-pyt``;
- ``/bin/sh`` (this machine's dash or bash, with its libraries).

The tag is a hash of everything that goes in (``localhost/tao-skills-test:<hash>``): an image that
exists already is reused, so the build is paid once per machine (the tests' cache).

    python tools/container_test_image.py [--cli podman]      # prints the image name
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILDER_VERSION = "1"
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "tkinter", "turtledemo",
              "ensurepip", "lib2to3", "pydoc_data"}
#: The ``tao_sdk`` modules the test double imports; what they import at module level comes along.
_SDK_ROOTS = ("__init__", "storage")


def _sdk_modules(roots: tuple[str, ...] = _SDK_ROOTS) -> list[str]:
    """File names of ``roots`` and every top-level ``tao_sdk`` module they import at module level
    (``from tao_sdk.x import`` / ``from .x import``), so an SDK change cannot break the image."""
    import ast

    todo, found = list(roots), set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        tree = ast.parse((REPO / "tao_sdk" / f"{name}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.removeprefix("tao_sdk.") if node.level == 0 else node.module
                if (node.level == 1 or node.module.startswith("tao_sdk.")) and (REPO / "tao_sdk" / f"{module}.py").exists():
                    todo.append(module)
    return sorted(f"{n}.py" for n in found)


def _ldd(path: str) -> list[str]:
    """Absolute paths of the shared libraries ``path`` loads (empty for static binaries)."""
    proc = subprocess.run(["ldd", path], capture_output=True, text=True)
    return re.findall(r"(/\S+) \(0x", proc.stdout) if proc.returncode == 0 else []


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("config-"))
        out += [Path(dirpath) / f for f in sorted(files) if not f.endswith((".opt-1.pyc", ".opt-2.pyc"))]
    return out


def _networks() -> list[str]:
    """Every TAO command of the bank: the networks and the first word of each mapped command."""
    import yaml

    names = set()
    for path in (REPO / "skills").glob("*/references/skill_info.yaml"):
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
        if info.get("network"):
            names.add(info["network"])
        names.update(c.split()[0] for c in ((info.get("tao_container") or {}).get("commands") or {}).values())
    return sorted(names)


_WRAPPER = """#!/usr/bin/python3
import os, sys
sys.path.insert(0, "/opt/tao-test")
import fake_tao
sys.exit(fake_tao.main([os.path.basename(sys.argv[0]), *sys.argv[1:]]))
"""


def _contents() -> dict[str, tuple[bytes | Path, int]]:
    """arcname -> (file on this machine or bytes, mode)."""
    python = os.path.realpath(sys.executable)
    files: dict[str, tuple[bytes | Path, int]] = {python: (Path(python), 0o755)}
    shell = os.path.realpath("/bin/sh")
    files["bin/sh"] = (Path(shell), 0o755)
    libs = set(_ldd(python)) | set(_ldd(shell))
    for path in _stdlib_files():
        files[str(path)] = (path, 0o644)
        if path.suffix == ".so":
            libs.update(_ldd(str(path)))
    for lib in libs:
        real = os.path.realpath(lib)
        files[lib] = (Path(real), 0o755)
    import yaml

    ydir = Path(yaml.__file__).parent
    for path in sorted(ydir.glob("*.py")):
        files[f"opt/tao-test/yaml/{path.name}"] = (path, 0o644)
    for name in _sdk_modules():
        files[f"opt/tao-test/tao_sdk/{name}"] = (REPO / "tao_sdk" / name, 0o644)
    files["opt/tao-test/fake_tao.py"] = ((REPO / "tests" / "fake_tao.py").read_bytes().replace(
        b'os.path.join(os.path.dirname(__file__), "..")', b'"/opt/tao-test"'), 0o644)
    for network in _networks():
        files[f"usr/local/bin/{network}"] = (_WRAPPER.encode(), 0o755)
    return {name.lstrip("/"): value for name, value in files.items()}


def _digest(files: dict[str, tuple[bytes | Path, int]]) -> str:
    h = hashlib.sha256(BUILDER_VERSION.encode())
    for name in sorted(files):
        data, mode = files[name]
        h.update(name.encode() + b"\0" + str(mode).encode())
        if isinstance(data, bytes):
            h.update(data)
        else:
            st = data.stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _tarball(files: dict[str, tuple[bytes | Path, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({str(p) for name in files for p in Path(name).parents if str(p) != "."})
        for d in ["tmp", "usr/bin", *dirs]:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for name in sorted(files):
            data, mode = files[name]
            raw = data if isinstance(data, bytes) else data.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(raw), mode
            tar.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, "/" + os.path.realpath(sys.executable).lstrip("/")
        tar.addfile(link)
    return buf.getvalue()


def build(cli: str = "podman") -> str:
    """Build (or reuse) the test image with the engine CLI ``cli``; return its name."""
    files = _contents()
    name = f"localhost/tao-skills-test:{_digest(files)}"
    if subprocess.run([cli, "image", "inspect", name], capture_output=True).returncode == 0:
        return name
    proc = subprocess.run([cli, "import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                           "-", name], input=_tarball(files), capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cli} import failed: {proc.stderr.decode(errors='replace').strip()}")
    return name


def main(argv: list[str] | None = None) -> int:
    """CLI: build the image and print its name."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cli", default=os.environ.get("TAO_DOCKER_CLI") or "podman")
    print(build(parser.parse_args(argv).cli))
    return 0


if __name__ == "__main__":
    sys.exit(main())
