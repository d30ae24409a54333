"""`tao-skills demo --quick` runs the whole RT-DETR chain through the public SDK (CPU).

The CLI runs in-process (its jobs are real worker subprocesses) with a smaller plan than the
real ``--quick`` one (whose 40 epochs are there to show learning, not to test the chain), so
this test costs what it did when ``--quick`` trained 8 epochs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

#: The chain test's plan: the old 8-epoch quick plan (the chain, not learning, is tested).
CHAIN_PLAN = {"epochs": 8, "n_train": 24, "n_val": 8, "size": 128}


@pytest.mark.slow
def test_demo_quick_runs_the_chain(tmp_path, monkeypatch, capsys):
    from tao_sdk.cli import main
    from tao_sdk.worker import registry

    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")  # what the demo sets, restored after
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    plugin = registry.get("rtdetr")
    monkeypatch.setattr(type(plugin), "demo_plan", lambda self, quick: dict(CHAIN_PLAN))
    assert main(["demo", "--quick", "--json"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert set(summary["jobs"]) >= {"train", "evaluate", "export", "inference"}
    assert summary["onnx"].endswith("model.onnx")
    assert summary["predictions_png"] and open(summary["predictions_png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "test_mAP50" in summary["evaluate_kpis"]
    assert summary["export_kpis"]["onnx_max_abs_diff"] < 1e-3
    assert summary["val_mAP50_untrained"] <= summary["val_mAP50_trained"]
    # progress went to stderr, one line per change
    assert "train: RUNNING epoch" in out.err

