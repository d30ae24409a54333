"""AutoML results for people and agents: the trial table and a metric-per-trial plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import results
from ..errors import TaoSkillsError
from ..jobstore import JobRecord
from ..models import Trial, TrialTable


def trial_rows(record: JobRecord) -> list[dict[str, Any]]:
    """One dict per trial, in trial order: trial, child job, status, budget, value, best epoch,
    params, error."""
    if record.kind != "automl":
        raise TaoSkillsError(f"{record.id} is not an AutoML job (kind {record.kind})")
    rows = []
    for key in sorted(record.result.get("trials") or {}, key=int):
        t = record.result["trials"][key]
        rows.append({"trial": int(key), "child_job": t.get("child_id"), "status": t.get("status"),
                     "budget_epochs": t.get("budget_epochs"), "value": t.get("value"),
                     "best_epoch": t.get("best_epoch"), "params": t.get("params") or {},
                     "error": t.get("error")})
    return rows


def trial_table(record: JobRecord) -> TrialTable:
    """The typed trial table of an AutoML job (:class:`tao_sdk.models.TrialTable`): every trial
    and the best child, value, epoch and params."""
    res = record.result
    return TrialTable(job=record.id, status=record.status.value, metric=res.get("metric"),
                      direction=res.get("direction"), best_child_id=res.get("best_child_id"),
                      best_params=res.get("best_params"), best_value=res.get("best_value"),
                      best_epoch=res.get("best_epoch"), trials=[Trial(**row) for row in trial_rows(record)])


def progress_line(record: JobRecord) -> str:
    """One line for an AutoML job: trials finished / planned, running, best so far."""
    trials = list((record.result.get("trials") or {}).values())
    settings = record.result.get("settings") or {}
    metric = record.result.get("metric", "metric")
    done = [t for t in trials if t.get("status") in ("ok", "failed")]
    running = [t for t in trials if t.get("status") in ("running", "submitting")]
    ok = [t for t in done if t.get("value") is not None]
    line = (f"automl {settings.get('algorithm', '')}: {len(done)} trial(s) done"
            + (f" of {settings['max_recommendations']} planned" if settings.get("max_recommendations") else "")
            + f", {len(running)} running")
    if ok:
        best = results.best_item(ok, record.result.get("direction", "max"), key=lambda t: t["value"])
        line += f", best {metric}={best['value']:.4g} ({best.get('child_id')})"
    failed = len(done) - len(ok)
    if failed:
        line += f", {failed} failed"
    if record.result.get("interrupted"):
        line += " [controller stopped: `tao-skills automl resume " + record.id + "`]"
    return line


def format_trial_table(record: JobRecord) -> str:
    """The trial table as aligned text, best trial marked with '*'."""
    rows = trial_rows(record)
    if not rows:
        return "no trials yet"
    metric = record.result.get("metric", "metric")
    best = record.result.get("best_trial")
    names = sorted({k for r in rows for k in r["params"]})
    header = ["", "TRIAL", "JOB", "STATUS", "EPOCHS", metric.upper(), "BEST_EPOCH"] + names
    lines = []
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        params = [_fmt(r["params"].get(n)) for n in names]
        lines.append(["*" if r["trial"] == best else "", str(r["trial"]), r["child_job"] or "-", r["status"],
                      str(r["budget_epochs"]), value, str(r["best_epoch"] if r["best_epoch"] is not None else "-")]
                     + params)
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    failed = [r for r in rows if r["error"]]
    out += [f"trial {r['trial']} failed: {r['error']}" for r in failed]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def plot_trials(record: JobRecord, path: str | Path) -> Path:
    """Write a PNG of the metric per trial (failed trials marked) and the best-so-far curve."""
    from ..extras import require_extra

    require_extra("matplotlib", "automl", "tao-skills automl plot").use("Agg")
    plt = require_extra("matplotlib.pyplot", "automl", "tao-skills automl plot")

    rows = trial_rows(record)
    metric = record.result.get("metric", "metric")
    direction = record.result.get("direction", "max")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ok = [(r["trial"], r["value"]) for r in rows if r["value"] is not None]
    failed = [r["trial"] for r in rows if r["status"] == "failed"]
    if ok:
        ax.scatter([t for t, _ in ok], [v for _, v in ok], label=f"{metric} (best epoch of each trial)", zorder=3)
        best, curve = None, []
        for t, v in ok:
            best = v if results.better(v, best, direction) else best
            curve.append((t, best))
        ax.step([t for t, _ in curve], [v for _, v in curve], where="post", color="tab:green", label="best so far")
    if failed:
        low = min((v for _, v in ok), default=0.0)
        ax.scatter(failed, [low] * len(failed), marker="x", color="tab:red", label="failed", zorder=3)
    ax.set_xlabel("trial")
    ax.set_ylabel(metric + (" (higher is better)" if direction == "max" else " (lower is better)"))
    ax.set_title(f"AutoML {record.result.get('settings', {}).get('algorithm', '')} - {record.id}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
