"""Shared helpers of the fault-injection suite (issue 10): process inspection and waiting."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="fault tests read /proc (Linux)")


def alive(pid: int) -> bool:
    """True when ``pid`` is a live process (zombies count as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def descendants(root: int) -> list[int]:
    """Live pids below ``root`` (reads /proc)."""
    from tao_sdk.platforms._supervise import _descendants

    return _descendants(root)


def environ_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with ({} when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _mount_tmpfs(path: Path, size: str, read_only: bool) -> None:
    """Mount a tmpfs of ``size`` at ``path``; skip (or fail under CI=true) when this cannot."""
    import subprocess

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    why = None
    if os.geteuid() != 0:
        why = "mounting a small tmpfs needs root"
    else:
        opts = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tao-fault-tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            why = f"mount -t tmpfs failed: {proc.stderr.strip()}"
    if why is None:
        return
    if in_ci:
        pytest.fail(f"{why}; CI must run the disk-fault tests (run them as root with CAP_SYS_ADMIN)")
    pytest.skip(why)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size="2m", read_only=False)`` -> the folder of a freshly mounted tmpfs of that
    size (a real small filesystem: writes fail with ENOSPC / EROFS), unmounted at teardown."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str = "2m", read_only: bool = False) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        _mount_tmpfs(path, size, read_only)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
