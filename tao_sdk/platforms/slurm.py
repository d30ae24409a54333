"""Slurm platform: a :class:`JobTask` becomes one ``sbatch`` job; any process re-attaches.

How a job runs (``get_platform("slurm")``):

- ``submit`` writes ``<workdir>/slurm_job.sh`` (no secrets in it) and runs ``sbatch --parsable
  --no-requeue --nodes=N --ntasks-per-node=1 [--gpus-per-node=G --partition --account --qos
  --time --mem --cpus-per-task] --output=<log>``. The batch script starts ONE task per node
  with ``srun`` (``--kill-on-bad-exit``); inside the job, TAO's launcher starts the processes of
  the node (torchrun for torchrun networks, Lightning-style spawn for the others: the worker
  decides from the network).
- **Launch environment** (multi-node jobs, the seeds' variables): ``WORLD_SIZE`` = number of
  nodes, ``NODE_RANK`` = ``SLURM_NODEID``, ``RANK`` = ``NODE_RANK`` when unset, ``MASTER_ADDR``
  = the first node of the allocation (its ``NodeAddr``), ``MASTER_PORT`` = config
  ``master_port`` or ``20000 + job id % 20000`` (concurrent jobs on a node do not collide),
  ``NUM_GPU_PER_NODE`` = GPUs per node, or ``processes_per_node`` without GPUs. GPUs: Slurm
  sets ``CUDA_VISIBLE_DEVICES`` for the allocated GPUs; networks that read
  ``TAO_VISIBLE_DEVICES`` (skill_info ``launch.visible_devices_env``) get ``0..G-1``.
- **Secrets** (every variable whose name looks secret: ``TAO_ENCRYPTION_KEY``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``, ``*_TOKEN``,
  ``*PASSWORD*``..., from ``JobTask.env`` and from the submitting process) never reach sbatch,
  slurmctld or a file another user can read: they are written to ``<workdir>/.tao-secrets-*``
  created with mode 0600 (O_EXCL), the batch script sources it and deletes it before it starts
  anything, and ``srun`` hands them to the node tasks over Slurm's authenticated RPC (in
  memory). sbatch itself gets the rest of the environment (``--export=ALL``) - with
  ``--export`` of secrets slurmctld would keep them in its state directory
  (``StateSaveLocation/hash.N/job.N/environment``). ``scontrol show job`` shows the command
  and paths only. The job is ``--no-requeue``: a requeued job would find the file gone.
- **State**: ``scontrol show job`` (works without slurmdbd; Slurm keeps a finished job
  ``MinJobAge`` seconds) plus the job's own ``exit_status`` file, written by the batch script
  when ``srun`` returns; after Slurm forgot the job, the file alone says how it ended.
- **Cancel**: ``scancel`` (every step, the whole process tree on every node), then wait until
  Slurm reports the job ended.
- **Filesystems**: the work folder, the log and every local path the job reads or writes
  (``JobTask.data_paths``) must be under a path the nodes share (config ``shared_paths``,
  default: the workspace and a local storage root); ``s3://`` needs nothing. Anything else is
  refused at submit, naming the path and the fix.

Configuration (lowest to highest precedence): ``<workspace>/platforms/slurm.yaml`` (or the
file named by ``TAO_SLURM_CONFIG``), ``TAO_SLURM_<KEY>`` environment variables, keyword
options of ``get_platform("slurm", **options)``. Keys: see :data:`CONFIG_KEYS`.

Handle keys: ``slurm_job_id``, ``workdir``, ``log_path``, ``exit_status_path``,
``secrets_path``, ``script_path``, ``slurm_conf`` (the ``SLURM_CONF`` used), ``submitted``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from tao_sdk.errors import PlatformError
from tao_sdk.platforms import jobfiles
from tao_sdk.platforms._supervise import ABANDONED_FILE, HANDLE_FILE, write_exit_status
from tao_sdk.platforms.base import JobTask, PlatformState
from tao_sdk.platforms.jobfiles import read_exit_code as _read_exit_status
from tao_sdk.platforms.jobfiles import split_secret_env, write_json as _write_json
from tao_sdk.platforms.jobfiles import write_secrets as _write_secrets
from tao_sdk.platforms.settings import ConfiguredPlatform, load_settings

__all__ = ["CONFIG_KEYS", "SlurmPlatform", "load_config", "split_secret_env"]

#: Platform configuration keys and what they mean (all optional).
CONFIG_KEYS: dict[str, str] = {
    "partition": "sbatch --partition",
    "account": "sbatch --account",
    "qos": "sbatch --qos",
    "time": "sbatch --time for jobs that set no time_limit, e.g. 04:00:00",
    "gpus_per_node": "GPUs per node; 0 on CPU-only clusters (default: the job's train.num_gpus)",
    "nodes": "node count of every job (default: the job's train.num_nodes)",
    "tasks_per_node": "processes per node of a CPU-only job (NUM_GPU_PER_NODE; default: the job's)",
    "cpus_per_task": "sbatch --cpus-per-task (CPUs of the one task per node)",
    "mem": "sbatch --mem, e.g. 64G",
    "python": "interpreter on the nodes that runs the worker (default python3 on the node's PATH)",
    "container_image": "container image for every job (pyxis srun --container-image)",
    "container_mounts": "pyxis --container-mounts, e.g. /lustre:/lustre",
    "shared_paths": "paths the nodes see (list, or ':'-separated); default: workspace + local storage",
    "master_port": "rendezvous port (default 20000 + job id % 20000)",
    "extra_sbatch_args": "extra sbatch arguments (list, or a shell-quoted string)",
    "cancel_timeout": "seconds cancel waits for Slurm to end the job (default 60)",
}
_INT_KEYS = {"gpus_per_node", "nodes", "tasks_per_node", "cpus_per_task", "master_port"}
_RUNNING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
            "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD",
            "SPECIAL_EXIT", "STOPPED"}
_EXIT_STATUS = "exit_status"
# Variables a job must get from its own allocation, never from the submitting process (an
# AutoML controller running as a Slurm job submits trials).
_LAUNCH_VARS = {"WORLD_SIZE", "NODE_RANK", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "NUM_GPU_PER_NODE", "CUDA_VISIBLE_DEVICES", "TAO_VISIBLE_DEVICES"}


def load_config(**options: Any) -> dict[str, Any]:
    """The slurm settings: the config file, then ``TAO_SLURM_<KEY>`` variables, then ``options``
    (:func:`tao_sdk.platforms.settings.load_settings`; keys: :data:`CONFIG_KEYS`)."""
    return load_settings("slurm", CONFIG_KEYS, options, ints=_INT_KEYS, paths={"shared_paths"},
                         args={"extra_sbatch_args"})


def _default_shared_paths() -> list[str]:
    from tao_sdk.workspace import default_workspace

    ws = default_workspace()
    roots = [str(ws.root)]
    if ws.storage_root and "://" not in ws.storage_root:
        roots.append(ws.storage_root)
    return roots


def _under(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip("/") + "/"):
            return True
    return False


def _node_snippet(task: JobTask, gpus: int) -> str:
    """bash run by ``srun`` on every node: the seeds' rank variables, then the command."""
    lines = ['if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then',
             '  export NODE_RANK="$SLURM_NODEID"; export RANK="${RANK:-$NODE_RANK}"',
             "fi"]
    if gpus and task.visible_devices_env == "TAO_VISIBLE_DEVICES":
        lines.append(f"export TAO_VISIBLE_DEVICES={','.join(str(i) for i in range(gpus))}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _batch_script(task: JobTask, argv: list[str], status_path: str, secrets_path: str | None,
                  per_node: int, gpus: int, cfg: dict[str, Any]) -> str:
    abandoned = str(Path(task.workdir).expanduser().absolute() / ABANDONED_FILE)
    port = cfg.get("master_port")
    port_expr = str(port) if port else "$((20000 + SLURM_JOB_ID % 20000))"
    srun = ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    image = task.image or cfg.get("container_image")
    if image:
        srun.append(f"--container-image={image}")
        if cfg.get("container_mounts"):
            srun.append(f"--container-mounts={cfg['container_mounts']}")
    secrets = ""
    if secrets_path:
        secrets = (f"_tao_secrets={shlex.quote(secrets_path)}\n"
                   'if [ -f "$_tao_secrets" ]; then set -a; . "$_tao_secrets"; set +a; '
                   'rm -f "$_tao_secrets"; fi\n')
    return f"""#!/bin/bash
# TAO Skill Bank job {task.job_id}, generated by tao_sdk.platforms.slurm. No secrets here: they
# are read from a 0600 file that is deleted at once, and reach the nodes through srun.
set -u
{secrets}_tao_status={shlex.quote(status_path)}
if [ -e {shlex.quote(abandoned)} ]; then
  echo "[tao-slurm] the submission of this job was given up before it started ({abandoned}); not running it"
  printf '125\n' > "$_tao_status"; exit 125
fi
_tao_first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
_tao_addr=$(scontrol show node "$_tao_first" -o 2>/dev/null | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')
export MASTER_ADDR="${{_tao_addr:-$_tao_first}}"
export MASTER_PORT="{port_expr}"
if [ "${{SLURM_JOB_NUM_NODES:-1}}" -gt 1 ]; then
  export WORLD_SIZE="$SLURM_JOB_NUM_NODES" NUM_GPU_PER_NODE={per_node}
fi
export PYTHONUNBUFFERED=1
echo "[tao-slurm] job $SLURM_JOB_ID on $SLURM_JOB_NODELIST (${{SLURM_JOB_NUM_NODES:-1}} node(s)), master $MASTER_ADDR:$MASTER_PORT"
{shlex.join(srun)} bash -c {shlex.quote(_node_snippet(task, gpus))} tao-node {shlex.join(argv)}
_tao_rc=$?
printf '%s\\n' "$_tao_rc" > "$_tao_status.tmp.$$" && mv -f "$_tao_status.tmp.$$" "$_tao_status"
exit "$_tao_rc"
"""


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){name}=(\S*)", text)
    return m.group(1) if m else None


class SlurmPlatform(ConfiguredPlatform):
    """Runs jobs with sbatch on a Slurm cluster (``get_platform("slurm", **settings)``).

    ``settings`` override the config file and ``TAO_SLURM_*`` variables (keys:
    :data:`CONFIG_KEYS`). The Slurm client commands (sbatch, scontrol, scancel) must be on
    PATH; ``SLURM_CONF`` selects the cluster as usual.
    """

    name = "slurm"

    def _load_config(self) -> dict[str, Any]:
        return load_config(**self.settings)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60.0,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
        except FileNotFoundError as exc:
            raise PlatformError(f"{args[0]} not found: install the Slurm client commands "
                                "(sbatch, squeue, scontrol, scancel) on this machine or put "
                                "them on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(f"{shlex.join(args)} did not answer in {timeout:.0f} s: is "
                                "slurmctld reachable (check SLURM_CONF, `scontrol ping`)?") from exc
        if check and proc.returncode != 0:
            raise PlatformError(f"{shlex.join(args[:2])} failed (exit {proc.returncode}): "
                                f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    @staticmethod
    def _client_env(handle: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        if handle.get("slurm_conf"):
            env["SLURM_CONF"] = handle["slurm_conf"]
        return env

    def _check_paths(self, task: JobTask, log_path: str) -> None:
        roots = [str(p) for p in (self.config.get("shared_paths") or _default_shared_paths())]
        paths = {"workdir": task.workdir, "log_path": log_path, **task.data_paths}
        for what, path in paths.items():
            if not path or "://" in str(path) or not str(path).startswith("/"):
                continue
            if not _under(str(path), roots):
                raise PlatformError(
                    f"job {task.job_id}: {what} = {path} is not on a filesystem the Slurm nodes "
                    f"share (shared paths: {', '.join(roots)}); put it in S3 (s3://...) or under a "
                    "shared path, or declare its filesystem shared with TAO_SLURM_SHARED_PATHS / "
                    "shared_paths in the slurm config")

    def _sbatch_args(self, task: JobTask, nodes: int, gpus: int, log_path: str) -> list[str]:
        cfg = self.config
        args = ["sbatch", "--parsable", "--no-requeue", f"--job-name=tao-{task.job_id}",
                f"--output={log_path}", "--open-mode=append", f"--chdir={task.workdir}",
                f"--nodes={nodes}", "--ntasks-per-node=1", "--export=ALL"]
        if gpus:
            args.append(f"--gpus-per-node={gpus}")
        cpus = task.cpus_per_node or cfg.get("cpus_per_task")
        if cpus:
            args.append(f"--cpus-per-task={int(cpus)}")
        for key, opt in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos")):
            if cfg.get(key):
                args.append(f"{opt}={cfg[key]}")
        limit = task.time_limit or cfg.get("time")
        if limit:
            args.append(f"--time={limit}")
        mem = task.memory or cfg.get("mem")
        if mem:
            args.append(f"--mem={mem}")
        args += [str(a) for a in cfg.get("extra_sbatch_args") or []]
        return args

    def _submit_env(self, task_env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        base = {k: v for k, v in os.environ.items()
                if k not in _LAUNCH_VARS and not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        if os.environ.get("SLURM_CONF"):
            base["SLURM_CONF"] = os.environ["SLURM_CONF"]
        plain, secret = split_secret_env({**base, **task_env})
        return plain, secret

    # ---------------------------------------------------------------- interface
    def submit(self, task: JobTask) -> dict[str, Any]:
        """Submit ``task`` with sbatch and return the handle (see the module docstring).

        Raises PlatformError for a bad task, a path the nodes cannot see, or sbatch's refusal
        (its message included).
        """
        task.check()
        cfg = self.config
        workdir = Path(task.workdir).expanduser().absolute()
        log_path = str(Path(task.log_path).expanduser().absolute()) if task.log_path else str(
            workdir / "job.log")
        self._check_paths(task, log_path)
        workdir.mkdir(parents=True, exist_ok=True)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        status_path = str(workdir / _EXIT_STATUS)
        jobfiles.refuse_if_abandoned(task.job_id, workdir)
        jobfiles.clear_stale(workdir)
        nodes = int(cfg.get("nodes") or task.num_nodes or 1)
        gpus = int(cfg["gpus_per_node"] if cfg.get("gpus_per_node") is not None else task.num_gpus)
        per_node = gpus or int(cfg.get("tasks_per_node") or task.processes_per_node or 1)
        plain, secret = self._submit_env(task.env)
        secrets_path = _write_secrets(workdir, secret) if secret else None
        script = workdir / "slurm_job.sh"
        argv = task.argv(str(cfg.get("python") or "python3"))
        script.write_text(_batch_script(task, argv, status_path, secrets_path, per_node, gpus, cfg),
                          encoding="utf-8")
        script.chmod(0o755)
        try:
            out = self._run([*self._sbatch_args(task, nodes, gpus, log_path), str(script)], env=plain)
        except PlatformError:
            if secrets_path:
                Path(secrets_path).unlink(missing_ok=True)
            raise
        slurm_id = out.stdout.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise PlatformError(f"sbatch answered {out.stdout.strip()!r}, not a job id")
        handle = {"slurm_job_id": slurm_id, "job_name": f"tao-{task.job_id}", "workdir": str(workdir),
                  "log_path": log_path, "exit_status_path": status_path, "secrets_path": secrets_path,
                  "script_path": str(script), "slurm_conf": os.environ.get("SLURM_CONF"),
                  "nodes": nodes, "submitted": time.time()}
        _write_json(workdir / HANDLE_FILE, handle)
        return handle

    def recover_handle(self, workdir: str) -> dict[str, Any] | None:
        """The handle of the job submitted from ``workdir`` when its submitter died before
        storing it: ``<workdir>/handle.json`` (written right after sbatch answered), else the
        Slurm job named after the job (``squeue --name tao-<job id>``, pending, running or
        recently ended). None when nothing was submitted from there."""
        path = Path(workdir) / HANDLE_FILE
        try:
            handle = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(handle, dict) and handle.get("slurm_job_id"):
                return handle
        except (OSError, ValueError):
            pass
        script = Path(workdir) / "slurm_job.sh"
        try:
            found = re.search(r"^# TAO Skill Bank job (\S+),", script.read_text(encoding="utf-8"), re.M)
        except OSError:
            return None
        if not found:
            return None
        name = f"tao-{found.group(1)}"
        proc = self._run(["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i"], check=False)
        ids = [line.strip() for line in proc.stdout.splitlines() if line.strip().isdigit()]
        if not ids:
            return None
        secrets = sorted(Path(workdir).glob(".tao-secrets-*"))
        return {"slurm_job_id": ids[-1], "job_name": name, "workdir": str(Path(workdir)),
                "log_path": str(Path(workdir) / "job.log"), "exit_status_path": str(Path(workdir) / _EXIT_STATUS),
                "secrets_path": str(secrets[0]) if secrets else None, "script_path": str(script),
                "slurm_conf": os.environ.get("SLURM_CONF"), "submitted": script.stat().st_mtime}

    def block_start(self, workdir: str) -> None:
        """Make a job submitted from ``workdir`` that has not started yet exit at once (status
        125) when Slurm starts it. Call :meth:`recover_handle` afterwards to adopt one that runs."""
        jobfiles.block_start(workdir)

    def allow_start(self, workdir: str) -> None:
        """Undo :meth:`block_start` once the job found submitted from there is tracked."""
        jobfiles.allow_start(workdir)

    def _job_info(self, handle: dict[str, Any]) -> tuple[str | None, str]:
        """(``scontrol show job`` one-line record or None when Slurm forgot the job, error)."""
        proc = self._run(["scontrol", "show", "job", "-o", str(handle["slurm_job_id"])],
                         env=self._client_env(handle), check=False)
        if proc.returncode == 0 and "JobState=" in proc.stdout:
            return proc.stdout, ""
        err = (proc.stderr or proc.stdout).strip()
        if "Invalid job id" in err:
            return None, ""
        return None, err or f"scontrol exit {proc.returncode}"

    def poll(self, handle: dict[str, Any]) -> PlatformState:
        """The job's state: ``running`` while Slurm has it pending/running/completing,
        ``exited`` with the command's exit code (``-15`` cancelled, ``None`` lost without
        one), ``unknown`` when slurmctld cannot be asked (try again)."""
        info, err = self._job_info(handle)
        code = _read_exit_status(handle["exit_status_path"])
        if info is None:
            if err:
                return PlatformState("unknown", None, f"cannot ask Slurm about job "
                                     f"{handle['slurm_job_id']}: {err}")
            self._drop_secrets(handle)
            if code is not None:
                return PlatformState("exited", code)
            return PlatformState("exited", None, f"Slurm no longer knows job {handle['slurm_job_id']} "
                                 f"and it left no exit status; see the log {handle.get('log_path')}")
        state = (_field(info, "JobState") or "UNKNOWN").split("+")[0]
        if state in _RUNNING:
            return PlatformState("running", None, "" if state == "RUNNING" else state.lower())
        self._drop_secrets(handle)
        if state == "CANCELLED":
            return PlatformState("exited", -15, "cancelled (scancel)")
        if code is None:
            rc, _, sig = (_field(info, "ExitCode") or "").partition(":")
            code = -int(sig) if sig.isdigit() and int(sig) else (int(rc) if rc.isdigit() else None)
        detail = "" if state == "COMPLETED" else f"Slurm state {state}" + (
            f" ({_field(info, 'Reason')})" if _field(info, "Reason") not in (None, "None") else "")
        return PlatformState("exited", code, detail)

    @staticmethod
    def _drop_secrets(handle: dict[str, Any]) -> None:
        """Remove the job's secrets file when the job never got to read it."""
        if handle.get("secrets_path"):
            Path(handle["secrets_path"]).unlink(missing_ok=True)

    def cancel(self, handle: dict[str, Any]) -> None:
        """``scancel`` the job (all its steps and processes on every node) and wait up to
        ``cancel_timeout`` seconds until Slurm reports it ended. Idempotent."""
        if self.poll(handle).is_exited:
            return
        self._run(["scancel", str(handle["slurm_job_id"])], env=self._client_env(handle))
        deadline = time.monotonic() + float(self.config.get("cancel_timeout") or 60)
        while self.poll(handle).state == "running":
            if time.monotonic() > deadline:
                raise PlatformError(f"Slurm job {handle['slurm_job_id']} is still running after "
                                    "scancel; check `squeue -j` and the node's slurmd log")
            time.sleep(0.2)
        self._drop_secrets(handle)
        if _read_exit_status(handle["exit_status_path"]) is None:
            write_exit_status(handle["exit_status_path"], -15)

    def logs_path(self, handle: dict[str, Any]) -> str | None:
        """The job's combined stdout/stderr file (``sbatch --output``, on the shared FS)."""
        return handle.get("log_path")
