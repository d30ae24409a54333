"""Case 6 (issue item 6 of the report): S3 connect/read timeouts and retries. An endpoint that
accepts TCP connections and never answers must fail a job submission (SDK) and the worker's data
staging in seconds, with an error that names the timeout settings."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from tao_sdk import Workspace, create_job
from tao_sdk.errors import StorageError
from tao_sdk.storage import reset_storage_cache, s3_timeouts

from .conftest import REPO_ROOT


@pytest.fixture
def silent_endpoint(monkeypatch, point_aws_at):
    """A loopback TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    for var in ("TAO_S3_READ_TIMEOUT", "TAO_S3_CONNECT_TIMEOUT", "TAO_S3_MAX_ATTEMPTS"):
        monkeypatch.delenv(var, raising=False)
    point_aws_at(endpoint)
    yield endpoint
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
    reset_storage_cache()


@pytest.mark.slow
def test_create_job_with_s3_results_fails_within_30_s(silent_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {REPO_ROOT / 'tests' / 'fake_tao.py'}")
    ws = Workspace(tmp_path / "ws", storage_root="s3://silent-bucket/tao")
    start = time.monotonic()
    with pytest.raises(StorageError, match="did not answer .*TAO_S3_READ_TIMEOUT"):
        create_job("rtdetr", "train", datasets={"train_datasets": ["/d/t"], "eval_dataset": "/d/e"},
                   spec_overrides={"train.num_epochs": 1, "dataset.num_classes": 3}, automl_policy="off",
                   workspace=ws)
    elapsed = time.monotonic() - start
    print(f"create_job against a silent S3 endpoint failed after {elapsed:.1f} s (defaults {s3_timeouts()})")
    assert elapsed < 30
    assert all(r.status.value == "FAILURE" for r in ws.store.list())  # none, or recorded as failed


def test_worker_staging_honours_configured_timeouts(silent_endpoint, monkeypatch, tmp_path):
    from tao_sdk.worker.staging import fetch_file

    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TAO_S3_READ_TIMEOUT", "1")
    monkeypatch.setenv("TAO_S3_MAX_ATTEMPTS", "2")
    start = time.monotonic()
    with pytest.raises(Exception, match=r"did not answer \(ReadTimeoutError\) within 5 s to connect / 1 s to read, 2 attempt"):
        fetch_file("s3://silent-bucket/data/annotations.json", "dataset.train_data_sources[0].json_file")
    assert time.monotonic() - start < 10


def test_bad_timeout_setting_is_named(monkeypatch):
    monkeypatch.setenv("TAO_S3_READ_TIMEOUT", "soon")
    with pytest.raises(StorageError, match="TAO_S3_READ_TIMEOUT='soon' is not a positive number"):
        s3_timeouts()
