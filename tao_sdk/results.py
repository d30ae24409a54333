"""The TAO results-folder contract, parsing side.

A TAO container writes, for every task it runs, ``<results_dir>/<task>/status.json``: JSON Lines
appended by rank 0 while the task runs. This module turns the *text* of such a file into
Python objects, so it works the same for local files and S3 objects (the caller reads the text;
nothing here touches storage).

Typical use::

    text = storage.read_text(status_file_for(results_uri, "train"))
    st = summarize_status(text, task="train")
    print(format_progress(st))                 # train: RUNNING epoch 3/10 (30%), ETA 0:02:10, ...
    best = best_epoch(st.history, "val_mAP50", "max")   # (epoch, value) or None

Line fields (all optional): ``date``, ``time``, ``status`` (STARTED, RUNNING, SUCCESS, FAILURE,
SKIPPED), ``verbosity``, ``message``, ``epoch`` (from 0), ``max_epoch`` (= num_epochs - 1),
``step``, ``max_step``, ``time_per_epoch``, ``eta`` and the sticky dicts ``kpi``, ``graphical``,
``categorical`` (TAO repeats them on every line until they are replaced).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tao_sdk.errors import TaoSkillsError

__all__ = [
    "STATUS_VALUES",
    "FINAL_STATUSES",
    "TASK_FOLDERS",
    "MetricDirectionError",
    "check_direction",
    "StatusLines",
    "TaskStatus",
    "parse_status_lines",
    "summarize_status",
    "parse_duration",
    "format_duration",
    "resolve_metric_key",
    "metric_by_epoch",
    "best_epoch",
    "best_of",
    "format_progress",
    "status_file_for",
    "failure_line",
]

#: Every ``status`` value TAO writes.
STATUS_VALUES = ("STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED")
#: Statuses after which the task writes nothing more (unless it is restarted).
FINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "SKIPPED"})

#: Task name -> sub-folder of the job's results folder that holds the task's ``status.json``
#: (TAO default when ``<task>.results_dir`` is not set). TensorRT deploy tasks have their own
#: folders (``gen_trt_engine``, ``trt_evaluate``, ``trt_inference``).
TASK_FOLDERS: dict[str, str] = {
    "train": "train",
    "evaluate": "evaluate",
    "inference": "inference",
    "export": "export",
    "gen_trt_engine": "gen_trt_engine",
    "trt_evaluate": "trt_evaluate",
    "trt_inference": "trt_inference",
    "distill": "distill",
    "quantize": "quantize",
    "dataset_convert": "dataset_convert",
    "prune": "prune",
    "retrain": "retrain",
    "validate_images": "validate_images",
}

_STICKY_KEYS = ("kpi", "graphical", "categorical")
_NUMERIC_DICT_KEYS = ("kpi", "graphical")


class MetricDirectionError(TaoSkillsError, ValueError):
    """``direction`` was not ``"max"`` or ``"min"``.

    The direction of a metric is never guessed from its name (stereo ``epe`` is an error to
    minimise although it has no "loss" in it): pass it explicitly, usually from the skill's
    metric table.
    """


class StatusLines(list):
    """A ``list[dict]`` of parsed status lines, plus what had to be skipped.

    Attributes:
        skipped: number of non-empty lines that were not a JSON object (garbage, partial
            writes in the middle of the file). A truncated *last* line is not counted here.
        truncated: True when the last line is an incomplete JSON object (the job is still
            writing it); that line is ignored.
    """

    skipped: int = 0
    truncated: bool = False


def _to_number(value: Any) -> Any:
    """Return ``value`` as a float when it is an int/float or a numeric string, else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        if s:
            try:
                return float(s)
            except ValueError:
                return value
    return value


def _to_int(value: Any) -> int | None:
    """Coerce an epoch/step value (int, integral float, numeric string) to int, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f == int(f) else None
    return None


def parse_status_lines(text: str | bytes | None) -> StatusLines:
    """Parse the text of a TAO ``status.json`` (JSON Lines) into a list of dicts.

    Tolerant by design, because the file is read while the job appends to it:

    - blank lines are ignored;
    - a last line that is not valid JSON and has no trailing newline is a line still being
      written: it is dropped and ``result.truncated`` is set;
    - any other line that is not a JSON object is skipped and counted in ``result.skipped``.

    In every returned line, the values of the ``kpi`` and ``graphical`` dicts that are numbers or
    numeric strings (``"0.53"``) are converted to ``float``; other values are kept as they are.
    Lines are returned in file order; nothing else is changed (sticky dicts are *not* filled in
    here, see :func:`summarize_status`).

    Args:
        text: the file content (``str`` or UTF-8 ``bytes``); ``None`` or ``""`` -> no lines.

    Returns:
        :class:`StatusLines` (a ``list[dict]`` with ``.skipped`` and ``.truncated``).
    """
    result = StatusLines()
    result.skipped = 0
    result.truncated = False
    if not text:
        return result
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    raw_lines = text.splitlines()
    ends_with_newline = text.endswith(("\n", "\r"))
    last_index = max((i for i, ln in enumerate(raw_lines) if ln.strip()), default=-1)
    for i, raw in enumerate(raw_lines):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
            if i == last_index and not ends_with_newline and line.startswith("{"):
                result.truncated = True
                continue
        if not isinstance(obj, dict):
            result.skipped += 1
            continue
        for key in _NUMERIC_DICT_KEYS:
            if isinstance(obj.get(key), dict):
                obj[key] = {k: _to_number(v) for k, v in obj[key].items()}
        result.append(obj)
    return result


_DURATION_RE = re.compile(
    r"^\s*(?:(?P<days>-?\d+)\s+days?,\s*)?"
    r"(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)\s*$"
)


def parse_duration(value: Any) -> float | None:
    """Convert a TAO ``eta`` / ``time_per_epoch`` value to seconds.

    Accepts a number (seconds), a numeric string (``"12.5"``), or a ``datetime.timedelta``
    string as TAO writes it (``"0:01:23.4"``, ``"1 day, 2:03:04"``, ``"01:23"`` = mm:ss).
    Returns ``None`` for anything else (``None``, ``"N/A"``, negative or non-finite values).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        f = float(value)
        return f if math.isfinite(f) and f >= 0 else None
    if not isinstance(value, str):
        return None
    s = value.strip()
    try:
        f = float(s)
    except ValueError:
        pass
    else:
        return f if math.isfinite(f) and f >= 0 else None
    m = _DURATION_RE.match(s)
    if not m:
        return None
    total = int(m.group("days") or 0) * 86400 + int(m.group("h") or 0) * 3600
    total += int(m.group("m")) * 60 + float(m.group("s"))
    return float(total) if total >= 0 else None


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``H:MM:SS`` (``130`` -> ``"0:02:10"``); ``None`` -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    total = int(round(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


@dataclass
class TaskStatus:
    """Summary of one task's ``status.json`` (see :func:`summarize_status`).

    Attributes:
        task: task name given to :func:`summarize_status` (``"train"``...) or ``None``.
        status: last ``status`` seen (STARTED, RUNNING, SUCCESS, FAILURE, SKIPPED) or ``None``.
        message: last ``message`` seen.
        epoch: last epoch seen (0-based, as TAO writes it).
        max_epoch: last ``max_epoch`` seen (= num_epochs - 1).
        step, max_step: last step / max_step seen.
        eta: seconds left, when parseable; ``eta_raw`` keeps the value as written.
        time_per_epoch: seconds per epoch, when parseable.
        kpis: the latest ``kpi`` dict (numeric values as floats).
        graphical, categorical: the latest ``graphical`` / ``categorical`` dicts.
        weights: the ``weights`` field of every line that reports a weights load (what was
            loaded, skipped with the reason, left at init; :mod:`tao_sdk.worker.engine.loadreport`).
        history: ``(epoch, kpi dict)`` for every line that carries both an epoch and a kpi dict,
            in file order (a resumed job may repeat epochs; later lines win in
            :func:`metric_by_epoch`).
        started: at least one valid status line was written.
        finished: the last status is SUCCESS, FAILURE or SKIPPED.
        failed: the last status is FAILURE.
        progress: 0..1. 1.0 after SUCCESS/SKIPPED; otherwise completed epochs
            ``(epoch + 1) / (max_epoch + 1)`` (a per-epoch line is written when the epoch ends),
            else ``step / max_step``; 0.0 before any line; ``None`` when unknown.
        last_update: ``"<date> <time>"`` of the last line that had them.
        lines: number of valid lines; skipped_lines: garbage lines; truncated: the last line
            was still being written.
    """

    task: str | None = None
    status: str | None = None
    message: str | None = None
    epoch: int | None = None
    max_epoch: int | None = None
    step: int | None = None
    max_step: int | None = None
    eta: float | None = None
    eta_raw: Any = None
    time_per_epoch: float | None = None
    kpis: dict[str, Any] = field(default_factory=dict)
    graphical: dict[str, Any] = field(default_factory=dict)
    categorical: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False
    finished: bool = False
    failed: bool = False
    progress: float | None = 0.0
    last_update: str | None = None
    lines: int = 0
    skipped_lines: int = 0
    truncated: bool = False

    @property
    def running(self) -> bool:
        """True when the task has started and has not finished."""
        return self.started and not self.finished


def summarize_status(text: str | bytes | None, task: str | None = None) -> TaskStatus:
    """Summarise the text of one task's ``status.json`` into a :class:`TaskStatus`.

    Uses :func:`parse_status_lines` (so blank, garbage and truncated lines are tolerated) and
    keeps the *last* value seen of every field; ``kpi``/``graphical``/``categorical`` are sticky
    (a line without them keeps the previous dict). An empty text gives ``started=False``,
    ``status=None``, ``progress=0.0``.

    Args:
        text: the content of ``status.json`` (``str`` or ``bytes``).
        task: optional task name, only used for display by :func:`format_progress`.
    """
    lines = parse_status_lines(text)
    st = TaskStatus(task=task, lines=len(lines), skipped_lines=lines.skipped,
                    truncated=lines.truncated)
    for obj in lines:
        st.started = True
        status = obj.get("status")
        if isinstance(status, str) and status.strip():
            st.status = status.strip().upper()
        if obj.get("message") is not None:
            st.message = str(obj["message"])
        for name in ("epoch", "max_epoch", "step", "max_step"):
            if name in obj:
                value = _to_int(obj[name])
                if value is not None:
                    setattr(st, name, value)
        if obj.get("eta") is not None:
            st.eta_raw = obj["eta"]
            st.eta = parse_duration(obj["eta"])
        if obj.get("time_per_epoch") is not None:
            tpe = parse_duration(obj["time_per_epoch"])
            if tpe is not None:
                st.time_per_epoch = tpe
        if isinstance(obj.get("kpi"), dict):
            st.kpis = dict(obj["kpi"])
        if isinstance(obj.get("graphical"), dict):
            st.graphical = dict(obj["graphical"])
        if isinstance(obj.get("categorical"), dict):
            st.categorical = dict(obj["categorical"])
        if isinstance(obj.get("weights"), dict):
            st.weights.append(dict(obj["weights"]))
        if obj.get("date") or obj.get("time"):
            st.last_update = " ".join(str(obj[k]) for k in ("date", "time") if obj.get(k))
        line_epoch = _to_int(obj.get("epoch"))
        if line_epoch is not None and isinstance(obj.get("kpi"), dict):
            st.history.append((line_epoch, dict(obj["kpi"])))
    st.finished = st.status in FINAL_STATUSES
    st.failed = st.status == "FAILURE"
    st.progress = _progress(st)
    return st


def _progress(st: TaskStatus) -> float | None:
    if not st.started:
        return 0.0
    if st.status in ("SUCCESS", "SKIPPED"):
        return 1.0
    if st.epoch is not None and st.max_epoch is not None and st.max_epoch >= 0:
        return min(1.0, max(0.0, (st.epoch + 1) / (st.max_epoch + 1)))
    if st.step is not None and st.max_step:
        return min(1.0, max(0.0, st.step / st.max_step))
    return None


def _normalise_key(key: str) -> str:
    return key.replace("/", "_")


def resolve_metric_key(kpis: dict[str, Any], metric: str) -> str | None:
    """Return the key of ``kpis`` that holds ``metric``, or ``None``.

    The exact key wins. Otherwise ``'/'`` and ``'_'`` are treated as the same character, because
    some TAO backends namespace their keys: metric ``val_loss`` matches kpi ``val/loss`` and
    metric ``val/epe`` matches kpi ``val_epe``. Case is significant (``val_mAP`` is not
    ``val_map``). If several keys normalise to the metric, the first in sorted order is used.
    """
    if metric in kpis:
        return metric
    target = _normalise_key(metric)
    matches = sorted(k for k in kpis if isinstance(k, str) and _normalise_key(k) == target)
    return matches[0] if matches else None


def _finite_float(value: Any) -> float | None:
    v = _to_number(value)
    if isinstance(v, float) and math.isfinite(v):
        return v
    return None


def metric_by_epoch(
    history: Iterable[tuple[int, dict[str, Any]]],
    metric: str,
    *,
    collapse_repeats: bool = True,
) -> dict[int, float]:
    """Map epoch -> value of ``metric`` from a :attr:`TaskStatus.history`.

    - The metric key is resolved per line with :func:`resolve_metric_key` (``val_loss`` <->
      ``val/loss``). Lines without the metric, or with a non-numeric / NaN / infinite value,
      are ignored.
    - When an epoch appears on several lines (step lines, a resumed run), the last line wins.
    - ``collapse_repeats`` (default True): TAO's ``kpi`` dict is sticky, so when validation
      runs every N epochs the epochs in between repeat the last validated value. A value equal
      to the one of the immediately preceding epoch is therefore attributed to the epoch where
      it first appeared, and the repeating epochs are dropped (their weights were never
      measured). Pass ``False`` to keep every epoch.

    Returns an empty dict when no line carries the metric.
    """
    per_epoch: dict[int, float] = {}
    for epoch, kpis in history:
        if not isinstance(kpis, dict):
            continue
        key = resolve_metric_key(kpis, metric)
        if key is None:
            continue
        value = _finite_float(kpis[key])
        if value is None:
            continue
        per_epoch[int(epoch)] = value
    ordered = dict(sorted(per_epoch.items()))
    if not collapse_repeats:
        return ordered
    collapsed: dict[int, float] = {}
    prev_epoch: int | None = None
    prev_value: float | None = None
    for epoch, value in ordered.items():
        if prev_epoch is not None and epoch == prev_epoch + 1 and value == prev_value:
            prev_epoch = epoch  # a sticky repeat: keep the first epoch of the run
            continue
        collapsed[epoch] = value
        prev_epoch, prev_value = epoch, value
    return collapsed


def check_direction(direction: Any) -> str:
    """``direction`` when it is ``"max"`` or ``"min"``; MetricDirectionError otherwise. The one
    rule of the SDK (results, checkpoint selection, AutoML algorithms): the direction is never
    guessed from a metric name nor from a spelling; take it from the skill's metric table
    (``skill_info.yaml`` ``monitoring_metric.direction``)."""
    if direction not in ("max", "min"):
        raise MetricDirectionError(
            f"direction must be 'max' or 'min', got {direction!r}; take it from the skill's "
            "metric table / monitoring_metric.direction (it is never guessed from the metric name)"
        )
    return direction


# ONE rule for "which value is better", by the skill's monitoring metric direction: used by
# checkpoint selection, status summaries, the AutoML controller, algorithms and reports.


def as_loss(value: float, direction: str) -> float:
    """``value`` as a quantity to minimise: ``-value`` for ``"max"`` metrics, ``value`` for
    ``"min"`` ones (sort keys, optimisers). Raises MetricDirectionError for another direction."""
    return -value if check_direction(direction) == "max" else value


def better(a: float, b: float | None, direction: str, *, ties: bool = False) -> bool:
    """True when ``a`` is better than ``b`` by ``direction`` (``"max"``: higher, ``"min"``:
    lower); ``ties=True`` counts an equal value as better (the later of equals wins). Anything
    beats ``b=None``. Raises MetricDirectionError for another direction."""
    if b is None:
        check_direction(direction)
        return True
    la, lb = as_loss(a, direction), as_loss(b, direction)
    return la <= lb if ties else la < lb


def best_item(items: Iterable[Any], direction: str, key: Any = None) -> Any:
    """The best of ``items`` by ``key(item)`` (the item itself when ``key`` is None) and
    ``direction``; the first of equals; ``None`` when empty."""
    best, best_value = None, None
    for item in items:
        value = item if key is None else key(item)
        if best_value is None or better(value, best_value, direction):
            best, best_value = item, value
    return best


def best_epoch(
    history: Iterable[tuple[int, dict[str, Any]]],
    metric: str,
    direction: str,
    *,
    collapse_repeats: bool = True,
) -> tuple[int, float] | None:
    """Return ``(epoch, value)`` of the best ``metric`` in ``history``, or ``None``.

    Args:
        history: :attr:`TaskStatus.history` (list of ``(epoch, kpi dict)``).
        metric: KPI name (``val_mAP50``, ``val_loss``, ``val/epe``...); ``'/'`` and ``'_'`` are
            interchangeable when the exact key is absent.
        direction: ``"max"`` (higher is better, e.g. mAP, mIoU) or ``"min"`` (lower is better,
            e.g. loss, epe). Required: it is never guessed from the name.
        collapse_repeats: see :func:`metric_by_epoch` (sticky KPI repeats belong to the epoch
            that was validated).

    Ties go to the later epoch. ``None`` when no line carries the metric.

    Raises:
        MetricDirectionError: ``direction`` is not ``"max"`` or ``"min"``.
    """
    check_direction(direction)
    values = metric_by_epoch(history, metric, collapse_repeats=collapse_repeats)
    return best_of(values, direction)


def best_of(values: dict[int, float], direction: str) -> tuple[int, float] | None:
    """Best ``(epoch, value)`` of an epoch -> value map (ties -> later epoch); ``None`` if empty."""
    check_direction(direction)
    best: tuple[int, float] | None = None
    for epoch in sorted(values):
        if better(values[epoch], best[1] if best else None, direction, ties=True):
            best = (epoch, values[epoch])
    return best


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_progress(
    task_status: TaskStatus,
    *,
    task: str | None = None,
    metrics: Iterable[str] | None = None,
) -> str:
    """One human-readable line for a :class:`TaskStatus`.

    Examples::

        train: RUNNING epoch 3/10 (30%), ETA 0:02:10, train_loss=1.23, val_mAP50=0.412
        train: SUCCESS epoch 10/10 (100%), val_mAP50=0.61
        evaluate: FAILURE: CUDA out of memory
        train: no status yet

    Epochs are shown 1-based (``epoch 3/10`` = TAO ``epoch 2``, ``max_epoch 9``). Step
    progress (``step 1200/5000``) is shown when there is no epoch information.

    Args:
        task_status: the summary from :func:`summarize_status`.
        task: label to print; defaults to ``task_status.task`` or ``"task"``.
        metrics: only show these KPI names (resolved like :func:`resolve_metric_key`);
            default: every numeric KPI of the latest kpi dict.
    """
    st = task_status
    label = task or st.task or "task"
    if not st.started:
        return f"{label}: no status yet"
    parts: list[str] = []
    head = f"{label}: {st.status or 'UNKNOWN'}"
    if st.epoch is not None and st.max_epoch is not None:
        head += f" epoch {st.epoch + 1}/{st.max_epoch + 1}"
    elif st.epoch is not None:
        head += f" epoch {st.epoch + 1}"
    elif st.step is not None and st.max_step:
        head += f" step {st.step}/{st.max_step}"
    if st.progress is not None and (st.epoch is not None or st.step is not None
                                    or st.status in ("SUCCESS", "SKIPPED")):
        head += f" ({st.progress * 100:.0f}%)"
    if st.failed and st.message:
        return f"{head}: {st.message}"
    parts.append(head)
    if not st.finished and st.eta is not None:
        parts.append(f"ETA {format_duration(st.eta)}")
    if metrics is None:
        shown = [(k, v) for k, v in st.kpis.items() if isinstance(v, (int, float))
                 and not isinstance(v, bool)]
    else:
        shown = []
        for name in metrics:
            key = resolve_metric_key(st.kpis, name)
            if key is not None:
                shown.append((key, st.kpis[key]))
    if shown:
        parts.append(", ".join(f"{k}={_fmt_value(v)}" for k, v in shown))
    return ", ".join(parts)


def failure_line(message: str) -> str:
    """One closing ``FAILURE`` status.json line (JSON, no newline) with ``message``: what the SDK
    appends when a job's processes died before they could write one."""
    import datetime as _dt

    now = _dt.datetime.now()
    return json.dumps({"date": f"{now.month}/{now.day}/{now.year}",
                       "time": f"{now.hour}:{now.minute:02d}:{now.second:02d}",
                       "status": "FAILURE", "verbosity": "ERROR", "message": message})


def status_file_for(results_uri: str, task: str) -> str:
    """Return ``<results_uri>/<task folder>/status.json`` for a job's results folder.

    ``results_uri`` may be an ``s3://bucket/prefix`` URI or a local path; the parts are joined
    with ``'/'`` (a trailing ``'/'`` on ``results_uri`` is ignored). ``task`` is a key of
    :data:`TASK_FOLDERS` (``train``, ``evaluate``, ``inference``, ``export``, ``gen_trt_engine``,
    ``trt_evaluate``, ``trt_inference``...). If the spec set ``<task>.results_dir``, read that
    folder's ``status.json`` instead.

    Raises:
        TaoSkillsError: empty ``results_uri`` or unknown ``task`` (the message lists the known
            tasks).
    """
    if not results_uri or not str(results_uri).strip():
        raise TaoSkillsError("results_uri is empty; pass the job's results folder "
                             "(<storage root>/results/<job_id>)")
    folder = TASK_FOLDERS.get(task)
    if folder is None:
        raise TaoSkillsError(
            f"unknown task {task!r} for a status file; known tasks: {', '.join(TASK_FOLDERS)}"
        )
    base = str(results_uri)
    stripped = base.rstrip("/")
    if not stripped or stripped.endswith(":/") or stripped.endswith(":"):
        stripped = base  # keep 's3://bucket/' style roots intact below
        stripped = stripped if stripped.endswith("/") else stripped + "/"
        return f"{stripped}{folder}/status.json"
    return f"{stripped}/{folder}/status.json"
