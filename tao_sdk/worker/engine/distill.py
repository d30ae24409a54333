"""The distill action of the engine: train the student (the spec's ``model`` section) with a
frozen teacher.

The teacher is the checkpoint ``distill.pretrained_teacher_model_path`` (the SDK fills it with
the parent train job's best checkpoint). Its architecture is the checkpoint's own ``arch``
record, as for evaluate / export: the weights only fit the network they were trained with.
``distill.teacher`` is optional; when it is set and describes another network, the differences
are reported on the start line (the checkpoint wins). Each step runs the student with labels
(task loss) and the teacher without gradients on the same batch; the hooked outputs of
``distill.bindings`` add ``model.distillation_loss_coef * sum(weight * criterion)``
(:mod:`tao_sdk.worker.distillation`). Module-name patterns apply to the plugin's model
(``model.named_modules()`` names). Checkpoints, status lines and KPIs are the train action's.
"""

from __future__ import annotations

from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.distillation import Distiller, parse_bindings
from tao_sdk.worker.engine.checkpoint import load_checkpoint
from tao_sdk.worker.engine.runtime import build_checkpoint_model
from tao_sdk.worker.engine.train import train
from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.plugin import spec_float

__all__ = ["distill", "TeacherLoss", "TEACHER_KEY"]

#: Spec key of the teacher checkpoint.
TEACHER_KEY = "distill.pretrained_teacher_model_path"


def distill(ctx) -> str:
    """Train the student of ``ctx.spec`` with the teacher's bound outputs as extra targets."""
    parse_bindings(ctx.spec)  # spec errors before any data is staged
    return train(ctx, regulariser=TeacherLoss.create)


class TeacherLoss:
    """The per-step loss of a distill job: task loss + distillation loss."""

    def __init__(self, distiller: Distiller, notes: list[str]) -> None:
        self.distiller = distiller
        self.notes = notes

    @classmethod
    def create(cls, ctx, model, device, files: dict[str, Any]) -> "TeacherLoss":
        """Load the teacher (frozen, on ``device``) and hook the bindings on ``model``."""
        plugin = ctx.plugin
        uri = S.require(ctx.spec, TEACHER_KEY,
                        "the teacher checkpoint (the parent train job's best model_epoch_*.pth)")
        path = files[TEACHER_KEY]
        ckpt = load_checkpoint(path, TEACHER_KEY)
        arch = ckpt["arch"] or _teacher_spec_arch(ctx)  # TAO's checkpoint: the spec says
        if arch.get("network") != ctx.network:
            raise SpecError(f"{TEACHER_KEY}: {uri} is a {arch.get('network')} checkpoint; the "
                            f"teacher must be a {ctx.network} checkpoint")
        notes = [f"teacher: {plugin.describe(arch)} from {uri} (epoch {ckpt.get('epoch')})"]
        notes += _teacher_section_notes(ctx, arch)
        teacher = build_checkpoint_model(ctx, TEACHER_KEY, path, ckpt, arch).to(device)
        coef = spec_float(ctx.spec, "model.distillation_loss_coef", 1.0)
        distiller = Distiller(model, teacher, parse_bindings(ctx.spec), coef)
        notes.append(f"distillation: {len(distiller.pairs)} bound module pair(s), "
                     f"model.distillation_loss_coef {coef}")
        return cls(distiller, notes)

    def step_loss(self, plugin, model, batch, device, arch):
        """Task loss of the student on ``batch`` plus the distillation loss."""
        import torch

        with self.distiller.capture():
            out = plugin.forward(model, batch, device, with_labels=True)
            with torch.no_grad():
                plugin.forward(self.distiller.teacher, batch, device, with_labels=False)
        return plugin.loss(out, arch) + self.distiller.loss()


def _teacher_spec_arch(ctx) -> dict:
    """The architecture of a TAO teacher checkpoint: ``distill.teacher`` (when set) or the
    student's ``model`` section."""
    section = S.get(ctx.spec, "distill.teacher")
    return ctx.plugin.build_arch({**ctx.spec, "model": section} if section else ctx.spec)


def _teacher_section_notes(ctx, ckpt_arch: dict) -> list[str]:
    """Differences between ``distill.teacher`` (when set) and the teacher checkpoint."""
    section = S.get(ctx.spec, "distill.teacher")
    if not section:
        return []
    try:
        spec_arch = ctx.plugin.build_arch({**ctx.spec, "model": section})
    except SpecError as exc:
        return [f"distill.teacher not used ({exc}); the checkpoint's architecture is used"]
    diffs = ctx.plugin.arch_diff(ckpt_arch, spec_arch)
    if not diffs:
        return []
    return ["the teacher checkpoint's architecture is used; distill.teacher differs in "
            + ", ".join(d.replace("model.", "distill.teacher.") for d in diffs)]
