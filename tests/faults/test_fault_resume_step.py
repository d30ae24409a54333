"""Case 9: resuming from a per-step checkpoint taken inside an epoch does not redo a step: the
resumed job skips the steps that checkpoint already holds and ends exactly at max_step."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_resume_from_mid_epoch_checkpoint_ends_at_max_step(tmp_path, monkeypatch):
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset
    from worker.conftest import base_spec, run_job

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TAO_WORKER_STAGING", str(tmp_path / "staging"))
    ds = make_coco_dataset(tmp_path / "data", n_train=12, n_val=2, classes=("square", "disc"), size=64, seed=4)
    spec = base_spec("deformable_detr", ds, str(tmp_path / "first"))
    # 12 images / batch 4 = 3 steps per epoch, max_step 6; per-step checkpoints at steps 2 and 4
    spec["train"].update(num_epochs=2, checkpoint_interval=2, checkpoint_interval_unit="step",
                         validation_interval=10)
    code, lines = run_job("deformable_detr", "train", spec, tmp_path)
    assert code == 0, lines[-1]
    mid = tmp_path / "first" / "train" / "model_epoch_001_step_00004.pth"
    assert mid.exists(), sorted(p.name for p in mid.parent.iterdir())
    spec["results_dir"] = str(tmp_path / "resumed")
    spec["train"]["resume_training_checkpoint_path"] = str(mid)
    code, lines = run_job("deformable_detr", "train", spec, tmp_path)
    assert code == 0, lines[-1]
    steps = [ln for ln in lines if "step" in ln and "max_step" in ln]
    assert steps[-1]["step"] == steps[-1]["max_step"] == 6, steps[-1]
    assert lines[-1]["status"] == "SUCCESS"
