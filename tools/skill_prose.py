"""SKILL.md prose that tools/gen_schemas.py writes (maintainers).

Two things live here:

- :func:`backend_block`: the generated "backend" block every model skill carries (which actions the
  built-in worker implements, per ``tao_sdk.worker.supports``, and the TAO container command and
  image of each action).
- :func:`generated_skill_md`: the whole SKILL.md of a skill whose ``prose`` is ``generated`` in
  tools/bank_sources.yaml (the TAO Core catalog beyond the four seed skills): what the network
  does, the backend, the Train Action Policy when AutoML is enabled, the generated tables, how to
  run each action and what the tables leave out. Seed skills keep their hand-written prose; only
  their blocks between markers are rewritten.

Everything is derived from TAO Core facts passed in by the generator (:class:`ProseFacts`) plus the
``task`` / ``summary`` lines of bank_sources.yaml; nothing here knows a network by name.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tao_sdk import worker  # noqa: E402 - import-cheap capability interface (no torch)
from tao_sdk.backends import ENTRYPOINT_ENV, WORKER_INSTALL, tao_container  # noqa: E402
from tao_sdk.datasources import ROLE_FLAGS  # noqa: E402
from tao_sdk.skillmd import begin_marker, end_marker  # noqa: E402

#: Actions whose parent job is an export job (the others take a train job).
EXPORT_PARENT_ACTIONS = ("gen_trt_engine",)
PARENT_FUNCTIONS = ("parent_model", "parent_model_folder")
EXAMPLE_ROOTS = {"train_datasets": "s3://bucket/data/train", "eval_dataset": "s3://bucket/data/eval",
                 "inference_dataset": "s3://bucket/data/infer", "calibration_dataset": "s3://bucket/data/calib"}


@dataclass
class ProseFacts:
    """What the generator knows about one skill beyond skill_info (all from TAO Core).

    Attributes:
        roles: {action: dataset roles its table rows read}.
        parent_actions: actions whose spec takes a file from a parent job.
        deploy_actions: actions with a TensorRT variant (evaluate / inference of an engine).
        automl_parameters: the train schema's ``automl_default_parameters``.
        left_out_sources: (action, spec key, why) data sources the table format cannot express.
        left_out_params: (action, spec key, reason) network-config rows kept out of the tables.
        action_commands: {action: TAO container command} where TAO maps an action to another verb.
        metrics_declared: False when the network config declares no metrics at all.
    """

    roles: dict[str, list[str]] = field(default_factory=dict)
    parent_actions: list[str] = field(default_factory=list)
    deploy_actions: list[str] = field(default_factory=list)
    automl_parameters: list[str] = field(default_factory=list)
    left_out_sources: list[tuple[str, str, str]] = field(default_factory=list)
    left_out_params: list[tuple[str, str, str]] = field(default_factory=list)
    action_commands: dict[str, str] = field(default_factory=dict)
    metrics_declared: bool = True


# =========================================================================== backend block
def _container_cell(info: dict, action: str, deploy: bool) -> str:
    image, entry = tao_container(info, action, deploy)
    return f"`{' '.join(entry)} -e spec.yaml`" + (f" in `{image}`" if image else "")


def backend_block(info: dict, facts: ProseFacts) -> str:
    """The generated "backend" block: per action, built-in worker yes/no and the TAO container command."""
    network, model_type = info["network"], info.get("model_type")
    rows = ["| Action | Built-in worker | TAO container command |", "|---|---|---|"]
    for action in info["actions"]:
        rows.append(f"| `{action}` | {'yes' if worker.supports(network, action, model_type) else 'no'} | "
                    f"{_container_cell(info, action, False)} |")
    for action in facts.deploy_actions:
        rows.append(f"| TensorRT `{action}` | {'yes' if worker.supports(network, action, model_type) else 'no'} | "
                    f"{_container_cell(info, action, True)} |")
    any_worker = any(worker.supports(network, a, model_type) for a in info["actions"])
    lines = [
        "\n".join(rows), "",
        f"The SDK picks the backend at plan time: `${ENTRYPOINT_ENV}` when set; else the built-in worker "
        "where the table says yes" + (f" and it is installed (`{WORKER_INSTALL}`)" if any_worker else "")
        + f"; else the `{network}` command on PATH (inside the TAO container). With none of them, `create_job` "
        "and `tao-skills run --dry-run` stop before submitting anything and say what to install; "
        f"`tao-skills show {network}` prints the answer on this machine.",
        "To run an action in its TAO container from this machine, submit with `--platform docker` "
        "(`platform=\"docker\"`; docker or podman): log in to NGC first (`docker login nvcr.io -u "
        "'$oauthtoken'`, password: your NGC API key); the dry run names the image and whether it must be pulled.",
    ]
    if "gen_trt_engine" in info["actions"]:
        lines.append("TensorRT actions need an NVIDIA GPU and the `tensorrt` package wherever they run.")
    return "\n".join(lines)


# =========================================================================== generated SKILL.md
def _description(info: dict, summary: str) -> str:
    actions = ", ".join(info["actions"])
    formats = ", ".join(info["formats"])
    return (f"{info['display_name']} (NVIDIA TAO network {info['network']}, {info['task']}): {summary} "
            f"Actions - {actions}. Dataset formats - {formats}. Runs through the TAO container entrypoint "
            f"`{info['network']} <action> -e spec.yaml` unless the built-in worker implements it.").replace("\n", " ")


def _policy_section(info: dict, facts: ProseFacts) -> str:
    if "train" not in info["actions"]:
        return (f"## Train Action Policy\n\n{info['display_name']} has no train action; AutoML does not apply "
                "and every action runs directly with this skill.\n")
    if not info["automl_enabled"]:
        return ("## Train Action Policy\n\n"
                f"{info['display_name']} is not AutoML-enabled in TAO Core: train requests run directly with "
                "this skill, whatever the request says.\n")
    params = facts.automl_parameters
    shown = ", ".join(f"`{p}`" for p in params[:12]) + (f" and {len(params) - 12} more" if len(params) > 12 else "")
    return f"""## Train Action Policy

{info['display_name']} is AutoML-enabled (TAO Core `automl_spec_params`). Before handling a train request:

1. Resolve the per-run `automl_policy`: an explicit value (`auto` or `off`) wins; the phrases "turn
   off AutoML", "disable AutoML", "no HPO" or "plain training" mean `off` **for this run only**;
   otherwise it is `auto`.
2. Route the request:

| Condition | What to do |
|---|---|
| `automl_policy: auto` (train schema and template packaged) | Run train through the `tao-run-automl` skill (`skills/tao-run-automl/SKILL.md`); each trial is a train job of this skill. |
| `automl_policy: off` | Train directly with this skill (`--automl-policy off`). |

The search space is the train schema's `automl_default_parameters` ({len(params)}): {shown or 'none'}.
Trials run on the same backend as a plain train job, so AutoML is refused at plan time when no
backend can run `{info['network']} train`. Non-train actions always stay in this skill; the per-run
policy never edits `skill_info.yaml`.
"""


def _flags(roles: list[str]) -> str:
    return " ".join(f"{ROLE_FLAGS[r]} {EXAMPLE_ROOTS[r]}" for r in roles if r in ROLE_FLAGS)


def _run_section(info: dict, facts: ProseFacts) -> str:
    network = info["network"]
    lines = ["## How to Run", "",
             "Each dataset role is a folder (local path or `s3://` URI) holding the files the Files column of",
             "the dataset table names; the SDK writes `<root>/<file>` into the spec key. Validate first",
             "(`--dry-run` also says which backend will run the job), then submit:", "", "```bash"]
    automl_off = " --automl-policy off" if info["automl_enabled"] else ""
    for action in info["actions"]:
        flags = _flags(facts.roles.get(action, []))
        parent = ""
        if action in facts.parent_actions:
            parent = f" --parent <{'export' if action in EXPORT_PARENT_ACTIONS else 'train'} job id>"
        extra = automl_off if action == "train" else ""
        lines.append(f"tao-skills run {network} {action}{parent} {flags}{extra} --dry-run".replace("  ", " "))
    for action in facts.deploy_actions:
        lines.append(f"tao-skills run {network} {action} --parent <gen_trt_engine job id> "
                     f"{_flags(facts.roles.get(action, []))} --dry-run".replace("  ", " "))
    lines += ["```", "",
              "Drop `--dry-run` to submit (add `--wait` to follow it); `--set KEY=VALUE` overrides any spec field",
              "(dotted path of the action's schema). `tao-skills spec "
              f"{network} ACTION ... -o spec.yaml` writes the full spec without submitting. From Python:", "",
              "```python", "from tao_sdk import create_job, wait_for_job", ""]
    first = info["actions"][0]
    roles = facts.roles.get(first, [])
    datasets = ", ".join(f'"{r}": ' + (f'["{EXAMPLE_ROOTS[r]}"]' if r == "train_datasets" else f'"{EXAMPLE_ROOTS[r]}"')
                         for r in roles)
    kwargs = ', automl_policy="off"' if first == "train" and info["automl_enabled"] else ""
    lines += [f'job = create_job("{network}", "{first}", datasets={{{datasets}}}{kwargs})',
              "job = wait_for_job(job.id, on_progress=print)", "print(job.status, job.kpis)", "```"]
    return "\n".join(lines) + "\n"


def _metric_section(info: dict, facts: ProseFacts) -> str:
    metric = info["monitoring_metric"]
    if not facts.metrics_declared:
        return (f"## Metrics\n\nTAO Core declares no metrics for `{info['network_config']}`; skill_info's "
                f"`{metric['name']}` is a placeholder and nothing this skill runs is ranked by it.\n")
    source = {"known-metric": "a metric the bank knows", "bank": "set in tools/bank_sources.yaml",
              "heuristic": "guessed from the name; TAO Core does not state it"}[metric.get("direction_source", "heuristic")]
    better = "higher" if metric["direction"] == "max" else "lower"
    others = [m for m in metric.get("available", []) if m != metric["name"]]
    text = (f"## Metrics\n\nThe monitoring metric is `{metric['name']}`: {better} is better (direction "
            f"`{metric['direction']}`, {source}). The SDK uses it to pick the best checkpoint of a train parent "
            "and as the AutoML objective.")
    if others:
        text += " Other metrics TAO Core lists: " + ", ".join(f"`{m}`" for m in others[:15]) + \
                (f" and {len(others) - 15} more" if len(others) > 15 else "") + "."
    return text + "\n"


def _gaps_section(facts: ProseFacts) -> str:
    if not facts.left_out_sources and not facts.left_out_params:
        return ""
    lines = ["## What the Tables Leave Out", ""]
    if facts.left_out_sources:
        lines += ["TAO Core's network config also fills these data-source fields, in forms the dataset table cannot",
                  "express (conditional on dataset metadata, taken from another job, or a bare dataset root). The SDK",
                  "does not fill them: set them with `--set KEY=VALUE` (or `spec_overrides`) when the action needs them.",
                  "", "| Action | Spec Key | Why it is not in the table |", "|---|---|---|"]
        lines += [f"| {a} | `{k}` | {why} |" for a, k, why in facts.left_out_sources]
        lines.append("")
    if facts.left_out_params:
        lines += ["These network-config spec params name fields the TAO Core dataclass does not have (a spec holding",
                  "them would be rejected), so the SDK does not write them:", "",
                  "| Action | Spec Field | Reason |", "|---|---|---|"]
        lines += [f"| {a} | `{k}` | {why} |" for a, k, why in facts.left_out_params]
        lines.append("")
    return "\n".join(lines)


def _block(name: str, content: str) -> str:
    return f"{begin_marker(name)}\n{content}\n{end_marker(name)}\n"


def generated_skill_md(info: dict, summary: str, blocks: dict[str, str], facts: ProseFacts) -> str:
    """The whole SKILL.md of a ``prose: generated`` skill (front matter, prose, generated blocks)."""
    name, display, network = info["skill"], info["display_name"], info["network"]
    version = info["tao_core_version"]
    sections = [
        f"---\nname: {name}\ndescription: {json.dumps(_description(info, summary))}\n---\n",
        f"# {display}\n\n{summary}\n\nTask: {info['task']}. TAO network `{network}` (network config "
        f"`{info['network_config']}`). This whole file is generated by `tools/gen_schemas.py` from TAO Core "
        f"{version}; do not edit it (change the generator or `tools/bank_sources.yaml`).\n",
        "## Files\n\n- `schemas/<action>.schema.json`: JSON Schema (Draft 2020-12) of each action's spec, "
        "from the TAO Core dataclasses; `schemas/manifest.json` lists them.\n"
        "- `references/spec_template_<action>.yaml`: the default spec of each action (header: fields to fill).\n"
        "- `references/skill_info.yaml`: model facts (task, formats, metric, AutoML, TAO container).\n",
        "## Which Backend Runs It\n\n" + _block("backend", blocks["backend"]),
        _policy_section(info, facts),
        "## Training Requirements\n\n" + _block("training-requirements", blocks["training-requirements"]),
        "## Per-Action Dataset Requirements\n\n" + _block("dataset-requirements", blocks["dataset-requirements"]),
        _run_section(info, facts),
        _metric_section(info, facts),
        "## Spec Param / Parent Model Inference\n\nThe SDK fills these fields (TAO Core network config "
        "`spec_params`). For `parent_model` / `parent_model_folder` pass the upstream job as `--parent` "
        "(`parent_job_id`): a train (or AutoML) parent gives its best checkpoint by the monitoring metric "
        "(latest when no best can be identified, and it says so), an export parent its `.onnx`, a "
        "gen_trt_engine parent its `.engine`. `resume_model` is the latest checkpoint in the job's own "
        "results folder.\n\n" + _block("inference-mappings", blocks["inference-mappings"]),
        _gaps_section(facts),
    ]
    return "\n".join(s for s in sections if s).rstrip("\n") + "\n"


__all__ = ["ProseFacts", "backend_block", "generated_skill_md"]
