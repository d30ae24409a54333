"""Command line of the worker, with the TAO container contract::

    python -m tao_sdk.worker <network> <action> -e spec.yaml [dotted.key=value ...]

Exit status: 0 success, 1 the job failed (a FAILURE line is in ``status.json`` when the
results folder could be determined), 2 usage error (unknown network / action, unreadable spec).

A train job with ``train.num_gpus`` > 1 or the orchestrator's multi-node environment
(``WORLD_SIZE`` = number of nodes) is launched as several data-parallel processes (torchrun or
spawned ranks, as the skill's ``launch`` facts say): see :mod:`tao_sdk.worker.distributed`.
Other actions run in one process; under a multi-process launcher only rank 0 runs them.

This module composes the worker: it hands the job functions (:func:`run`,
:func:`tao_sdk.worker.job.record_failure`) to the launcher, so that
:mod:`~tao_sdk.worker.distributed` never imports the job and the job imports the engine only
when it runs.
"""

from __future__ import annotations

import argparse
import sys

from tao_sdk.worker import ACTIONS, NETWORKS, registry

__all__ = ["main", "build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m tao_sdk.worker``."""
    p = argparse.ArgumentParser(
        prog="python -m tao_sdk.worker",
        description="Run one TAO job (train / distill / quantize / evaluate / inference / export / "
                    "gen_trt_engine) "
                    "and write the TAO results folder (status.json, experiment.yaml, artifacts).",
    )
    p.add_argument("network", help=f"network: {', '.join(NETWORKS)}")
    p.add_argument("action", help=f"action: {', '.join(ACTIONS + registry.EXTRA_ACTIONS)} (see supports())")
    p.add_argument("-e", "--experiment_spec", "--experiment-spec", dest="spec", required=True,
                   help="experiment spec YAML (local path or s3:// URI)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="spec overrides, e.g. train.num_epochs=5 results_dir=/tmp/r")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the job, return the exit status."""
    args = build_parser().parse_intermixed_args(argv)
    import os

    from tao_sdk.worker import distributed as D

    D.bind_rank_to_job()
    rank = _launcher_rank()
    distributed_train = args.action == "train" and (
        D.in_launched_rank() or os.environ.get("WORLD_SIZE") not in (None, ""))
    if rank and not distributed_train:
        # Under a multi-process launcher, actions other than train run on one device: only
        # rank 0 runs the job and writes the results folder (TAO: rank 0 writes status).
        print(f"rank {rank}: {args.action} runs in one process; rank 0 does the work",
              file=sys.stderr)
        return 0
    from tao_sdk.errors import TaoSkillsError
    from tao_sdk.worker import spec as S
    from tao_sdk.worker.job import EXIT_FAILED, EXIT_USAGE, record_failure

    try:
        spec = S.resolve_interpolations(S.apply_overrides(S.load_spec(args.spec),
                                                          args.overrides))
    except TaoSkillsError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = None
    if args.network not in NETWORKS:
        problem = (f"unknown network {args.network!r}: this worker runs "
                   f"{', '.join(NETWORKS)}; use the matching skill's network name")
    elif args.action not in registry.actions(args.network):
        problem = (f"unknown action {args.action!r} for {args.network}: available actions are "
                   f"{', '.join(registry.actions(args.network))}")
    if problem is not None:
        print(f"ERROR: {problem}", file=sys.stderr)
        _record_usage_failure(spec, args.action, problem)
        return EXIT_USAGE
    if not D.in_launched_rank():
        try:
            plan = D.plan_launch(args.network, args.action, spec)
        except TaoSkillsError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            if not rank:
                record_failure(args.network, args.action, spec, str(exc))
            return EXIT_FAILED
        if plan is not None:
            return D.launch(plan, args.network, args.action, spec, args.spec, args.overrides,
                            run_job=run, record_failure=record_failure)
    return run(args.network, args.action, spec)


def run(network: str, action: str, spec: dict) -> int:
    """Run one job of the worker's engine in this process; return the exit status."""
    from tao_sdk.worker.engine import ACTIONS as engine_actions
    from tao_sdk.worker.job import run_job

    return run_job(network, action, spec, actions=engine_actions)


def _launcher_rank() -> int:
    """Global rank set by a distributed launcher (``RANK``, else ``NODE_RANK`` as TAO copies
    it), 0 when not launched that way."""
    import os

    for var in ("RANK", "NODE_RANK"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _record_usage_failure(spec: dict, action: str, message: str) -> None:
    """Best effort: write a FAILURE line to the task's status.json so a waiting SDK sees it."""
    from tao_sdk.worker.job import record_failure

    record_failure("", action, spec, message)
