"""The train section's spec checks, torch-free: the engine runs them when it builds the
optimiser, the learning-rate schedule and the loop (:mod:`tao_sdk.worker.engine.train`), and
the plan runs the same ones (:func:`preflight`, from :func:`tao_sdk.worker.registry.preflight`),
so a dry run refuses a train spec with the message the job would fail with."""

from __future__ import annotations

from typing import Any, Callable

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError

__all__ = ["optimizer_settings", "epoch_factor", "intervals", "preflight", "SCHEDULER_ALIASES"]

#: TAO networks spell the schedulers as torch does (``depth_net``: ``MultiStepLR``).
SCHEDULER_ALIASES = {"MultiStepLR": "MultiStep"}
_OPTIMIZERS = ("adamw", "sgd")


def optimizer_settings(spec: dict) -> tuple[str, float, float]:
    """``(optimizer, lr, weight_decay)`` of ``train.optim`` (optimizer lower-case: ``adamw`` or
    ``sgd``); raises :class:`SpecError` for ``lr <= 0`` or another optimizer."""
    lr = float(S.get(spec, "train.optim.lr", 1e-4))
    wd = float(S.get(spec, "train.optim.weight_decay", 1e-4))
    if lr <= 0:
        raise SpecError(f"train.optim.lr={lr} must be > 0")
    kind = str(S.get(spec, "train.optim.optimizer", "AdamW"))
    if kind.lower() not in _OPTIMIZERS:
        raise SpecError(f"train.optim.optimizer={kind!r} is not supported; use AdamW or SGD")
    return kind.lower(), lr, wd


def epoch_factor(spec: dict) -> Callable[[int], float]:
    """The engine schedule's ``epoch -> decay`` function: MultiStep (one ``lr_decay`` per
    ``lr_steps`` milestone reached) or StepLR (one every ``lr_step_size`` epochs); raises
    :class:`SpecError` for another scheduler or ``lr_step_size < 1``."""
    kind = str(S.get(spec, "train.optim.lr_scheduler", "MultiStep"))
    kind = SCHEDULER_ALIASES.get(kind, kind)
    decay = float(S.get(spec, "train.optim.lr_decay", 0.1))
    if kind == "MultiStep":
        milestones = sorted(int(s) for s in S.get(spec, "train.optim.lr_steps", []))

        def multistep(epoch: int) -> float:
            """Decay applied at ``epoch``: one ``lr_decay`` per milestone reached."""
            return decay ** sum(1 for m in milestones if epoch >= m)
        return multistep
    if kind == "StepLR":
        size = int(S.get(spec, "train.optim.lr_step_size", 1))
        if size < 1:
            raise SpecError(f"train.optim.lr_step_size={size} must be >= 1")

        def step(epoch: int) -> float:
            """Decay applied at ``epoch``: one ``lr_decay`` every ``lr_step_size`` epochs."""
            return decay ** (epoch // size)
        return step
    raise SpecError(f"train.optim.lr_scheduler={kind!r} is not supported; use MultiStep "
                    "(MultiStepLR) or StepLR")


def intervals(spec: dict) -> dict[str, Any]:
    """Validated ``num_epochs`` and checkpoint / validation intervals of the train section."""
    num_epochs = int(S.require(spec, "train.num_epochs", "the number of epochs (>= 1)"))
    if num_epochs < 1:
        raise SpecError(f"train.num_epochs={num_epochs} must be >= 1")
    ckpt_interval = int(S.get(spec, "train.checkpoint_interval", 1))
    ckpt_unit = str(S.get(spec, "train.checkpoint_interval_unit", "epoch"))
    val_interval = int(S.get(spec, "train.validation_interval", 1))
    if ckpt_interval < 1:
        raise SpecError(f"train.checkpoint_interval={ckpt_interval} must be >= 1")
    if ckpt_unit not in ("epoch", "step"):
        raise SpecError(f"train.checkpoint_interval_unit={ckpt_unit!r}: use epoch or step")
    if val_interval < 1:
        raise SpecError(f"train.validation_interval={val_interval} must be >= 1")
    return {"num_epochs": num_epochs, "ckpt_interval": ckpt_interval, "ckpt_unit": ckpt_unit,
            "val_interval": val_interval}


def preflight(spec: dict, plugin=None) -> None:
    """Every check above, in the job's order: the loop's intervals, the optimiser, and the
    engine's schedule unless ``plugin`` has its own (``lr_factor``, which checks its keys)."""
    intervals(spec)
    optimizer_settings(spec)
    if plugin is None or plugin.lr_factor(spec, 1) is None:
        epoch_factor(spec)
