"""``tao-skills mcp``: the SDK served to agents over the Model Context Protocol (official ``mcp`` SDK).

Tools (names fixed, arguments mirroring the Python API, typed results from :mod:`tao_sdk.models`,
so every tool publishes an input and an output JSON Schema and returns structured content):
``list_skills``, ``describe_skill``, ``get_schema``, ``validate_spec``, ``validate_datasets``, ``plan_job``, ``submit_job``,
``job_status``, ``job_logs``, ``wait_job`` (progress notifications while it waits), ``cancel_job``,
``list_jobs``, ``job_artifacts``, ``automl_trials``, ``plot_job`` (the job's PNG as image content).
Resources: ``skill://<skill>/SKILL.md`` and
``skill://<skill>/schemas/<action>``.

An expected SDK error (:class:`tao_sdk.errors.TaoSkillsError`) is a tool error (``isError``) whose
structured content is :class:`tao_sdk.models.ErrorInfo`: the message (what to change) and, for a
spec that failed validation, every problem's dotted path, value, allowed values and suggestion.
No result holds a secret (records, specs and logs pass through :func:`tao_sdk.secrets.redact`).

Transports: stdio (default) or, with ``--http``, streamable HTTP bound to 127.0.0.1 where every
request must carry ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import functools
import hmac
import inspect
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, Mapping

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resources import FileResource
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field

from . import jobs
from .bank import get_bank
from .budget import JobBudget
from .datasets.problems import DatasetReport
from .errors import TaoSkillsError
from .jobkinds import job_kind
from .models import (ArtifactList, ErrorInfo, JobInfo, PlanInfo, SkillDetail, SkillSummary, SpecReport, TrialTable,
                     skill_summary)
from .secrets import redact

__all__ = ["TOOLS", "build_server", "serve"]

TOKEN_ENV = "TAO_SKILLS_MCP_TOKEN"
#: The longest one ``wait_job`` call blocks (an agent calls it again to keep waiting).
MAX_WAIT_S = 600.0

Skill = Annotated[str, Field(description="skill name (tao-train-rtdetr) or network (rtdetr)")]
Action = Annotated[str, Field(description="train, evaluate, inference, export, gen_trt_engine, ...")]
JobId = Annotated[str, Field(description="job id (job-...)")]


# =========================================================================== result models
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SkillList(_Out):
    """Every skill of the bank."""

    skills: list[SkillSummary]


class SchemaInfo(_Out):
    """The JSON Schema of one action (or of one dotted path in it)."""

    skill: str
    action: str
    deploy: bool
    path: str | None
    json_schema: dict[str, Any] = Field(description="the action's schema, or the node of `path`")


class Submitted(_Out):
    """A submitted job and the budget it will spend (trials x epochs, GPUs)."""

    job: JobInfo
    budget: JobBudget


class LogChunk(_Out):
    """Log lines ``[first_line, next_line)`` of a job (secrets redacted); pass ``next_line`` as
    ``since`` to read on."""

    job_id: str
    first_line: int
    next_line: int
    total_lines: int
    text: str


class WaitResult(_Out):
    """The job after waiting; ``finished`` is False when ``timeout`` passed first (call again)."""

    finished: bool
    job: JobInfo


class PlotInfo(_Out):
    """What ``plot_job`` drew (the PNG itself comes as image content beside this)."""
    job_id: str
    plot: str = Field(description="path of the PNG on the server's machine")
    panels: list[str] = Field(description="losses, kpis, kpi_bars, categorical:<name>, pr_curves, trials")
    best_epoch: int | None

    def mcp_content(self) -> list[Any]:
        """The PNG as MCP image content (base64), after the JSON text."""
        import base64

        from mcp.types import ImageContent

        data = base64.b64encode(Path(self.plot).read_bytes()).decode("ascii")
        return [TextContent(type="text", text=self.model_dump_json()),
                ImageContent(type="image", data=data, mime_type="image/png")]


class JobList(_Out):
    """Jobs, newest first."""

    jobs: list[JobInfo]


# =========================================================================== tools
def list_skills() -> SkillList:
    """Every skill of the bank: network, task, actions, metric, AutoML, backends, description."""
    return SkillList(skills=[skill_summary(s) for s in get_bank().skills()])


def describe_skill(skill: Skill) -> SkillDetail:
    """One skill: description, skill_info, and per action the schema/template files, the SKILL.md
    dataset table (which spec key each dataset role fills), the parent-model mappings the SDK fills
    and the backend that runs it here."""
    return SkillDetail.from_skill(get_bank().get(skill), with_actions=True)


def get_schema(skill: Skill, action: Action,
               path: Annotated[str | None, Field(description="dotted spec path, e.g. train.optim.lr")] = None,
               deploy: Annotated[bool, Field(description="the TensorRT variant of evaluate/inference")] = False,
               ) -> SchemaInfo:
    """The JSON Schema of one action, or of one dotted path in it (type, range, enum, default)."""
    import difflib

    from .schemapath import find_property, leaf_paths

    model = get_bank().get(skill)
    schema = model.schema(action, deploy)
    node = schema if path is None else find_property(schema, path)
    if node is None:
        close = difflib.get_close_matches(str(path), list(leaf_paths(schema)), 3)
        raise TaoSkillsError(f"{model.name} {action} has no spec path '{path}'"
                             + (f"; did you mean {', '.join(close)}?" if close else "")
                             + " Call get_schema without path for the whole schema")
    return SchemaInfo(skill=model.name, action=action, deploy=deploy, path=path, json_schema=node)


def validate_spec(skill: Skill, action: Action,
                  spec_file: Annotated[str | None, Field(description="path of a TAO experiment spec (YAML)")] = None,
                  spec: Annotated[dict[str, Any] | None, Field(description="the spec as a nested dict")] = None,
                  deploy: bool = False) -> SpecReport:
    """Validate a TAO experiment spec (a file path or a nested dict) for a skill action: ``ok``,
    every problem (dotted path, value, allowed, suggestion), what the SDK fills at run time."""
    from .specfile import validate_spec_file

    if (spec_file is None) == (spec is None):
        raise TaoSkillsError("give exactly one of spec_file (a YAML path) or spec (a nested dict)")
    return validate_spec_file(skill, action, spec if spec is not None else str(spec_file), deploy=deploy).info()


Datasets = Annotated[dict[str, Any] | None, Field(
    description="dataset roots by role: train_datasets (list), eval_dataset, inference_dataset, calibration_dataset")]
Overrides = Annotated[dict[str, Any] | None, Field(description="dotted spec keys -> values, e.g. "
                                                               "{'train.num_epochs': 10}")]
BaseSpec = Annotated[str | dict[str, Any] | None, Field(description="your TAO experiment spec: a YAML path or a "
                                                                    "nested dict (the layer under spec_overrides)")]
Policy = Annotated[str | None, Field(description="AutoML policy of train actions: auto or off")]
Automl = Annotated[dict[str, Any] | None, Field(description="AutoML settings (algorithm, max_recommendations, "
                                                            "max_epochs, max_concurrent, hyperparameters)")]
Preset = Annotated[str | None, Field(description="'tiny': the skill's small model that trains in minutes on a CPU "
                                                 "(the four seed networks); 'full' / null: the template as TAO ships it")]


def validate_datasets(skill: Skill, action: Action, datasets: Datasets = None, dataset_format: str | None = None,
                      spec_overrides: Overrides = None, base_spec: BaseSpec = None) -> DatasetReport:
    """Check every dataset file the skill's SKILL.md table names for the action before any job
    (local paths and s3://; archives streamed within a byte and time budget): ``ok``, every
    problem with its file, record and fix, the budget used. plan_job / submit_job run the same
    check and refuse a dataset with errors."""
    from .datasets import validate_datasets as check

    report: DatasetReport = check(skill, action, datasets, dataset_format=dataset_format,
                                  spec_overrides=spec_overrides, base_spec=base_spec)
    return report


def plan_job(skill: Skill, action: Action, datasets: Datasets = None, spec_overrides: Overrides = None,
             base_spec: BaseSpec = None, parent_job_id: str | None = None, dataset_format: str | None = None,
             automl_policy: Policy = None, request: str | None = None, automl: Automl = None,
             pretrained_model: str | None = None, preset: Preset = None) -> PlanInfo:
    """Resolve and validate a job without submitting it (the dry run): route (AutoML or not, and
    why), the full validated spec, the backend and command, the parent artifact, warnings, the
    AutoML search space and the budget it would spend. ``backend.kind`` "none": nothing here can run
    it (``backend.detail`` says what to install) and submit_job refuses it."""
    return jobs.plan_job(skill, action, datasets=datasets, spec_overrides=spec_overrides, base_spec=base_spec,
                         parent_job_id=parent_job_id, dataset_format=dataset_format, automl_policy=automl_policy,
                         request=request, automl=automl, pretrained_model=pretrained_model, preset=preset).info()


def submit_job(skill: Skill, action: Action, datasets: Datasets = None, spec_overrides: Overrides = None,
               base_spec: BaseSpec = None, parent_job_id: str | None = None, dataset_format: str | None = None,
               automl_policy: Policy = None, request: str | None = None, automl: Automl = None,
               pretrained_model: str | None = None, preset: Preset = None,
               platform: Annotated[str, Field(description="local (this machine), slurm or docker (a container of the skill's image)")] = "local") -> Submitted:
    """Create and submit a job (as plan_job, then start it); returns the job and the budget it will
    spend (AutoML trials x epochs, GPUs). Follow it with job_status / wait_job."""
    job = jobs.create_job(skill, action, datasets=datasets, spec_overrides=spec_overrides, base_spec=base_spec,
                          parent_job_id=parent_job_id, dataset_format=dataset_format, automl_policy=automl_policy,
                          request=request, automl=automl, pretrained_model=pretrained_model, preset=preset,
                          platform=platform)
    return Submitted(job=job.info(), budget=JobBudget(**job.result["budget"]))


def job_status(job_id: JobId) -> JobInfo:
    """A job refreshed from its platform: status, progress (epoch, 0..1, ETA seconds), KPIs, message."""
    return jobs.get_job(job_id).info()


def job_logs(job_id: JobId,
             tail: Annotated[int | None, Field(ge=1, description="only the last N lines")] = 200,
             since: Annotated[int, Field(ge=0, description="start at this line (next_line of a previous call)")] = 0,
             ) -> LogChunk:
    """The job's log lines from line ``since`` (at most the last ``tail`` of them)."""
    text = jobs.job_logs(job_id)
    lines = text.splitlines()
    first = max(since, len(lines) - tail) if tail else since
    return LogChunk(job_id=job_id, first_line=first, next_line=len(lines), total_lines=len(lines),
                    text=str(redact({"t": "\n".join(lines[first:])})["t"]))


def wait_job(job_id: JobId, ctx: Context,
             timeout: Annotated[float, Field(gt=0, le=MAX_WAIT_S, description="seconds to wait at most")] = 60.0,
             poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0) -> WaitResult:
    """Wait until the job ends or ``timeout`` seconds pass, sending MCP progress notifications
    (progress 0..1 and the progress line) whenever the job's status.json or trial table changes.
    ``finished`` False: it is still running; call again to keep waiting."""
    def notify(job: jobs.Job) -> None:
        info = job.info()
        anyio.from_thread.run(ctx.report_progress, info.fraction_done or 0.0, 1.0, info.summary)

    try:
        job = jobs.wait_for_job(job_id, timeout=timeout, poll_interval=poll_interval, on_progress=notify)
    except TaoSkillsError:
        job = jobs.get_job(job_id)
        if job.status.is_terminal or job_kind(job.record.kind).stalled(job.record):
            raise
        return WaitResult(finished=False, job=job.info())
    return WaitResult(finished=True, job=job.info())


def cancel_job(job_id: JobId) -> JobInfo:
    """Stop the job (its whole process tree; an AutoML job's controller and trials); no-op once ended."""
    return jobs.cancel_job(job_id).info()


def list_jobs(skill: str | None = None, status: Annotated[str | None, Field(
        description="PENDING, RUNNING, SUCCESS, FAILURE or CANCELED")] = None,
              parent_id: str | None = None, limit: Annotated[int | None, Field(ge=1)] = 50) -> JobList:
    """Jobs newest first (filters: skill, status, parent job id)."""
    return JobList(jobs=[j.info() for j in jobs.list_jobs(skill=skill, status=status, parent_id=parent_id,
                                                          limit=limit)])


def job_artifacts(job_id: JobId) -> ArtifactList:
    """Every file under the job's results folder (checkpoints, ONNX, status.json, ...)."""
    job = jobs.get_job(job_id)
    return ArtifactList(job_id=job.id, results_uri=job.results_uri, files=job.artifacts())


def automl_trials(job_id: JobId) -> TrialTable:
    """An AutoML job's trials (child job, status, epochs, metric value, params) and its best one."""
    from .automl.report import trial_table

    return trial_table(jobs.get_job(job_id).record)


def plot_job(job_id: JobId) -> PlotInfo:
    """A PNG of the job: loss and KPI curves with the best epoch marked (train), the trials (AutoML),
    KPI and per-class bars and PR curves (evaluate); returned as image content. Needs matplotlib."""
    from .plots import plot_job as plot
    from .workspace import default_workspace

    job = jobs.get_job(job_id)
    out = plot(job.id, default_workspace().job_dir(job.id) / "plot.png")
    return PlotInfo(job_id=job.id, **out.to_dict())


#: The tool registry: every tool the server publishes, by its (fixed) name.
TOOLS: list[Callable[..., Any]] = [
    list_skills, describe_skill, get_schema, validate_spec,
    validate_datasets,
    plan_job, submit_job, job_status, job_logs, wait_job, cancel_job, list_jobs, job_artifacts, automl_trials,
    plot_job,
]


# =========================================================================== server
def _error_result(exc: TaoSkillsError) -> CallToolResult:
    info = ErrorInfo.from_exception(exc).to_json_dict()
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(info))], structured_content=info,
                          is_error=True)


def _as_tool(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` run in a worker thread (the SDK blocks), its TaoSkillsError returned as a tool error."""
    @functools.wraps(fn)
    async def call(**kwargs: Any) -> Any:
        try:
            out = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
        except TaoSkillsError as exc:
            return _error_result(exc)
        if hasattr(out, "mcp_content"):  # a result with its own content (plot_job's image)
            return CallToolResult(content=out.mcp_content(), structured_content=out.model_dump(mode="json"))
        return out

    call.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return call


def _add_resources(server: MCPServer) -> None:
    """``skill://<skill>/SKILL.md`` and ``skill://<skill>/schemas/<action>`` for every skill."""
    for skill in get_bank().skills():
        server.add_resource(FileResource(uri=f"skill://{skill.name}/SKILL.md", path=skill.skill_md_path.resolve(),
                                         name=f"{skill.name} SKILL.md", mime_type="text/markdown",
                                         description=skill.description[:300]))
        for action in skill.actions:
            if skill.has_schema(action):
                server.add_resource(FileResource(
                    uri=f"skill://{skill.name}/schemas/{action}", path=Path(skill.schema_path(action)).resolve(),
                    name=f"{skill.name} {action} schema", mime_type="application/schema+json"))


def build_server() -> MCPServer:
    """The MCP server with every tool of :data:`TOOLS` and the skill resources."""
    server: MCPServer = MCPServer(name="tao-skills", instructions=(
        "TAO Skill Bank: train, evaluate, export and deploy NVIDIA TAO vision models. Read a skill's "
        "SKILL.md resource (or describe_skill), validate_spec / plan_job before submit_job, then follow the "
        "job with job_status / wait_job / job_logs; chain evaluate/export with parent_job_id."))
    for fn in TOOLS:
        server.add_tool(_as_tool(fn), name=fn.__name__, structured_output=True)
    _add_resources(server)
    return server


class BearerAuth:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        """Answer 401 unless the request carries the token; pass everything else to the app."""
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": b'{"error": "missing or wrong bearer token"}'})
                return
        await self.app(scope, receive, send)


def http_token(token: str | None) -> str:
    """``token``, else ``$TAO_SKILLS_MCP_TOKEN``, else a new one printed once on stderr."""
    token = token or os.environ.get(TOKEN_ENV)
    if token:
        return token
    token = secrets.token_urlsafe(24)
    print(f"tao-skills mcp: no --token / ${TOKEN_ENV}; clients must send the header "
          f"'Authorization: Bearer {token}'", file=sys.stderr, flush=True)
    return token


def serve(*, http: bool = False, port: int = 8765, token: str | None = None) -> int:
    """Run the server: stdio, or streamable HTTP on ``127.0.0.1:port`` behind a bearer token."""
    server = build_server()
    if not http:
        server.run("stdio")
        return 0
    import uvicorn

    app = BearerAuth(server.streamable_http_app(host="127.0.0.1"), http_token(token))
    print(f"tao-skills mcp: serving http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0
