"""Launching the ranks of a planned job on this node: ``torchrun`` or ``spawn``, their
environment, supervision, and the FAILURE line when no rank could write it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from tao_sdk.worker import spec as S
from tao_sdk.worker.distributed.planning import (LAUNCH_ENV, LAUNCHER_PID_ENV, LaunchPlan,
                                                  in_launched_rank)
from tao_sdk.worker.errors import WorkerError

#: Seconds the spawn supervisor lets the other ranks finish after one failed, before stopping them.
GRACE_S = float(os.environ.get("TAO_WORKER_DDP_GRACE_S", "60") or 60)


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
