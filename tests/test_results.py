"""Tests for tao_sdk.results: status.json parsing, KPI history, best epoch, progress lines."""

from __future__ import annotations

import json

import pytest

from tao_sdk.errors import TaoSkillsError
from tao_sdk.results import (
    TASK_FOLDERS,
    MetricDirectionError,
    best_epoch,
    format_duration,
    format_progress,
    metric_by_epoch,
    parse_duration,
    parse_status_lines,
    resolve_metric_key,
    status_file_for,
    summarize_status,
)


def tao_status(
    num_epochs: int,
    kpis_by_epoch: dict[int, dict] | None = None,
    *,
    final: str | None = "SUCCESS",
    stop_after: int | None = None,
    val_interval: int = 1,
    string_kpis: bool = False,
    steps_per_epoch: int = 0,
    eta_per_epoch: float = 13.0,
) -> str:
    """Write status.json text the way TAO's rank-0 status logger does.

    STARTED line, then one RUNNING line per epoch (``kpi`` sticky: the dict is repeated until
    validation replaces values), then a SUCCESS / FAILURE line (``final=None``: still running).
    """
    kpis_by_epoch = kpis_by_epoch or {}
    lines = [{"date": "5/1/2025", "time": "10:00:00", "status": "STARTED",
              "verbosity": "INFO", "message": "Starting RT-DETR train."}]
    sticky: dict = {}
    last = num_epochs if stop_after is None else stop_after
    for epoch in range(last):
        new = kpis_by_epoch.get(epoch, {})
        for key, value in new.items():
            if key.startswith("train") or (epoch + 1) % val_interval == 0:
                sticky[key] = str(value) if string_kpis else value
        remaining = (num_epochs - epoch - 1) * eta_per_epoch
        eta = f"0:{int(remaining // 60):02d}:{remaining % 60:04.1f}"
        line = {"date": "5/1/2025", "time": f"10:{epoch + 1:02d}:00", "status": "RUNNING",
                "verbosity": "INFO", "message": "Train metrics generated.",
                "epoch": epoch, "max_epoch": num_epochs - 1,
                "time_per_epoch": f"0:00:{eta_per_epoch:04.1f}", "eta": eta,
                "kpi": dict(sticky), "graphical": {"train_loss": sticky.get("train_loss")}}
        if steps_per_epoch:
            line["step"] = (epoch + 1) * steps_per_epoch
            line["max_step"] = num_epochs * steps_per_epoch
        lines.append(line)
    if final == "SUCCESS":
        lines.append({"date": "5/1/2025", "time": "11:00:00", "status": "SUCCESS",
                      "verbosity": "INFO", "message": "Train finished successfully.",
                      "kpi": dict(sticky)})
    elif final == "FAILURE":
        lines.append({"date": "5/1/2025", "time": "11:00:00", "status": "FAILURE",
                      "verbosity": "ERROR", "message": "CUDA out of memory."})
    return "".join(json.dumps(line) + "\n" for line in lines)


MAPS = {0: 0.10, 1: 0.25, 2: 0.41, 3: 0.55, 4: 0.61, 5: 0.58, 6: 0.61, 7: 0.60, 8: 0.59,
        9: 0.57}


def kpis_map(maps=MAPS):
    return {e: {"train_loss": 10.0 - e, "val_mAP50": v, "val_mAP": v / 2} for e, v in maps.items()}


# --------------------------------------------------------------------------- parse_status_lines


def test_parse_blank_garbage_and_truncated_last_line():
    text = tao_status(3, kpis_map(), final=None)
    text = "\n" + text.replace("\n", "\n\n", 1) + "garbage line\n[1, 2]\n" + '{"status": "RUNN'
    lines = parse_status_lines(text)
    assert [ln["status"] for ln in lines] == ["STARTED", "RUNNING", "RUNNING", "RUNNING"]
    assert lines.skipped == 2
    assert lines.truncated is True


def test_parse_complete_garbage_last_line_is_counted_not_truncated():
    text = tao_status(1, final=None) + "not json at all"
    lines = parse_status_lines(text)
    assert lines.skipped == 1 and lines.truncated is False


def test_parse_bytes_and_empty():
    assert parse_status_lines(b'{"status": "STARTED"}\n')[0]["status"] == "STARTED"
    empty = parse_status_lines("")
    assert empty == [] and empty.skipped == 0 and not empty.truncated
    assert parse_status_lines(None) == []


def test_string_kpis_become_floats_and_text_kept():
    text = json.dumps({"status": "RUNNING", "epoch": 0,
                       "kpi": {"val_mAP50": "0.53", "count": 7, "note": "n/a", "ok": True}})
    kpi = parse_status_lines(text)[0]["kpi"]
    assert kpi == {"val_mAP50": 0.53, "count": 7.0, "note": "n/a", "ok": True}
    assert isinstance(kpi["count"], float)


# --------------------------------------------------------------------------- summarize_status


def test_summarize_success_run():
    st = summarize_status(tao_status(10, kpis_map(), string_kpis=True), task="train")
    assert st.status == "SUCCESS" and st.started and st.finished and not st.failed
    assert st.message == "Train finished successfully."
    assert st.epoch == 9 and st.max_epoch == 9
    assert st.progress == 1.0
    assert st.kpis["val_mAP50"] == pytest.approx(0.57)
    assert len(st.history) == 10
    assert st.history[4] == (4, {"train_loss": 6.0, "val_mAP50": 0.61, "val_mAP": 0.305})
    assert st.last_update == "5/1/2025 11:00:00"
    assert st.lines == 12 and st.skipped_lines == 0


def test_summarize_running_with_truncated_line():
    text = tao_status(10, kpis_map(), final=None, stop_after=3) + '{"date": "5/1/2025", "ti'
    st = summarize_status(text, task="train")
    assert st.status == "RUNNING" and st.started and not st.finished and st.running
    assert st.truncated
    assert st.epoch == 2 and st.max_epoch == 9
    assert st.progress == pytest.approx(0.3)
    assert st.eta == pytest.approx(7 * 13.0)
    assert st.time_per_epoch == pytest.approx(13.0)
    assert format_progress(st) == (
        "train: RUNNING epoch 3/10 (30%), ETA 0:01:31, train_loss=8, val_mAP50=0.41, "
        "val_mAP=0.205")
    assert format_progress(st, metrics=["val_mAP50"]) == (
        "train: RUNNING epoch 3/10 (30%), ETA 0:01:31, val_mAP50=0.41")


def test_summarize_failure():
    st = summarize_status(tao_status(10, kpis_map(), final="FAILURE", stop_after=4))
    assert st.failed and st.finished and st.status == "FAILURE"
    assert st.message == "CUDA out of memory."
    assert st.kpis["val_mAP50"] == 0.55  # sticky: the failure line has no kpi
    assert format_progress(st, task="train") == (
        "train: FAILURE epoch 4/10 (40%): CUDA out of memory.")


def test_summarize_empty_and_started_only():
    st = summarize_status("")
    assert not st.started and st.status is None and st.progress == 0.0
    assert format_progress(st, task="evaluate") == "evaluate: no status yet"
    st = summarize_status(tao_status(5, final=None, stop_after=0), task="evaluate")
    assert st.started and st.status == "STARTED" and st.progress is None
    assert format_progress(st) == "evaluate: STARTED"


def test_summarize_skipped_and_step_progress():
    st = summarize_status(json.dumps({"status": "SKIPPED", "message": "nothing to do"}))
    assert st.finished and not st.failed and st.progress == 1.0
    text = json.dumps({"status": "RUNNING", "step": 1200, "max_step": 4800, "eta": 90})
    st = summarize_status(text, task="gen_trt_engine")
    assert st.progress == pytest.approx(0.25) and st.eta == 90.0
    assert format_progress(st) == "gen_trt_engine: RUNNING step 1200/4800 (25%), ETA 0:01:30"


def test_sticky_dicts_and_resumed_run():
    lines = [
        {"status": "STARTED"},
        {"status": "RUNNING", "epoch": 0, "max_epoch": 4, "kpi": {"val_loss": 2.0},
         "categorical": {"ap_per_class": {"car": 0.3}}},
        {"status": "RUNNING", "epoch": 1, "max_epoch": 4, "kpi": {"val_loss": 1.5}},
        {"status": "STARTED", "message": "resumed"},
        {"status": "RUNNING", "epoch": 1, "max_epoch": 4, "kpi": {"val_loss": 1.4}},
    ]
    st = summarize_status("\n".join(json.dumps(x) for x in lines))
    assert st.categorical == {"ap_per_class": {"car": 0.3}}
    assert st.status == "RUNNING" and st.message == "resumed"
    assert metric_by_epoch(st.history, "val_loss") == {0: 2.0, 1: 1.4}  # later line wins


# --------------------------------------------------------------------------- metrics


def test_best_epoch_max_and_min_and_ties_to_later():
    st = summarize_status(tao_status(10, kpis_map()))
    # 0.61 at epochs 4 and 6 (not consecutive) -> the later one
    assert best_epoch(st.history, "val_mAP50", "max") == (6, 0.61)
    assert best_epoch(st.history, "train_loss", "min") == (9, 1.0)
    assert best_epoch(st.history, "val_mAP50", "min") == (0, 0.10)
    assert best_epoch(st.history, "mIoU", "max") is None
    assert best_epoch([], "val_mAP50", "max") is None


def test_direction_is_never_guessed():
    st = summarize_status(tao_status(3, kpis_map()))
    for bad in (None, "", "maximize", "loss"):
        with pytest.raises(MetricDirectionError, match="'max' or 'min'"):
            best_epoch(st.history, "val_mAP50", bad)
    assert issubclass(MetricDirectionError, TaoSkillsError)


def test_sticky_repeats_belong_to_the_validated_epoch():
    # validation every 3 epochs: epochs 2, 5, 8 carry new val values; others repeat them
    maps = {2: 0.5, 5: 0.7, 8: 0.6}
    kpis = {e: {"train_loss": 10.0 - e} for e in range(10)}
    for e, v in maps.items():
        kpis[e]["val_mAP50"] = v
    st = summarize_status(tao_status(10, kpis, val_interval=3))
    assert metric_by_epoch(st.history, "val_mAP50") == {2: 0.5, 5: 0.7, 8: 0.6}
    assert best_epoch(st.history, "val_mAP50", "max") == (5, 0.7)
    raw = metric_by_epoch(st.history, "val_mAP50", collapse_repeats=False)
    assert raw[6] == 0.7 and raw[7] == 0.7
    assert best_epoch(st.history, "val_mAP50", "max", collapse_repeats=False) == (7, 0.7)


def test_namespaced_metric_aliases():
    history = [(0, {"val/epe": "3.2", "val/d1": 0.2}), (1, {"val/epe": "2.9"}),
               (2, {"val/epe": 3.1})]
    assert best_epoch(history, "val_epe", "min") == (1, 2.9)
    assert best_epoch(history, "val/epe", "min") == (1, 2.9)
    assert best_epoch([(0, {"val_loss": 1.0}), (1, {"val_loss": 0.5})], "val/loss", "min") \
        == (1, 0.5)
    assert resolve_metric_key({"val_loss": 1, "val/loss": 2}, "val/loss") == "val/loss"
    assert resolve_metric_key({"val_mAP": 1}, "val_map") is None  # case matters
    # epe alone is not val/epe (test/epe could exist too): no guessing of namespaces
    assert best_epoch(history, "epe", "min") is None


def test_non_numeric_and_nan_values_ignored():
    history = [(0, {"m": "nan"}), (1, {"m": "n/a"}), (2, {"m": 0.3}), (3, {"m": float("inf")})]
    assert metric_by_epoch(history, "m") == {2: 0.3}


# --------------------------------------------------------------------------- misc


@pytest.mark.parametrize("value,seconds", [
    ("0:01:23.4", 83.4), ("1:00:00", 3600.0), ("1 day, 2:03:04", 93784.0), ("01:30", 90.0),
    (12, 12.0), ("12.5", 12.5), ("N/A", None), (None, None), (-1, None),
])
def test_parse_duration(value, seconds):
    result = parse_duration(value)
    assert result == (pytest.approx(seconds) if seconds is not None else None)


def test_format_duration():
    assert format_duration(130) == "0:02:10"
    assert format_duration(3725.6) == "1:02:06"
    assert format_duration(None) == "?"


def test_status_file_for():
    assert status_file_for("s3://b/results/job-1", "train") == "s3://b/results/job-1/train/status.json"
    assert status_file_for("s3://b/results/job-1/", "trt_evaluate") == \
        "s3://b/results/job-1/trt_evaluate/status.json"
    assert status_file_for("/data/results/j", "gen_trt_engine") == \
        "/data/results/j/gen_trt_engine/status.json"
    for task in ("train", "evaluate", "inference", "export", "gen_trt_engine", "trt_evaluate",
                 "trt_inference"):
        assert TASK_FOLDERS[task] == task
    with pytest.raises(TaoSkillsError, match="known tasks: train"):
        status_file_for("/r", "trian")
    with pytest.raises(TaoSkillsError, match="empty"):
        status_file_for("", "train")


def test_one_ranking_rule_for_every_consumer():
    from tao_sdk.results import MetricDirectionError, as_loss, best_item, better, best_of

    assert better(0.7, 0.6, "max") and not better(0.6, 0.7, "max") and better(0.2, 0.3, "min")
    assert not better(0.5, 0.5, "max") and better(0.5, 0.5, "max", ties=True) and better(1.0, None, "min")
    assert as_loss(0.9, "max") == -0.9 and as_loss(0.9, "min") == 0.9
    trials = [{"id": 1, "value": 0.3}, {"id": 2, "value": 0.1}, {"id": 3, "value": 0.1}]
    assert best_item(trials, "min", key=lambda t: t["value"])["id"] == 2  # the first of equals
    assert best_item(trials, "max", key=lambda t: t["value"])["id"] == 1 and best_item([], "max") is None
    assert best_of({0: 0.1, 1: 0.1}, "min") == (1, 0.1)  # epochs: the later of equals
    for bad in ("maximize", None):
        with pytest.raises(MetricDirectionError, match="'max' or 'min'"):
            better(1.0, 2.0, bad)
