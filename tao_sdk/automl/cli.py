"""``tao-skills automl resume|trials|plot``."""

from __future__ import annotations

import argparse
import json


def _resume(args: argparse.Namespace) -> int:
    from ..extras import import_optional

    job = import_optional("tao_sdk.automl.controller", "tao-skills automl resume").resume_automl_job(args.job)
    print(json.dumps(job.to_dict(), indent=2, default=str) if args.json else f"resumed {job.id}: controller restarted")
    return 0


def _trials(args: argparse.Namespace) -> int:
    from ..jobs import get_job
    from .report import format_trial_table, trial_table

    job = get_job(args.job)
    if args.json:
        print(json.dumps(trial_table(job.record).to_json_dict(), indent=2))
    else:
        print(f"{job.id}: {job.status.value}  metric {job.result.get('metric')} ({job.result.get('direction')})")
        print(format_trial_table(job.record))
        if job.result.get("message"):
            print(job.result["message"])
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..jobs import get_job
    from .report import plot_trials

    job = get_job(args.job)
    path = plot_trials(job.record, args.output or f"{job.id}_trials.png")
    print(json.dumps({"plot": str(path)}) if args.json else f"wrote {path}")
    return 0


def add_automl_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``automl`` and its sub-commands on the main CLI."""
    p = sub.add_parser("automl", help="AutoML jobs: resume, trial table, plot")
    inner = p.add_subparsers(dest="automl_command", required=True)
    for name, func, helptext in (("resume", _resume, "restart an interrupted AutoML job's controller"),
                                 ("trials", _trials, "the trial table (best trial marked *)")):
        q = inner.add_parser(name, help=helptext)
        q.add_argument("job")
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        q.set_defaults(func=func)
    q = inner.add_parser("plot", help="PNG of the metric per trial and best so far")
    q.add_argument("job")
    q.add_argument("-o", "--output")
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    q.set_defaults(func=_plot)
