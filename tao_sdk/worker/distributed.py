"""Multi-process data-parallel training (DDP) for the worker: launch, rendezvous, helpers.

How a train job becomes several processes, as TAO does it:

- **Trigger.** ``train.num_gpus`` > 1 (processes per node; without a GPU that many CPU
  processes), or the orchestrator's multi-node environment: ``WORLD_SIZE`` (number of
  *nodes*), ``NODE_RANK`` (``RANK`` when unset), ``MASTER_ADDR`` (``localhost``),
  ``MASTER_PORT`` (``29500``), ``NUM_GPU_PER_NODE`` (processes per node; else the visible GPU
  count, else ``train.num_gpus``). As in TAO, ``WORLD_SIZE`` overrides ``train.num_nodes`` /
  ``num_gpus`` / ``gpu_ids``, and ``RANK`` is set from ``NODE_RANK`` when unset. On one node
  without ``MASTER_PORT`` a free port is picked (concurrent jobs do not collide).
  ``train.gpu_ids`` follow TAO: with ``num_gpus != len(gpu_ids)`` the job uses
  ``max(num_gpus, len(gpu_ids))`` GPUs, ``0..n-1`` unless ``gpu_ids`` has exactly that length.
- **Launch method**: from the skill's ``launch`` facts (``skill_info.yaml``) or the network
  plugin (:func:`launcher_for`).
- **torchrun** (RT-DETR in TAO): the worker re-launches itself as
  ``python -m torch.distributed.run --nnodes=N --node-rank=R --nproc-per-node=M
  --master-addr=A --master-port=P -m tao_sdk.worker <network> train -e spec.yaml [overrides]``
  with ``CUDA_VISIBLE_DEVICES`` set from the GPU ids on a GPU node.
- **spawn** (Lightning-managed networks in TAO): the ``python`` process spawns its local ranks
  itself (``torch.multiprocessing`` spawn) and supervises them; each rank uses the device
  ``TAO_VISIBLE_DEVICES[local_rank]``.
- **Inside a rank** (:func:`init`): ``init_process_group`` (``nccl`` on GPU, ``gloo`` on CPU),
  train data split by ``DistributedSampler``, the model wrapped in
  ``DistributedDataParallel``, ``dataset.batch_size`` per process (effective batch =
  batch_size x world_size, as TAO). Only rank 0 writes ``status.json``, ``log.txt``,
  ``experiment.yaml``, checkpoints and uploads. Validation is sharded: every rank predicts its
  slice of the validation images, rank 0 gathers the detections and computes the COCO metrics.
- **Failures**: every rank exits non-zero; a failing rank leaves its message in the
  rendezvous store, so rank 0's FAILURE line names the rank and the real error (not the
  "connection closed" it saw). When no rank could write it (a rank was killed), the launching
  process writes the FAILURE line itself on node 0.

Other actions (evaluate, inference, export, gen_trt_engine) run in one process; under a
launcher with several ranks, ranks other than 0 exit at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from tao_sdk.dotted import as_int
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError, WorkerError

__all__ = [
    "DEFAULT_MASTER_PORT",
    "LaunchPlan",
    "DistState",
    "PeerFailed",
    "plan_launch",
    "launch",
    "launcher_for",
    "rank_env",
    "in_launched_rank",
    "bind_rank_to_job",
    "init",
    "shutdown",
    "state",
    "local_first",
    "agree",
    "barrier",
    "all_reduce_mean",
    "gather_to_main",
    "sync_buffers",
    "record_failure",
    "rank_failure_message",
    "launch_notes",
    "single_process_notes",
    "parse_device_list",
    "free_port",
]

#: TAO's default rendezvous port.
DEFAULT_MASTER_PORT = 29500
#: Environment variable carrying the launch description (JSON) from the launcher to the ranks.
LAUNCH_ENV = "TAO_WORKER_LAUNCH"
#: pid of the worker process that started torchrun (set in the ranks' environment)
LAUNCHER_PID_ENV = "TAO_WORKER_LAUNCHER_PID"
#: Seconds the spawn supervisor lets the other ranks finish after one failed, before stopping them.
GRACE_S = float(os.environ.get("TAO_WORKER_DDP_GRACE_S", "60") or 60)
_FAIL_COUNT = "tao_worker/failures"
_FAIL_KEY = "tao_worker/failure/{}"


class PeerFailed(WorkerError):
    """Another rank failed; this rank stops too (rank 0 reports the other rank's error)."""


# --------------------------------------------------------------------------- planning


@dataclass
class LaunchPlan:
    """How a multi-process train job is launched on this node.

    Attributes:
        launcher: ``"torchrun"`` (RT-DETR) or ``"spawn"`` (Deformable DETR).
        nnodes, node_rank, nproc_per_node: the job's shape and this node's place in it.
        master_addr, master_port: the rendezvous address (node 0); port ``0``: picked by the
            spawn launcher when it binds the rendezvous store.
        device: ``"cuda"`` or ``"cpu"``.
        gpu_ids: this node's GPU ids (one per local rank; empty on CPU).
        notes: what the launch changed or ignored, reported in ``status.json``.
    """

    launcher: str
    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str
    master_port: int
    device: str
    gpu_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        """Total number of processes."""
        return self.nnodes * self.nproc_per_node

    @property
    def backend(self) -> str:
        """``nccl`` on GPUs, ``gloo`` on CPU."""
        return "nccl" if self.device == "cuda" else "gloo"

    def describe(self) -> str:
        """One human line: world size, shape, launcher, backend, device."""
        return (f"world_size {self.world_size} ({self.nnodes} node(s) x {self.nproc_per_node} "
                f"process(es) per node, {self.launcher}, backend {self.backend}, device "
                f"{self.device}{' ' + str(self.gpu_ids) if self.gpu_ids else ''})")


def launcher_for(network: str) -> str:
    """``torchrun`` or ``spawn`` for ``network``: the plugin's ``launch`` when set, else the
    skill's ``launch`` facts (``skill_info.yaml``: ``torchrun`` -> torchrun, ``lightning`` ->
    one process that spawns its workers); see :func:`tao_sdk.worker.registry.launch_method`."""
    from tao_sdk.worker.registry import launch_method

    return launch_method(network)


def parse_device_list(text: str | None) -> list[int] | None:
    """``"0, 1"`` / ``"0,1"`` / ``"[0, 1]"`` (TAO_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES) ->
    ``[0, 1]``; ``None`` when unset or not a list of integers."""
    if text is None:
        return None
    body = str(text).strip().strip("[]()")
    if not body:
        return None
    try:
        return [int(x) for x in body.replace(" ", "").split(",") if x != ""]
    except ValueError:
        return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _local_port(network: str) -> int:
    """Rendezvous port of a single-node job without ``MASTER_PORT``: a free port for torchrun
    (its agent binds it at once); ``0`` for the spawn launcher, whose process binds the
    rendezvous store itself on a port the system picks (no window for a collision)."""
    return free_port() if launcher_for(network) == "torchrun" else 0


def _int_spec(spec: dict, key: str, default: int, minimum: int = 1) -> int:
    value = S.get(spec, key, default)
    if value is None or value == "":
        return default
    return as_int(value, key, minimum=minimum, error=SpecError)


def _int_env(env: Mapping[str, str], name: str, what: str, minimum: int = 0) -> int | None:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise WorkerError(f"environment {name}={raw!r} must be an integer ({what})") from None
    if number < minimum:
        raise WorkerError(f"environment {name}={number} must be >= {minimum} ({what})")
    return number


def in_launched_rank(env: Mapping[str, str] | None = None) -> bool:
    """True inside a process started by torchrun / the spawn launcher (``LOCAL_RANK`` set):
    such a process never launches again."""
    env = os.environ if env is None else env
    return env.get("LOCAL_RANK") not in (None, "")


def plan_launch(network: str, action: str, spec: dict, env: Mapping[str, str] | None = None
                ) -> LaunchPlan | None:
    """The launch plan of a train job with more than one process, else ``None``.

    ``None`` for other actions, inside an already launched rank, and for single-process jobs
    (decided from the spec and ``env`` without importing torch when nothing asks for more).
    Raises :class:`SpecError` / :class:`WorkerError` for impossible requests (more GPUs than
    visible, a non-integer ``WORLD_SIZE``...).
    """
    env = os.environ if env is None else env
    if action != "train" or in_launched_rank(env):
        return None
    num_gpus = _int_spec(spec, "train.num_gpus", 1)
    gpu_ids_raw = S.get(spec, "train.gpu_ids")
    gpu_ids: list[int] | None = None
    if gpu_ids_raw not in (None, "", []):
        if not isinstance(gpu_ids_raw, list) or not all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpu_ids_raw):
            raise SpecError(f"train.gpu_ids={gpu_ids_raw!r} must be a list of GPU indices, "
                            "e.g. [0, 1]")
        gpu_ids = list(gpu_ids_raw)
    num_nodes = _int_spec(spec, "train.num_nodes", 1)
    multinode = env.get("WORLD_SIZE") not in (None, "")
    if not multinode and num_gpus <= 1 and (gpu_ids is None or len(gpu_ids) <= 1):
        return None

    import torch

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    notes: list[str] = []
    if gpu_ids is not None and num_gpus != len(gpu_ids):
        # TAO: the larger of the two wins; explicit ids only when they have that length.
        wanted = max(num_gpus, len(gpu_ids))
        if len(gpu_ids) != wanted:
            notes.append(f"train.num_gpus={num_gpus} and train.gpu_ids={gpu_ids} disagree: "
                         f"using GPUs {list(range(wanted))} (as TAO)")
            gpu_ids = list(range(wanted))
        num_gpus = wanted
    if multinode:
        nnodes = _int_env(env, "WORLD_SIZE", "number of nodes of the job", minimum=1) or 1
        node_rank = _int_env(env, "NODE_RANK", "rank of this node", 0)
        if node_rank is None:
            node_rank = _int_env(env, "RANK", "rank of this node", 0) or 0
        if node_rank >= nnodes:
            raise WorkerError(f"environment NODE_RANK={node_rank} must be below "
                              f"WORLD_SIZE={nnodes} (the number of nodes)")
        per_node = _int_env(env, "NUM_GPU_PER_NODE", "processes per node", minimum=1)
        if per_node is None:
            per_node = count if count else num_gpus
        if per_node != num_gpus and S.get(spec, "train.num_gpus") is not None:
            notes.append(f"train.num_gpus={num_gpus} overridden by the multi-node environment: "
                         f"{per_node} process(es) per node (NUM_GPU_PER_NODE)")
        if S.get(spec, "train.num_nodes") is not None and num_nodes != nnodes:
            notes.append(f"train.num_nodes={num_nodes} overridden by WORLD_SIZE={nnodes}")
        gpu_ids = list(range(per_node)) if cuda else []
        master_addr = env.get("MASTER_ADDR") or "localhost"
        port = _int_env(env, "MASTER_PORT", "rendezvous port", minimum=1)
        master_port = port if port is not None else (
            DEFAULT_MASTER_PORT if nnodes > 1 else _local_port(network))
    else:
        nnodes, node_rank, per_node = 1, 0, num_gpus
        if num_nodes > 1:
            notes.append(f"train.num_nodes={num_nodes} needs the orchestrator's multi-node "
                         "environment (WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT); this "
                         "job trains on this node only")
        if cuda:
            gpu_ids = gpu_ids if gpu_ids is not None and len(gpu_ids) == per_node else list(
                range(per_node))
        master_addr = env.get("MASTER_ADDR") or "127.0.0.1"
        port = _int_env(env, "MASTER_PORT", "rendezvous port", minimum=1)
        master_port = port if port is not None else _local_port(network)
    if cuda:
        bad = [g for g in (gpu_ids or []) if g >= count]
        if bad:
            raise SpecError(f"train.gpu_ids / train.num_gpus ask for GPU(s) {bad} but only "
                            f"{count} GPU(s) are visible on this node; lower train.num_gpus or "
                            "fix train.gpu_ids")
    else:
        if gpu_ids is not None and gpu_ids != list(range(len(gpu_ids))):
            notes.append(f"train.gpu_ids={gpu_ids} ignored: no GPU on this node")
        gpu_ids = []
        notes.append(f"no GPU: {per_node} CPU process(es) per node train with the gloo backend")
        cores = os.cpu_count() or 1
        if per_node > cores:
            notes.append(f"{per_node} processes on {cores} CPU core(s): expect it to be slower "
                         "than one process")
    if nnodes * per_node <= 1:
        return None
    return LaunchPlan(launcher=launcher_for(network), nnodes=nnodes, node_rank=node_rank,
                      nproc_per_node=per_node, master_addr=str(master_addr),
                      master_port=int(master_port), device="cuda" if cuda else "cpu",
                      gpu_ids=list(gpu_ids or []), notes=notes)


def single_process_notes(spec: dict, env: Mapping[str, str] | None = None) -> list[str]:
    """Notes for a train job that runs in one process although the spec mentions more
    (``train.num_nodes`` > 1 without the orchestrator's environment)."""
    env = os.environ if env is None else env
    try:
        num_nodes = _int_spec(spec, "train.num_nodes", 1)
    except SpecError:
        return []
    if num_nodes > 1 and env.get("WORLD_SIZE") in (None, ""):
        return [f"train.num_nodes={num_nodes} needs the orchestrator's multi-node environment "
                "(WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT); this job trains on one node"]
    return []


# --------------------------------------------------------------------------- launching


def _package_root() -> str:
    import tao_sdk

    return str(Path(tao_sdk.__file__).resolve().parents[1])


def _child_env(plan: LaunchPlan) -> dict[str, str]:
    """The environment the ranks start with (torchrun adds RANK / LOCAL_RANK / WORLD_SIZE)."""
    env = dict(os.environ)
    root = _package_root()
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p and p != root])
    if plan.device == "cuda":
        ids = ", ".join(str(g) for g in plan.gpu_ids)
        env["TAO_VISIBLE_DEVICES"] = ids
        if plan.launcher == "torchrun":
            # GPU ids index the devices this process sees: compose with a CUDA_VISIBLE_DEVICES
            # the orchestrator already set (e.g. "4,5" -> gpu_ids [0, 1] are 4 and 5).
            outer = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",")
                     if d.strip()]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(
                outer[g] if g < len(outer) else str(g) for g in plan.gpu_ids) if outer else \
                ",".join(str(g) for g in plan.gpu_ids)
    elif "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // plan.nproc_per_node))
    if not env.get("RANK") and env.get("NODE_RANK"):
        env["RANK"] = env["NODE_RANK"]  # TAO does this before torchrun
    env[LAUNCH_ENV] = json.dumps(asdict(plan))
    return env


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: get ``sig`` when the launching process dies (even by SIGKILL), so no rank
    outlives a cancelled job. Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2:].split()[1])


def bind_rank_to_job(env: Mapping[str, str] | None = None) -> None:
    """Inside a torchrun rank: die with torchrun's agent. torchrun starts every rank in a
    session of its own, out of the job's process group, so a SIGKILL of the group (a cancel's
    escalation, the OOM killer) would leave the ranks training. The rank gets SIGKILL when its
    parent (the agent) dies; if the agent died before that was armed, it exits now."""
    env = os.environ if env is None else env
    launcher = env.get(LAUNCHER_PID_ENV)
    if not launcher or not in_launched_rank(env) or not sys.platform.startswith("linux"):
        return
    _die_with_parent(signal.SIGKILL)
    if _parent_pid(os.getppid()) != int(launcher):  # the agent is gone: we were re-parented
        print("torchrun's agent is gone: this rank stops", file=sys.stderr, flush=True)
        os._exit(1)


class _Forward:
    """While the launcher waits, forward SIGTERM / SIGINT to the ranks."""

    def __init__(self, send) -> None:
        self._send = send
        self._old: dict[int, Any] = {}
        self.received: int | None = None

    def __enter__(self) -> "_Forward":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, _frame) -> None:
        self.received = signum
        print(f"{signal.Signals(signum).name} received: stopping the ranks", file=sys.stderr)
        self._send(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _status_lines(task_uri: str) -> list[dict]:
    """The lines of the task's ``status.json`` (local or remote), ``[]`` when absent."""
    from tao_sdk.worker.staging import is_remote_uri

    uri = task_uri.rstrip("/") + "/status.json"
    try:
        if is_remote_uri(uri):
            from tao_sdk.storage import storage_for

            store = storage_for(uri)
            text = store.read_text(uri) if store.exists(uri) else ""
        else:
            path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except Exception:  # noqa: BLE001 - best effort
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def launch(plan: LaunchPlan, network: str, action: str, spec: dict, spec_arg: str,
           overrides: list[str], *, run_job=None, record_failure=None) -> int:
    """Run the job as ``plan`` says; return the exit status: 0 when every rank succeeded (or
    when rank 0 recorded SUCCESS, which it does after the final barrier of all ranks, and a
    rank failed only while shutting down - reported on stderr), else 1.

    When the ranks failed without rank 0 writing a FAILURE line (a rank was killed, the
    rendezvous failed), this process writes it (node 0 only) with ``record_failure(network,
    action, spec, message)``. ``run_job(network, action, spec) -> exit status`` runs the job
    in a spawned rank (a picklable top-level function; the spawn launcher needs it). The
    caller (:mod:`tao_sdk.worker.cli`) passes both, so this module never imports the job.
    """
    task_uri = None
    before = 0
    if plan.node_rank == 0:
        try:
            task_uri = S.task_results_dir(spec, action)
            before = len(_status_lines(task_uri))
        except Exception:  # noqa: BLE001 - run_job in the ranks reports spec problems
            task_uri = None
    print(f"tao_sdk.worker: launching {plan.describe()} for {network} {action}",
          file=sys.stderr, flush=True)
    try:
        if plan.launcher == "torchrun":
            code, detail = _launch_torchrun(plan, network, action, spec_arg, overrides)
        else:
            if run_job is None:
                raise WorkerError("the spawn launcher needs the job function (run_job)")
            code, detail = _launch_spawn(plan, network, action, spec, run_job)
    except Exception as exc:  # noqa: BLE001 - the ranks could not be started
        code, detail = 1, f"the ranks could not be started ({type(exc).__name__}: {exc})"
    if code != 0 and task_uri is not None:
        new = _status_lines(task_uri)[before:]
        final = [ln.get("status") for ln in new if ln.get("status") in ("FAILURE", "SUCCESS")]
        if final and final[-1] == "SUCCESS":
            # Rank 0 writes SUCCESS only after every rank passed the final barrier: the job is
            # complete; a rank that failed afterwards failed while shutting down.
            print(f"tao_sdk.worker: WARNING: {detail} after the job succeeded (while shutting "
                  "down); the results are complete", file=sys.stderr, flush=True)
            return 0
    if code != 0:
        print(f"tao_sdk.worker: distributed {action} failed: {detail}", file=sys.stderr,
              flush=True)
    if code != 0 and task_uri is not None:
        if not final and record_failure is not None:
            record_failure(network, action, spec,
                           f"distributed training ({plan.describe()}) failed: {detail}; no rank "
                           "could record the error - see the job's stderr for the ranks' output")
    return code


def _launch_torchrun(plan: LaunchPlan, network: str, action: str, spec_arg: str,
                     overrides: list[str]) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={plan.nnodes}",
           f"--node-rank={plan.node_rank}", f"--nproc-per-node={plan.nproc_per_node}",
           f"--master-addr={plan.master_addr}", f"--master-port={plan.master_port}",
           "-m", "tao_sdk.worker", network, action, "-e", spec_arg, *overrides]
    env = _child_env(plan)
    env[LAUNCHER_PID_ENV] = str(os.getpid())  # the ranks die with the agent: bind_rank_to_job
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)

    def send(signum: int) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    with _Forward(send):
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries anyway
                continue
    return (0 if code == 0 else 1), f"torchrun {_exit_text(code)}"


def _spawn_entry(local_rank: int, plan_dict: dict, network: str, action: str, spec: dict,
                 env: dict[str, str], run_job) -> None:
    """Body of one spawned rank: set the rank's environment, run the job, exit with its code."""
    _die_with_parent()
    plan = LaunchPlan(**plan_dict)
    os.environ.update(env)
    rank = plan.node_rank * plan.nproc_per_node + local_rank
    os.environ.update({
        "RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(plan.world_size),
        "LOCAL_WORLD_SIZE": str(plan.nproc_per_node), "GROUP_RANK": str(plan.node_rank),
        "NODE_RANK": str(plan.node_rank), "MASTER_ADDR": plan.master_addr,
        "MASTER_PORT": str(plan.master_port),
    })
    code = run_job(network, action, spec)
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        sys.exit(code)


def _launch_spawn(plan: LaunchPlan, network: str, action: str, spec: dict, run_job
                  ) -> tuple[int, str]:
    import multiprocessing.connection

    import torch.multiprocessing as mp

    env = _child_env(plan)
    # As torchrun's agent does, this process hosts the rendezvous store (node 0): it binds the
    # port before any rank starts (port 0: the system picks a free one) and outlives the
    # ranks, so no rank's exit can pull the store from under the others.
    store = None
    if plan.node_rank == 0:
        from datetime import timedelta

        from torch.distributed import TCPStore

        store = TCPStore(host_name=plan.master_addr, port=plan.master_port, is_master=True,
                         wait_for_workers=False, timeout=timedelta(
                             seconds=float(os.environ.get("TAO_WORKER_DDP_TIMEOUT_S", "1800"))))
        plan.master_port = int(store.port)
    env["TORCHELASTIC_USE_AGENT_STORE"] = "True"  # the ranks connect as clients only
    env[LAUNCH_ENV] = json.dumps(asdict(plan))
    ctx = mp.start_processes(_spawn_entry, args=(asdict(plan), network, action, spec, env, run_job),
                             nprocs=plan.nproc_per_node, join=False, start_method="spawn")
    procs = list(ctx.processes)

    def send(signum: int) -> None:
        for p in procs:
            if p.exitcode is None and p.pid:
                try:
                    os.kill(p.pid, signum)
                except OSError:
                    pass

    first_failure: tuple[int, int] | None = None
    deadline: float | None = None
    stopped = False
    with _Forward(send):
        while any(p.exitcode is None for p in procs):
            alive = [p.sentinel for p in procs if p.exitcode is None]
            multiprocessing.connection.wait(alive, timeout=1.0)
            for i, p in enumerate(procs):
                if p.exitcode not in (None, 0) and first_failure is None:
                    first_failure = (i, p.exitcode)
                    deadline = time.monotonic() + GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                if not stopped:
                    print(f"ranks still running {GRACE_S:.0f} s after a rank failed: stopping "
                          "them", file=sys.stderr)
                    send(signal.SIGTERM)
                    stopped = True
                    deadline = time.monotonic() + 15
                else:
                    for p in procs:
                        if p.exitcode is None:
                            p.kill()
                    deadline = None
        for p in procs:
            p.join()
    del store  # stops serving
    codes = [p.exitcode for p in procs]
    if all(c == 0 for c in codes):
        return 0, "all ranks succeeded"
    first = first_failure or next((i, c) for i, c in enumerate(codes) if c != 0)
    base = plan.node_rank * plan.nproc_per_node
    detail = f"rank {base + first[0]} {_exit_text(first[1])}"
    others = [f"rank {base + i} {_exit_text(c)}" for i, c in enumerate(codes)
              if c != 0 and i != first[0]]
    if others:
        detail += " (then " + ", ".join(others) + ")"
    return 1, detail


# --------------------------------------------------------------------------- inside a rank


@dataclass
class DistState:
    """This process's place in a data-parallel job (world_size 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    nnodes: int = 1
    launcher: str = "none"
    backend: str = ""
    device: str = "cpu"
    active: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the results folder."""
        return self.rank == 0

    def describe(self) -> str:
        """One human line: world size, shape, launcher, backend, device."""
        backend = self.backend or {"cuda": "nccl", "cpu": "gloo"}.get(self.device, "")
        tail = (f", backend {backend}" if backend else "") + (
            f", device {self.device}" if self.device else "")
        return (f"world_size {self.world_size} ({self.nnodes} node(s) x "
                f"{self.local_world_size} process(es) per node, {self.launcher}{tail})")


_STATE = DistState()


def rank_env(env: Mapping[str, str] | None = None) -> DistState | None:
    """The rank described by the environment of a launched process (torchrun or spawn) when
    the job has more than one process, else ``None``. Does not import torch."""
    env = os.environ if env is None else env
    if not in_launched_rank(env):
        return None
    try:
        world = int(env.get("WORLD_SIZE", "1") or 1)
        rank = int(env.get("RANK", "0") or 0)
        local_rank = int(env.get("LOCAL_RANK", "0") or 0)
        local_world = int(env.get("LOCAL_WORLD_SIZE", "") or world)
        node_rank = int(env.get("GROUP_RANK", "") or env.get("NODE_RANK", "") or 0)
    except ValueError:
        return None
    if world <= 1:
        return None
    launch = _launch_info(env)  # set when this worker launched the ranks itself
    launcher = launch.get("launcher") or (
        "torchrun" if env.get("TORCHELASTIC_RUN_ID") else "external launcher")
    device = str(launch.get("device") or "")  # known after init() otherwise
    return DistState(rank=rank, world_size=world, local_rank=local_rank,
                     local_world_size=local_world, node_rank=node_rank,
                     nnodes=max(1, world // max(1, local_world)), launcher=launcher,
                     device=device)


def _launch_info(env: Mapping[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    try:
        info = json.loads(env.get(LAUNCH_ENV) or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def launch_notes() -> list[str]:
    """The notes of the launch plan this rank was started with (for ``status.json``)."""
    notes = _launch_info().get("notes") or []
    return [str(n) for n in notes]


def state() -> DistState:
    """This process's :class:`DistState` (``world_size`` 1 unless :func:`init` ran)."""
    return _STATE


def init(rank: DistState, log=None) -> DistState:
    """Join the process group of ``rank`` (``env://`` rendezvous, ``nccl`` on GPU, ``gloo``
    on CPU), pick this rank's device and CPU threads; return the active state."""
    global _STATE
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        devices = parse_device_list(os.environ.get("TAO_VISIBLE_DEVICES"))
        if rank.launcher == "torchrun" or not devices:
            index = rank.local_rank  # CUDA_VISIBLE_DEVICES already narrowed the devices
        else:
            index = devices[rank.local_rank % len(devices)]
        torch.cuda.set_device(index)
    else:
        # Processes on one node share its cores (torch may be imported before OMP_NUM_THREADS
        # was set, as in a spawned rank, so set the thread count explicitly).
        try:
            threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        except ValueError:
            threads = 0
        torch.set_num_threads(threads if threads > 0 else max(
            1, (os.cpu_count() or 1) // max(1, rank.local_world_size)))
    backend = "nccl" if cuda else "gloo"
    timeout = timedelta(seconds=float(os.environ.get("TAO_WORKER_DDP_TIMEOUT_S", "1800")))
    t0 = time.monotonic()
    dist.init_process_group(backend=backend, init_method="env://", rank=rank.rank,
                            world_size=rank.world_size, timeout=timeout)
    _STATE = DistState(rank=rank.rank, world_size=rank.world_size, local_rank=rank.local_rank,
                       local_world_size=rank.local_world_size, node_rank=rank.node_rank,
                       nnodes=rank.nnodes, launcher=rank.launcher, backend=backend,
                       device="cuda" if cuda else "cpu", active=True)
    if log is not None:
        log.info("rank %d joined the process group: %s, %d CPU thread(s), rendezvous %.1f s",
                 rank.rank, _STATE.describe(), torch.get_num_threads(), time.monotonic() - t0)
    return _STATE


def shutdown() -> None:
    """Leave the process group (idempotent)."""
    global _STATE
    if not _STATE.active:
        return
    _STATE = DistState()
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the process is exiting anyway
        pass


def _device():
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if _STATE.device == "cuda" \
        else torch.device("cpu")


def agree(ok: bool) -> bool:
    """True when every rank passes ``ok=True`` (one collective; a no-op alone)."""
    if _STATE.world_size <= 1:
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier() -> None:
    """Wait for every rank (a no-op alone)."""
    if _STATE.world_size > 1:
        agree(True)


def all_reduce_mean(value) -> float:
    """Mean of a scalar (float or 0-d tensor) over the ranks (the value itself alone)."""
    if _STATE.world_size <= 1:
        return float(value)
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).to(_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / _STATE.world_size


def sync_buffers(module) -> None:
    """Copy rank 0's floating-point buffers (BatchNorm running statistics) of ``module`` to
    every rank, so that the sharded validation evaluates one model (a no-op alone)."""
    if _STATE.world_size <= 1:
        return
    import torch.distributed as dist

    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            dist.broadcast(buf.data, src=0)


def gather_to_main(obj: Any) -> list[Any] | None:
    """Rank 0 gets ``[obj of rank 0, obj of rank 1, ...]``, other ranks ``None``
    (``[obj]`` alone)."""
    if _STATE.world_size <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * _STATE.world_size if _STATE.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


@contextlib.contextmanager
def local_first(what: str) -> Iterator[None]:
    """Run the body on local rank 0 of every node first, then on the other ranks (downloads
    and archive extraction happen once per node; the others find the cache). If a node's
    first rank fails, the other ranks raise :class:`PeerFailed` instead of repeating it."""
    st = _STATE
    if st.world_size <= 1:
        yield
        return
    if st.local_rank != 0:
        if not agree(True):
            raise PeerFailed(f"another rank failed while {what}")
        yield
        return
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            agree(False)
        raise
    if not agree(True):
        raise PeerFailed(f"another node failed while {what}")


def _store():
    from datetime import timedelta

    from torch.distributed.distributed_c10d import _get_default_store

    store = _get_default_store()
    with contextlib.suppress(Exception):
        store.set_timeout(timedelta(seconds=10))
    return store


def record_failure(message: str) -> None:
    """Leave this rank's failure message in the rendezvous store for rank 0 (best effort)."""
    if not _STATE.active or _STATE.is_main:
        return
    try:
        store = _store()
        n = store.add(_FAIL_COUNT, 1)
        store.set(_FAIL_KEY.format(n), f"rank {_STATE.rank}: {message}")
    except Exception:  # noqa: BLE001 - rank 0 may be gone already
        pass


def _peer_failure(wait_s: float) -> str | None:
    """The first failure another rank recorded, waiting up to ``wait_s`` for one."""
    from datetime import timedelta

    try:
        store = _store()
        key = _FAIL_KEY.format(1)
        if wait_s > 0:
            try:
                store.wait([key], timedelta(seconds=wait_s))
            except Exception:  # noqa: BLE001 - timed out: nothing recorded
                return None
        elif not store.check([key]):
            return None
        return store.get(key).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return None


def _looks_like_comm_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("DistBackendError", "gloo", "Gloo", "NCCL", "nccl",
                                   "Connection closed", "Connection reset", "Broken pipe",
                                   "ProcessGroup"))


def rank_failure_message(exc: BaseException, message: str) -> str:
    """The FAILURE message of this rank for ``exc`` (own ``message`` computed by the job).

    A rank other than 0 records its own errors for rank 0 (not the consequences of another
    rank stopping or of a cancellation) and returns the message. Rank 0 keeps its own
    message for its own expected errors; when it stopped because of another rank (a
    :class:`PeerFailed`, a communication error, a termination signal from the launcher) it
    reports the other rank's recorded error instead.
    """
    from tao_sdk.errors import TaoSkillsError
    from tao_sdk.worker.errors import JobTerminated

    if not _STATE.active:
        return message
    if not _STATE.is_main:
        # Only a rank's own error is worth reporting: stopping because another rank stopped
        # (a PeerFailed, a broken connection) or because the job was cancelled is not.
        if not isinstance(exc, (PeerFailed, JobTerminated)) and not _looks_like_comm_error(exc):
            record_failure(message)
        return message
    own_expected = isinstance(exc, TaoSkillsError) and not isinstance(
        exc, (PeerFailed, JobTerminated))
    if own_expected:
        return message
    comm = _looks_like_comm_error(exc)
    # A rank records its error before it exits (before its connections close); after a
    # failed agreement (PeerFailed) the failing rank may still be writing it.
    wait = 10.0 if isinstance(exc, PeerFailed) else 2.0
    peer = _peer_failure(wait)
    if peer:
        return f"distributed training (world_size {_STATE.world_size}) failed on {peer}"
    if comm:
        return (f"distributed training (world_size {_STATE.world_size}): another rank stopped "
                f"(crashed or was killed; see the job's stderr) - rank 0 saw: {message}")
    return message
