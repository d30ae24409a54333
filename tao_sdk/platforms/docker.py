"""Docker platform: each job runs detached in a container of the image its skill names.

How a job runs (``get_platform("docker")``, ``--platform docker``):

- **Image**: the per-job image (``create_job(image=...)`` / ``--image``), else the setting
  ``image``, else ``worker_image`` for the networks the built-in worker runs (an image built from
  this project's ``Containerfile``), else the TAO image the skill names for the action in its
  ``skill_info.yaml`` (``tao_container``: pyt, deploy for TensorRT actions, data-services for
  dataset conversion; pinned in ``tools/bank_sources.yaml`` ``tao_containers``). In NVIDIA's images
  the command is TAO's own entrypoint, ``<network> <action> -e spec.yaml``; in the worker image
  ``python3 -m tao_sdk.worker <network> <action> -e spec.yaml``. ``--pull=missing`` (setting
  ``pull``): an absent image is pulled at submit; ``nvcr.io`` needs NGC credentials first
  (``docker login nvcr.io -u '$oauthtoken'``, password: your NGC API key).
- **Run options** (TAO's conventions): ``--gpus '"device=<ids>"'`` (docker) or CDI devices
  ``--device nvidia.com/gpu=<id>`` (podman) for ``train.gpu_ids`` / the first ``train.num_gpus``
  GPUs (inside, they are numbered from 0: ``CUDA_VISIBLE_DEVICES`` / ``TAO_VISIBLE_DEVICES`` say so);
  ``--ipc=host`` (or ``--shm-size`` when the setting ``ipc`` is not ``host``); ``--user
  $(id -u):$(id -g)``; ``--network host``; the work folder, the log folder and the results folder
  bind-mounted read-write at the same paths, every other local path of the spec (dataset roots,
  pretrained weights, parent checkpoints; not the ``/ptm/...`` destinations of the PTM downloads the
  job makes itself) read-only at the same path, the spec inside the work
  folder; labels ``org.tao-skill-bank.job-id`` / ``.workdir`` / ``.host`` tie the container to the job.
- **Secrets** (``JobTask.env`` and the pass-through variables of the submitting process whose names
  look secret) go to a 0600 file in the work folder (``O_EXCL``); the container's first process
  (:mod:`tao_sdk.platforms._container_entry`, mounted read-only with :mod:`_supervise`) reads it
  into its environment and deletes it before the command starts, and :meth:`DockerPlatform.submit`
  waits for that. ``docker run --env-file`` is NOT used: the engine copies such variables into the
  container config, where ``docker inspect`` shows them.
- **State**: ``<cli> inspect`` plus the job's own ``exit_status`` file (written in the mounted work
  folder by the supervisor inside); once the container ended, its log is copied to the log file, the
  exit code is recorded and the container is removed (setting ``remove``), so the files alone tell
  how it ended. **Cancel**: ``<cli> stop --time <cancel_timeout>`` (SIGTERM to the job's tree, SIGKILL
  after the grace period). **Re-attach**: every method works from the handle; a job whose submitter
  died before storing it is found by its work-folder label (:meth:`recover_handle`).
- **Engine**: ``docker`` or ``podman`` (setting ``cli``; default: the first whose engine answers);
  ``DOCKER_HOST`` is honoured (docker) and kept in the handle, setting ``host`` names a remote engine
  (podman: ``--url``).

Configuration (lowest to highest precedence): ``<workspace>/platforms/docker.yaml`` (or the file
named by ``TAO_DOCKER_CONFIG``), ``TAO_DOCKER_<KEY>`` variables, ``get_platform("docker", **options)``.
Keys: :data:`CONFIG_KEYS`. Handle keys: ``container_id``, ``container_name``, ``cli``, ``host``,
``image``, ``workdir``, ``log_path``, ``exit_status_path``, ``secrets_path``, ``submitted``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tao_sdk.errors import PlatformError
from tao_sdk.platforms import jobfiles
from tao_sdk.platforms._supervise import write_exit_status
from tao_sdk.platforms.base import JobTask, PlatformState
from tao_sdk.platforms.docker_plan import ngc_login_hint
from tao_sdk.platforms.settings import ConfiguredPlatform, load_settings

__all__ = ["CONFIG_KEYS", "DockerPlatform", "load_config", "ngc_login_hint"]

#: Platform configuration keys and what they mean (all optional).
CONFIG_KEYS: dict[str, str] = {
    "cli": "container engine CLI: docker or podman (or a path); default: the first whose engine answers",
    "host": "engine address (DOCKER_HOST for docker, --url for podman); default: $DOCKER_HOST / local",
    "image": "image for every job (beats the skill's TAO image)",
    "worker_image": "image built from this project's Containerfile: the built-in worker's networks run in it",
    "entrypoint": "launcher inside the image run as `<launcher> <network> <action> -e spec` "
                  "(default: TAO's own per-network commands)",
    "python": "interpreter inside the image (default python3)",
    "pull": "missing (default: pull an absent image at submit), always or never",
    "gpus": "job (default: the job's gpu_ids / first num_gpus GPUs), all, or none (CPU-only machines)",
    "gpu_flag": "gpus (docker --gpus) or cdi (--device nvidia.com/gpu=N); default: gpus for docker, cdi for podman",
    "ipc": "IPC namespace (default host, TAO's --ipc=host); another value uses shm_size",
    "shm_size": "--shm-size when ipc is not host (default 16g)",
    "user": "--user (default: the submitter's uid:gid; empty: the image's user; another uid:gid must be "
            "able to write the job and results folders)",
    "network": "--network (default host)",
    "mounts": "extra bind mounts, e.g. /lustre:/lustre:ro (list, or a shell-quoted string)",
    "pass_env": "variables of the submitting process the job gets (glob list; default AWS_* HF_* NGC_* WANDB_*)",
    "extra_run_args": "extra `run` arguments (list, or a shell-quoted string)",
    "cancel_timeout": "seconds between SIGTERM and SIGKILL when a job is cancelled (default 30)",
    "start_timeout": "seconds submit waits for the container to take its secrets (default 120)",
    "remove": "remove a container once its end is recorded (default true)",
}
_INT_KEYS = {"cancel_timeout", "start_timeout"}
_LIST_KEYS = {"mounts", "pass_env", "extra_run_args"}
_DEFAULT_PASS_ENV = ["AWS_*", "HF_*", "NGC_*", "WANDB_*"]
_LABEL = "org.tao-skill-bank"
_HANDLE = "docker_handle.json"
_EXIT_STATUS = "exit_status"
_SDK_DIR = Path(__file__).resolve().parent
_IN_IMAGE = "/opt/tao-sdk"
_RUNNING = {"created", "running", "paused", "restarting", "configured", "initialized", "stopping"}
_ENGINES: dict[tuple[str, str | None], bool] = {}


def load_config(**options: Any) -> dict[str, Any]:
    """The docker settings: the config file, then ``TAO_DOCKER_<KEY>`` variables, then ``options``."""
    cfg = load_settings("docker", CONFIG_KEYS, options, ints=_INT_KEYS, args=_LIST_KEYS)
    if str(cfg.get("pull", "missing")) not in ("missing", "always", "never"):
        raise PlatformError(f"docker setting pull={cfg['pull']!r}: use missing, always or never")
    if str(cfg.get("remove", "true")).lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise PlatformError(f"docker setting remove={cfg['remove']!r}: use true or false")
    return cfg


def _is_podman(cli: str) -> bool:
    return "podman" in Path(cli).name


def _engine_env(cli: str, host: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if host and not _is_podman(cli):
        env["DOCKER_HOST"] = host
    return env


def _base_args(cli: str, host: str | None) -> list[str]:
    return [cli, "--url", host] if host and _is_podman(cli) else [cli]


def _engine_answers(cli: str, host: str | None) -> bool:
    key = (cli, host)
    if key not in _ENGINES:
        try:
            proc = subprocess.run([*_base_args(cli, host), "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, text=True, timeout=20, env=_engine_env(cli, host))
            _ENGINES[key] = proc.returncode == 0 and bool(proc.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            _ENGINES[key] = False
    return _ENGINES[key]


def detect_cli(cfg: dict[str, Any]) -> str:
    """The engine CLI to use: the setting ``cli``, else docker or podman, whichever engine answers.
    Raises PlatformError saying what to install or start."""
    host = cfg.get("host") or os.environ.get("DOCKER_HOST")
    named = cfg.get("cli")
    if named:
        if not shutil.which(str(named)):
            raise PlatformError(f"container engine CLI {named!r} (docker setting cli / TAO_DOCKER_CLI) is not "
                                "on PATH; install it or set cli to docker or podman")
        return str(named)
    tried = []
    for name in ("docker", "podman"):
        if shutil.which(name):
            if _engine_answers(name, cfg.get("host") if name == "podman" else host):
                return name
            tried.append(f"{name} (on PATH, but its engine does not answer `{name} version`)")
    raise PlatformError("no container engine answers here"
                        + (f": tried {'; '.join(tried)}" if tried else ": neither docker nor podman is on PATH")
                        + ". Start the docker daemon, or install podman (`apt-get install -y podman runc`), or "
                        "set TAO_DOCKER_CLI / the docker setting cli")


def _mount_plan(task: JobTask, workdir: str, log_dir: str) -> list[tuple[str, bool]]:
    """(path, read_only) of every bind mount, parents first: work/log/results folders read-write,
    the spec's other local paths (a file: its folder) read-only. Each is mounted at the path the
    spec names (its symlinks resolved on this side). Raises PlatformError for a path that does not
    exist."""
    rw = {os.path.abspath(workdir), os.path.abspath(log_dir)}
    results = task.data_paths.get("results_dir")
    if results and results.startswith("/"):
        Path(results).mkdir(parents=True, exist_ok=True)
        rw.add(os.path.abspath(results))
    ro: set[str] = set()
    for key, path in task.data_paths.items():
        if key == "results_dir" or not path.startswith("/"):
            continue
        real = os.path.abspath(path)
        if any(real == r or real.startswith(r.rstrip("/") + "/") for r in rw):
            continue
        if not os.path.exists(real):
            raise PlatformError(f"job {task.job_id}: {key} = {path} does not exist on this machine, so it "
                                "cannot be mounted into the container; fix the path, create it, or put it in "
                                "S3 (s3://...)")
        folder = real if os.path.isdir(real) else os.path.dirname(real)
        ro.add(real if folder == "/" else folder)  # a file's folder: the dataset root, its siblings too
    plan = sorted([(p, False) for p in rw] + [(p, True) for p in ro], key=lambda m: (m[0].count("/"), m[0]))
    kept: list[tuple[str, bool]] = []
    for path, read_only in plan:
        covered = [m for m in kept if path == m[0] or path.startswith(m[0].rstrip("/") + "/")]
        if covered and (read_only or not covered[-1][1]):
            continue  # an enclosing mount already gives the same (or more) access
        kept.append((path, read_only))
    return kept


def _gpu_args(task: JobTask, cfg: dict[str, Any], cli: str) -> tuple[list[str], int]:
    """(run arguments, number of GPUs the container sees)."""
    ids = [int(i) for i in task.gpu_ids] or list(range(task.num_gpus))
    which = str(cfg.get("gpus") or "job")
    if which not in ("job", "all", "none"):
        raise PlatformError(f"docker setting gpus={which!r}: use job, all or none")
    if not ids or which == "none":
        return [], 0
    flag = cfg.get("gpu_flag") or ("cdi" if _is_podman(cli) else "gpus")
    everything = which == "all"
    if flag == "cdi":
        devices = ["all"] if everything else [str(i) for i in ids]
        return [a for d in devices for a in ("--device", f"nvidia.com/gpu={d}")], len(ids)
    if flag != "gpus":
        raise PlatformError(f"docker setting gpu_flag={flag!r}: use gpus or cdi")
    return ["--gpus", "all" if everything else f'"device={",".join(map(str, ids))}"'], len(ids)


def _env_split(task: JobTask, cfg: dict[str, Any], gpus: int) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) environment of the job: pass-through variables of this process, the task's
    own, the GPU selection inside the container."""
    patterns = cfg.get("pass_env") or _DEFAULT_PASS_ENV
    passed = {k: v for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    env = {**passed, **task.env, "PYTHONUNBUFFERED": "1", "HOME": "/tmp"}
    if gpus and task.visible_devices_env:
        env[task.visible_devices_env] = ",".join(str(i) for i in range(gpus))
    return jobfiles.split_secret_env(env)


def _give_secrets_to(path: str, user: str) -> None:
    """Let the container's user (``uid[:gid]``) read the 0600 secrets file (it stays 0600)."""
    uid = user.split(":", 1)[0]
    if not user or uid == str(os.getuid()):
        return
    if not uid.isdigit() or os.getuid() != 0:
        Path(path).unlink(missing_ok=True)
        raise PlatformError(f"docker setting user={user!r}: the job's secrets are handed over in a file only its "
                            "owner reads, so the container must run as the submitting user (unset user) or, when "
                            "submitting as root, as a numeric uid:gid")
    os.chown(path, int(uid), -1)


def _container_name(task: JobTask, workdir: str) -> str:
    return f"tao-{task.job_id}-{hashlib.sha256(workdir.encode()).hexdigest()[:8]}"


class DockerPlatform(ConfiguredPlatform):
    """Runs jobs in containers with docker or podman (``get_platform("docker", **settings)``).

    ``settings`` override the config file and ``TAO_DOCKER_*`` variables (keys: :data:`CONFIG_KEYS`).
    """

    name = "docker"
    #: AutoML controllers are SDK code, not a TAO image: they run here, their trials in containers
    controller_platform = "local"

    def _load_config(self) -> dict[str, Any]:
        return load_config(**self.settings)

    # ---------------------------------------------------------------- engine calls
    def _engine(self, handle: dict[str, Any] | None = None) -> tuple[str, str | None]:
        if handle:
            return handle["cli"], handle.get("host")
        cli = detect_cli(self.config)
        host = self.config.get("host") or (None if _is_podman(cli) else os.environ.get("DOCKER_HOST"))
        return cli, host

    def _run(self, args: list[str], handle: dict[str, Any] | None = None, timeout: float = 120.0,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        cli, host = self._engine(handle)
        full = [*_base_args(cli, host), *args]
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                                  env=_engine_env(cli, host), stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise PlatformError(f"{cli} not found: install docker or podman, or set TAO_DOCKER_CLI") from exc
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(f"`{shlex.join(full[:3])}` did not answer in {timeout:.0f} s: is the engine "
                                f"running (`{cli} info`)?") from exc
        if check and proc.returncode != 0:
            raise PlatformError(f"`{shlex.join(full[:3])}` failed (exit {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()}")
        return proc

    # ---------------------------------------------------------------- submit
    def _run_args(self, task: JobTask, cli: str, workdir: str, log_path: str, name: str,
                  secrets_path: str | None, plain: dict[str, str], gpu_args: list[str]) -> list[str]:
        cfg = self.config
        image = task.image or cfg.get("image")
        if not image:
            raise PlatformError(f"job {task.job_id}: no container image: give the job an image or set the docker "
                                "setting image (TAO_DOCKER_IMAGE or <workspace>/platforms/docker.yaml)")
        labels = {"job-id": task.job_id, "workdir": workdir, "host": socket.gethostname(), "log": log_path}
        args = ["run", "-d", "--name", name, f"--pull={cfg.get('pull') or 'missing'}", "--workdir", workdir]
        args += [a for k, v in labels.items() for a in ("--label", f"{_LABEL}.{k}={v}")]
        user = cfg.get("user", f"{os.getuid()}:{os.getgid()}")
        args += ["--user", str(user)] if user else []
        args += ["--network", str(cfg.get("network") or "host")]
        ipc = str(cfg.get("ipc") or "host")
        args += ["--ipc", ipc] if ipc == "host" else ["--ipc", ipc, "--shm-size", str(cfg.get("shm_size") or "16g")]
        args += gpu_args
        args += [a for k, v in sorted(plain.items()) for a in ("-e", f"{k}={v}")]
        for path, read_only in _mount_plan(task, workdir, str(Path(log_path).parent)):
            args += ["-v", f"{os.path.realpath(path)}:{path}:{'ro' if read_only else 'rw'}"]
        for entry in ("_container_entry.py", "_supervise.py"):
            args += ["-v", f"{_SDK_DIR / entry}:{_IN_IMAGE}/{entry}:ro"]
        args += [a for m in cfg.get("mounts") or [] for a in ("-v", str(m))]
        args += [str(a) for a in cfg.get("extra_run_args") or []]
        python = str(cfg.get("python") or "python3")
        return [*args, image, python, "-S", f"{_IN_IMAGE}/_container_entry.py", secrets_path or "-",
                str(Path(workdir) / _EXIT_STATUS), "--", *task.argv(python)]

    def submit(self, task: JobTask) -> dict[str, Any]:
        """Start ``task`` in a detached container and return its handle (see the module docstring).

        Raises PlatformError for a bad task, a spec path that does not exist here, no engine, or the
        engine's refusal (a pull that needs ``docker login nvcr.io`` says so)."""
        task.check()
        if task.num_nodes != 1:
            raise PlatformError(f"job {task.job_id}: the docker platform runs one container on this machine but "
                                f"num_nodes={task.num_nodes}; set train.num_nodes=1 or use platform='slurm'")
        cli, host = self._engine()
        workdir_p = Path(task.workdir).expanduser().absolute()
        workdir = str(workdir_p)
        log_path = str(Path(task.log_path).expanduser().absolute()) if task.log_path else str(workdir_p / "job.log")
        workdir_p.mkdir(parents=True, exist_ok=True)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        jobfiles.refuse_if_abandoned(task.job_id, workdir_p)
        jobfiles.clear_stale(workdir_p, _HANDLE)
        name = _container_name(task, workdir)
        self._run(["rm", "-f", name], check=False)  # an earlier run of this work folder
        gpu_args, gpus = _gpu_args(task, self.config, cli)
        plain, secret = _env_split(task, self.config, gpus)
        secrets_path = jobfiles.write_secrets(workdir_p, secret) if secret else None
        if secrets_path:
            _give_secrets_to(secrets_path, str(self.config.get("user", "")))
        args = self._run_args(task, cli, workdir, log_path, name, secrets_path, plain, gpu_args)
        proc = self._run(args, timeout=3600, check=False)  # a pull of a TAO image takes minutes
        if proc.returncode != 0:
            if secrets_path:
                Path(secrets_path).unlink(missing_ok=True)
            self._run(["rm", "-f", name], check=False)
            raise PlatformError(self._start_error(task, cli, args, proc))
        handle = {"container_id": proc.stdout.strip().splitlines()[-1], "container_name": name, "cli": cli,
                  "host": host, "image": args[args.index("-S") - 2], "workdir": workdir, "log_path": log_path,
                  "exit_status_path": str(workdir_p / _EXIT_STATUS), "secrets_path": secrets_path,
                  "submitted": time.time()}
        jobfiles.write_json(workdir_p / _HANDLE, handle)
        self._await_secrets_taken(handle)
        return handle

    def _start_error(self, task: JobTask, cli: str, args: list[str],
                     proc: subprocess.CompletedProcess[str]) -> str:
        image = args[args.index("-S") - 2]
        err = (proc.stderr or proc.stdout).strip()
        hint = ""
        if any(w in err.lower() for w in ("unauthorized", "denied", "authentication required", "login")):
            hint = "; " + (ngc_login_hint(cli, image) or f"log in to the registry of {image} (`{cli} login`)")
        elif "cdi" in err.lower() or "gpu" in err.lower():
            hint = ("; the job asks for GPUs (train.num_gpus / train.gpu_ids): install the NVIDIA Container "
                    "Toolkit (podman: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`), or run CPU-only "
                    "with the docker setting gpus=none (TAO_DOCKER_GPUS=none)")
        elif "pull" in err.lower() or "manifest" in err.lower():
            hint = f"; check the image name, or pull it first (`{Path(cli).name} pull {image}`)"
        return f"job {task.job_id}: `{Path(cli).name} run` of {image} failed (exit {proc.returncode}): {err}{hint}"

    def _await_secrets_taken(self, handle: dict[str, Any]) -> None:
        """Wait until the container's first process took (and deleted) the secrets file; delete it
        when the container ended without taking it; stop the job when it never takes it."""
        path = handle.get("secrets_path")
        if not path:
            return
        deadline = time.monotonic() + float(self.config.get("start_timeout") or 120)
        while os.path.exists(path):
            state, _ = self._inspect(handle)
            if state is None or str(state.get("Status", "")).lower() not in _RUNNING:
                Path(path).unlink(missing_ok=True)
                return
            if time.monotonic() > deadline:
                Path(path).unlink(missing_ok=True)
                self.cancel(handle)
                raise PlatformError(f"container {handle['container_name']} did not read its secrets within "
                                    "start_timeout seconds; it was stopped. See its log "
                                    f"{handle['log_path']} or raise the docker setting start_timeout")
            time.sleep(0.05)

    # ---------------------------------------------------------------- adoption
    def recover_handle(self, workdir: str) -> dict[str, Any] | None:
        """The handle of the job started from ``workdir`` when its submitter died before storing
        it: ``<workdir>/docker_handle.json`` (written right after the engine answered), else the
        container labelled with the work folder. None when nothing started there."""
        try:
            handle = json.loads((Path(workdir) / _HANDLE).read_text(encoding="utf-8"))
            if isinstance(handle, dict) and handle.get("container_id"):
                return handle
        except (OSError, ValueError):
            pass
        absdir = str(Path(workdir).expanduser().absolute())
        proc = self._run(["ps", "-a", "--no-trunc", "--filter", f"label={_LABEL}.workdir={absdir}", "--format",
                          "{{.ID}} {{.Names}}"], check=False)
        found = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2]
        if proc.returncode != 0 or not found:
            return None
        cli, host = self._engine()
        secrets = sorted(Path(absdir).glob(f"{jobfiles.SECRETS_PREFIX}*"))
        return {"container_id": found[0][0], "container_name": found[0][1], "cli": cli, "host": host,
                "image": None, "workdir": absdir, "log_path": str(Path(absdir) / "job.log"),
                "exit_status_path": str(Path(absdir) / _EXIT_STATUS),
                "secrets_path": str(secrets[0]) if secrets else None, "submitted": None}

    def block_start(self, workdir: str) -> None:
        """Make a container from ``workdir`` that has not started its command yet exit at once
        (status 125). Call :meth:`recover_handle` afterwards to adopt one that runs."""
        jobfiles.block_start(workdir)

    def allow_start(self, workdir: str) -> None:
        """Undo :meth:`block_start` once the job found started from there is tracked."""
        jobfiles.allow_start(workdir)

    # ---------------------------------------------------------------- state
    def _inspect(self, handle: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """(the container's State, error): (None, "") when the engine has no such container."""
        proc = self._run(["inspect", "--type", "container", "--format", "{{json .State}}",
                          handle["container_id"]], handle, timeout=60, check=False)
        if proc.returncode == 0:
            try:
                return json.loads(proc.stdout), ""
            except ValueError:
                return None, f"unreadable inspect output {proc.stdout[:200]!r}"
        err = (proc.stderr or proc.stdout).strip()
        if "no such" in err.lower():
            return None, ""
        return None, err or f"inspect exit {proc.returncode}"

    def _copy_log(self, handle: dict[str, Any]) -> None:
        """Copy the engine's log of the container to the job's log file (atomically)."""
        path = Path(handle["log_path"])
        tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
        cli, host = handle["cli"], handle.get("host")
        with open(tmp, "wb") as fh:
            proc = subprocess.run([*_base_args(cli, host), "logs", handle["container_id"]], stdout=fh,
                                  stderr=subprocess.STDOUT, env=_engine_env(cli, host), timeout=120)
        if proc.returncode == 0:
            os.replace(tmp, path)
        else:
            tmp.unlink(missing_ok=True)

    def _finish(self, handle: dict[str, Any], state: dict[str, Any]) -> PlatformState:
        """Record the end of a container: its log, its exit code, no secrets file, no container."""
        self._copy_log(handle)
        status_path = handle["exit_status_path"]
        code = jobfiles.read_exit_code(status_path)
        engine_code = int(state.get("ExitCode") or 0)
        if code is None:
            code = -(engine_code - 128) if engine_code > 128 else engine_code
            write_exit_status(status_path, code)
        if handle.get("secrets_path"):
            Path(handle["secrets_path"]).unlink(missing_ok=True)
        if str(self.config.get("remove", "true")).lower() in ("1", "true", "yes"):
            self._run(["rm", "-f", handle["container_id"]], handle, check=False)
        error = state.get("Error") or ""
        return PlatformState("exited", code, f"container error: {error}" if error else "")

    def poll(self, handle: dict[str, Any]) -> PlatformState:
        """The job's state: ``running`` while the container is created/running/paused, ``exited``
        with the command's exit code (``-15`` cancelled, ``None`` when the container vanished
        without one), ``unknown`` when the engine cannot be asked (try again)."""
        state, err = self._inspect(handle)
        if state is None:
            if err:
                return PlatformState("unknown", None, f"cannot ask {handle['cli']} about container "
                                     f"{handle['container_name']}: {err}")
            code = jobfiles.read_exit_code(handle["exit_status_path"])
            if code is not None:
                return PlatformState("exited", code)
            return PlatformState("exited", None, f"container {handle['container_name']} is gone and left no exit "
                                 f"status (removed by hand?); see the log {handle.get('log_path')}")
        if str(state.get("Status", "")).lower() in _RUNNING:
            return PlatformState("running")
        return self._finish(handle, state)

    def cancel(self, handle: dict[str, Any]) -> None:
        """``stop`` the container (SIGTERM to the job's whole tree, SIGKILL after ``cancel_timeout``
        seconds) and record it as cancelled (-15). Idempotent."""
        if self.poll(handle).is_exited:
            return
        grace = int(self.config.get("cancel_timeout") or 30)
        self._run(["stop", "--time", str(grace), handle["container_id"]], handle, timeout=grace + 60)
        if jobfiles.read_exit_code(handle["exit_status_path"]) is None:
            write_exit_status(handle["exit_status_path"], -15)
        if not self.poll(handle).is_exited:
            raise PlatformError(f"container {handle['container_name']} still runs after `stop`; check "
                                f"`{handle['cli']} ps -a` and the engine's log")

    def logs_path(self, handle: dict[str, Any]) -> str | None:
        """The job's log file, refreshed from the engine's log while the container exists."""
        if self._inspect(handle)[0] is not None:
            self._copy_log(handle)
        return handle.get("log_path")

    # ---------------------------------------------------------------- planning
    def plan_backend(self, skill: Any, action: str, deploy: bool = False, image: str | None = None) -> Any:
        """What runs ``action`` of ``skill`` on this platform (see :func:`tao_sdk.platforms.docker_plan.container_backend`)."""
        from tao_sdk.platforms.docker_plan import container_backend

        return container_backend(self, skill, action, deploy, image)
