"""Collectives of a data-parallel job (no-ops with one process): agreement, barrier, means,
buffer sync, gather to rank 0, and :func:`local_first`."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from tao_sdk.worker.distributed.rank import state
from tao_sdk.worker.errors import WorkerError


class PeerFailed(WorkerError):
    """Another rank failed; this rank stops too (rank 0 reports the other rank's error)."""



def _device():
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if state().device == "cuda" \
        else torch.device("cpu")


def agree(ok: bool) -> bool:
    """True when every rank passes ``ok=True`` (one collective; a no-op alone)."""
    if state().world_size <= 1:
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier() -> None:
    """Wait for every rank (a no-op alone)."""
    if state().world_size > 1:
        agree(True)


def all_reduce_mean(value) -> float:
    """Mean of a scalar (float or 0-d tensor) over the ranks (the value itself alone)."""
    if state().world_size <= 1:
        return float(value)
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).to(_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / state().world_size


def sync_buffers(module) -> None:
    """Copy rank 0's floating-point buffers (BatchNorm running statistics) of ``module`` to
    every rank, so that the sharded validation evaluates one model (a no-op alone)."""
    if state().world_size <= 1:
        return
    import torch.distributed as dist

    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            dist.broadcast(buf.data, src=0)


def gather_to_main(obj: Any) -> list[Any] | None:
    """Rank 0 gets ``[obj of rank 0, obj of rank 1, ...]``, other ranks ``None``
    (``[obj]`` alone)."""
    if state().world_size <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * state().world_size if state().is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


@contextlib.contextmanager
def local_first(what: str) -> Iterator[None]:
    """Run the body on local rank 0 of every node first, then on the other ranks (downloads
    and archive extraction happen once per node; the others find the cache). If a node's
    first rank fails, the other ranks raise :class:`PeerFailed` instead of repeating it."""
    st = state()
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
