"""TAO artifact naming and parent-model selection.

Works on *listings* (lists of URI/path strings), never on storage itself, so the same code
serves local folders and S3 prefixes: the caller lists the parent job's results folder
recursively and passes the strings in.

TAO names (see TAO_FACTS "Results-folder contract"):

- ``model_epoch_005.pth`` - RT-DETR, epoch 5 (0-based, as in ``status.json``);
- ``model_epoch_005-EMA.pth`` - the EMA weights of epoch 5;
- ``model_epoch_005_step_01200.pth`` - epoch 5, global step 1200 (Lightning models);
  the step never stands in for an epoch;
- ``<prefix>_model_latest.pth`` (``rtdetr_``, ``dd_``, ``oneformer_``, ``dn_``) or
  ``model_latest.pth`` - a copy of / link to the newest checkpoint, epoch unknown;
- extensions ``.pth``, ``.ckpt``, ``.tlt``;
- export writes an ``.onnx`` file (default ``<results>/model.onnx``), gen_trt_engine an
  ``.engine`` (or ``.trt`` / ``.plan``) file (default ``<results>/model.engine``).

Typical use::

    mode = mode_for("evaluate", "train")                       # -> "best"
    st = summarize_status(read(status_file_for(parent_results, "train")))
    sel = select_checkpoint(listing, mode=mode, history=st.history,
                            metric="val_mAP50", direction="max",
                            where=f"job {parent_id} results {parent_results}")
    spec["evaluate"]["checkpoint"] = sel.uri
    if sel.warning: print(sel.warning)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tao_sdk.errors import ParentModelError
from tao_sdk.results import TaskStatus, check_direction, best_of, metric_by_epoch

__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "ONNX_EXTENSIONS",
    "ENGINE_EXTENSIONS",
    "MODES",
    "CheckpointInfo",
    "Selection",
    "parse_checkpoint_name",
    "select_checkpoint",
    "mode_for",
]

#: File extensions of training checkpoints.
CHECKPOINT_EXTENSIONS = ("pth", "ckpt", "tlt")
#: File extensions of exported ONNX models.
ONNX_EXTENSIONS = ("onnx",)
#: File extensions of TensorRT engines.
ENGINE_EXTENSIONS = ("engine", "trt", "plan")
#: Selection modes understood by :func:`select_checkpoint`.
MODES = ("best", "latest", "onnx", "engine")

_EXT = "|".join(CHECKPOINT_EXTENSIONS)
_NUMBERED_RE = re.compile(
    r"^(?:(?P<prefix>[A-Za-z0-9]+)_)?model_epoch_(?P<epoch>\d+)"
    r"(?:_step_(?P<step>\d+))?(?P<ema>-EMA)?\.(?P<ext>" + _EXT + r")$",
    re.IGNORECASE,
)
_LATEST_RE = re.compile(
    r"^(?:(?P<prefix>[A-Za-z0-9_]+?)_)?model_latest\.(?P<ext>" + _EXT + r")$",
    re.IGNORECASE,
)
_EPOCH_IN_NAME_RE = re.compile(r"epoch[_=-]?(\d+)", re.IGNORECASE)
_LAST_NUMBER_RE = re.compile(r"(\d+)(?!.*\d)")

_TRAIN_LIKE_PARENTS = ("train", "automl", "distill")
_BEST_CHILDREN = ("evaluate", "inference", "export", "distill", "quantize")
_ENGINE_CHILDREN = ("evaluate", "inference", "trt_evaluate", "trt_inference")
#: A quantize job holds one (quantized) checkpoint that these actions load with is_quantized.
_QUANTIZED_CHILDREN = ("evaluate", "inference", "export")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a TAO checkpoint file name says.

    Attributes:
        uri: the string given (full URI or path).
        name: its basename.
        epoch: 0-based epoch, ``None`` for a ``*_model_latest`` link.
        step: global step from ``_step_YYYYY``, else ``None`` (never an epoch).
        ema: True for the ``-EMA`` variant (exponential-moving-average weights).
        is_latest_link: True for ``model_latest`` / ``<prefix>_model_latest``.
        extension: ``"pth"``, ``"ckpt"`` or ``"tlt"`` (lower case).
    """

    uri: str
    name: str
    epoch: int | None
    step: int | None
    ema: bool
    is_latest_link: bool
    extension: str = "pth"

    @property
    def folder(self) -> str:
        """The URI/path of the folder holding the file (``""`` for a bare name)."""
        return self.uri.rsplit("/", 1)[0] if "/" in self.uri else ""


@dataclass
class Selection:
    """The artifact chosen by :func:`select_checkpoint`.

    Attributes:
        uri: the chosen file (as it appeared in the listing) - put it in the spec.
        reason: one human sentence, e.g. ``"best val_mAP50=0.61 at epoch 7 (max):
            model_epoch_007.pth"``.
        warning: ``None``, or a sentence to show the user when the choice is a fallback
            (no metric history, best epoch not saved, several candidates...).
        epoch: epoch of the chosen file when known.
        value: metric value of that epoch (``"best"`` mode only).
        mode: the mode used.
    """

    uri: str
    reason: str
    warning: str | None = None
    epoch: int | None = None
    value: float | None = None
    mode: str = ""


def _basename(name: str) -> str:
    """Last path component; ``""`` for a folder entry (ending in ``/``)."""
    if name.endswith("/"):
        return ""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def parse_checkpoint_name(name: str) -> CheckpointInfo | None:
    """Parse a TAO checkpoint file name (or a path/URI ending in one).

    Returns a :class:`CheckpointInfo`, or ``None`` when the basename is not a TAO checkpoint
    (``status.json``, ``model.onnx``, ``events.out...``, a folder ending in ``/``...).

    Examples:
        ``model_epoch_005.pth`` -> epoch 5; ``model_epoch_005-EMA.pth`` -> epoch 5, ema;
        ``s3://b/r/train/model_epoch_005_step_01200.pth`` -> epoch 5, step 1200;
        ``rtdetr_model_latest.pth`` -> is_latest_link, epoch None.
    """
    uri = str(name)
    base = _basename(uri)
    if not base:
        return None
    m = _NUMBERED_RE.match(base)
    if m:
        return CheckpointInfo(
            uri=uri,
            name=base,
            epoch=int(m.group("epoch")),
            step=int(m.group("step")) if m.group("step") is not None else None,
            ema=m.group("ema") is not None,
            is_latest_link=False,
            extension=m.group("ext").lower(),
        )
    m = _LATEST_RE.match(base)
    if m:
        return CheckpointInfo(uri=uri, name=base, epoch=None, step=None, ema=False,
                              is_latest_link=True, extension=m.group("ext").lower())
    return None


# --------------------------------------------------------------------------- helpers


def _split(uri: str) -> list[str]:
    return uri.split("/")


def _common_folder(uris: list[str]) -> str:
    """Longest common folder of the URIs (``""`` when none)."""
    if not uris:
        return ""
    folders = [_split(u)[:-1] for u in uris]
    common = folders[0]
    for parts in folders[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return "/".join(common)


def _relative(uri: str, base: str) -> str:
    if base and uri.startswith(base + "/"):
        return uri[len(base) + 1:]
    return uri


def _found_text(uris: list[str], base: str, limit: int = 10) -> str:
    if not uris:
        return "found nothing (the folder is empty or does not exist; check the URI and that " \
               "the parent job's results were uploaded)"
    names = [_relative(u, base) for u in sorted(uris)]
    shown = ", ".join(names[:limit])
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    under = f" under {base}" if base else ""
    return f"found {len(names)} file(s){under}: {shown}{more}"


def _error(what: str, where: str, uris: list[str], base: str, fix: str) -> ParentModelError:
    return ParentModelError(f"No {what} in {where}; {_found_text(uris, base)}. {fix}")


def _one_folder(infos: list[CheckpointInfo], where: str, uris: list[str],
                base: str) -> list[CheckpointInfo]:
    """Keep checkpoints of a single training run; several checkpoint folders is an error."""
    folders = sorted({i.folder for i in infos})
    if len(folders) <= 1:
        return infos
    shown = ", ".join(_relative(f, base) or "." for f in folders[:10])
    raise ParentModelError(
        f"Checkpoints of several training runs in {where}: folders {shown}; cannot tell which "
        "run to use. Pass the listing of one run's folder (for an AutoML parent: the best "
        "experiment's folder)."
    )


def _latest_of(infos: list[CheckpointInfo], *, prefer_ema: bool) -> CheckpointInfo:
    """Highest epoch, then highest step; within that, EMA or not per ``prefer_ema``."""
    return max(infos, key=lambda i: (i.epoch if i.epoch is not None else -1,
                                     i.step if i.step is not None else -1,
                                     i.ema == prefer_ema, i.name))


def _file_for_epoch(infos: list[CheckpointInfo], epoch: int, *,
                    prefer_ema: bool) -> CheckpointInfo | None:
    same = [i for i in infos if i.epoch == epoch]
    return _latest_of(same, prefer_ema=prefer_ema) if same else None


def _pick_link(links: list[CheckpointInfo]) -> CheckpointInfo:
    order = {ext: n for n, ext in enumerate(reversed(CHECKPOINT_EXTENSIONS))}
    return max(links, key=lambda i: (order.get(i.extension, -1), i.name))


def _ema_note(info: CheckpointInfo) -> str:
    return " (EMA weights)" if info.ema else ""


def _num_epoch(name: str) -> int:
    m = _EPOCH_IN_NAME_RE.search(name) or _LAST_NUMBER_RE.search(name)
    return int(m.group(1)) if m else -1


def _select_file(uris: list[str], *, exts: tuple[str, ...], preferred: str, kind: str,
                 where: str, base: str, fix: str, mode: str) -> Selection:
    candidates = [u for u in uris if "." in _basename(u)
                  and _basename(u).rsplit(".", 1)[1].lower() in exts]
    if not candidates:
        looked = " or ".join(f"*.{e}" for e in exts)
        raise _error(f"{kind} file ({looked})", where, uris, base, fix)

    def rank(u: str) -> tuple:
        parts = _split(_relative(u, base))
        name = parts[-1]
        in_task_folder = any(p in ("export", "gen_trt_engine") for p in parts[:-1])
        return (name.lower() == preferred, in_task_folder, _num_epoch(name), -len(parts), name)

    chosen = max(candidates, key=rank)
    name = _basename(chosen)
    epoch = _num_epoch(name)
    if name.lower() == preferred:
        why = f"the {kind} default name {preferred}"
    elif epoch >= 0:
        why = f"the largest number in the name ({epoch})"
    else:
        why = "the last name in sorted order"
    warning = None
    if len(candidates) > 1:
        others = ", ".join(_relative(u, base) for u in sorted(candidates) if u != chosen)
        warning = (f"{len(candidates)} {kind} files in {where}; chose {_relative(chosen, base)} "
                   f"({why}); others: {others}")
    return Selection(uri=chosen, reason=f"{kind} file {_relative(chosen, base)} ({why})",
                     warning=warning, epoch=epoch if epoch >= 0 else None, mode=mode)


# --------------------------------------------------------------------------- selection


def select_checkpoint(
    uris: Iterable[str],
    *,
    mode: str,
    history: list[tuple[int, dict[str, Any]]] | TaskStatus | None = None,
    metric: str | None = None,
    direction: str | None = None,
    where: str | None = None,
    prefer_ema: bool = True,
) -> Selection:
    """Choose the model file a child job needs from a parent job's results listing.

    Args:
        uris: the RECURSIVE listing of the parent's results folder (URI or path strings; may
            include ``train/``, ``export/``, ``status.json``, ``experiment.yaml``, logs...;
            entries ending in ``/`` are ignored).
        mode: ``"best"``, ``"latest"``, ``"onnx"`` or ``"engine"`` (see :func:`mode_for`).
        history: for ``"best"``: ``TaskStatus.history`` of the parent's ``train/status.json``
            (a :class:`~tao_sdk.results.TaskStatus` is accepted too).
        metric: for ``"best"``: the monitoring KPI (``val_mAP50``, ``mIoU``, ``val_loss``...);
            ``val_loss`` also matches ``val/loss``.
        direction: for ``"best"``: ``"max"`` or ``"min"`` - required with a metric, never
            guessed from the name.
        where: what was searched, for messages (e.g. ``"job job-1234 results
            s3://b/results/job-1234"``); default: the common folder of ``uris``.
        prefer_ema: ``"best"`` only: when the chosen epoch has both ``model_epoch_007.pth``
            and ``model_epoch_007-EMA.pth``, use the EMA file. The EMA file only exists when
            the model trained with EMA, and then validation (hence the metric) ran on the EMA
            weights. ``"latest"`` always prefers the non-EMA file of the newest epoch, which
            holds the full training state needed to resume.

    Modes:
        - ``"best"``: the numbered checkpoint of the best epoch by ``metric``/``direction``
          (ties -> later epoch; sticky KPI repeats belong to the validated epoch, see
          :func:`~tao_sdk.results.metric_by_epoch`). If that epoch was not saved, the best
          epoch among the saved ones (``warning`` says so). With no metric, no history of it,
          or no saved epoch with a value: the latest checkpoint, and ``warning`` says so
          (``"no val_mAP50 history in <where>; using the latest checkpoint
          model_epoch_009.pth"``).
        - ``"latest"``: highest epoch, then highest step (file time is not used); a
          ``*_model_latest`` link only when no numbered checkpoint exists.
        - ``"onnx"``: the ``.onnx`` file; ``model.onnx`` first, then files under ``export/``,
          then the largest epoch/number in the name (``warning`` lists the others).
        - ``"engine"``: the ``.engine`` / ``.trt`` / ``.plan`` file, ``model.engine`` first,
          same ordering.

    Returns:
        :class:`Selection` (``uri``, ``reason``, ``warning``, ``epoch``, ``value``).

    Raises:
        ParentModelError: nothing usable; the message names ``where``, what was looked for,
            and up to 10 of the files found. Also raised when checkpoints of several training
            runs (folders) are mixed in the listing, or ``mode`` is unknown.
        MetricDirectionError: ``"best"`` with a metric but ``direction`` not ``"max"``/``"min"``.
    """
    listing = [str(u) for u in uris if u is not None and str(u) and not str(u).endswith("/")]
    base = _common_folder(listing)
    where = where or (base if base else "the given listing")
    if mode not in MODES:
        raise ParentModelError(f"unknown checkpoint selection mode {mode!r}; use one of "
                               f"{', '.join(MODES)} (see mode_for(action, parent_action))")
    if mode in _FILE_MODES:
        return _select_file(listing, where=where, base=base, mode=mode, **_FILE_MODES[mode])
    found = _Checkpoints.of(listing, where, base)
    if mode == "latest":
        return found.latest(mode)
    if metric is not None:
        check_direction(direction)
    if isinstance(history, TaskStatus):
        history = history.history
    return found.best(metric_by_epoch(history or [], metric) if metric else {}, metric, direction, prefer_ema)


#: ``"onnx"`` / ``"engine"`` selection: which files, which name first, and the fix when none.
_FILE_MODES: dict[str, dict[str, Any]] = {
    "onnx": dict(exts=ONNX_EXTENSIONS, preferred="model.onnx", kind="ONNX",
                 fix="gen_trt_engine needs an export parent whose results hold the .onnx file "
                     "(export.onnx_file); run export on the trained job and use that export job "
                     "as the parent."),
    "engine": dict(exts=ENGINE_EXTENSIONS, preferred="model.engine", kind="TensorRT engine",
                   fix="TensorRT evaluate/inference needs a gen_trt_engine parent whose results hold "
                       "the engine (gen_trt_engine.trt_engine); run gen_trt_engine first and use it "
                       "as the parent."),
}


@dataclass
class _Checkpoints:
    """The checkpoints of one listing: numbered ones (one training folder) and latest links."""

    numbered: list[CheckpointInfo]
    links: list[CheckpointInfo]
    where: str
    listing: list[str]
    base: str

    @classmethod
    def of(cls, listing: list[str], where: str, base: str) -> "_Checkpoints":
        infos = [i for i in (parse_checkpoint_name(u) for u in listing) if i is not None]
        numbered = _one_folder([i for i in infos if i.epoch is not None], where, listing, base)
        links = [i for i in infos if i.is_latest_link]
        if not numbered and not links:
            raise _error(
                "checkpoint (model_epoch_<N>[_step_<S>][-EMA].pth|.ckpt|.tlt or "
                "<prefix>_model_latest.pth)", where, listing, base,
                "Use a parent train job that saved at least one checkpoint (it may have failed "
                "before its first train.checkpoint_interval, or its results were not uploaded).")
        return cls(numbered, links, where, listing, base)

    def link(self) -> CheckpointInfo:
        return _pick_link(_one_folder(self.links, self.where, self.listing, self.base))

    def latest(self, mode: str) -> Selection:
        """Highest epoch, then step (the non-EMA file: it resumes); the link when none is numbered."""
        if self.numbered:
            c = _latest_of(self.numbered, prefer_ema=False)
            step = f", step {c.step}" if c.step is not None else ""
            return Selection(uri=c.uri, epoch=c.epoch, mode=mode,
                             reason=f"latest checkpoint: epoch {c.epoch}{step} (highest epoch, "
                                    f"then step): {c.name}{_ema_note(c)}")
        link = self.link()
        return Selection(uri=link.uri, mode=mode,
                         reason=f"no numbered checkpoint; using the latest link {link.name}")

    def fallback(self, why: str, prefer_ema: bool) -> Selection:
        """``"best"`` without a usable metric: the latest checkpoint, and a warning saying why."""
        if self.numbered:
            c = _latest_of(self.numbered, prefer_ema=prefer_ema)
            return Selection(uri=c.uri, epoch=c.epoch, mode="best",
                             reason=f"latest checkpoint (epoch {c.epoch}): {c.name}"
                                    f"{_ema_note(c)}",
                             warning=f"{why}; using the latest checkpoint {c.name}")
        link = self.link()
        return Selection(uri=link.uri, mode="best",
                         reason=f"latest link {link.name} (no numbered checkpoint)",
                         warning=f"{why}; no numbered checkpoint either, using the latest "
                                 f"link {link.name}")

    def best(self, values: dict[int, float], metric: str | None, direction: str | None,
             prefer_ema: bool) -> Selection:
        """The checkpoint of the best epoch by ``values`` (epoch -> metric value)."""
        where, numbered = self.where, self.numbered
        if not metric:
            return self.fallback(f"no metric given to rank the checkpoints in {where}", prefer_ema)
        if not values:
            return self.fallback(f"no {metric} history in {where}", prefer_ema)
        best = best_of(values, direction)
        assert best is not None
        if not numbered:
            return self.fallback(f"the best {metric} is at epoch {best[0]}, but {where} holds no numbered "
                                 f"checkpoint to match it", prefer_ema)
        chosen = _file_for_epoch(numbered, best[0], prefer_ema=prefer_ema)
        warning = None
        if chosen is None:
            saved = {i.epoch for i in numbered}
            candidates = {e: v for e, v in values.items() if e in saved}
            if not candidates:
                return self.fallback(f"none of the epochs with {metric} history "
                                     f"({', '.join(map(str, sorted(values)))}) has a checkpoint in "
                                     f"{where}", prefer_ema)
            alt = best_of(candidates, direction)
            assert alt is not None
            chosen = _file_for_epoch(numbered, alt[0], prefer_ema=prefer_ema)
            assert chosen is not None
            warning = (f"the best {metric}={best[1]:.4g} at epoch {best[0]} has no checkpoint in "
                       f"{where}; using the best saved epoch {alt[0]} ({metric}={alt[1]:.4g}): "
                       f"{chosen.name}")
            best = alt
        return Selection(
            uri=chosen.uri, epoch=best[0], value=best[1], mode="best", warning=warning,
            reason=f"best {metric}={best[1]:.4g} at epoch {best[0]} ({direction}): "
                   f"{chosen.name}{_ema_note(chosen)}",
        )


# --------------------------------------------------------------------------- action table


def _norm_action(action: str | None) -> str | None:
    if action is None:
        return None
    return str(action).strip().lower().replace("-", "_").replace(" ", "_") or None


def mode_for(action: str, parent_action: str | None) -> str:
    """Return the :func:`select_checkpoint` mode for a child ``action`` of a parent job.

    Table (from TAO_FACTS "Inference functions"):

    =====================================================  ====================  ===========
    action                                                 parent action         mode
    =====================================================  ====================  ===========
    ``resume``                                             any / none            ``latest``
    evaluate, inference, export, distill, quantize         train, automl,        ``best``
                                                           distill
    evaluate, inference, export                            quantize              ``best``
    gen_trt_engine                                         export                ``onnx``
    evaluate, inference, trt_evaluate, trt_inference       gen_trt_engine        ``engine``
    =====================================================  ====================  ===========

    An ``automl`` parent behaves like ``train`` (pass the best experiment's folder listing);
    a ``distill`` parent trains a student and saves checkpoints the same way. Action names are
    case-insensitive; ``-`` and spaces count as ``_``.

    Raises:
        ParentModelError: any other combination, with what parent the action needs - e.g.
            evaluate/inference of an ``export`` parent (TAO evaluate needs a checkpoint from
            a train parent or an engine from a gen_trt_engine parent), gen_trt_engine of a
            train parent (export first), or a missing parent.
    """
    act = _norm_action(action)
    parent = _norm_action(parent_action)
    if act == "resume":
        return "latest"
    if act is None:
        raise ParentModelError("no action given; pass the child action (evaluate, inference, "
                               "export, gen_trt_engine, ...)")
    needs = {
        "gen_trt_engine": "an export parent (it builds the engine from the exported .onnx); "
                          "run export on the trained job first",
        "trt_evaluate": "a gen_trt_engine parent (it runs the TensorRT engine)",
        "trt_inference": "a gen_trt_engine parent (it runs the TensorRT engine)",
        "evaluate": "a train, automl, distill or quantize parent for a checkpoint, or a "
                    "gen_trt_engine parent for a TensorRT engine",
        "inference": "a train, automl, distill or quantize parent for a checkpoint, or a "
                     "gen_trt_engine parent for a TensorRT engine",
        "export": "a train, automl, distill or quantize parent (it exports a checkpoint to "
                  "ONNX)",
        "distill": "a train (or automl) parent (the teacher checkpoint)",
        "quantize": "a train (or automl) parent (it quantizes a checkpoint)",
    }
    if parent is None:
        hint = needs.get(act, "a parent job")
        raise ParentModelError(f"{act} needs {hint}, but no parent job was given; pass the "
                               "parent job id")
    if parent in _TRAIN_LIKE_PARENTS and act in _BEST_CHILDREN:
        return "best"
    if parent == "quantize" and act in _QUANTIZED_CHILDREN:
        return "best"
    if parent == "export" and act == "gen_trt_engine":
        return "onnx"
    if parent == "gen_trt_engine" and act in _ENGINE_CHILDREN:
        return "engine"
    if act in needs:
        raise ParentModelError(
            f"{act} of {'an' if parent[0] in 'aeiou' else 'a'} {parent} parent is not "
            "supported: "
            f"{act} needs {needs[act]}. "
            "Choose a different parent job.")
    raise ParentModelError(
        f"action {act!r} has no parent-model rule (parent {parent!r}); supported: "
        "evaluate/inference/export/distill/quantize of a train or automl parent, "
        "evaluate/inference/export of a quantize parent, "
        "gen_trt_engine of an export parent, evaluate/inference/trt_evaluate/trt_inference of "
        "a gen_trt_engine parent, resume.")
