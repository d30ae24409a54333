"""Every inference function of the Spec Param / Parent Model Inference tables, resolved for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tao_sdk import ParentModelError, SkillBank
from tao_sdk.jobstore import JobRecord, JobStatus, JobStore
from tao_sdk.mappings import ENCRYPTION_KEY_REF, resolve_mappings


def _status_lines(values: list[float]) -> str:
    return "\n".join(json.dumps({"status": "RUNNING", "epoch": e, "max_epoch": len(values) - 1,
                                 "kpi": {"val_mAP50": v}}) for e, v in enumerate(values)) + "\n"


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path / "jobs.db")


def _train_parent(store: JobStore, tmp_path: Path, values=(0.1, 0.6, 0.3), skill="tao-train-rtdetr") -> JobRecord:
    results = tmp_path / "results" / "job-parent"
    (results / "train").mkdir(parents=True)
    for e in range(len(values)):
        (results / "train" / f"model_epoch_{e:03d}.pth").write_bytes(b"w")
    (results / "train" / "status.json").write_text(_status_lines(list(values)))
    rec = store.create(JobRecord(id="job-parent", skill=skill, action="train", results_uri=str(results)))
    return store.set_status(rec.id, JobStatus.SUCCESS)


def test_output_dir_key_and_create_paths(tmp_path):
    skill = SkillBank().get("rtdetr")
    res = resolve_mappings(skill, "gen_trt_engine", results_uri="s3://bucket/results/job-x")
    assert res.values["results_dir"] == "s3://bucket/results/job-x"
    assert res.values["encryption_key"] == ENCRYPTION_KEY_REF
    assert res.values["gen_trt_engine.trt_engine"] == "s3://bucket/results/job-x/model.engine"
    assert res.values["gen_trt_engine.tensorrt.calibration.cal_cache_file"] == "s3://bucket/results/job-x/cal.bin"
    assert "gen_trt_engine.onnx_file" not in res.values  # no parent: left for validation to flag
    exp = resolve_mappings(skill, "export", results_uri=str(tmp_path / "r"))
    assert exp.values["export.onnx_file"] == str(tmp_path / "r" / "model.onnx")


def test_parent_model_best_by_metric_and_user_keys_win(store, tmp_path):
    parent = _train_parent(store, tmp_path)
    skill = SkillBank().get("rtdetr")
    res = resolve_mappings(skill, "evaluate", results_uri=str(tmp_path / "new"), parent=parent, store=store)
    assert res.values["evaluate.checkpoint"].endswith("model_epoch_001.pth")
    assert "evaluate.trt_engine" not in res.values and not res.deploy
    assert "best val_mAP50" in res.parent.reason
    mine = resolve_mappings(skill, "evaluate", results_uri=str(tmp_path / "new"), parent=parent, store=store,
                            user_keys={"evaluate.checkpoint": "/mine.pth"})
    assert "evaluate.checkpoint" not in mine.values


def test_parent_without_metric_history_falls_back_to_latest_with_warning(store, tmp_path):
    parent = _train_parent(store, tmp_path)
    (Path(parent.results_uri) / "train" / "status.json").unlink()
    res = resolve_mappings(SkillBank().get("rtdetr"), "export", results_uri=str(tmp_path / "n"), parent=parent,
                           store=store)
    assert res.values["export.checkpoint"].endswith("model_epoch_002.pth")
    assert res.warnings and "latest" in res.warnings[0]


def test_resume_model_and_ptm_if_no_resume_model(tmp_path):
    skill = SkillBank().get("rtdetr")
    own = tmp_path / "results" / "job-self"
    fresh = resolve_mappings(skill, "train", results_uri=str(own), pretrained_model="s3://bucket/ptm/rtdetr.pth")
    assert fresh.values["train.pretrained_model_path"] == "s3://bucket/ptm/rtdetr.pth"
    assert fresh.values["model.pretrained_backbone_path"] == "s3://bucket/ptm/rtdetr.pth"
    assert "train.resume_training_checkpoint_path" not in fresh.values
    (own / "train").mkdir(parents=True)
    for name in ("model_epoch_002_step_00090.pth", "model_epoch_010_step_00010.pth", "rtdetr_model_latest.pth"):
        (own / "train" / name).write_bytes(b"w")
    again = resolve_mappings(skill, "train", results_uri=str(own), pretrained_model="s3://bucket/ptm/rtdetr.pth")
    assert again.values["train.resume_training_checkpoint_path"].endswith("model_epoch_010_step_00010.pth")
    assert "train.pretrained_model_path" not in again.values  # only when there is nothing to resume


def test_literals_and_ptm_download_descriptors():
    bank = SkillBank()
    ffs = resolve_mappings(bank.get("tao-train-fast-foundation-stereo"), "train", results_uri="/r")
    assert ffs.values["model.model_type"] == "FastFoundationStereo"
    assert ffs.values["dataset.dataset_name"] == "StereoDataset"
    assert ffs.values["model.stereo_backbone.depth_anything_v2_pretrained_path"] == \
        "/ptm/depth_net/stereo_backbone/depth_anything_v2_vits.pth"
    (download,) = ffs.downloads
    assert download["link"].startswith("https://") and download["spec_field"].endswith("pretrained_path")
    one = resolve_mappings(bank.get("oneformer"), "train", results_uri="/r")
    assert one.values["train.pretrained_backbone"].endswith("swin_tiny_patch4_window7_224_22k.pth")


def test_parent_model_folder(store, tmp_path):
    """No seed network uses parent_model_folder; a bank copy with such a row proves it resolves."""
    bank_root = tmp_path / "bank"
    shutil.copytree(SkillBank().root / "skills", bank_root / "skills")
    md = bank_root / "skills/tao-train-rtdetr/SKILL.md"
    text = md.read_text()
    row = "| quantize | `quantize.model_path` | `parent_model` |"
    assert row in text
    md.write_text(text.replace(row, "| quantize | `quantize.model_path` | `parent_model_folder` |"))
    parent = _train_parent(store, tmp_path)
    res = resolve_mappings(SkillBank(bank_root).get("rtdetr"), "quantize", results_uri=str(tmp_path / "q"),
                           parent=parent, store=store)
    assert res.values["quantize.model_path"] == str(Path(parent.results_uri) / "train")


def test_automl_parent_without_best_child_is_a_clear_error(store, tmp_path):
    rec = store.create(JobRecord(id="job-automl", skill="tao-run-automl", action="train", kind="automl",
                                 results_uri=str(tmp_path / "a")))
    with pytest.raises(ParentModelError, match="automl resume"):
        resolve_mappings(SkillBank().get("rtdetr"), "evaluate", results_uri=str(tmp_path / "e"), parent=rec,
                         store=store)
