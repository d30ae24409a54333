"""Platform interface: :class:`JobTask` (what to run), :class:`Platform` (where), registry.

A platform never stores secrets: they travel in :attr:`JobTask.env` straight into the job's
process environment and are never written to files or handles.
"""

from __future__ import annotations

import abc
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tao_sdk.errors import PlatformError

__all__ = [
    "NODE_PYTHON",
    "JobTask",
    "Platform",
    "PlatformState",
    "get_platform",
    "known_platforms",
    "register_platform",
]


#: ``argv[0]`` placeholder for "the Python interpreter on the node that runs the job": the
#: local platform puts its own interpreter there, slurm the configured ``python`` (resolved on
#: the compute node), so a task carries no path of the machine that created it.
NODE_PYTHON = "{python}"


@dataclass
class JobTask:
    """Everything a platform needs to run one job, the same for every platform.

    Attributes:
        job_id: the job store id (``"job-..."``); used for naming (scheduler job names).
        command: argv of the job, e.g. ``["{python}", "-m", "tao_sdk.worker", "rtdetr",
            "train", "-e", spec]``; ``argv[0] == NODE_PYTHON`` is replaced by the platform's
            interpreter on the node (see :meth:`argv`).
        env: extra environment variables for the job. SECRETS GO HERE (S3 keys, the model
            encryption key), never in the spec or the command line; platforms never write them
            to a file another user can read (see each platform's docs for how they travel).
        workdir: directory for the job's logs and state (created when missing); the job's
            current directory. On a cluster it must be on a filesystem the nodes share.
        log_path: file receiving stdout+stderr (appended); ``<workdir>/job.log`` when None.
        num_gpus: GPUs per node the job needs (0 = CPU only).
        gpu_ids: which GPUs of the node (``train.gpu_ids``; empty: the first ``num_gpus``); the
            docker platform exposes exactly these to the container.
        num_nodes: number of nodes (1 for the local platform).
        processes_per_node: processes the job starts per node when it has no GPU (with GPUs:
            one per GPU); the launcher inside the job starts them (torchrun / Lightning spawn).
        image: container image to run the command in (docker; clusters with a container runtime,
            e.g. Slurm + pyxis ``--container-image``); None: the node's own environment.
        cpus_per_node / memory / time_limit: resources (``memory`` like ``"32G"``,
            ``time_limit`` like ``"04:00:00"``); None: the platform's default.
        visible_devices_env: how the network selects GPUs (``CUDA_VISIBLE_DEVICES`` for
            torchrun networks, ``TAO_VISIBLE_DEVICES`` for Lightning ones; skill_info launch).
        data_paths: local paths the job reads or writes, by what they are (dotted spec key,
            ``"workdir"``...): a cluster platform refuses one its nodes cannot see.
    """

    job_id: str
    command: list[str]
    env: dict[str, str]
    workdir: str
    log_path: str | None = None
    num_gpus: int = 0
    gpu_ids: list[int] = field(default_factory=list)
    num_nodes: int = 1
    processes_per_node: int = 1
    image: str | None = None
    cpus_per_node: int | None = None
    memory: str | None = None
    time_limit: str | None = None
    visible_devices_env: str | None = None
    data_paths: dict[str, str] = field(default_factory=dict)

    def argv(self, python: str) -> list[str]:
        """The command with the :data:`NODE_PYTHON` placeholder replaced by ``python``."""
        return [python if i == 0 and a == NODE_PYTHON else a for i, a in enumerate(self.command)]

    def check(self) -> None:
        """Raise PlatformError for an empty command or non-string env values."""
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise PlatformError(
                f"job {self.job_id}: command must be a non-empty list of strings, got "
                f"{self.command!r}"
            )
        bad_env = sorted(k for k, v in self.env.items() if not isinstance(v, str))
        if bad_env:
            raise PlatformError(
                f"job {self.job_id}: env values must be strings; fix {', '.join(bad_env)}"
            )


@dataclass
class PlatformState:
    """What a platform knows about a submitted job.

    Attributes:
        state: ``"running"`` (still executing), ``"exited"`` (finished; see ``exit_code``) or
            ``"unknown"`` (cannot be determined from here, e.g. the handle belongs to another
            host; try again from the right machine).
        exit_code: the command's exit code when ``state == "exited"``: 0 success, > 0 failure,
            ``-N`` killed by signal N, ``None`` when the job vanished without reporting one
            (killed with SIGKILL, machine rebooted): treat that as a failure.
        detail: a human-readable explanation (empty when nothing noteworthy).
    """

    state: str
    exit_code: int | None = None
    detail: str = ""

    @property
    def is_running(self) -> bool:
        """True while the job is still executing."""
        return self.state == "running"

    @property
    def is_exited(self) -> bool:
        """True once the job has finished (successfully or not)."""
        return self.state == "exited"


class Platform(abc.ABC):
    """A place to run :class:`JobTask` s. Subclasses must be stateless between calls: every
    method after :meth:`submit` works from the handle alone, so a new instance in a new process
    can re-attach to jobs launched by an older one."""

    #: registry name, e.g. ``"local"``.
    name: str = ""
    #: where this platform's AutoML controllers (SDK code, not a TAO job) run; None: here too.
    #: Their trials always run on this platform.
    controller_platform: str | None = None

    def plan_backend(self, skill: Any, action: str, deploy: bool = False, image: str | None = None) -> Any:
        """What runs ``action`` of ``skill`` on this platform (a :class:`tao_sdk.backends.Backend`),
        or None when it is this machine's answer (:func:`tao_sdk.backends.skill_backend`); container
        platforms answer with the image and the command inside it. ``image``: the job's own image."""
        return None

    @abc.abstractmethod
    def submit(self, task: JobTask) -> dict[str, Any]:
        """Start ``task`` and return its handle: a JSON-serialisable dict (no secrets) to store
        in the job record's ``platform_handle``. Raises PlatformError when it cannot start."""

    @abc.abstractmethod
    def poll(self, handle: dict[str, Any]) -> PlatformState:
        """Return the current :class:`PlatformState` of the job described by ``handle``."""

    @abc.abstractmethod
    def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the job (and everything it started). Idempotent: cancelling a finished job is a
        no-op. Returns once the job is gone (or the platform accepted the cancel)."""

    @abc.abstractmethod
    def logs_path(self, handle: dict[str, Any]) -> str | None:
        """Return the local path of the job's combined stdout/stderr log, or None when the
        platform keeps logs elsewhere."""

    def recover_handle(self, workdir: str) -> dict[str, Any] | None:
        """The handle of a job started from ``workdir`` whose submitter died before storing it
        (written by the job itself when it started), or None when nothing started there. A
        platform that cannot tell returns None (the default)."""
        return None

    def block_start(self, workdir: str) -> None:
        """Make sure a job submitted from ``workdir`` whose start is still in flight never starts
        (the submission is being given up). Default: nothing to do (the platform starts jobs
        synchronously in :meth:`submit`)."""

    def allow_start(self, workdir: str) -> None:
        """Undo :meth:`block_start` for a job found started (and now tracked). Default: no-op."""

    def wait(
        self, handle: dict[str, Any], timeout: float | None = None, interval: float = 0.5
    ) -> PlatformState:
        """Poll until the job is no longer running or ``timeout`` seconds pass (None: forever);
        return the last :class:`PlatformState` (check ``.is_exited``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.poll(handle)
            if state.state != "running":
                return state
            if deadline is not None and time.monotonic() >= deadline:
                return state
            time.sleep(interval)


# name -> "module:attribute" (imported lazily) or a factory callable.
_REGISTRY: dict[str, str | Callable[..., Platform]] = {
    "local": "tao_sdk.platforms.local:LocalPlatform",
    "slurm": "tao_sdk.platforms.slurm:SlurmPlatform",
    "docker": "tao_sdk.platforms.docker:DockerPlatform",
}
_PLANNED = ("kubernetes",)


def register_platform(name: str, factory: str | Callable[..., Platform]) -> None:
    """Register a platform under ``name``: a ``"module:Class"`` string (imported on first use)
    or a callable returning a :class:`Platform` from keyword options."""
    _REGISTRY[name] = factory


def known_platforms() -> list[str]:
    """Return the names accepted by :func:`get_platform`, sorted."""
    return sorted(_REGISTRY)


def get_platform(name: str, **options: Any) -> Platform:
    """Return a platform instance by name, e.g. ``get_platform("local")``.

    ``options`` are passed to the platform's constructor. Raises PlatformError listing the
    known names when ``name`` is not registered.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        planned = [p for p in _PLANNED if p not in _REGISTRY]
        hint = f" ({', '.join(planned)} are planned but not available yet)" if planned else ""
        raise PlatformError(
            f"unknown platform {name!r}; known platforms: {', '.join(known_platforms())}"
            f"{hint}. Use platform='local' to run on this machine."
        )
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    try:
        return factory(**options)
    except TypeError as exc:
        raise PlatformError(f"bad options for platform {name!r}: {exc}") from exc
