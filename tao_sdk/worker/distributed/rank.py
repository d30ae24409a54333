"""Inside a rank: this process's :class:`DistState`, joining and leaving the process group."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Mapping

from tao_sdk.worker.distributed.planning import LAUNCH_ENV, in_launched_rank, parse_device_list


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
