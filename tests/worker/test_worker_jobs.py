"""Worker jobs end to end on a tiny synthetic dataset (CPU, tiny backbones)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


def _status(lines):
    return [ln["status"] for ln in lines]


def test_corrupt_annotations_fail_with_message(make_spec, run_worker, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "s3cr3t-model-key")
    spec = make_spec("rtdetr")
    spec["encryption_key"] = "${oc.env:TAO_ENCRYPTION_KEY}"  # as the SDK writes it
    bad = tmp_path / "broken" / "annotations.json"
    bad.parent.mkdir()
    bad.write_text('{"images": [}')
    spec["dataset"]["train_data_sources"][0]["json_file"] = str(bad)
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 1
    assert _status(lines)[0] == "STARTED" and _status(lines)[-1] == "FAILURE"
    msg = lines[-1]["message"]
    assert str(bad) in msg and "not valid JSON" in msg and "line 1" in msg
    task = Path(spec["results_dir"]) / "train"
    assert "not valid JSON" in (task / "log.txt").read_text()
    for name in ("experiment.yaml", "log.txt", "status.json"):
        assert "s3cr3t-model-key" not in (task / name).read_text()


def test_too_few_classes_fails_with_fix(make_spec, run_worker):
    spec = make_spec("rtdetr")
    spec["dataset"]["num_classes"] = 2
    spec["model"]["num_select"] = 10
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 1
    assert "raise dataset.num_classes to at least 3" in lines[-1]["message"]


def test_gen_trt_engine_without_gpu_fails_fast(make_spec, run_worker):
    pytest.importorskip("torch")
    import torch

    from tao_sdk.worker.trt import nvidia_gpu_visible

    if torch.cuda.is_available() or nvidia_gpu_visible():
        pytest.skip("this machine has a GPU")
    t0 = time.monotonic()
    code, lines = run_worker("rtdetr", "gen_trt_engine", make_spec("rtdetr"))
    assert code == 1
    assert _status(lines) == ["STARTED", "FAILURE"]
    assert lines[-1]["message"].startswith("TensorRT needs an NVIDIA GPU")
    assert time.monotonic() - t0 < 30


def test_tensorrt_evaluate_without_gpu_fails_fast(make_spec, run_worker):
    pytest.importorskip("torch")
    from tao_sdk.worker.trt import nvidia_gpu_visible

    if nvidia_gpu_visible():
        pytest.skip("this machine has a GPU")
    spec = make_spec("rtdetr")
    spec["evaluate"] = {"checkpoint": None, "trt_engine": "/nowhere/model.engine"}
    code, _ = run_worker("rtdetr", "evaluate", spec)
    assert code == 1
    status = Path(spec["results_dir"]) / "trt_evaluate" / "status.json"  # TAO Deploy folder
    lines = [json.loads(x) for x in status.read_text().splitlines()]
    assert _status(lines) == ["STARTED", "FAILURE"]
    assert lines[-1]["message"].startswith("TensorRT needs an NVIDIA GPU")


@pytest.mark.slow
def test_rtdetr_train_evaluate_export_inference(make_spec, run_worker):
    spec = make_spec("rtdetr")
    spec["model"]["frozen_fm"] = {"enabled": True}  # not honoured -> reported once
    results = Path(spec["results_dir"])

    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    assert _status(lines)[0] == "STARTED" and _status(lines)[-1] == "SUCCESS"
    reports = [ln for ln in lines if "spec fields not honoured" in ln["message"]]
    assert len(reports) == 1 and "model.frozen_fm.enabled=True" in reports[0]["message"]
    epochs = [ln for ln in lines if "epoch" in ln and "time_per_epoch" in ln]
    assert [ln["epoch"] for ln in epochs] == [0, 1]
    assert all(ln["max_epoch"] == 1 for ln in epochs)
    assert epochs[-1]["step"] == epochs[-1]["max_step"] == 6  # 12 images / batch 4 x 2
    for key in ("train_loss", "val_mAP", "val_mAP50", "val_loss"):
        assert key in epochs[-1]["kpi"]
    assert lines[-1]["kpi"] == epochs[-1]["kpi"]  # sticky
    train_dir = results / "train"
    assert (train_dir / "model_epoch_000.pth").exists()
    assert (train_dir / "model_epoch_001.pth").exists()
    assert (train_dir / "rtdetr_model_latest.pth").resolve().name == "model_epoch_001.pth"
    assert "tlt_encode" not in (train_dir / "experiment.yaml").read_text()

    code, lines = run_worker("rtdetr", "evaluate", spec)
    assert code == 0, lines[-1]
    kpi = lines[-1]["kpi"]
    assert 0.0 <= kpi["test_mAP"] <= 1.0 and 0.0 <= kpi["test_mAP50"] <= 1.0
    res = json.loads((results / "evaluate" / "results.json").read_text())
    assert res["images"] == 4 and "test_mAP50" in res
    pr = json.loads((results / "evaluate" / "pr_curves.json").read_text())  # for `tao-skills plot`
    assert len(pr["recall"]) == 101 and all(len(c) == 101 for c in pr["precision"].values())

    # the checkpoint is in TAO's layout: with only the keys TAO's trainer writes (no
    # architecture record; the spec's model section describes it) it evaluates the same
    import torch

    ckpt = torch.load(train_dir / "model_epoch_001.pth", weights_only=True)
    assert ckpt["tao_model"] == "rtdetr" and ckpt["state_dict_layout"] == "tao"
    assert all(k.startswith("model.model.") for k in ckpt["state_dict"])
    tao_only = {k: ckpt[k] for k in ("epoch", "global_step", "pytorch-lightning_version",
                                     "state_dict", "optimizer_states", "lr_schedulers",
                                     "tao_model")}
    torch.save(tao_only, results / "tao_model.pth")
    spec_tao = {**spec, "evaluate": {**spec["evaluate"],
                                     "checkpoint": str(results / "tao_model.pth")}}
    code, tao_lines = run_worker("rtdetr", "evaluate", spec_tao)
    assert code == 0, tao_lines[-1]
    assert tao_lines[-1]["kpi"] == kpi
    assert any("TAO checkpoint: architecture from the spec" in ln["message"] for ln in tao_lines)

    code, lines = run_worker("rtdetr", "export", spec)
    assert code == 0, lines[-1]
    assert (results / "export" / "model.onnx").stat().st_size > 100_000
    assert lines[-1]["kpi"]["onnx_max_abs_diff"] <= 1e-3
    info = json.loads((results / "export" / "export_info.json").read_text())
    assert info["parity"]["encoder_scores"] <= 1e-3

    code, lines = run_worker("rtdetr", "inference", spec)
    assert code == 0, lines[-1]
    det = json.loads((results / "inference" / "detections.json").read_text())
    assert len(det["images"]) == 4
    names = {d["category_name"] for im in det["images"] for d in im["detections"]}
    # class 0 is the unused id below the dataset's category ids (TAO's label = class index);
    # a 2-epoch model may still rank it (inference names it by its index)
    assert names - {"0"} <= {"square", "disc"} and names
    assert len(list((results / "inference" / "images_annotated").glob("*.jpg"))) == 4


@pytest.mark.slow
def test_resume_continues_from_latest(make_spec, run_worker):
    spec = make_spec("rtdetr")
    spec["train"]["num_epochs"] = 1
    spec["train"]["enable_ema"] = True
    spec["train"]["ema"] = {"decay": 0.9}
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    train_dir = Path(spec["results_dir"]) / "train"
    assert (train_dir / "model_epoch_000-EMA.pth").exists()
    spec["train"]["num_epochs"] = 2
    spec["train"]["resume_training_checkpoint_path"] = str(train_dir / "rtdetr_model_latest.pth")
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    statuses = _status(lines)
    assert statuses.count("STARTED") == 2 and statuses.count("SUCCESS") == 2  # appended
    resumed = [ln for ln in lines if ln["message"].startswith("resuming from")]
    assert len(resumed) == 1
    epochs = [ln["epoch"] for ln in lines if "time_per_epoch" in ln]
    assert epochs == [0, 1]  # epoch 0 from the first run, epoch 1 after resuming
    last = [ln for ln in lines if "time_per_epoch" in ln][-1]
    assert last["step"] == 6
    assert (train_dir / "rtdetr_model_latest.pth").resolve().name == "model_epoch_001.pth"

    # Resuming a finished run is a no-op success that says how to train longer.
    spec["train"]["resume_training_checkpoint_path"] = str(train_dir / "model_epoch_001.pth")
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0 and "raise train.num_epochs" in lines[-1]["message"]

    # TAO's own checkpoint (its keys only: no architecture record, TAO's optimizer groups) of
    # epoch 0: weights, epoch and step resume, the optimizer starts afresh, and it says so
    import torch

    ckpt = torch.load(train_dir / "model_epoch_000.pth", weights_only=True)
    tao_only = {k: ckpt[k] for k in ("epoch", "global_step", "pytorch-lightning_version",
                                     "state_dict", "tao_model")}
    torch.save({**tao_only, "optimizer_states": [{"state": {}, "param_groups": []}]},
               train_dir.parent / "tao_epoch_000.pth")
    spec["train"]["resume_training_checkpoint_path"] = str(train_dir.parent / "tao_epoch_000.pth")
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    resumed = [ln["message"] for ln in lines if ln["message"].startswith("resuming from")]
    assert "completed epoch 0" in resumed[-1] and "optimizer and LR schedule start afresh" in (
        resumed[-1])


@pytest.mark.slow
def test_deformable_detr_train_and_export(make_spec, run_worker):
    spec = make_spec("deformable_detr")
    spec["train"]["num_epochs"] = 1
    spec["export"]["checkpoint"] = spec["export"]["checkpoint"].replace(
        "model_epoch_001.pth", "dd_model_latest.pth")
    code, lines = run_worker("deformable_detr", "train", spec)
    assert code == 0, lines[-1]
    train_dir = Path(spec["results_dir"]) / "train"
    assert (train_dir / "model_epoch_000_step_00003.pth").exists()
    assert (train_dir / "dd_model_latest.pth").resolve().name == "model_epoch_000_step_00003.pth"
    assert {"train_loss", "val_mAP", "val_mAP50"} <= set(lines[-1]["kpi"])
    code, lines = run_worker("deformable_detr", "export", spec)
    assert code == 0, lines[-1]
    assert lines[-1]["kpi"]["onnx_max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_s3_results_and_datasets(make_spec, run_worker, tiny_dataset, s3_env):
    from tao_sdk.storage import storage_for

    bucket = f"s3://{s3_env}"
    store = storage_for(bucket)
    for split in ("train", "val"):
        for key in ("images", "annotations", "label_map"):
            path = tiny_dataset[split][key]
            store.upload_file(path, f"{bucket}/data/{split}/{Path(path).name}")
    spec = make_spec("rtdetr", results_dir=f"{bucket}/results/job1")
    spec["train"]["num_epochs"] = 1
    spec["dataset"]["train_data_sources"] = [{"image_dir": f"{bucket}/data/train/images.tar.gz",
                                              "json_file": f"{bucket}/data/train/annotations.json"}]
    spec["dataset"]["val_data_sources"] = {"image_dir": f"{bucket}/data/val/images.tar.gz",
                                           "json_file": f"{bucket}/data/val/annotations.json"}
    code, _ = run_worker("rtdetr", "train", spec)
    assert code == 0
    names = {o.uri.rsplit("/", 1)[-1] for o in store.list(f"{bucket}/results/job1/train")}
    assert {"status.json", "experiment.yaml", "log.txt", "model_epoch_000.pth",
            "rtdetr_model_latest.pth"} <= names
    status = store.read_text(f"{bucket}/results/job1/train/status.json").splitlines()
    assert json.loads(status[-1])["status"] == "SUCCESS"

    # Resume from the uploaded latest checkpoint: status.json on S3 is continued, not replaced.
    spec["train"]["num_epochs"] = 2
    spec["train"]["resume_training_checkpoint_path"] = (
        f"{bucket}/results/job1/train/rtdetr_model_latest.pth")
    code, _ = run_worker("rtdetr", "train", spec)
    assert code == 0
    status = [json.loads(x) for x in
              store.read_text(f"{bucket}/results/job1/train/status.json").splitlines()]
    assert [ln["status"] for ln in status].count("SUCCESS") == 2
    assert [ln["epoch"] for ln in status if "time_per_epoch" in ln] == [0, 1]
    assert store.exists(f"{bucket}/results/job1/train/model_epoch_001.pth")

    # Export from the S3 checkpoint to TAO's <results>/model.onnx (outside the task folder).
    spec["export"].update(checkpoint=f"{bucket}/results/job1/train/model_epoch_001.pth",
                          onnx_file=f"{bucket}/results/job1/model.onnx")
    code, _ = run_worker("rtdetr", "export", spec)
    assert code == 0
    assert store.exists(f"{bucket}/results/job1/model.onnx")
    exported = {o.uri.rsplit("/", 1)[-1] for o in store.list(f"{bucket}/results/job1/export")}
    assert {"status.json", "export_info.json", "experiment.yaml"} <= exported
    assert not any(name.startswith(".") for name in exported)

    # A failing job still uploads its partial results and the FAILURE line.
    store.write_text(f"{bucket}/data/bad/annotations.json", "{oops")
    spec = make_spec("rtdetr", results_dir=f"{bucket}/results/job2")
    spec["dataset"]["train_data_sources"][0]["json_file"] = f"{bucket}/data/bad/annotations.json"
    code, _ = run_worker("rtdetr", "train", spec)
    assert code == 1
    status = store.read_text(f"{bucket}/results/job2/train/status.json").splitlines()
    last = json.loads(status[-1])
    assert last["status"] == "FAILURE" and "annotations.json is not valid JSON" in last["message"]


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("network,skill", [("rtdetr", "tao-train-rtdetr"),
                                           ("deformable_detr", "tao-train-deformable-detr")])
def test_generated_train_template_runs(network, skill, make_spec, run_worker):
    """The skill's generated spec_template_train.yaml (full TAO shape, TAO defaults) runs once
    the data sources are set and the model is shrunk with ordinary spec overrides."""
    import yaml

    template = REPO / "skills" / skill / "references" / "spec_template_train.yaml"
    if not template.exists():
        pytest.skip(f"{template} not generated yet")
    spec = yaml.safe_load(template.read_text())
    tiny = make_spec(network)
    spec["results_dir"] = tiny["results_dir"]
    for key in ("train_data_sources", "val_data_sources", "num_classes", "augmentation"):
        spec["dataset"][key] = tiny["dataset"][key]
    spec["model"].update(tiny["model"])
    spec["train"]["num_epochs"] = 1
    spec["train"]["optim"].update(tiny["train"]["optim"])
    code, lines = run_worker(network, "train", spec)
    assert code == 0, lines[-1]
    report = [ln["message"] for ln in lines if "not honoured" in ln["message"]]
    assert not any("wandb.enable" in r for r in report)  # honoured (tao_sdk.worker.tracking)
    # the template's wandb.enable=true without WANDB_API_KEY / WANDB_MODE=offline: a note
    assert any("W&B is not logged in" in ln["message"] for ln in lines)
    assert {"train_loss", "val_mAP", "val_mAP50"} <= set(lines[-1]["kpi"])


@pytest.mark.slow
def test_pretrained_weights_and_step_checkpoints(make_spec, run_worker, tmp_path):
    spec = make_spec("deformable_detr")
    spec["train"]["num_epochs"] = 1
    code, lines = run_worker("deformable_detr", "train", spec)
    assert code == 0, lines[-1]
    first = Path(spec["results_dir"]) / "train" / "dd_model_latest.pth"

    spec2 = make_spec("deformable_detr", results_dir=str(tmp_path / "results2"))
    spec2["dataset"]["num_classes"] = 4  # class head no longer fits: skipped, rest loaded
    spec2["train"].update(num_epochs=2, checkpoint_interval=2, checkpoint_interval_unit="step",
                          pretrained_model_path=str(first))
    code, lines = run_worker("deformable_detr", "train", spec2)
    assert code == 0, lines[-1]
    loads = [ln for ln in lines if ln.get("weights", {}).get("spec_field") == "train.pretrained_model_path"]
    assert len(loads) == 1 and loads[0]["verbosity"] == "WARNING"
    assert loads[0]["weights"]["skipped"][0]["reason"].startswith("shape mismatch: class head")
    assert "loaded " in loads[0]["message"] and "left at their initial values" in loads[0]["message"]
    names = sorted(p.name for p in (tmp_path / "results2" / "train").glob("model_epoch_*.pth"))
    # 3 steps per epoch, a checkpoint every 2 steps + the final one
    assert names == ["model_epoch_000_step_00002.pth", "model_epoch_001_step_00004.pth",
                     "model_epoch_001_step_00006.pth"]


@pytest.mark.slow
def test_sigterm_leaves_failure_line(make_spec, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import yaml

    spec = make_spec("rtdetr")
    spec["train"]["num_epochs"] = 500
    spec["train"]["checkpoint_interval"] = 1000
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    status = Path(spec["results_dir"]) / "train" / "status.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "tao_sdk.worker", "rtdetr", "train", "-e",
                             str(spec_file)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if status.exists() and "model: RT-DETR" in status.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the job did not start training in time")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    last = json.loads(status.read_text().splitlines()[-1])
    assert last["status"] == "FAILURE" and "terminated by signal SIGTERM" in last["message"]
    assert "resume_training_checkpoint_path" in last["message"]


def test_unreadable_checkpoint_fails_with_the_file_and_a_fix(make_spec, run_worker, tmp_path):
    spec = make_spec("rtdetr")
    bad = tmp_path / "model_epoch_003.pth"
    bad.write_bytes(b"this is not a torch checkpoint")
    spec["evaluate"] = {**(spec.get("evaluate") or {}), "checkpoint": str(bad)}
    code, lines = run_worker("rtdetr", "evaluate", spec)
    assert code == 1
    assert _status(lines)[-1] == "FAILURE"
    message = lines[-1]["message"]
    assert str(bad) in message
    assert "evaluate.checkpoint" in message
