"""``tao-skills plot JOB`` (tao_sdk.plots): PNGs of train, evaluate and AutoML jobs (status.json
written by the fake TAO entrypoint), and the PR-curve / per-class panels of a detection evaluate
job's results folder. The files are opened with PIL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tao_sdk import create_job, wait_for_job
from tao_sdk.cli import main
from tao_sdk.jobstore import JobRecord
from tests.test_automl_controller import BASE, DATASETS
from tests.test_automl_controller import ws as fake_tao_ws  # noqa: F401 - the fake-TAO workspace

pytest.importorskip("matplotlib")


@pytest.fixture
def ws(fake_tao_ws, monkeypatch):  # noqa: F811
    """The fake-TAO workspace, also the CLI's (``TAO_SKILLS_WORKSPACE``)."""
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(fake_tao_ws.root))
    monkeypatch.delenv("FAKE_TAO_OBJECTIVE")  # the default mAP curve: rises, then dips
    return fake_tao_ws


def _plot(job_id: str, out: Path, capsys) -> dict:
    assert main(["plot", job_id, "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] >= 600 and img.size[1] >= 300
    return data


def test_plot_train_evaluate_and_automl_jobs(ws, tmp_path, capsys):
    train = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=BASE, request="plain training",
                       workspace=ws)
    automl = create_job("rtdetr", "train", datasets=DATASETS, spec_overrides=BASE, workspace=ws,
                        automl={"algorithm": "random", "max_recommendations": 2, "max_concurrent": 2,
                                "poll_interval": 0.1, "hyperparameters": ["train.optim.lr"], "seed": 3})
    train = wait_for_job(train.id, timeout=60, poll_interval=0.1, workspace=ws)
    got = _plot(train.id, tmp_path / "train.png", capsys)
    assert got["panels"] == ["losses", "kpis"] and got["best_epoch"] in (1, 2)  # best epoch marked
    ev = wait_for_job(create_job("rtdetr", "evaluate", parent_job_id=train.id, datasets={"eval_dataset": "/d"},
                                 spec_overrides={"dataset.num_classes": 3}, workspace=ws).id,
                      timeout=60, poll_interval=0.1, workspace=ws)
    assert _plot(ev.id, tmp_path / "eval.png", capsys)["panels"] == ["kpi_bars"]
    automl = wait_for_job(automl.id, timeout=120, poll_interval=0.2, workspace=ws)
    assert _plot(automl.id, tmp_path / "automl.png", capsys)["panels"] == ["trials"]


def test_plot_detection_evaluate_pr_curves_and_per_class_bars(ws, tmp_path, capsys):
    task = tmp_path / "results" / "evaluate"
    task.mkdir(parents=True)
    line = {"status": "RUNNING", "message": "Evaluation metrics generated.", "kpi": {"test_mAP": 0.4},
            "categorical": {"test_AP_per_class": {"square": 0.5, "disc": 0.3}}}
    (task / "status.json").write_text(json.dumps(line) + "\n")
    recall = [i / 100 for i in range(101)]
    (task / "pr_curves.json").write_text(json.dumps({"iou": 0.5, "recall": recall, "precision": {
        "square": [1 - r / 2 for r in recall], "disc": [1 - r for r in recall]}}))
    ws.store.create(JobRecord(id="job-eval", skill="tao-train-rtdetr", action="evaluate",
                              results_uri=str(tmp_path / "results"), platform="local"))
    got = _plot("job-eval", tmp_path / "pr.png", capsys)
    assert got["panels"] == ["kpi_bars", "categorical:test_AP_per_class", "pr_curves"]


def test_plot_of_a_job_without_status_is_one_line(ws, tmp_path, capsys):
    ws.store.create(JobRecord(id="job-new", skill="tao-train-rtdetr", action="train",
                              results_uri=str(tmp_path / "none"), platform="local"))
    assert main(["plot", "job-new"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no status.json yet" in err[0]
