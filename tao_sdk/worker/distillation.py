"""Knowledge-distillation methods (TAO's ``distill`` section): bindings, criteria, the hooks of
:class:`Distiller`, and the torch-free plan-time check (:func:`preflight`). The ``distill``
action that trains with them is :mod:`tao_sdk.worker.engine.distill`.

A teacher (built from ``distill.teacher``, weights from ``distill.pretrained_teacher_model_path``,
frozen, eval mode) and the student see the same batch. Each ``distill.bindings`` entry
``{student_module_name, teacher_module_name, criterion, weight}`` hooks the outputs of the named
modules (``fnmatch`` wildcards; a pattern matching several modules pairs them in order with the
teacher's matches) and adds ``weight * criterion(student_out, teacher_out)``; the sum is scaled by
``model.distillation_loss_coef`` and added to the task loss.

Criteria (case-insensitive): ``L1``, ``L2`` / ``MSE`` (mean squared error), ``KL`` (KL divergence
of the softmax over the last dimension, teacher as target), ``SmoothL1``, ``BCE`` (binary cross
entropy of each sigmoid probability with the teacher's sigmoid probability as soft target: the
criterion for independent sigmoid class scores such as RT-DETR's focal / varifocal
classification, where a softmax KL would couple classes that the network scores independently).
An unknown criterion or a pattern matching no module is a :class:`SpecError` naming the choices /
close module names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tao_sdk.worker.errors import SpecError

__all__ = ["CRITERIA", "Binding", "Distiller", "parse_bindings"]


def _l1(s, t):
    import torch.nn.functional as F

    return F.l1_loss(s, t)


def _mse(s, t):
    import torch.nn.functional as F

    return F.mse_loss(s, t)


def _smooth_l1(s, t):
    import torch.nn.functional as F

    return F.smooth_l1_loss(s, t)


def _kl(s, t):
    import torch.nn.functional as F

    # KL(teacher || student) of the softmax over the last dimension, averaged over positions.
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True,
                    reduction="none").sum(-1).mean()


def _bce(s, t):
    import torch
    import torch.nn.functional as F

    # Soft-target BCE per logit; the teacher's entropy is subtracted so that the value is the
    # Bernoulli KL (0 when the student matches), with the same gradient as the plain BCE.
    p = torch.sigmoid(t)
    return (F.binary_cross_entropy_with_logits(s, p)
            - F.binary_cross_entropy_with_logits(t, p))


#: Criterion registry: upper-case name -> ``f(student_out, teacher_out) -> scalar tensor``.
CRITERIA: dict[str, Callable[[Any, Any], Any]] = {
    "L1": _l1, "L2": _mse, "MSE": _mse, "SMOOTHL1": _smooth_l1, "KL": _kl,
    "BCE": _bce,
}


@dataclass(frozen=True)
class Binding:
    """One distillation binding as the spec gives it."""

    student: str
    teacher: str
    criterion: str
    weight: float = 1.0


def parse_bindings(spec: Mapping[str, Any]) -> list[Binding]:
    """Read ``distill.bindings``; raise SpecError for a missing field or an unknown criterion."""
    raw = ((spec.get("distill") or {}).get("bindings")) or []
    if not raw:
        raise SpecError("distill.bindings is empty: add at least one binding "
                        "{student_module_name, teacher_module_name, criterion, weight}")
    out = []
    for i, entry in enumerate(raw):
        where = f"distill.bindings[{i}]"
        missing = [k for k in ("student_module_name", "teacher_module_name", "criterion")
                   if not (entry or {}).get(k)]
        if missing:
            raise SpecError(f"{where} lacks {', '.join(missing)}")
        crit = str(entry["criterion"]).replace("_", "").replace("-", "").upper()
        if crit not in CRITERIA:
            raise SpecError(f"{where}.criterion={entry['criterion']!r} is unknown; use one of "
                            f"L1, L2 (MSE), SmoothL1, KL, BCE")
        weight = float(entry.get("weight", 1.0) if entry.get("weight") is not None else 1.0)
        out.append(Binding(str(entry["student_module_name"]), str(entry["teacher_module_name"]),
                           crit, weight))
    return out


def _resolve(model, pattern: str, key: str) -> list[str]:
    names = [n for n, _ in model.named_modules() if n]
    hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not hits:
        close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.4)
        raise SpecError(f"{key}={pattern!r} matches no module; close names: "
                        f"{', '.join(close or names[:5])}")
    return hits


def _tensor(out: Any):
    """The tensor a module produced (first tensor of a tuple / dataclass output)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, Mapping) else (
        out.to_tuple() if hasattr(out, "to_tuple") else out)
    for value in values if isinstance(values, (list, tuple)) else list(values):
        if isinstance(value, torch.Tensor):
            return value
    return None


class Distiller:
    """Hooks student and teacher modules and computes the weighted distillation loss.

    Usage in a train step::

        with distiller.capture():
            out = student(batch)
            distiller.run_teacher(batch)
        loss = task_loss + distiller.loss()
    """

    def __init__(self, student, teacher, bindings: list[Binding], coef: float = 1.0) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.coef = float(coef)
        self.pairs: list[tuple[str, str, Binding]] = []
        for i, b in enumerate(bindings):
            s_names = _resolve(student, b.student, f"distill.bindings[{i}].student_module_name")
            t_names = _resolve(teacher, b.teacher, f"distill.bindings[{i}].teacher_module_name")
            if len(s_names) != len(t_names):
                raise SpecError(
                    f"distill.bindings[{i}]: student pattern {b.student!r} matches "
                    f"{len(s_names)} modules but teacher pattern {b.teacher!r} matches "
                    f"{len(t_names)}; make both patterns select the same number of modules")
            self.pairs.extend((s, t, b) for s, t in zip(s_names, t_names))
        self._student_mods = dict(student.named_modules())
        self._teacher_mods = dict(teacher.named_modules())
        self._out: dict[tuple[str, str], Any] = {}

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the bound modules' outputs during the forward passes inside the block."""
        handles = []
        self._out = {}
        for s, t, _ in self.pairs:
            handles.append(self._student_mods[s].register_forward_hook(self._hook("s", s)))
            handles.append(self._teacher_mods[t].register_forward_hook(self._hook("t", t)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _hook(self, side: str, name: str):
        def hook(_module, _inputs, output):
            self._out[(side, name)] = _tensor(output)
        return hook

    def run_teacher(self, *args, **kwargs):
        """Forward the teacher without gradients (inside :meth:`capture`)."""
        import torch

        with torch.no_grad():
            return self.teacher(*args, **kwargs)

    def loss(self):
        """``coef * sum(weight * criterion(student, teacher))`` over the captured pairs."""
        total = None
        for s, t, b in self.pairs:
            so, to = self._out.get(("s", s)), self._out.get(("t", t))
            if so is None or to is None:
                raise SpecError(f"distill binding {b.student!r} -> {b.teacher!r}: module "
                                f"{s if so is None else t} produced no tensor output in this step")
            if tuple(so.shape) != tuple(to.shape):
                raise SpecError(
                    f"distill binding {s} -> {t}: output shapes differ ({tuple(so.shape)} vs "
                    f"{tuple(to.shape)}); bind modules whose outputs have the same shape "
                    "(e.g. the class/box heads with equal num_queries and num_classes)")
            term = CRITERIA[b.criterion](so.float(), to.detach().float()) * b.weight
            total = term if total is None else total + term
        return total * self.coef


def preflight(spec: Mapping[str, Any]) -> None:
    """Plan-time check of a ``distill`` spec without torch: the bindings and their criteria
    (module names are checked by the worker, which builds the models)."""
    parse_bindings(spec)
