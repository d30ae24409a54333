"""A failing rank's message through the rendezvous store, so rank 0's FAILURE line names the
rank and the real error."""

from __future__ import annotations

import contextlib

from tao_sdk.worker.distributed.collectives import PeerFailed
from tao_sdk.worker.distributed.rank import state

_FAIL_COUNT = "tao_worker/failures"
_FAIL_KEY = "tao_worker/failure/{}"


def _store():
    from datetime import timedelta

    from torch.distributed.distributed_c10d import _get_default_store

    store = _get_default_store()
    with contextlib.suppress(Exception):
        store.set_timeout(timedelta(seconds=10))
    return store


def record_failure(message: str) -> None:
    """Leave this rank's failure message in the rendezvous store for rank 0 (best effort)."""
    if not state().active or state().is_main:
        return
    try:
        store = _store()
        n = store.add(_FAIL_COUNT, 1)
        store.set(_FAIL_KEY.format(n), f"rank {state().rank}: {message}")
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

    if not state().active:
        return message
    if not state().is_main:
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
        return f"distributed training (world_size {state().world_size}) failed on {peer}"
    if comm:
        return (f"distributed training (world_size {state().world_size}): another rank stopped "
                f"(crashed or was killed; see the job's stderr) - rank 0 saw: {message}")
    return message
