"""`tao-skills demo --quick` runs the whole RT-DETR chain through the public SDK (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.mark.slow
def test_demo_quick_runs_the_chain(tmp_path):
    env = {**os.environ, "TAO_SKILLS_WORKSPACE": str(tmp_path)}
    env.pop("TAO_SKILLS_ENTRYPOINT", None)
    out = subprocess.run([sys.executable, "-m", "tao_sdk.cli", "demo", "--quick", "--json"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert set(summary["jobs"]) >= {"train", "evaluate", "export", "inference"}
    assert summary["onnx"].endswith("model.onnx")
    assert summary["predictions_png"] and open(summary["predictions_png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "test_mAP50" in summary["evaluate_kpis"]
    assert summary["export_kpis"]["onnx_max_abs_diff"] < 1e-3
    assert summary["val_mAP50_untrained"] <= summary["val_mAP50_trained"]
    # progress went to stderr, one line per change
    assert "train: RUNNING epoch" in out.stderr
