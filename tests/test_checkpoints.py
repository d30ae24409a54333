"""Tests for tao_sdk.checkpoints: TAO artifact names, best/latest/onnx/engine selection."""

from __future__ import annotations

import json

import pytest

from tao_sdk.checkpoints import (
    CheckpointInfo,
    mode_for,
    parse_checkpoint_name,
    select_checkpoint,
)
from tao_sdk.errors import ParentModelError, TaoSkillsError
from tao_sdk.results import MetricDirectionError, summarize_status

ROOT = "s3://bucket/results/job-1234"
WHERE = f"job job-1234 results {ROOT}"


def listing(*names: str, root: str = ROOT) -> list[str]:
    """A recursive listing of a results folder, with the usual non-checkpoint files."""
    extra = ["train/status.json", "train/experiment.yaml", "train/lightning_logs/version_0/"
             "events.out.tfevents.1714557600.host.1.0", "train/logs_rank0.txt"]
    return [f"{root}/{n}" for n in extra + list(names)]


def history_of(values: dict[int, float], metric: str = "val_mAP50"):
    """History as summarize_status returns it, from a TAO-style status.json text."""
    lines = [{"status": "STARTED"}]
    for epoch, value in sorted(values.items()):
        lines.append({"status": "RUNNING", "epoch": epoch, "max_epoch": 9,
                      "kpi": {"train_loss": 5.0 - epoch / 10, metric: str(value)}})
    lines.append({"status": "SUCCESS"})
    return summarize_status("\n".join(json.dumps(x) for x in lines)).history


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name,epoch,step,ema,link", [
    ("model_epoch_005.pth", 5, None, False, False),
    ("model_epoch_005-EMA.pth", 5, None, True, False),
    ("model_epoch_005_step_01200.pth", 5, 1200, False, False),
    ("model_epoch_000_step_00099.ckpt", 0, 99, False, False),
    ("model_epoch_012.tlt", 12, None, False, False),
    ("rtdetr_model_latest.pth", None, None, False, True),
    ("dd_model_latest.pth", None, None, False, True),
    ("oneformer_model_latest.pth", None, None, False, True),
    ("dn_model_latest.pth", None, None, False, True),
    ("depth_net_model_latest.pth", None, None, False, True),
    ("model_latest.pth", None, None, False, True),
])
def test_parse_checkpoint_name(name, epoch, step, ema, link):
    info = parse_checkpoint_name(f"{ROOT}/train/{name}")
    assert isinstance(info, CheckpointInfo)
    assert (info.name, info.epoch, info.step, info.ema, info.is_latest_link) == \
        (name, epoch, step, ema, link)
    assert info.uri == f"{ROOT}/train/{name}"
    assert info.folder == f"{ROOT}/train"


@pytest.mark.parametrize("name", [
    "status.json", "experiment.yaml", "model.onnx", "model.engine", "cal.bin",
    "events.out.tfevents.1.host", "model_epoch_005.pth.tmp", "model_epoch_.pth",
    "model_epoch_005.txt", f"{ROOT}/train/", "model_epoch_005-ema-extra.pth",
])
def test_parse_rejects_other_files(name):
    assert parse_checkpoint_name(name) is None


# --------------------------------------------------------------------------- latest


def test_latest_compares_epochs_before_steps():
    uris = listing("train/model_epoch_002_step_99999.pth", "train/model_epoch_010_step_00010.pth",
                   "train/model_epoch_009_step_09000.pth", "train/dd_model_latest.pth")
    sel = select_checkpoint(uris, mode="latest", where=WHERE)
    assert sel.uri.endswith("train/model_epoch_010_step_00010.pth")
    assert sel.epoch == 10 and sel.warning is None
    assert "epoch 10, step 10" in sel.reason


def test_latest_prefers_step_within_epoch_and_non_ema():
    uris = listing("train/model_epoch_003_step_00100.pth", "train/model_epoch_003_step_00200.pth",
                   "train/model_epoch_004.pth", "train/model_epoch_004-EMA.pth")
    sel = select_checkpoint(uris, mode="latest")
    assert sel.uri.endswith("model_epoch_004.pth")
    uris = listing("train/model_epoch_003_step_00100.pth", "train/model_epoch_003_step_00200.pth")
    assert select_checkpoint(uris, mode="latest").uri.endswith("step_00200.pth")


def test_latest_link_only_when_no_numbered_checkpoint():
    sel = select_checkpoint(listing("train/rtdetr_model_latest.pth"), mode="latest", where=WHERE)
    assert sel.uri == f"{ROOT}/train/rtdetr_model_latest.pth"
    assert sel.epoch is None and "link" in sel.reason


def test_latest_does_not_use_lexical_or_listing_order():
    uris = listing("train/model_epoch_100.pth", "train/model_epoch_99.pth",
                   "train/model_epoch_7.pth")
    assert select_checkpoint(list(reversed(uris)), mode="latest").epoch == 100


# --------------------------------------------------------------------------- best


CKPTS = [f"train/model_epoch_{e:03d}.pth" for e in range(10)]


def test_best_max_vs_latest():
    hist = history_of({0: 0.1, 3: 0.4, 5: 0.61, 7: 0.55, 9: 0.5})
    sel = select_checkpoint(listing(*CKPTS), mode="best", history=hist, metric="val_mAP50",
                            direction="max", where=WHERE)
    assert sel.uri.endswith("model_epoch_005.pth")
    assert sel.epoch == 5 and sel.value == pytest.approx(0.61) and sel.warning is None
    assert sel.reason == "best val_mAP50=0.61 at epoch 5 (max): model_epoch_005.pth"
    assert select_checkpoint(listing(*CKPTS), mode="latest").epoch == 9


def test_best_min_direction_for_losses_and_epe():
    hist = [(e, {"val/epe": v}) for e, v in {0: 3.0, 1: 2.1, 2: 1.7, 3: 1.9}.items()]
    uris = listing(*[f"train/model_epoch_{e:03d}_step_{(e + 1) * 500:05d}.pth" for e in range(4)])
    sel = select_checkpoint(uris, mode="best", history=hist, metric="val_epe", direction="min")
    assert sel.uri.endswith("model_epoch_002_step_01500.pth")
    assert sel.reason.startswith("best val_epe=1.7 at epoch 2 (min)")
    # the same history read as "max" picks another file: direction comes from the caller
    sel = select_checkpoint(uris, mode="best", history=hist, metric="val_epe", direction="max")
    assert sel.epoch == 0


def test_best_accepts_task_status():
    lines = [{"status": "RUNNING", "epoch": e, "kpi": {"mIoU": v}}
             for e, v in enumerate([0.2, 0.5, 0.4])]
    st = summarize_status("\n".join(json.dumps(x) for x in lines))
    sel = select_checkpoint(listing(*CKPTS[:3]), mode="best", history=st, metric="mIoU",
                            direction="max")
    assert sel.epoch == 1


def test_best_prefers_ema_file_of_best_epoch():
    uris = listing(*CKPTS, "train/model_epoch_005-EMA.pth", "train/model_epoch_009-EMA.pth",
                   "train/rtdetr_model_latest.pth")
    hist = history_of({4: 0.5, 5: 0.6, 6: 0.55})
    sel = select_checkpoint(uris, mode="best", history=hist, metric="val_mAP50", direction="max")
    assert sel.uri.endswith("model_epoch_005-EMA.pth") and "EMA" in sel.reason
    sel = select_checkpoint(uris, mode="best", history=hist, metric="val_mAP50", direction="max",
                            prefer_ema=False)
    assert sel.uri.endswith("model_epoch_005.pth")


def test_best_epoch_not_saved_uses_best_saved_epoch_with_warning():
    uris = listing("train/model_epoch_004.pth", "train/model_epoch_009.pth")
    hist = history_of({3: 0.3, 4: 0.5, 6: 0.7, 9: 0.45})
    sel = select_checkpoint(uris, mode="best", history=hist, metric="val_mAP50", direction="max",
                            where=WHERE)
    assert sel.uri.endswith("model_epoch_004.pth") and sel.epoch == 4
    assert sel.value == pytest.approx(0.5)
    assert "epoch 6 has no checkpoint" in sel.warning and WHERE in sel.warning


def test_best_no_history_falls_back_to_latest_with_warning():
    uris = listing(*CKPTS)
    for hist in (None, [], history_of({0: 0.1}, metric="val_mAP")):
        sel = select_checkpoint(uris, mode="best", history=hist, metric="val_mAP50",
                                direction="max", where=WHERE)
        assert sel.uri.endswith("model_epoch_009.pth")
        assert sel.warning == (f"no val_mAP50 history in {WHERE}; using the latest checkpoint "
                               "model_epoch_009.pth")


def test_best_no_metric_given_falls_back_with_warning():
    sel = select_checkpoint(listing(*CKPTS), mode="best", history=history_of({1: 0.3}))
    assert sel.epoch == 9 and "no metric given" in sel.warning


def test_best_history_epochs_without_any_checkpoint():
    hist = history_of({0: 0.1, 1: 0.2})
    sel = select_checkpoint(listing("train/model_epoch_005.pth"), mode="best", history=hist,
                            metric="val_mAP50", direction="max")
    assert sel.epoch == 5 and "none of the epochs" in sel.warning


def test_best_only_latest_link_warns():
    sel = select_checkpoint(listing("train/oneformer_model_latest.pth"), mode="best",
                            history=history_of({1: 0.3}), metric="val_mAP50", direction="max")
    assert sel.uri.endswith("oneformer_model_latest.pth") and "link" in sel.warning


def test_best_requires_a_direction():
    with pytest.raises(MetricDirectionError):
        select_checkpoint(listing(*CKPTS), mode="best", history=history_of({1: 0.3}),
                          metric="val_mAP50")


def test_best_uses_validated_epoch_not_sticky_repeats():
    # val every 5 epochs (4, 9), checkpoint every epoch: epochs 5..8 repeat epoch 4's value
    lines = [{"status": "RUNNING", "epoch": e, "kpi": {"val_mAP50": 0.6 if e < 9 else 0.5}}
             for e in range(4, 10)]
    st = summarize_status("\n".join(json.dumps(x) for x in lines))
    sel = select_checkpoint(listing(*CKPTS), mode="best", history=st.history,
                            metric="val_mAP50", direction="max")
    assert sel.epoch == 4


# --------------------------------------------------------------------------- onnx / engine


def test_onnx_selection():
    uris = listing("train/model_epoch_009.pth", "export/model.onnx", "export/status.json")
    sel = select_checkpoint(uris, mode="onnx", where=WHERE)
    assert sel.uri == f"{ROOT}/export/model.onnx" and sel.warning is None
    uris = listing("export/rtdetr_epoch_003.onnx", "export/rtdetr_epoch_012.onnx")
    sel = select_checkpoint(uris, mode="onnx", where=WHERE)
    assert sel.uri.endswith("rtdetr_epoch_012.onnx") and sel.epoch == 12
    assert "2 ONNX files" in sel.warning and "rtdetr_epoch_003.onnx" in sel.warning
    uris = [f"{ROOT}/model.onnx", f"{ROOT}/export/other.onnx"]
    assert select_checkpoint(uris, mode="onnx").uri == f"{ROOT}/model.onnx"


def test_engine_selection():
    uris = listing("gen_trt_engine/model.engine", "gen_trt_engine/cal.bin", "model.onnx")
    sel = select_checkpoint(uris, mode="engine")
    assert sel.uri.endswith("gen_trt_engine/model.engine")
    sel = select_checkpoint(listing("gen_trt_engine/rtdetr_fp16.plan"), mode="engine")
    assert sel.uri.endswith("rtdetr_fp16.plan")
    sel = select_checkpoint(listing("gen_trt_engine/x.trt"), mode="engine")
    assert sel.uri.endswith("x.trt")


# --------------------------------------------------------------------------- errors


def test_no_checkpoint_error_names_folder_and_found_files():
    uris = listing("train/images/0001.jpg")
    with pytest.raises(ParentModelError) as exc:
        select_checkpoint(uris, mode="best", metric="val_mAP50", direction="max", where=WHERE)
    msg = str(exc.value)
    assert WHERE in msg
    assert "model_epoch_" in msg and "model_latest" in msg
    assert f"found 5 file(s) under {ROOT}/train: " in msg
    assert "status.json" in msg and "experiment.yaml" in msg and "images/0001.jpg" in msg


def test_error_lists_at_most_ten_names():
    uris = [f"{ROOT}/train/img_{i:03d}.jpg" for i in range(25)]
    with pytest.raises(ParentModelError) as exc:
        select_checkpoint(uris, mode="latest", where=WHERE)
    msg = str(exc.value)
    assert "img_009.jpg" in msg and "img_010.jpg" not in msg and "(+15 more)" in msg


def test_empty_listing_error():
    with pytest.raises(ParentModelError, match="found nothing") as exc:
        select_checkpoint([], mode="latest", where=WHERE)
    assert WHERE in str(exc.value)


def test_missing_onnx_and_engine_errors():
    uris = listing("train/model_epoch_009.pth")
    with pytest.raises(ParentModelError, match=r"No ONNX file \(\*\.onnx\)") as exc:
        select_checkpoint(uris, mode="onnx", where=WHERE)
    assert WHERE in str(exc.value) and "model_epoch_009.pth" in str(exc.value)
    assert "export" in str(exc.value)
    with pytest.raises(ParentModelError, match=r"\*\.engine or \*\.trt or \*\.plan"):
        select_checkpoint(uris, mode="engine", where=WHERE)


def test_checkpoints_of_several_runs_are_ambiguous():
    uris = listing("experiment_0/train/model_epoch_004.pth",
                   "experiment_1/train/model_epoch_009.pth")
    with pytest.raises(ParentModelError, match="several training runs") as exc:
        select_checkpoint(uris, mode="latest", where=WHERE)
    assert "experiment_0/train" in str(exc.value)


def test_unknown_mode():
    with pytest.raises(ParentModelError, match="best, latest, onnx, engine"):
        select_checkpoint(listing(*CKPTS), mode="newest")


def test_local_paths_work_too():
    uris = ["/data/results/j1/train/model_epoch_001.pth", "/data/results/j1/train/status.json"]
    sel = select_checkpoint(uris, mode="latest")
    assert sel.uri == "/data/results/j1/train/model_epoch_001.pth"
    with pytest.raises(ParentModelError, match="/data/results/j1"):
        select_checkpoint(uris, mode="onnx")


# --------------------------------------------------------------------------- mode_for


@pytest.mark.parametrize("action,parent,mode", [
    ("evaluate", "train", "best"), ("inference", "train", "best"), ("export", "train", "best"),
    ("distill", "train", "best"), ("quantize", "train", "best"), ("evaluate", "automl", "best"),
    ("export", "AutoML", "best"), ("gen_trt_engine", "export", "onnx"),
    ("gen-trt-engine", "export", "onnx"), ("evaluate", "gen_trt_engine", "engine"),
    ("inference", "gen_trt_engine", "engine"), ("trt_evaluate", "gen_trt_engine", "engine"),
    ("trt_inference", "gen_trt_engine", "engine"), ("resume", "train", "latest"),
    ("resume", None, "latest"),
    ("evaluate", "quantize", "best"), ("export", "quantize", "best"),
])
def test_mode_for(action, parent, mode):
    assert mode_for(action, parent) == mode


@pytest.mark.parametrize("action,parent,needle", [
    ("evaluate", "export", "needs a train, automl, distill or quantize parent"),
    ("quantize", "quantize", "quantize needs a train (or automl) parent"),
    ("inference", "export", "gen_trt_engine parent"),
    ("gen_trt_engine", "train", "needs an export parent"),
    ("trt_evaluate", "train", "gen_trt_engine parent"),
    ("export", "export", "train, automl, distill or quantize parent"),
    ("evaluate", None, "no parent job was given"),
    ("dataset_convert", "train", "no parent-model rule"),
])
def test_mode_for_errors(action, parent, needle):
    with pytest.raises(ParentModelError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        mode_for(action, parent)
    assert issubclass(ParentModelError, TaoSkillsError)
