"""Pictures of a job (``tao-skills plot JOB``, :func:`plot_job`, the MCP tool ``plot_job``).

What is drawn depends on the job (one PNG, one panel per picture that has data):

- AutoML jobs: the metric per trial and the best so far (:func:`tao_sdk.automl.report.plot_trials`).
- every other job, from its ``status.json``: the per-epoch loss curves (``*loss*`` KPIs, train and
  validation) and the other KPI curves with the best epoch of the skill's metric marked (train,
  trials, distill...); a job with no epochs (evaluate) gets a bar chart of its KPIs;
- the ``categorical`` dicts of the last status line as bars (per-class AP of detection evaluate,
  per-class IoU of segmentation evaluate);
- ``pr_curves.json`` of the task folder (detection evaluate): precision-recall per class at IoU 0.5;
- ``error_histogram.json`` of the task folder (stereo evaluate): valid pixels per disparity-error bin.

Needs the ``automl`` extra (matplotlib); without it one line names the ``pip install``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import results
from .errors import TaoSkillsError
from .storage import StorageError, storage_for

__all__ = ["PlotResult", "PANELS", "plot_job"]


@dataclass
class PlotResult:
    """What :func:`plot_job` wrote: ``plot`` (the PNG path), ``panels`` (their names, in order),
    ``best_epoch`` (of the skill's metric, when the job has epochs)."""

    plot: str
    panels: list[str] = field(default_factory=list)
    best_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``tao-skills plot --json``, the MCP tool)."""
        return {"plot": self.plot, "panels": list(self.panels), "best_epoch": self.best_epoch}


@dataclass
class _View:
    """One job as the panels see it."""

    record: Any
    status: results.TaskStatus
    metric: str | None
    direction: str

    def artifact(self, name: str) -> Any:
        """The JSON file ``name`` of the job's task folder, or ``None`` when absent."""
        storage = storage_for(self.record.results_uri)
        try:
            text = storage.read_text(storage.join(self.record.results_uri, self.status.task or
                                                  self.record.action, name))
        except StorageError:
            return None
        return json.loads(text)

    def epochs(self, key: str) -> dict[int, float]:
        return results.metric_by_epoch(self.status.history, key)


# A panel: (view) -> draw function ``(ax) -> None`` or None when the job has nothing for it.
_Draw = Callable[[Any], None]


def _curve_keys(view: _View, losses: bool) -> list[str]:
    keys: list[str] = []
    for _, kpi in view.status.history:
        for key, value in kpi.items():
            if key not in keys and isinstance(value, float) and ("loss" in key.lower()) == losses:
                keys.append(key)
    return [k for k in keys if len(view.epochs(k)) >= 1]


def _curves(view: _View, losses: bool) -> _Draw | None:
    keys = _curve_keys(view, losses)
    if not keys:
        return None
    best = (results.best_epoch(view.status.history, view.metric, view.direction)
            if view.metric and not losses else None)

    def draw(ax) -> None:
        for key in keys:
            points = sorted(view.epochs(key).items())
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", label=key)
        if best is not None:
            ax.axvline(best[0], color="tab:green", linestyle="--",
                       label=f"best {view.metric}={best[1]:.4g} (epoch {best[0]})")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("loss" if losses else "KPI")
        ax.set_title("losses" if losses else "KPIs")
    return draw


def _kpi_bars(view: _View) -> _Draw | None:
    if view.status.history or not view.status.kpis:
        return None  # jobs with epochs get curves
    kpis = {k: v for k, v in view.status.kpis.items() if isinstance(v, float)}
    return _bars(kpis, "KPIs") if kpis else None


def _bars(values: dict[str, float], title: str) -> _Draw:
    def draw(ax) -> None:
        names = list(values)
        ax.bar(range(len(names)), [values[n] for n in names], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    return draw


def _categorical(view: _View) -> list[tuple[str, _Draw]]:
    out = []
    for name, table in sorted(view.status.categorical.items()):
        if isinstance(table, dict):
            values = {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float))}
            if values:
                out.append((f"categorical:{name}", _bars(values, name)))
    return out


def _pr_curves(view: _View) -> _Draw | None:
    data = view.artifact("pr_curves.json")
    if not data or not data.get("precision"):
        return None

    def draw(ax) -> None:
        for name, curve in data["precision"].items():
            ax.plot(data["recall"], curve, label=str(name))
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"precision-recall (IoU {data.get('iou', 0.5)})")
    return draw


def _error_histogram(view: _View) -> _Draw | None:
    data = view.artifact("error_histogram.json")
    if not data or not sum(data.get("counts") or []):
        return None

    def draw(ax) -> None:
        edges, counts = data["edges"], data["counts"]
        labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])] + [f">{edges[-1]:g}"]
        total = float(sum(counts))
        ax.bar(range(len(counts)), [c / total for c in counts], color="tab:orange")
        ax.set_xticks(range(len(counts)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(f"absolute disparity error ({data.get('unit', 'px')})")
        ax.set_ylabel("fraction of valid pixels")
        ax.set_title("disparity error histogram")
    return draw


#: Panel name -> ``(view) -> [(name, draw)]``; the PNG has one row per panel with data.
PANELS: dict[str, Callable[[_View], list[tuple[str, _Draw]]]] = {
    "losses": lambda v: _one("losses", _curves(v, True)),
    "kpis": lambda v: _one("kpis", _curves(v, False)),
    "kpi_bars": lambda v: _one("kpi_bars", _kpi_bars(v)),
    "categorical": _categorical,
    "pr_curves": lambda v: _one("pr_curves", _pr_curves(v)),
    "error_histogram": lambda v: _one("error_histogram", _error_histogram(v)),
}


def _one(name: str, draw: _Draw | None) -> list[tuple[str, _Draw]]:
    return [(name, draw)] if draw is not None else []


def _pyplot():
    from .extras import require_extra

    require_extra("matplotlib", "automl", "tao-skills plot").use("Agg")
    return require_extra("matplotlib.pyplot", "automl", "tao-skills plot")


def _plot_status(record, out: Path, bank) -> PlotResult:
    from .jobs import task_status

    status = task_status(record)
    if status is None or not status.lines:
        raise TaoSkillsError(f"{record.id} has no status.json yet (status {record.status.value}); "
                             f"plot it once it has run: `tao-skills jobs {record.id}`")
    try:
        metric, direction = bank.get(record.skill).metric
    except (TaoSkillsError, AttributeError):  # a skill without a train metric: no best epoch
        metric, direction = None, "max"
    view = _View(record, status, metric, direction)
    panels = [p for make in PANELS.values() for p in make(view)]
    if not panels:
        raise TaoSkillsError(f"{record.id} ({record.action}) has no KPIs to plot yet")
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.2 * len(panels)), dpi=100, squeeze=False)
    for (name, draw), ax in zip(panels, axes[:, 0]):
        draw(ax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
    fig.suptitle(f"{record.skill} {record.action} - {record.id}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    best = results.best_epoch(status.history, metric, direction) if metric and status.history else None
    return PlotResult(str(out), [name for name, _ in panels], best[0] if best else None)


def _plot_automl(record, out: Path, bank) -> PlotResult:
    from .automl.report import plot_trials

    return PlotResult(str(plot_trials(record, out)), ["trials"], record.result.get("best_epoch"))


#: Job kind -> plotter; kinds not listed are plotted from their status.json.
_BY_KIND: dict[str, Callable[[Any, Path, Any], PlotResult]] = {"automl": _plot_automl}


def plot_job(job_id: str, output: str | Path | None = None, *, workspace=None) -> PlotResult:
    """Write a PNG of job ``job_id`` (see the module doc for what each kind of job gets) to
    ``output`` (default ``<job id>.png`` in the current folder); returns what was drawn.

    Raises TaoSkillsError when the job has nothing to plot yet (the message says when to retry),
    MissingExtraError without matplotlib (``pip install 'tao-skill-bank[automl]'``).
    """
    from .bank import get_bank
    from .jobs import get_job

    job = get_job(job_id, workspace=workspace)
    out = Path(output or f"{job.id}.png")
    plotter = _BY_KIND.get(job.record.kind, _plot_status)
    return plotter(job.record, out, get_bank())
