"""Case 4: archives are bounded (total bytes, compression ratio, members) and refused before
anything is written, with an error naming the limit; the dataset cache has a size cap with LRU
eviction of idle entries, and ``tao-skills cache`` shows and clears it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from tao_sdk.worker.errors import UnsafeArchiveError
from tao_sdk.worker.staging import stage_image_dir

from .conftest import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    for var in ("TAO_WORKER_ARCHIVE_MAX_BYTES", "TAO_WORKER_ARCHIVE_MAX_RATIO", "TAO_WORKER_ARCHIVE_MAX_MEMBERS",
                "TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS", "TAO_WORKER_CACHE_MAX_BYTES"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "cache"
    monkeypatch.setenv("TAO_WORKER_CACHE", str(root))
    return root


def _zeros_bomb(path: Path, size: int) -> None:
    """A .tar.gz holding one file of ``size`` zero bytes, written as a stream (fast, small)."""
    info = tarfile.TarInfo("zeros.png")
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(header))
        for _ in range(size >> 20):
            fh.write(comp.compress(chunk))
        fh.write(comp.compress(bytes(1024 + (-size) % 512)))  # padding + end-of-archive blocks
        fh.write(comp.flush())


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _cached_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_decompression_bomb_is_refused_before_writing(tmp_path, cache):
    bomb = tmp_path / "images.tar.gz"
    _zeros_bomb(bomb, 256 << 20)  # 256 MiB of zeros in ~250 KB
    print(f"bomb: {bomb.stat().st_size:,} bytes")
    start = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match=r"decompression bomb.*TAO_WORKER_ARCHIVE_MAX_RATIO"):
        stage_image_dir(str(bomb), "dataset.train_data_sources[0].image_dir")
    assert time.monotonic() - start < 10
    assert _cached_bytes(cache) < 1 << 20  # nothing extracted


def test_total_bytes_limit(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("TAO_WORKER_ARCHIVE_MAX_BYTES", "1M")
    archive = _tar(tmp_path / "images.tar.gz", {"a.png": os.urandom(700_000), "b.png": os.urandom(700_000)})
    with pytest.raises(UnsafeArchiveError, match=r"more than 1,048,576 bytes once extracted.*TAO_WORKER_ARCHIVE_MAX_BYTES"):
        stage_image_dir(str(archive), "dataset.infer_data_sources.image_dir")
    assert _cached_bytes(cache) < 10_000


def test_inode_flood_is_refused(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("TAO_WORKER_ARCHIVE_MAX_MEMBERS", "5000")
    archive = _tar(tmp_path / "images.tar.gz", {f"f{i:05d}.png": b"" for i in range(5001)})
    with pytest.raises(UnsafeArchiveError, match=r"more than 5,000 members \(an inode flood\?\).*TAO_WORKER_ARCHIVE_MAX_MEMBERS"):
        stage_image_dir(str(archive), "dataset.infer_data_sources.image_dir")
    assert sum(1 for _ in cache.rglob("*")) < 10


def test_tiny_file_flood_is_refused_with_default_limits(tmp_path, cache):
    """The issue's case: a small archive of tens of thousands of near-empty files is refused by
    default (no environment override), before anything is extracted."""
    archive = _tar(tmp_path / "images.tar.gz", {f"f{i:05d}.png": b"x" for i in range(10_001)})
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(UnsafeArchiveError, match=r"more than 10,000 files smaller than 128 bytes.*"
                                                  r"TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS"):
        stage_image_dir(str(archive), "dataset.infer_data_sources.image_dir")
    assert sum(1 for _ in cache.rglob("*")) < 10


def test_bad_limit_setting_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_WORKER_ARCHIVE_MAX_MEMBERS", "lots")
    archive = _tar(tmp_path / "images.tar.gz", {"a.png": b"x"})
    with pytest.raises(Exception, match="TAO_WORKER_ARCHIVE_MAX_MEMBERS='lots' is not a size"):
        stage_image_dir(str(archive), "x")


def _stage_in_a_job(archive: Path, env: dict[str, str]) -> None:
    """Stage ``archive`` the way a worker job does (own process: its cache locks end with it)."""
    code = ("import sys; from tao_sdk.worker.staging import stage_spec; "
            "stage_spec({'dataset': {'infer_data_sources': {'image_dir': sys.argv[1]}}}, 'inference', log=print, "
            "data_keys=[('dataset.infer_data_sources', 'sources')])")
    out = subprocess.run([sys.executable, "-c", code, str(archive)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cache_cap_evicts_least_recently_used_idle_entries(tmp_path, cache, monkeypatch, capsys):
    from tao_sdk import cache_info, clear_cache
    from tao_sdk.cli import main
    from tao_sdk.datacache import cache_entry

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TAO_WORKER_CACHE_MAX_BYTES": "1200K"}
    archives = []
    for i in range(3):
        folder = tmp_path / f"ds{i}"
        folder.mkdir()
        archives.append(_tar(folder / "images.tar.gz", {"a.png": os.urandom(500_000)}))
    _stage_in_a_job(archives[0], env)
    _stage_in_a_job(archives[1], env)
    _stage_in_a_job(archives[0], env)  # ds0 is now the most recently used
    log = _stage_in_a_job(archives[2], env)  # 3 x 500 KB extracted > 1200 KB: ds1 goes
    assert "evicted the least recently used" in log
    info = cache_info()
    assert len(info["entries"]) == 2 and info["total_bytes"] <= 1_200 * 1024
    names = [e["name"] for e in info["entries"]]
    assert main(["cache", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)["entries"]] == names
    assert main(["cache"]) == 0
    assert "2 entries" in capsys.readouterr().out
    busy = cache_entry(names[0])  # this process uses it now: clear keeps it
    out = clear_cache()
    assert out["kept_busy"] == [busy.name] and out["removed"] == [names[1]]
    assert main(["cache", "clear", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_busy"] == [busy.name]
