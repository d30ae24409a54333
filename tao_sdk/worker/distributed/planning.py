"""Planning a data-parallel launch (torch-free): the :class:`LaunchPlan` of a train job from
``train.num_gpus`` / ``num_nodes`` / ``gpu_ids`` and the orchestrator's environment."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Mapping

from tao_sdk.dotted import as_int
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError, WorkerError

DEFAULT_MASTER_PORT = 29500
#: Environment variable carrying the launch description (JSON) from the launcher to the ranks.
LAUNCH_ENV = "TAO_WORKER_LAUNCH"
#: pid of the worker process that started torchrun (set in the ranks' environment)
LAUNCHER_PID_ENV = "TAO_WORKER_LAUNCHER_PID"
#: Seconds the spawn supervisor lets the other ranks finish after one failed, before stopping them.


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


def _spec_gpu_ids(spec: dict) -> list[int] | None:
    """``train.gpu_ids`` as a list of GPU indices (``None`` when unset); raises
    :class:`SpecError` for anything else."""
    raw = S.get(spec, "train.gpu_ids")
    if raw in (None, "", []):
        return None
    if not isinstance(raw, list) or not all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in raw):
        raise SpecError(f"train.gpu_ids={raw!r} must be a list of GPU indices, e.g. [0, 1]")
    return list(raw)


def _node_devices(cuda: bool, count: int, gpu_ids: list[int] | None, per_node: int,
                  notes: list[str]) -> list[int]:
    """The GPU ids this node trains on: on a GPU node each must be visible (:class:`SpecError`
    otherwise); without a GPU none, and ``notes`` say the ranks run on CPU (gloo)."""
    if cuda:
        bad = [g for g in (gpu_ids or []) if g >= count]
        if bad:
            raise SpecError(f"train.gpu_ids / train.num_gpus ask for GPU(s) {bad} but only "
                            f"{count} GPU(s) are visible on this node; lower train.num_gpus or "
                            "fix train.gpu_ids")
        return list(gpu_ids or [])
    if gpu_ids is not None and gpu_ids != list(range(len(gpu_ids))):
        notes.append(f"train.gpu_ids={gpu_ids} ignored: no GPU on this node")
    notes.append(f"no GPU: {per_node} CPU process(es) per node train with the gloo backend")
    cores = os.cpu_count() or 1
    if per_node > cores:
        notes.append(f"{per_node} processes on {cores} CPU core(s): expect it to be slower "
                     "than one process")
    return []


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
    gpu_ids = _spec_gpu_ids(spec)
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
    gpu_ids = _node_devices(cuda, count, gpu_ids, per_node, notes)
    if nnodes * per_node <= 1:
        return None
    return LaunchPlan(launcher=launcher_for(network), nnodes=nnodes, node_rank=node_rank,
                      nproc_per_node=per_node, master_addr=str(master_addr),
                      master_port=int(master_port), device="cuda" if cuda else "cpu",
                      gpu_ids=gpu_ids, notes=notes)


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
