"""`tao-skills mcp` driven by the real `mcp` client: over stdio through train -> evaluate -> export of
the tiny RT-DETR on synthetic data (every tool called, every structured result validated against
the tool's outputSchema, a bad spec as a tool error with its dotted path, no secret in any result);
over streamable HTTP with and without the bearer token."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

pytest.importorskip("mcp")
pytest.importorskip("torch")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tao_sdk.worker import registry  # noqa: E402
from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SIZE = 64
SECRET = "mcp-test-secret-key-8f3a"
TOOLS = {"list_skills", "describe_skill", "get_schema", "validate_spec", "validate_datasets", "plan_job", "submit_job", "job_status",
         "job_logs", "wait_job", "cancel_job", "list_jobs", "job_artifacts", "automl_trials", "plot_job"}


@pytest.fixture(scope="module")
def server_env(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("mcp")
    ds = make_coco_dataset(root / "data", n_train=8, n_val=4, size=SIZE, seed=1)
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(root / "ws"), "TAO_WORKER_BACKBONE_SCALE": "tiny",
           "TAO_WORKER_CACHE": str(root / "cache"), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("TAO_SKILLS_ENTRYPOINT", None)
    return {"env": env, "train": str(ds["train"]["root"]), "val": str(ds["val"]["root"]), "root": root}


class Session:
    """A connected client that checks every result against its tool's outputSchema."""

    def __init__(self, client: Client):
        self.client = client
        self.schemas: dict[str, Any] = {}
        self.texts: list[str] = []
        self.called: set[str] = set()

    async def start(self) -> None:
        listed = await self.client.list_tools()
        self.schemas = {t.name: t.output_schema for t in listed.tools}

    async def call(self, name: str, args: dict[str, Any] | None = None, *, error: bool = False,
                   **kwargs: Any) -> dict[str, Any]:
        result = await self.client.call_tool(name, args or {}, **kwargs)
        self.called.add(name)
        self.texts += [json.dumps(result.structured_content)] + [getattr(c, "text", "") for c in result.content]
        assert result.is_error == error, result.content
        if not error:
            jsonschema.validate(result.structured_content, self.schemas[name])
        return result.structured_content or {}

    async def wait(self, job_id: str) -> dict[str, Any]:
        seen: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        out = await self.call("wait_job", {"job_id": job_id, "timeout": 300, "poll_interval": 0.3},
                              progress_callback=on_progress)
        assert out["finished"] and out["job"]["status"] == "SUCCESS", out["job"]["result"].get("message")
        assert seen and seen[-1][0] == 1.0, seen  # progress notifications while it waited
        return out["job"]


def _tiny(num_classes: int = 3) -> dict[str, Any]:
    return {**registry.get("rtdetr").demo_train_overrides(1, SIZE), "dataset.num_classes": num_classes}


async def _bank_tools(s: Session, data: dict[str, Any]) -> None:
    skills = await s.call("list_skills")
    assert "tao-train-rtdetr" in {r["skill"] for r in skills["skills"]}
    detail = await s.call("describe_skill", {"skill": "rtdetr"})
    train = next(a for a in detail["action_details"] if a["action"] == "train")
    assert {r["source"] for r in train["dataset_requirements"]} >= {"train_datasets", "eval_dataset"}
    assert detail["backends"]["train"]["kind"] == "worker"
    node = await s.call("get_schema", {"skill": "rtdetr", "action": "train", "path": "train.num_epochs"})
    assert node["json_schema"]["type"] == "integer"
    bad = await s.call("get_schema", {"skill": "rtdetr", "action": "train", "path": "train.num_epoch"}, error=True)
    assert "train.num_epochs" in bad["message"]
    spec_file = data["root"] / "experiment.yaml"
    spec_file.write_text("train:\n  num_epochs: 3\n", encoding="utf-8")
    ok = await s.call("validate_spec", {"skill": "rtdetr", "action": "train", "spec_file": str(spec_file)})
    assert ok["ok"], ok["problems"]
    report = await s.call("validate_spec", {"skill": "rtdetr", "action": "train",
                                            "spec": {"train": {"optim": {"lr": "fast"}}}})
    assert not report["ok"] and report["problems"][0]["path"] == "train.optim.lr"


async def _stdio_flow(data: dict[str, Any]) -> tuple[set[str], list[str]]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_sdk.cli", "mcp"], env=data["env"],
                                   cwd=str(REPO))
    async with Client(params) as client:
        s = Session(client)
        await s.start()
        assert set(s.schemas) == TOOLS and all(s.schemas.values())
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"skill://tao-train-rtdetr/SKILL.md", "skill://tao-train-rtdetr/schemas/train"} <= resources
        md = await client.read_resource("skill://tao-train-rtdetr/SKILL.md")
        assert "RT-DETR" in md.contents[0].text
        schema = await client.read_resource("skill://tao-train-rtdetr/schemas/train")
        assert "properties" in json.loads(schema.contents[0].text)
        await _bank_tools(s, data)

        datasets = {"train_datasets": [data["train"]], "eval_dataset": data["val"]}
        checked = await s.call("validate_datasets", {"skill": "rtdetr", "action": "train", "datasets": datasets,
                                                     "spec_overrides": _tiny()})
        assert checked["ok"] and len(checked["sources"]) == 2, checked["problems"]
        bad = await s.call("plan_job", {"skill": "rtdetr", "action": "train", "datasets": datasets,
                                        "spec_overrides": {"train.num_epochs": -1}, "automl_policy": "off"},
                           error=True)
        assert bad["error"] == "SpecValidationError" and bad["problems"][0]["path"] == "train.num_epochs"
        assert bad["problems"][0]["value"] == -1 and bad["problems"][0]["allowed"]
        automl = {"algorithm": "random", "max_recommendations": 2, "hyperparameters": ["train.optim.lr"]}
        plan = await s.call("plan_job", {"skill": "rtdetr", "action": "train", "datasets": datasets,
                                         "spec_overrides": _tiny(), "automl": automl})
        assert plan["route"]["automl"] and plan["budget"]["announce"] and plan["budget"]["total_epochs"] == 2

        over = {**_tiny(), "encryption_key": SECRET}
        sub = await s.call("submit_job", {"skill": "rtdetr", "action": "train", "datasets": datasets,
                                          "spec_overrides": over, "automl_policy": "off"})
        assert not sub["budget"]["announce"] and sub["budget"]["epochs_per_trial"] == 1
        train = await s.wait(sub["job"]["id"])
        assert "val_mAP50" in train["kpis"] and train["progress"]["progress"] == 1.0
        status = await s.call("job_status", {"job_id": train["id"]})
        assert status["status"] == "SUCCESS" and status["summary"].startswith("train: SUCCESS")
        logs = await s.call("job_logs", {"job_id": train["id"], "tail": 5})
        assert logs["next_line"] == logs["total_lines"] and logs["first_line"] == max(0, logs["total_lines"] - 5)
        rest = await s.call("job_logs", {"job_id": train["id"], "since": logs["next_line"], "tail": None})
        assert rest["text"] == "" and rest["first_line"] == logs["next_line"]
        arts = await s.call("job_artifacts", {"job_id": train["id"]})
        assert any("model_epoch_" in f for f in arts["files"])
        plot = await s.call("plot_job", {"job_id": train["id"]})
        assert plot["panels"][:2] == ["losses", "kpis"] and plot["best_epoch"] == 0
        raw = await client.call_tool("plot_job", {"job_id": train["id"]})
        image = [c for c in raw.content if c.type == "image"][0]
        assert image.mime_type == "image/png" and base64.b64decode(image.data)[:4] == b"\x89PNG"

        common = {"dataset.num_classes": 3}
        ev = await s.call("submit_job", {"skill": "rtdetr", "action": "evaluate", "parent_job_id": train["id"],
                                         "datasets": {"eval_dataset": data["val"]}, "spec_overrides": common})
        assert "test_mAP50" in (await s.wait(ev["job"]["id"]))["kpis"]
        ex = await s.call("submit_job", {"skill": "rtdetr", "action": "export", "parent_job_id": train["id"],
                                         "datasets": {"train_datasets": [data["train"]]},
                                         "spec_overrides": {**common, "export.input_height": SIZE,
                                                            "export.input_width": SIZE}})
        assert (await s.wait(ex["job"]["id"]))["kpis"]["onnx_max_abs_diff"] < 1e-3
        listed = await s.call("list_jobs", {"skill": "tao-train-rtdetr"})
        assert {j["id"] for j in listed["jobs"]} >= {train["id"], ev["job"]["id"], ex["job"]["id"]}

        run = await s.call("submit_job", {"skill": "rtdetr", "action": "train", "datasets": datasets,
                                          "spec_overrides": _tiny(), "automl": automl})
        assert run["budget"]["kind"] == "automl" and run["budget"]["trials"] == 2 and "2 trials x up to 1 epochs" in run["budget"]["summary"]
        assert run["job"]["kind"] == "automl" and run["job"]["fraction_done"] == 0.0  # 0 of 2 trials done
        waited = await s.call("wait_job", {"job_id": run["job"]["id"], "timeout": 0.5, "poll_interval": 0.2})
        assert not waited["finished"] and waited["job"]["status"] == "RUNNING"  # bounded by the timeout
        trials = await s.call("automl_trials", {"job_id": run["job"]["id"]})
        assert trials["job"] == run["job"]["id"] and trials["metric"] == "val_mAP50"
        canceled = await s.call("cancel_job", {"job_id": run["job"]["id"]})
        assert canceled["status"] == "CANCELED"
        await s.call("automl_trials", {"job_id": train["id"]}, error=True)  # not an AutoML job
        return s.called, s.texts


def test_stdio_train_evaluate_export(server_env):
    started = time.monotonic()
    called, texts = anyio.run(_stdio_flow, server_env)
    assert called == TOOLS
    assert not [t for t in texts if SECRET in t]  # the encryption key is in no result
    assert time.monotonic() - started < 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _http_flow(url: str, token: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=http)) as client:
        s = Session(client)
        await s.start()
        assert set(s.schemas) == TOOLS
        assert (await s.call("list_skills"))["skills"]
        bad = await s.call("plan_job", {"skill": "rtdetr", "action": "train", "automl_policy": "off",
                                        "datasets": {"train_datasets": ["/d/t"], "eval_dataset": "/d/e"},
                                        "spec_overrides": {"train.optim.lr": "fast"}}, error=True)
        assert bad["problems"][0]["path"] == "train.optim.lr"


def test_http_needs_the_bearer_token(server_env):
    port, token = _free_port(), "tok-" + os.urandom(8).hex()
    proc = subprocess.Popen([sys.executable, "-m", "tao_sdk.cli", "mcp", "--http", "--port", str(port)],
                            env={**server_env["env"], "TAO_SKILLS_MCP_TOKEN": token}, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = requests.post(url, json={}, timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert answer.status_code == 401
        wrong = requests.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        anyio.run(_http_flow, url, token)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_http_token_is_generated_and_printed_once(server_env):
    port = _free_port()
    env = {k: v for k, v in server_env["env"].items() if k != "TAO_SKILLS_MCP_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "tao_sdk.cli", "mcp", "--http", "--port", str(port)], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(50):  # the token line comes before the server starts
            line = proc.stderr.readline()
            if "Authorization: Bearer " in line or not line:
                break
        token = line.split("Bearer ", 1)[1].split("'", 1)[0]
        assert len(token) >= 24
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[1]
    assert token not in rest  # printed once


def test_mcp_help_says_how_to_register():
    out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "mcp", "--help"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and "claude mcp add tao-skills -- tao-skills mcp" in out.stdout


async def _plot_flow(env: dict[str, str], job_id: str) -> Any:
    params = StdioServerParameters(command=sys.executable, args=["-m", "tao_sdk.cli", "mcp"], env=env, cwd=str(REPO))
    async with Client(params) as client:
        s = Session(client)
        await s.start()
        info = await s.call("plot_job", {"job_id": job_id})
        raw = await client.call_tool("plot_job", {"job_id": job_id})
        return info, [c for c in raw.content if c.type == "image"]


def test_plot_job_tool_returns_the_png_as_image_content(server_env, tmp_path):
    from tao_sdk import Workspace
    from tao_sdk.jobstore import JobRecord

    ws = Workspace(Path(server_env["env"]["TAO_SKILLS_WORKSPACE"]))
    task = tmp_path / "results" / "train"
    task.mkdir(parents=True)
    task.joinpath("status.json").write_text("".join(
        json.dumps({"status": "RUNNING", "message": "Train metrics generated.", "epoch": e, "max_epoch": 1,
                    "kpi": {"train_loss": 1.0 / (e + 1), "val_mAP50": 0.2 + e / 10}}) + "\n" for e in range(2)))
    ws.store.create(JobRecord(id="job-plotted", skill="tao-train-rtdetr", action="train",
                              results_uri=str(tmp_path / "results"), platform="local"))
    info, images = anyio.run(_plot_flow, server_env["env"], "job-plotted")
    assert info["panels"] == ["losses", "kpis"] and info["best_epoch"] == 1
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data)[:8] == b"\x89PNG\r\n\x1a\n"
