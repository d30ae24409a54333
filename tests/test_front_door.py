"""The agents' front door (issue 19, parts 3 and 4): plugin manifests, the Agent Skills format,
presets (tiny) for the four worker networks, budget lines before AutoML / multi-GPU jobs, and one
line (never a traceback) when an optional extra is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tao_sdk import Workspace, build_spec, create_job, get_job, plan_job, wait_for_job
from tao_sdk.budget import job_budget
from tao_sdk.cli import main
from tao_sdk.errors import TaoSkillsError
from tao_sdk.jobstore import JobRecord, JobStatus
from tao_sdk.skillmd import agent_skill_problems
from tao_sdk.worker import registry

REPO = Path(__file__).resolve().parents[1]
FAKE_TAO = Path(__file__).with_name("fake_tao.py")
TRAIN = ["--train-dataset", "/d/train", "--eval-dataset", "/d/val", "--set", "dataset.num_classes=3"]


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    return Workspace(tmp_path / "ws")


def _tool(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------- plugin manifests
def test_generated_presets_and_plugin_manifests_are_current():
    for tool in ("gen_presets.py", "gen_plugin.py"):
        out = _tool(REPO / "tools" / tool, "--check")
        assert out.returncode == 0, out.stdout + out.stderr
    claude = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text())
    assert sorted(claude["skills"]) == sorted(f"./skills/{p.parent.name}" for p in REPO.glob("skills/*/SKILL.md"))
    assert json.loads((REPO / ".mcp.json").read_text())["mcpServers"]["tao-skills"]["args"] == ["mcp"]
    assert json.loads((REPO / ".codex-plugin" / "plugin.json").read_text())["skills"] == "./skills/"


def test_plugin_check_names_every_problem(tmp_path):
    """A copy of the plugin with a skill left out, a skill listed that does not exist, a bad
    front matter, a broken .mcp.json and a stale Codex manifest: --check lists each and exits 1."""
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    for name in ("gen_plugin.py", "_generated.py"):
        shutil.copy(REPO / "tools" / name, root / "tools" / name)
    for rel in ("pyproject.toml", ".mcp.json", ".claude-plugin", ".codex-plugin"):
        (shutil.copytree if (REPO / rel).is_dir() else shutil.copy)(REPO / rel, root / rel)
    for md in REPO.glob("skills/*/SKILL.md"):
        (root / "skills" / md.parent.name).mkdir(parents=True)
        shutil.copy(md, root / "skills" / md.parent.name / "SKILL.md")
    assert _tool(root / "tools" / "gen_plugin.py", "--check").returncode == 0
    claude = json.loads((root / ".claude-plugin" / "plugin.json").read_text())
    claude["skills"] = [s for s in claude["skills"] if s != "./skills/tao-train-dino"] + ["./skills/tao-train-nope"]
    (root / ".claude-plugin" / "plugin.json").write_text(json.dumps(claude))
    md = root / "skills" / "tao-train-mae" / "SKILL.md"
    md.write_text(md.read_text().replace("name: tao-train-mae", "name: TAO_MAE", 1))
    (root / ".mcp.json").write_text('{"mcpServers": {}}')
    out = _tool(root / "tools" / "gen_plugin.py", "--check")
    assert out.returncode == 1
    assert "plugin manifests are stale" in out.stdout
    assert "skill 'tao-train-dino' (skills/tao-train-dino/SKILL.md) is not listed" in out.stdout
    assert "lists skill 'tao-train-nope', but skills/tao-train-nope/SKILL.md does not exist" in out.stdout
    assert "skills/tao-train-mae/SKILL.md: front matter name is 'TAO_MAE'" in out.stdout
    assert ".mcp.json: mcpServers must register 'tao-skills'" in out.stdout
    assert _tool(root / "tools" / "gen_plugin.py").returncode == 1  # regenerated, but the SKILL.md stays wrong


def test_agent_skills_format():
    assert agent_skill_problems({"name": "tao-train-rtdetr", "description": "Train RT-DETR."}, "tao-train-rtdetr") == []
    problems = agent_skill_problems({"name": "Tao--X", "description": "x" * 1025, "tags": []}, "tao-x")
    assert len(problems) == 4
    assert "1025 characters" in problems[2] and "tags" in problems[3]
    assert agent_skill_problems({"name": "a" * 65, "description": "d"}, "a" * 65)[0].startswith("front matter name")


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("network", registry.names())
def test_tiny_preset_plans_every_action(network, ws):
    """Each worker network's tiny preset validates for train and every covered child action
    (planned parents: a dry run of the whole chain), and carries its environment."""
    task = registry.get(network).task
    data = task.demo_datasets({"train": "/d/train", "val": "/d/val"})
    kw = dict(dataset_format=task.demo_format, preset="tiny", workspace=ws)
    train = plan_job(network, "train", datasets=data["train"], automl_policy="off", **kw)
    preset = yaml.safe_load((REPO / "skills" / train.skill / "references" / "preset_tiny.yaml").read_text())
    assert train.env == {"TAO_WORKER_BACKBONE_SCALE": "tiny"} and train.preset == "tiny"
    assert train.spec["train"]["num_epochs"] == preset["actions"]["train"]["train.num_epochs"]
    assert any(n.startswith("preset tiny:") for n in train.notes)
    export = plan_job(network, "export", datasets=data.get("export"), planned_parent=train, **kw)
    for action in ("evaluate", "inference", "gen_trt_engine"):
        parent = export if action == "gen_trt_engine" else train
        plan_job(network, action, datasets=data.get(action), planned_parent=parent, **kw)
    assert not set(task.synthetic_keys) & set(preset["actions"]["train"])  # the user's dataset decides those


def test_preset_layering_and_errors(ws, capsys):
    data = {"train_datasets": ["/d/train"], "eval_dataset": "/d/val"}
    plan = plan_job("rtdetr", "train", datasets=data, preset="tiny", automl_policy="off", workspace=ws,
                    spec_overrides={"train.num_epochs": 3, "dataset.num_classes": 3})
    assert plan.spec["train"]["num_epochs"] == 3 and plan.spec["model"]["hidden_dim"] == 64  # --set wins
    assert build_spec("rtdetr", "train", {"dataset.num_classes": 3}, data, preset="tiny")["model"]["hidden_dim"] == 64
    full = plan_job("rtdetr", "train", datasets=data, preset="full", automl_policy="off", workspace=ws)
    assert full.env == {} and full.spec["model"]["hidden_dim"] != 64
    with pytest.raises(TaoSkillsError, match="unknown preset 'huge'; presets: tiny, full"):
        plan_job("rtdetr", "train", datasets=data, preset="huge", workspace=ws)
    with pytest.raises(TaoSkillsError, match="ships no 'tiny' preset.*tao-train-rtdetr"):
        plan_job("dino", "train", datasets=data, preset="tiny", automl_policy="off", workspace=ws)
    assert main(["spec", "rtdetr", "train", *TRAIN, "--preset", "tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "tiny" and out["env"] == {"TAO_WORKER_BACKBONE_SCALE": "tiny"}
    assert out["spec"]["model"]["num_queries"] == 20 and out["spec"]["dataset"]["num_classes"] == 3
    assert main(["show", "dino", "--json"]) == 0 and json.loads(capsys.readouterr().out)["presets"] == ["full"]
    automl = plan_job("rtdetr", "train", datasets=data, preset="tiny", workspace=ws,
                      spec_overrides={"dataset.num_classes": 3})
    names = {r["name"] for r in automl.automl["search_space"]}
    assert "train.optim.lr" in names and not any(n.startswith("model.") for n in names)  # size fixed, schedule searched


@pytest.mark.slow
def test_tiny_preset_trains_rtdetr(ws, tmp_path, monkeypatch):
    """One epoch of the tiny RT-DETR through the SDK on the built-in worker: the preset alone
    (no TAO_WORKER_BACKBONE_SCALE in this environment) gives the tiny backbone."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    monkeypatch.delenv("TAO_WORKER_BACKBONE_SCALE", raising=False)
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, size=64, seed=1)
    job = create_job("rtdetr", "train", preset="tiny", automl_policy="off", workspace=ws,
                     datasets={"train_datasets": [str(ds["train"]["root"])], "eval_dataset": str(ds["val"]["root"])},
                     spec_overrides={"train.num_epochs": 1, "train.checkpoint_interval": 1,
                                     "train.validation_interval": 1, "dataset.num_classes": 3})
    job = wait_for_job(job.id, timeout=240, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    assert "val_mAP50" in job.kpis and job.result["preset"] == "tiny"
    assert "TAO_WORKER_BACKBONE_SCALE=tiny" in job.logs()


# --------------------------------------------------------------------------- budgets
def test_budget_line_in_dry_run_and_json(ws, capsys):
    assert main(["run", "rtdetr", "train", *TRAIN, "--dry-run"]) == 0
    assert ("AutoML: 20 trials x up to 10 epochs (bayesian) = up to 200 epochs on 1 GPU each, 1 at a time; "
            "automl_policy=off (--automl-policy off) to train once") in capsys.readouterr().out
    assert main(["run", "rtdetr", "train", *TRAIN, "--dry-run", "--json", "--automl-trials", "5",
                 "--set", "train.num_gpus=2"]) == 0
    budget = json.loads(capsys.readouterr().out)["budget"]
    assert budget["kind"] == "automl" and budget["trials"] == 5 and budget["total_epochs"] == 50
    assert budget["gpus_per_node"] == 2 and budget["announce"]
    assert main(["run", "rtdetr", "train", *TRAIN, "--dry-run", "--json", "--automl-policy", "off",
                 "--set", "train.num_gpus=4", "--set", "train.num_nodes=2"]) == 0
    budget = json.loads(capsys.readouterr().out)["budget"]
    assert budget["kind"] == "distributed" and budget["total_gpus"] == 8
    assert budget["summary"] == ("train: 10 epochs on 2 nodes x 4 GPUs = 8 GPUs "
                                 "(train.num_gpus x train.num_nodes, data parallel)")
    plan = plan_job("rtdetr", "train", datasets={"train_datasets": ["/d"], "eval_dataset": "/e"}, workspace=ws,
                    automl_policy="off")
    assert job_budget(plan).kind == "single" and not job_budget(plan).announce


def test_budget_line_printed_before_submit(ws, capsys, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    args = ["run", "rtdetr", "train", *TRAIN, "--automl-policy", "off", "--set", "train.num_gpus=2",
            "--set", "train.num_epochs=1", "--wait"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: 1 epochs on 2 GPUs (train.num_gpus x train.num_nodes, data parallel)"
    assert lines[1].startswith("submitted job-")
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "SUCCESS" and out["budget"]["total_gpus"] == 2


# --------------------------------------------------------------------------- missing extras
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
BLOCKED = set(sys.argv[1].split(","))
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
sys.meta_path.insert(0, Block())
from tao_sdk.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _blocked(modules: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, modules, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_missing_extra_is_one_line(ws):
    record = JobRecord(skill="tao-run-automl", action="train", kind="automl", spec={},
                       result={"metric": "val_mAP50", "direction": "max", "trials": {}})
    ws.store.create(record)
    ws.store.set_status(record.id, JobStatus.SUCCESS)
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(ws.root)}
    out = _blocked("matplotlib", "automl", "plot", record.id, "-o", str(ws.root / "p.png"), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: tao-skills automl plot needs the 'automl' extra (No module named "
                                  "'matplotlib'): pip install 'tao-skill-bank[automl]'")
    out = _blocked("numpy,scipy", "run", "rtdetr", "train", *TRAIN, "--dry-run", "--json", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert json.loads(out.stdout) == {"error": "MissingExtraError", "problems": [], "message": (
        "the 'automl' job kind needs the 'automl' extra (No module named 'numpy'): pip install 'tao-skill-bank[automl]'")}


def test_automl_trials_get_the_preset(ws, tmp_path, monkeypatch):
    """An AutoML search on the tiny preset: each trial trains the preset's model with its
    environment (the TAO container test double dumps what it got)."""
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{sys.executable} {FAKE_TAO}")
    monkeypatch.setenv("FAKE_TAO_DUMP_ENV", str(tmp_path / "env.json"))
    job = create_job("rtdetr", "train", datasets={"train_datasets": ["/d/train"], "eval_dataset": "/d/val"},
                     spec_overrides={"dataset.num_classes": 3, "train.num_epochs": 1}, preset="tiny", workspace=ws,
                     automl={"algorithm": "random", "max_recommendations": 1, "poll_interval": 0.1,
                             "hyperparameters": ["train.optim.lr"]})
    job = wait_for_job(job.id, timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    trial = get_job(job.result["best_child_id"], workspace=ws)
    assert trial.spec["model"]["hidden_dim"] == 64 and trial.result["preset"] == "tiny"
    assert json.loads((tmp_path / "env.json").read_text())["TAO_WORKER_BACKBONE_SCALE"] == "tiny"
