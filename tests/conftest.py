"""Shared pytest fixtures.

S3 fixtures (a REAL S3 server, no mocking of boto3):

``s3_server`` (session scope)
    Starts ``python -m moto.server -H 127.0.0.1 -p <free port>`` as a subprocess on loopback,
    waits until it answers HTTP, and yields its endpoint URL (``"http://127.0.0.1:<port>"``).
    The server is terminated at the end of the session. Its log is kept in a temporary file and
    shown in the error if it fails to start.

``s3_env`` (function scope; depends on ``monkeypatch`` and ``s3_server``)
    Points the standard AWS environment at that server for one test: sets ``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID=testing``, ``AWS_SECRET_ACCESS_KEY=testing``,
    ``AWS_DEFAULT_REGION=us-east-1``; unsets ``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE`` and
    ``AWS_SESSION_TOKEN``; isolates from ``~/.aws`` and the instance metadata service; resets
    the ``tao_sdk.storage`` S3 client cache. Creates a fresh, empty bucket with boto3 and
    returns its name (``str``), so a test writes to ``f"s3://{s3_env}/..."``.

Usage::

    def test_upload(s3_env):
        store = storage_for(f"s3://{s3_env}/results")
        store.write_text(f"s3://{s3_env}/results/a.txt", "hi")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_TIMEOUT_S = 30.0

# Plan-time dataset validation reads every dataset file a job names; most tests plan jobs on
# placeholder URIs (s3://b/train), so it is off for the suite (subprocesses inherit this) and
# the tests of tao_sdk.datasets turn it on (tests/test_dataset_validate.py).
os.environ.setdefault("TAO_SKILLS_VALIDATE_DATASETS", "0")


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    """True once an HTTP server answers at ``url`` (any status code counts)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Run a real moto S3 server on loopback for the session; yield its endpoint URL."""
    try:
        import moto.server  # noqa: F401
    except ImportError:  # pragma: no cover - dev extra not installed
        pytest.fail("moto[server] is not installed: run `make venv-dev` (pip install -e '.[dev]')")

    log = tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log", delete=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = None
    endpoint = ""
    for _attempt in range(3):  # retry if another process grabbed the port meanwhile
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(endpoint + "/moto-api/"):
                break
            time.sleep(0.1)
        if proc.poll() is None and _answers(endpoint + "/moto-api/"):
            break
        proc.terminate()
        proc.wait(timeout=10)
        proc = None
    if proc is None:
        log.flush()
        with open(log.name, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-4000:]
        pytest.fail(f"moto server did not start on 127.0.0.1 (log {log.name}):\n{tail}")
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        try:
            os.unlink(log.name)
        except OSError:  # pragma: no cover
            pass


@pytest.fixture
def point_aws_at(monkeypatch: pytest.MonkeyPatch):
    """``point_aws_at(endpoint)``: the standard AWS environment of this test targets ``endpoint``
    with test credentials, isolated from ``~/.aws``, instance metadata and proxies."""

    def point(endpoint: str) -> None:
        for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        missing = os.path.join(tempfile.gettempdir(), "tao-tests-no-aws-config")
        monkeypatch.setenv("AWS_CONFIG_FILE", missing)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        monkeypatch.setenv("NO_PROXY", no_proxy)
        monkeypatch.setenv("no_proxy", no_proxy)

        from tao_sdk.storage import reset_storage_cache

        reset_storage_cache()  # clients cached by earlier tests may hold other credentials

    return point


@pytest.fixture
def s3_env(point_aws_at, s3_server: str) -> str:
    """Point the AWS env at the moto server for this test; return a fresh bucket's name."""
    point_aws_at(s3_server)
    import boto3

    bucket = f"tao-test-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket


# --------------------------------------------------------------------------- Slurm
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM_CLUSTER_SCRIPT = os.path.join(_REPO, "tools", "slurm_cluster.sh")


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The real two-node test cluster of ``tools/slurm_cluster.sh`` (``make test`` starts it).

    Returns the ``SLURM_CONF`` path and sets it in ``os.environ`` for the session. Under CI
    (``CI=true``) a cluster that is not up FAILS the test (slurm tests are never skipped in CI);
    elsewhere the test is skipped with the command that starts it.
    """
    try:
        proc = subprocess.run(["bash", SLURM_CLUSTER_SCRIPT, "status"], capture_output=True,
                              text=True, timeout=30)
        up = proc.returncode == 0
        why = (proc.stderr or proc.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        up, why = False, str(exc)
    if not up:
        message = (f"the Slurm test cluster is not up ({why}); start it with "
                   f"`{SLURM_CLUSTER_SCRIPT} start` (root; `make test` does it)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    env_line = subprocess.run(["bash", SLURM_CLUSTER_SCRIPT, "env"], capture_output=True, text=True,
                              check=True).stdout.strip()
    conf = env_line.split("=", 1)[1]
    os.environ["SLURM_CONF"] = conf
    return conf


# --------------------------------------------------------------------------- container engine
CONTAINER_ENGINE_SCRIPT = os.path.join(_REPO, "tools", "container_engine.sh")


@pytest.fixture(scope="session")
def container_engine() -> str:
    """The real container engine of ``tools/container_engine.sh`` (podman + runc; ``make test``
    starts it) and the test image built from this machine's Python (cached between runs).

    Returns the image name and sets ``CONTAINERS_CONF`` in ``os.environ`` for the session (jobs use
    ``cli="podman"``). Under CI (``CI=true``) an engine that does not run a container FAILS the test
    (docker tests are never skipped in CI); elsewhere the test is skipped with the command to run.
    """
    sys.path.insert(0, os.path.join(_REPO, "tools"))
    try:
        env = subprocess.run(["bash", CONTAINER_ENGINE_SCRIPT, "env"], capture_output=True, text=True,
                             check=True).stdout.split()
        conf = next(w.split("=", 1)[1] for w in env if w.startswith("CONTAINERS_CONF="))
        if not os.path.exists(conf):
            raise RuntimeError(f"{conf} is missing")
        os.environ["CONTAINERS_CONF"] = conf
        from container_test_image import build

        image = build("podman")
        probe = subprocess.run(["podman", "run", "--rm", "--network", "host", image, "/bin/sh", "-c", "echo ok"],
                               capture_output=True, text=True, timeout=120)
        if probe.stdout.strip() != "ok":
            raise RuntimeError(probe.stderr.strip() or f"exit {probe.returncode}")
    except (OSError, RuntimeError, SystemExit, subprocess.SubprocessError, StopIteration) as exc:
        message = (f"the container engine is not usable ({exc}); start it with "
                   f"`{CONTAINER_ENGINE_SCRIPT} start` (root; `make test` does it)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return image


@pytest.fixture(scope="session")
def worker_image(container_engine) -> str:
    """The built-in worker's image of ``tools/container_worker_image.py`` (this Python plus the
    worker's installed packages and this checkout's ``tao_sdk``; about 40-60 s the first time on
    this machine, reused while its inputs are unchanged). Fails (never skips) when it cannot be built."""
    from container_worker_image import build

    try:
        return build("podman")
    except SystemExit as exc:  # the builder's message says what is missing
        pytest.fail(f"the worker image could not be built: {exc}")


@pytest.fixture
def container_cleanup(tmp_path) -> Iterator[None]:
    """Remove the job containers (of any state) whose work folder is under ``tmp_path`` when the
    test ends, so a failed test leaves nothing running."""
    yield
    out = subprocess.run(["podman", "ps", "-a", "--filter", "label=org.tao-skill-bank.job-id", "--format",
                          '{{.ID}} {{index .Labels "org.tao-skill-bank.workdir"}}'], capture_output=True, text=True)
    ids = [line.split()[0] for line in out.stdout.splitlines()
           if len(line.split()) == 2 and line.split()[1].startswith(str(tmp_path))]
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True)


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once (creating its tables takes seconds)."""
    mlflow = pytest.importorskip("mlflow")
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.tracking.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(_mlflow_template, tmp_path, monkeypatch) -> str:
    """``MLFLOW_TRACKING_URI`` of a fresh SQLite store (a copy of the template) for this test."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_template, path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
