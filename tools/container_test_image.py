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
import tempfile
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
BUILDER_VERSION = "2"
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


def _ldd(*paths: str) -> list[str]:
    """Absolute paths of the shared libraries ``paths`` load (none for static binaries)."""
    proc = subprocess.run(["ldd", *paths], capture_output=True, text=True)
    return re.findall(r"(/\S+) \(0x", proc.stdout)


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


def base_files() -> dict[str, tuple[bytes | Path, int]]:
    """The runtime every locally built image starts from: the Python running this script (binary,
    standard library, the shared libraries it and its extension modules load) and ``/bin/sh``.
    arcname (absolute path) -> (file on this machine or bytes, mode)."""
    python = os.path.realpath(sys.executable)
    files: dict[str, tuple[bytes | Path, int]] = {python: (Path(python), 0o755)}
    shell = os.path.realpath("/bin/sh")
    files["/bin/sh"] = (Path(shell), 0o755)
    stdlib = _stdlib_files()
    for path in stdlib:
        files[str(path)] = (path, 0o644)
    add_libraries(files, [python, shell, *(str(p) for p in stdlib if p.suffix == ".so")])
    return files


def add_libraries(files: dict[str, tuple[bytes | Path, int]], binaries: list[str]) -> None:
    """Add to ``files`` every shared library ``binaries`` load (one ``ldd`` per 200 files) that is
    not in it yet, at the path the loader finds it."""
    libs: set[str] = set()
    for start in range(0, len(binaries), 200):
        libs.update(_ldd(*binaries[start:start + 200]))
    for lib in sorted(os.path.normpath(lib) for lib in libs):  # RPATH $ORIGIN/../x.libs -> x.libs
        if lib not in files:
            files[lib] = (Path(os.path.realpath(lib)), 0o755)


def _contents() -> dict[str, tuple[bytes | Path, int]]:
    """arcname -> (file on this machine or bytes, mode)."""
    files = base_files()
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


def digest(files: dict[str, tuple[bytes | Path, int]], version: str = BUILDER_VERSION) -> str:
    """16 hex digits of everything in ``files`` (names, modes, bytes or size + mtime of each file)."""
    h = hashlib.sha256(version.encode())
    for name in sorted(files):
        data, mode = files[name]
        h.update(name.encode() + b"\0" + str(mode).encode())
        if isinstance(data, bytes):
            h.update(data)
        else:
            st = data.stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _write_tar(files: dict[str, tuple[bytes | Path, int]], out: Any) -> None:
    """Stream the root filesystem of ``files`` (plus /tmp and /usr/bin/python3) as a tar to ``out``."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        dirs = sorted({str(p) for name in files for p in Path(name).parents if str(p) != "."})
        for d in ["tmp", "usr/bin", *dirs]:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(name)
            info.mode = mode
            if isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            with open(data, "rb") as fh:  # the mtime keeps byte-code (checked against it) valid
                st = os.fstat(fh.fileno())
                info.size, info.mtime = st.st_size, st.st_mtime
                tar.addfile(info, fh)
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, "/" + os.path.realpath(sys.executable).lstrip("/")
        tar.addfile(link)


def import_image(cli: str, name: str, files: dict[str, tuple[bytes | Path, int]],
                 env: dict[str, str] | None = None) -> str:
    """Reuse image ``name`` when the engine has it, else import it from ``files`` (streamed, no
    temporary tarball) with ``env`` as its environment; return ``name``. Raises SystemExit with the
    engine's message when the import fails."""
    if subprocess.run([cli, "image", "inspect", name], capture_output=True).returncode == 0:
        return name
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})}
    changes = [a for k, v in env.items() for a in ("--change", f"ENV {k}={v}")]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([cli, "import", *changes, "-", name], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            _write_tar(files, proc.stdin)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
        if proc.wait() != 0:
            err.seek(0)
            raise SystemExit(f"{cli} import failed: {err.read().decode(errors='replace').strip()}")
    return name


def build(cli: str = "podman") -> str:
    """Build (or reuse) the test image with the engine CLI ``cli``; return its name."""
    files = _contents()
    return import_image(cli, f"localhost/tao-skills-test:{digest(files)}", files)


def image_cli(builder: Callable[[str], str], doc: str, argv: list[str] | None = None) -> int:
    """The command line of an image builder: ``[--cli podman]`` (default ``$TAO_DOCKER_CLI`` or
    podman), build with ``builder(cli)``, print the image name."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--cli", default=os.environ.get("TAO_DOCKER_CLI") or "podman")
    print(builder(parser.parse_args(argv).cli))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: build the test image and print its name."""
    return image_cli(build, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
