"""``tao-skills``: the command line mirror of the Python API.

Human output by default, ``--json`` for agents. Expected errors print one message (what is
wrong and what to change) and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import yaml

from .cliexit import closed_pipe, save_traceback
from .errors import TaoSkillsError
from .jobkinds import job_kind
from .clispec import add_spec_options as _add_spec_options
from .clispec import datasets_of as _datasets


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*[str(c) for c in r]) for r in rows])


# --------------------------------------------------------------------------- commands
def cmd_list(args: argparse.Namespace) -> int:
    from .bank import SkillBank
    from .models import skill_summary

    rows = [skill_summary(skill).to_json_dict() for skill in SkillBank().skills()]
    if args.json:
        _print_json(rows)
    else:
        print(_table([[r["skill"], r["network"], r["task"], r["backend"], r["metric"] or "-",
                       "yes" if r["automl_enabled"] else "no", ",".join(r["actions"]) or "-"] for r in rows],
                     ["SKILL", "NETWORK", "TASK", "BACKEND", "METRIC", "AUTOML", "ACTIONS"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .backends import skill_backends
    from .bank import SkillBank
    from .datasources import ROLE_FLAGS
    from .models import ActionDetail, SkillDetail

    skill = SkillBank().get(args.skill)
    if args.action:
        data = ActionDetail.from_skill(skill, args.action).to_json_dict()
        if args.json:
            _print_json(data)
            return 0
        print(f"{skill.name} {args.action}\n  schema:   {data['schema']}\n  template: {data['template']}")
        if data["backend"]:
            print(f"  backend:  {data['backend']['kind']} ({data['backend']['detail']})")
        print()
        print("Datasets:")
        for r in data["dataset_requirements"]:
            print(f"  {r['spec_key']} <- {r['source']} ({ROLE_FLAGS[r['source']]}): {r['files']}"
                  + (" [one per dataset]" if r["list"] else ""))
        print("\nFilled by the SDK:")
        for m in data["inference_mappings"]:
            print(f"  {m['spec_field']} <- {m['function'] or repr(m['literal'])}")
        return 0
    backends = skill_backends(skill)
    data = SkillDetail.from_skill(skill).to_json_dict()
    if args.json:
        _print_json(data)
    else:
        print(f"{skill.name}: {skill.description}\n  folder: {skill.dir}")
        if skill.info:
            metric = skill.info.get("monitoring_metric", {})
            print(f"  task: {skill.info.get('task') or skill.info.get('dataset_type')}")
            print(f"  network: {skill.network}  metric: {metric.get('name')} ({metric.get('direction')})"
                  f"  automl: {'yes' if skill.info.get('automl_enabled') else 'no'}")
            print(f"  actions: {', '.join(skill.actions)}")
            print(f"  formats: {', '.join(skill.info.get('formats', []))}")
            print("  backends: " + ", ".join(f"{a}={b.kind}" for a, b in backends.items()))
            print(f"  presets: {', '.join(data['presets'])} (--preset)")
            missing = next((b for b in backends.values() if not b.available), None)
            if missing:
                print(f"  {missing.detail}")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from .jobs import plan_job
    from .spec import parse_set_options

    plan = plan_job(args.skill, args.action, datasets=_datasets(args), spec_overrides=parse_set_options(args.sets),
                    base_spec=args.spec_file, parent_job_id=args.parent, dataset_format=args.dataset_format,
                    pretrained_model=args.pretrained_model, automl_policy="off", preset=args.preset,
                    validate_datasets=args.validate_datasets)
    text = yaml.safe_dump(plan.spec, sort_keys=False, default_flow_style=False, width=1000)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not args.json:
            print(f"wrote {args.output} (valid against the {plan.skill} {args.action} schema)")
    if args.json:
        _print_json({"spec": plan.spec, "deploy": plan.deploy, "warnings": plan.warnings, "notes": plan.notes,
                     "preset": plan.preset, "env": plan.env})
        return 0
    elif not args.output:
        sys.stdout.write(text)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _progress_text(job: Any) -> str:
    """One progress line for any job (status.json progress, or the AutoML trial summary)."""
    return str(job.summary)


def _progress_printer(json_mode: bool) -> Callable[[Any], None]:
    shown: list[str] = []

    def show(job: Any) -> None:
        line = _progress_text(job)
        if json_mode or (shown and shown[-1] == line):
            return
        shown.append(line)
        print(f"[{job.id}] {line}", file=sys.stderr, flush=True)
    return show


def cmd_run(args: argparse.Namespace) -> int:
    from .budget import job_budget
    from .jobs import create_job, plan_job
    from .spec import parse_set_options

    flags = {"algorithm": args.automl_algorithm, "max_recommendations": args.automl_trials,
             "hyperparameters": args.automl_param, "max_concurrent": args.automl_concurrency}
    settings = {k: v for k, v in flags.items() if v is not None} or None
    options = dict(datasets=_datasets(args), spec_overrides=parse_set_options(args.sets), base_spec=args.spec_file,
                   parent_job_id=args.parent, automl_policy=args.automl_policy, request=args.request,
                   dataset_format=args.dataset_format, pretrained_model=args.pretrained_model,
                   automl=settings, preset=args.preset, platform=args.platform, image=args.image,
                   validate_datasets=args.validate_datasets)
    plan = plan_job(args.skill, args.action, **options)
    budget = job_budget(plan)
    if args.dry_run:
        plan.backend.require()  # nothing can run it here: say what to install
        if args.json:
            _print_json(plan.to_dict())
        else:
            _print_plan(plan, budget)
        return 0
    if budget.announce and not args.json:  # say what it will spend before anything starts
        print(budget.summary, flush=True)
    out = create_job(args.skill, args.action, plan=plan, **options)  # submits this plan: a run plans once
    if not args.json:
        print(f"submitted {out.id} ({out.skill} {out.action}) on {args.platform}; results: {out.results_uri}")
        if out.result.get("route"):
            print(f"  route: {out.result['route']}")
    return _maybe_wait(out, args, {"budget": budget.model_dump()})


def _print_plan(plan: Any, budget: Any) -> None:
    """Human form of a dry run: route and why, warnings, notes, the budget line
    (:func:`tao_sdk.budget.job_budget`) and for AutoML the search space."""
    print(f"dry run: {plan.skill} {plan.action} -> {plan.route.target} ({plan.route.reason})")
    if plan.backend is not None:
        print(f"backend: {plan.backend.kind} ({plan.backend.detail})")
    for w in plan.warnings:
        print(f"  warning: {w}")
    for n in plan.notes:
        print(f"  note: {n}")
    for w in plan.weights:
        size = f", {w['size']:,} bytes" if w.get("size") is not None else ""
        print(f"  weights: {w['spec_field']} <- {w['uri']} ({w['source']}: {w['resolved']}{size})")
    print(budget.summary)
    if plan.datasets is not None:
        print("\n".join(plan.datasets.lines()))
    else:
        print("datasets: not validated (--no-validate-datasets / TAO_SKILLS_VALIDATE_DATASETS=0)")
    if plan.automl:
        print(_table([[r["name"], r["kind"], r["scale"] or "-", _space_range(r), repr(r["default"]),
                       "; ".join(r["constraints"]) or "-"] for r in plan.automl["search_space"]],
                     ["PARAMETER", "KIND", "SCALE", "RANGE", "DEFAULT", "CONSTRAINTS"]))
    print("spec is valid; nothing submitted")


def _space_range(row: dict[str, Any]) -> str:
    if row.get("choices") is not None:
        return "{" + ", ".join(map(str, row["choices"])) + "}"
    return f"[{row['low']:g}, {row['high']:g}]" if row.get("low") is not None else "-"


def cmd_validate(args: argparse.Namespace) -> int:
    from .specfile import validate_spec_file

    report = validate_spec_file(args.skill, args.action, args.spec_file, deploy=args.deploy)
    if args.json:
        _print_json(report.to_dict())
        return 0 if report.ok else 2
    label = f"{report.skill} {'TensorRT ' if report.deploy else ''}{report.action}"
    if report.ok:
        print(f"{args.spec_file}: acceptable for {label}")
    else:
        print(f"{args.spec_file}: {len(report.problems)} problem(s) for {label}:")
        for p in report.problems:
            print(f"  - {p}")
    for path, how in sorted(report.filled.items()):
        print(f"  filled by the SDK: {path} <- {how}")
    for path in report.unset:
        print(f"  unset ('???'), set it before running: {path}")
    for path, before, after in report.coerced:
        print(f"  read as TAO does: {path}: {before!r} -> {after!r}")
    if report.sections:
        print(f"  other actions' sections validated: {', '.join(report.sections)}")
    for w in report.warnings:
        print(f"  warning: {w}")
    return 0 if report.ok else 2


def _maybe_wait(job: Any, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> int:
    """With --wait, follow the job to its end; print it (--json, with ``extra`` keys) and return
    the exit status."""
    from .jobs import wait_for_job

    if args.wait:
        job = wait_for_job(job.id, on_progress=_progress_printer(args.json))
    if args.json:
        _print_json({**job.to_dict(), **(extra or {})})
    elif args.wait:
        _print_final(job)
    return 0 if (not args.wait or job.status.value == "SUCCESS") else 1


def _print_final(job: Any) -> None:
    print(f"{job.id}: {job.status.value}")
    if job.result.get("message"):
        print(f"  {job.result['message']}")
    for key, value in sorted(job.kpis.items()):
        print(f"  {key} = {value}")


def cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs import list_jobs

    if args.recover:
        from .recovery import recover_job_store

        out = recover_job_store()
        if args.json:
            _print_json(out.to_dict())
            return 0
        print(out.summary())
        for folder, why in sorted(out.skipped.items()):
            print(f"  skipped {folder}: {why}")
        rows = [[j.id, j.skill, j.action, j.status.value] for j in out.recovered]
        if rows:
            print(_table(rows, ["JOB", "SKILL", "ACTION", "STATUS"]))
        return 0
    jobs = list_jobs(skill=args.skill, status=args.status, parent_id=args.parent, limit=args.limit)
    if args.json:
        _print_json([j.to_dict() for j in jobs])
        return 0
    rows = []
    for j in jobs:
        text = _progress_text(j) if (j.progress or not job_kind(j.record.kind).has_task_status) else "-"
        rows.append([j.id, j.skill, j.action, j.status.value, j.parent_id or "-", text.split(": ", 1)[-1]])
    print(_table(rows, ["JOB", "SKILL", "ACTION", "STATUS", "PARENT", "PROGRESS"]) if rows else "no jobs")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .jobs import get_job

    job = get_job(args.job)
    if args.json:
        _print_json(job.to_dict())
        return 0
    print(f"{job.id}: {job.skill} {job.action} {job.status.value}")
    print(f"  results: {job.results_uri}")
    if job.parent_id:
        print(f"  parent:  {job.parent_id} ({job.result.get('parent_artifact')})")
    if job.progress or not job_kind(job.record.kind).has_task_status:
        print(f"  {_progress_text(job)}")
    if job.result.get("message"):
        print(f"  message: {job.result['message']}")
    for w in job.result.get("warnings") or []:
        print(f"  warning: {w}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from .jobs import job_logs

    out = job_logs(args.job, follow=args.follow)
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        for line in out:
            print(line, flush=True)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_job

    out = plot_job(args.job, args.output)
    print(json.dumps(out.to_dict()) if args.json else f"wrote {out.plot} ({', '.join(out.panels)})")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from .jobs import wait_for_job

    job = wait_for_job(args.job, timeout=args.timeout, on_progress=_progress_printer(args.json))
    if args.json:
        _print_json(job.to_dict())
    else:
        _print_final(job)
    return 0 if job.status.value == "SUCCESS" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    from .jobs import cancel_job

    job = cancel_job(args.job)
    if args.json:
        _print_json(job.to_dict())
    else:
        print(f"{job.id}: {job.status.value}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from .jobs import resume_job

    job = resume_job(args.job)
    if not args.json:
        print(f"submitted {job.id}: resumes {args.job} from {job.result.get('parent_artifact')}")
    return _maybe_wait(job, args)


def cmd_artifacts(args: argparse.Namespace) -> int:
    from .jobs import get_job

    files = get_job(args.job).artifacts()
    if args.json:
        _print_json(files)
    else:
        print("\n".join(files) if files else "no artifacts yet")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .bank import SkillBank
    from .checker import check_bank

    bank = SkillBank()
    problems = check_bank(bank, args.skills or None)
    if args.json:
        _print_json([p.__dict__ for p in problems])
    elif problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
    else:
        names = args.skills or bank.names()
        print(f"bank OK: {len(names)} skill(s) checked ({', '.join(names)})")
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(json_mode=args.json, quick=args.quick, network=args.network,
                    with_distill=args.with_distill, with_quantize=args.with_quantize)


def cmd_cache(args: argparse.Namespace) -> int:
    from .datacache import cache_info, clear_cache

    if args.action == "clear":
        out = clear_cache()
        if args.json:
            _print_json(out)
        else:
            busy = f"; kept {len(out['kept_busy'])} in use by running jobs" if out["kept_busy"] else ""
            print(f"removed {len(out['removed'])} cache entries ({out['freed_bytes']:,} bytes) from {out['root']}{busy}")
        return 0
    info = cache_info()
    if args.json:
        _print_json(info)
        return 0
    cap = f"{info['max_bytes']:,} bytes" if info["max_bytes"] else "no cap"
    print(f"dataset cache {info['root']}: {info['total_bytes']:,} bytes in {len(info['entries'])} entries "
          f"(cap {cap}, TAO_WORKER_CACHE_MAX_BYTES)")
    import time as _time

    rows = [[e["name"], f"{e['bytes']:,}", _time.strftime("%Y-%m-%d %H:%M", _time.localtime(e["last_used"])),
             "yes" if e["busy"] else ""] for e in info["entries"]]
    if rows:
        print(_table(rows, ["entry", "bytes", "last used", "in use"]))
    return 0


MCP_HELP = """Serve the SDK to agents over the Model Context Protocol.

Tools: list_skills, describe_skill, get_schema, validate_spec, plan_job, submit_job, job_status,
job_logs, wait_job, cancel_job, list_jobs, job_artifacts, automl_trials (typed inputs and outputs).
Resources: skill://<skill>/SKILL.md, skill://<skill>/schemas/<action>.

Register it with an agent (stdio, the default):
  claude mcp add tao-skills -- tao-skills mcp
  codex mcp add tao-skills -- tao-skills mcp
Over HTTP (loopback only, bearer token):
  TAO_SKILLS_MCP_TOKEN=... tao-skills mcp --http --port 8765
  claude mcp add --transport http tao-skills http://127.0.0.1:8765/mcp --header "Authorization: Bearer ..."
Needs the mcp extra: pip install 'tao-skill-bank[mcp]'.
"""


def cmd_mcp(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise TaoSkillsError("`tao-skills mcp` needs the mcp extra: pip install 'tao-skill-bank[mcp]'")
    from .mcpserver import serve

    return serve(http=args.http, port=args.port, token=args.token)


# --------------------------------------------------------------------------- parser
def _add_run_command(sub: Any) -> None:
    """``run``: create and submit a job (spec options, platform, AutoML, wait, dry run)."""
    p = sub.add_parser("run", help="create and submit a job")
    _add_spec_options(p)
    p.add_argument("--platform", default="local",
                   help="where the job runs: local (this machine, default), slurm (sbatch on the cluster of "
                        "SLURM_CONF; settings in <workspace>/platforms/slurm.yaml or TAO_SLURM_*) or docker (a "
                        "container of the skill's TAO image, docker or podman; <workspace>/platforms/docker.yaml "
                        "or TAO_DOCKER_*)")
    p.add_argument("--image", help="container image of this job (docker: beats the settings and the skill's TAO "
                                   "image; slurm: pyxis --container-image)")
    p.add_argument("--automl-policy", choices=["auto", "off"])
    p.add_argument("--request", help="the user's request text (e.g. 'plain training, no HPO')")
    p.add_argument("--automl-algorithm", help="AutoML algorithm when routed (random, bayesian, hyperband, asha, bohb, dehb, pbt)")
    p.add_argument("--automl-trials", type=int, help="AutoML max recommendations")
    p.add_argument("--automl-param", action="append", metavar="KEY",
                   help="search only these hyperparameters (repeatable; default: the schema's AutoML set)")
    p.add_argument("--automl-concurrency", type=int, help="AutoML trials running at once")
    p.add_argument("--wait", action="store_true", help="wait for the job and print progress")
    p.add_argument("--dry-run", action="store_true", help="resolve + validate only, submit nothing")
    p.set_defaults(func=cmd_run)


def _add_job_commands(sub: Any) -> None:
    """``jobs``, ``status``, ``cancel``, ``artifacts``, ``logs``, ``resume``, ``wait``, ``plot``."""
    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--skill")
    p.add_argument("--status")
    p.add_argument("--parent")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--recover", action="store_true",
                   help="rebuild the job store from the job folders (a damaged store is moved aside, never deleted)")
    p.set_defaults(func=cmd_jobs)

    for name, func, helptext in (("status", cmd_status, "job status and progress"),
                                 ("cancel", cmd_cancel, "cancel a job"),
                                 ("artifacts", cmd_artifacts, "list a job's result files")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("job")
        p.set_defaults(func=func)
    p = sub.add_parser("logs", help="print a job's log")
    p.add_argument("job")
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("resume", help="continue an interrupted train job from its latest checkpoint")
    p.add_argument("job")
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("wait", help="wait for a job, printing progress")
    p.add_argument("job")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=cmd_wait)
    p = sub.add_parser("plot", help="PNG of a job: loss/KPI curves (best epoch marked), AutoML trials, "
                                    "evaluate KPIs, per-class bars, PR curves")
    p.add_argument("job")
    p.add_argument("-o", "--output", help="PNG path (default <job id>.png)")
    p.set_defaults(func=cmd_plot)


def _add_tool_commands(sub: Any) -> None:
    """``mcp``, ``check``, ``demo``, ``cache``."""
    p = sub.add_parser("mcp", help="serve the SDK to agents over MCP (stdio; --http for loopback HTTP)",
                       description=MCP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", action="store_true", help="streamable HTTP on 127.0.0.1 instead of stdio")
    p.add_argument("--port", type=int, default=8765, help="HTTP port on 127.0.0.1 (default 8765)")
    p.add_argument("--token", help="bearer token HTTP clients must send (default $TAO_SKILLS_MCP_TOKEN, "
                                   "else one is generated and printed once on stderr)")
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser("check", help="check the skill bank")
    p.add_argument("skills", nargs="*")
    p.set_defaults(func=cmd_check)

    from .demo import DEFAULT_NETWORK
    from .worker import NETWORKS

    p = sub.add_parser("demo", help="synthetic dataset -> train/evaluate/export/inference of one network")
    p.add_argument("--network", choices=NETWORKS, default=DEFAULT_NETWORK,
                   help=f"network to run (default {DEFAULT_NETWORK})")
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (< 5 min on 2 cores)")
    p.add_argument("--with-distill", action="store_true",
                   help="also train a smaller student alone and distilled from the trained model (same epochs)")
    p.add_argument("--with-quantize", action="store_true",
                   help="also quantize the trained model (each mode that runs here): size and metric vs float")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("cache", help="show the worker's dataset cache (size, entries) or clear it")
    p.add_argument("action", nargs="?", choices=["show", "clear"], default="show",
                   help="show (default) or clear (removes every entry no running job uses)")
    p.set_defaults(func=cmd_cache)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``tao-skills`` (also used to document the CLI)."""
    parser = argparse.ArgumentParser(prog="tao-skills", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list skills").set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="show a skill (or one action's datasets and mappings)")
    p.add_argument("skill")
    p.add_argument("--action")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("spec", help="build and validate a spec (prints YAML)")
    _add_spec_options(p)
    p.add_argument("-o", "--output", help="write the spec to this file")
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("validate", help="validate your TAO spec file for a skill action (exit 0 ok, 2 problems)")
    p.add_argument("skill", help="skill name (tao-train-rtdetr) or network (rtdetr)")
    p.add_argument("action", help="train, evaluate, inference, export, gen_trt_engine, ...")
    p.add_argument("-e", "--spec-file", required=True, metavar="FILE", help="the TAO experiment spec (YAML)")
    p.add_argument("--deploy", action="store_true", help="the TensorRT variant of evaluate/inference")
    p.set_defaults(func=cmd_validate)

    _add_run_command(sub)

    from .datasets.cli import add_dataset_commands

    add_dataset_commands(sub)

    _add_job_commands(sub)

    _add_tool_commands(sub)

    for choice in sub.choices.values():
        choice.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="machine-readable output")
    from .automl.cli import add_automl_commands  # torch- and numpy-free; each command says what it needs

    add_automl_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tao-skills``; returns the exit status: 0 done, 2 an expected error (one
    line), 1 an unexpected one (one line and the path of the saved traceback), 130 interrupted,
    141 stdout closed by its reader (quietly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return closed_pipe()
    except TaoSkillsError as exc:
        _report(args, exc)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen fault: one line, traceback in a file
        path = save_traceback(exc)
        _report(args, exc, f"unexpected {type(exc).__name__}: {exc} (traceback saved to {path}; "
                           "please report it with that file)")
        return 1


def _report(args: argparse.Namespace, exc: Exception, message: str | None = None) -> None:
    """Print an error: with --json one :class:`tao_sdk.models.ErrorInfo` object on stdout (error,
    message, and a spec's problems with their dotted paths), else ``error: ...`` on stderr.
    ``message`` replaces the exception's text (the unexpected-error line)."""
    try:
        if getattr(args, "json", False):
            from .models import ErrorInfo

            info = ErrorInfo.from_exception(exc)
            _print_json(info.model_copy(update={"message": message}).to_json_dict() if message else info.to_json_dict())
            sys.stdout.flush()
        else:
            print(f"error: {message or exc}", file=sys.stderr)
    except BrokenPipeError:
        closed_pipe()


if __name__ == "__main__":
    sys.exit(main())
