"""The train action of the engine: optimiser, schedule, EMA, loop, checkpoints, resume.

Train semantics (TAO's, with two stated choices):

- one RUNNING line per epoch with ``epoch`` (0-based), ``max_epoch``, ``step`` (global step),
  ``max_step`` (total steps), ``time_per_epoch`` (training + validation), ``eta`` and the KPIs
  ``train_loss`` (every epoch) and the task's validation KPIs (every ``validation_interval``
  epochs; sticky in between);
- checkpoints every ``checkpoint_interval`` epochs (or steps with
  ``checkpoint_interval_unit: step``) **and always after the last epoch**, so a finished job
  always has its final weights; ``<prefix>model_latest.pth`` links to the newest one;
- ``lr_steps`` / ``lr_step_size`` count epochs; ``warmup_steps`` counts optimizer steps;
- resuming restores model, optimizer, schedule, EMA and step counter and continues with the
  epoch after the checkpoint's (a mid-epoch ``step`` checkpoint restarts its epoch);
- data-parallel training (``train.num_gpus`` > 1, multi-node environment; see
  :mod:`tao_sdk.worker.distributed`): ``dataset.batch_size`` per process, the train samples
  split by ``DistributedSampler`` (``step`` / ``max_step`` count each rank's steps), gradients
  averaged by ``DistributedDataParallel``, ``train_loss`` averaged over the ranks, validation
  sharded by the task with the metrics computed on rank 0, which alone writes status lines and
  checkpoints.

The network comes in through ``ctx.plugin`` (model, loss, parameter groups) and its task
(``ctx.plugin.task``: training data, collate, validation KPIs). ``train.precision`` (fp32 /
bf16 / fp16), the fused optimizer, channels-last and the loader settings: see
:mod:`tao_sdk.worker.engine.precision`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker import spec as S
from tao_sdk.worker import trainspec as T
from tao_sdk.worker.engine import runtime as R
from tao_sdk.worker.engine.checkpoint import load_checkpoint, load_pretrained, save_checkpoint
from tao_sdk.worker.engine.loadreport import load_report, report_load
from tao_sdk.worker.weights import checkpoint_state
from tao_sdk.worker.engine.precision import (
    fused_optimizer_kwargs,
    precision_from_spec,
    tune_model,
)
from tao_sdk.worker.errors import SpecError, WorkerError
from tao_sdk.worker.staging import fetch_weights
from tao_sdk.worker.status import format_timedelta
from tao_sdk.worker.tracking import open_tracking, system_facts

__all__ = ["train", "EMA", "build_optimizer", "build_scheduler", "build_lr_schedule",
           "freeze_backbone", "PROGRESS_EVERY_S"]

#: Seconds between progress lines inside a long epoch.
PROGRESS_EVERY_S = 60.0
#: Spec keys of files a train job loads besides its datasets and the plugin's pretrained
#: weights (:attr:`NetworkPlugin.pretrained_backbone_key` / ``pretrained_model_key``).
_OTHER_MODEL_FILES = ("train.resume_training_checkpoint_path", "distill.pretrained_teacher_model_path")


def model_files(plugin) -> tuple[str, ...]:
    """The spec keys of the model files a train (or distill) job of ``plugin`` loads."""
    return (plugin.pretrained_backbone_key, plugin.pretrained_model_key, *_OTHER_MODEL_FILES)


class EMA:
    """Exponential moving average of a model's weights (``train.ema``)."""

    def __init__(self, model, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay

    def update(self, model) -> None:
        """Blend the current weights of ``model`` into the average."""
        import torch

        with torch.no_grad():
            own = self.module.state_dict()
            for key, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    own[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
                else:
                    own[key].copy_(value)


def build_optimizer(plugin, spec: dict, model, device=None):
    """AdamW / SGD over the plugin's parameter groups (``train.optim.*``, checked by
    :func:`tao_sdk.worker.trainspec.optimizer_settings`); AdamW uses the fused kernel on CUDA."""
    import torch

    kind, lr, wd = T.optimizer_settings(spec)
    params = plugin.param_groups(model, spec, lr)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd,
                                 **(fused_optimizer_kwargs(device) if device is not None else {}))
    return torch.optim.SGD(params, lr=lr, weight_decay=wd,
                           momentum=float(S.get(spec, "train.optim.momentum", 0.9)))


def build_scheduler(spec: dict, optimizer, steps_per_epoch: int):
    """Per-step LambdaLR: linear warm-up over ``warmup_steps``, then MultiStep / StepLR decay
    by ``lr_decay`` at epoch boundaries (``lr_steps`` / ``lr_step_size`` are in epochs; see
    :func:`tao_sdk.worker.trainspec.epoch_factor`)."""
    import torch

    epoch_factor = T.epoch_factor(spec)
    warmup = int(S.get(spec, "train.optim.warmup_steps", 0))

    def factor(step: int) -> float:
        """Learning-rate multiplier at global ``step`` (warm-up x epoch decay)."""
        warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return warm * epoch_factor(step // max(1, steps_per_epoch))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_lr_schedule(plugin, spec: dict, optimizer, steps_per_epoch: int):
    """The per-step learning-rate schedule of a train job: the plugin's own
    (:meth:`~tao_sdk.worker.plugin.NetworkPlugin.lr_factor`) when it has one, else
    :func:`build_scheduler`; call ``.step()`` after every optimizer step."""
    import torch

    factor = plugin.lr_factor(spec, steps_per_epoch)
    if factor is not None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return build_scheduler(spec, optimizer, steps_per_epoch)


def _ddp(ctx, model, arch: dict, device):
    """Wrap ``model`` in ``DistributedDataParallel``.

    The plugin says whether some parameters can be unused in a step (then DDP looks for them,
    an extra pass over the autograd graph). Buffers are synchronised from rank 0 only when the
    model has BatchNorm running statistics. Environment ``TAO_WORKER_DDP_FIND_UNUSED=0/1``
    overrides the choice.
    """
    import inspect

    import torch

    find_unused = ctx.plugin.ddp_find_unused_parameters(arch)
    env = os.environ.get("TAO_WORKER_DDP_FIND_UNUSED", "").strip()
    if env in ("0", "1"):
        find_unused = env == "1"
    sync_buffers = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       for m in model.modules())
    ddp_cls = torch.nn.parallel.DistributedDataParallel
    kwargs: dict[str, Any] = {"find_unused_parameters": find_unused}
    if "forward_sync_buffers" in inspect.signature(ddp_cls.__init__).parameters:
        kwargs["forward_sync_buffers"] = sync_buffers
    else:
        kwargs["broadcast_buffers"] = sync_buffers
    if device.type == "cuda":
        kwargs["device_ids"] = [device.index]
    ctx.log.info("DistributedDataParallel: find_unused_parameters=%s, buffers synchronised: %s",
                 find_unused, sync_buffers)
    return ddp_cls(model, **kwargs)


#: The loop's validated intervals (the plan runs the same check).
_intervals = T.intervals


def freeze_backbone(plugin, spec: dict, model) -> None:
    """Stop the gradients of the plugin's backbone parameters when ``model.train_backbone``
    is false (the worker's train step and the benchmark's plain loop)."""
    if not bool(S.get(spec, "model.train_backbone", True)):
        for name, p in model.named_parameters():
            if plugin.is_backbone_param(name):
                p.requires_grad_(False)


def _build_model(ctx, arch: dict, files: dict[str, Path | None]):
    """The model to train: built from ``arch``, pretrained weights loaded, backbone frozen
    when ``model.train_backbone`` is false, moved to the training device."""
    import torch

    plugin, spec = ctx.plugin, ctx.spec
    model = plugin.build_model(arch)
    loads = [(plugin.pretrained_backbone_key, plugin.backbone_prefix)]
    if not S.get(spec, "train.resume_training_checkpoint_path"):
        loads.append((plugin.pretrained_model_key, ""))
    for key, prefix in loads:
        if S.get(spec, key):
            report = load_pretrained(model, files[key], key, plugin, prefix=prefix)
            given = S.get(getattr(ctx, "given_spec", spec), key) or S.get(spec, key)
            report_load(ctx, load_report(key, str(given), str(files[key]), report))
    freeze_backbone(plugin, spec, model)
    device = R.device()
    gpu_ids = S.get(spec, "train.gpu_ids")
    if (D.state().world_size == 1 and device.type == "cuda" and isinstance(gpu_ids, list)
            and len(gpu_ids) == 1 and isinstance(gpu_ids[0], int)):
        if gpu_ids[0] >= torch.cuda.device_count():
            raise SpecError(f"train.gpu_ids={gpu_ids}: only {torch.cuda.device_count()} GPU(s) "
                            "are visible; use an index below that")
        torch.cuda.set_device(gpu_ids[0])
        device = R.device()
    model.to(device)
    return model, device


def _resume(ctx, arch, files, model, optimizer, scheduler, ema, steps_per_epoch: int,
            scaler=None) -> tuple[int, int, int]:
    """Restore the state of ``train.resume_training_checkpoint_path``; return
    ``(start epoch, global step, steps of the start epoch already done)`` (zeros without
    one). A per-step checkpoint taken inside an epoch resumes that epoch after its done steps
    (same batch order: the order of an epoch depends only on the seed and the epoch)."""
    resume_path = S.get(ctx.spec, "train.resume_training_checkpoint_path")
    if not resume_path:
        return 0, 0, 0
    ckpt = load_checkpoint(files["train.resume_training_checkpoint_path"],
                           "train.resume_training_checkpoint_path")
    ckpt_arch = ckpt["arch"] or arch  # TAO's own checkpoint: the spec describes it
    diffs = ctx.plugin.arch_diff(ckpt_arch, arch)
    if diffs or ckpt_arch.get("num_classes") != arch["num_classes"]:
        raise SpecError(
            f"train.resume_training_checkpoint_path={resume_path} was trained with another "
            f"model ({', '.join(diffs) or 'dataset.num_classes'}); resume with the same "
            "model settings, or start a new training with train.pretrained_model_path"
        )
    what = "train.resume_training_checkpoint_path"
    model.load_state_dict(checkpoint_state(ckpt, ctx.plugin, model, what))
    own = ckpt["arch"] is not None  # TAO's own optimizer groups differ from the worker's
    if own and ckpt.get("optimizer_states"):
        optimizer.load_state_dict(ckpt["optimizer_states"][0])
    if own and ckpt.get("lr_schedulers"):
        scheduler.load_state_dict(ckpt["lr_schedulers"][0])
    if ema is not None and ckpt.get("ema_state_dict"):
        ema.module.load_state_dict(checkpoint_state(ckpt, ctx.plugin, ema.module, what,
                                                    key="ema_state_dict"))
    if scaler is not None and ckpt.get("native_amp_scaling_state"):
        scaler.load_state_dict(ckpt["native_amp_scaling_state"])  # fp16: the loss scale reached
    start_epoch = int(ckpt.get("epoch", -1)) + 1
    global_step = int(ckpt.get("global_step", 0))
    skip_steps = min(max(global_step - start_epoch * steps_per_epoch, 0), steps_per_epoch)
    global_step = start_epoch * steps_per_epoch + skip_steps
    ctx.status.running(f"resuming from {resume_path} (completed epoch "
                       f"{start_epoch - 1}, step {global_step})"
                       + ("" if own else "; TAO checkpoint: weights, epoch and step resumed, "
                          "optimizer and LR schedule start afresh"), kpi=ckpt.get("kpi") or None)
    return start_epoch, global_step, skip_steps


def _prepare(ctx, arch: dict, seed: int):
    """Stage the files (once per node), load the task's training data and the model files."""
    with D.local_first("preparing the data"):
        R.stage(ctx)
        data = ctx.plugin.task.train_data(ctx, ctx.plugin, arch, seed + 1000 * D.state().rank)
        files = {}
        for key in model_files(ctx.plugin):
            uri = S.get(ctx.spec, key)
            files[key] = fetch_weights(str(uri), key) if uri else None
    return data, files


def train(ctx, regulariser=None) -> str:
    """Train the network; write checkpoints, the latest link and per-epoch status lines.

    ``regulariser(ctx, model, device, files)`` (the distill action) returns an object whose
    ``step_loss(plugin, model, batch, device, arch)`` replaces the plugin's forward + loss in
    each step (task loss plus its own term) and whose ``notes`` go into the start line.

    In a distributed job (see :mod:`tao_sdk.worker.distributed`) every rank runs this: the
    model is wrapped in ``DistributedDataParallel``, the train samples are split by a
    ``DistributedSampler`` (``dataset.batch_size`` per process), validation is sharded, and
    only rank 0 writes status lines and checkpoints.
    """
    plugin = ctx.plugin
    dist = D.state()
    seed = R.seed_everything(ctx.spec)
    arch = plugin.build_arch(ctx.spec)
    iv = _intervals(ctx.spec)
    batch_size = R.batch_size(ctx.spec, plugin.task.batch_size_key)
    precision = precision_from_spec(ctx.spec, R.device())  # refused here, before staging
    data, files = _prepare(ctx, arch, seed)
    spec = ctx.spec  # now with local paths
    extra = list(data.notes) + [precision.describe()]
    if dist.world_size > 1:
        extra.append(
            f"distributed data parallel: {dist.describe()}; {plugin.task.batch_size_key} "
            f"{batch_size} per "
            f"process (effective batch {batch_size * dist.world_size}); validation sharded "
            "across the ranks, metrics on rank 0")
    extra += D.launch_notes() + D.single_process_notes(spec)
    model, device = _build_model(ctx, arch, files)
    model = tune_model(plugin, model, device)
    reg = regulariser(ctx, model, device, files) if regulariser is not None else None
    tracking = open_tracking(ctx, system_facts(device, dist.world_size, precision.name))
    try:
        R.report_start(ctx, arch, extra + (reg.notes if reg is not None else []) + tracking.notes)
        return _train_tracked(ctx, arch, data, model, device, reg, iv, batch_size, seed,
                              precision, files, tracking)
    finally:  # a failed job closes its runs as failed (a finished one closed them already)
        tracking.finish(ctx.status.kpi, None, ok=False)


def _train_tracked(ctx, arch, data, model, device, reg, iv, batch_size, seed, precision,
                   files, tracking) -> str:
    """:func:`train` after the model is built: loader, optimizer, resume, the epochs, the
    final line; ``tracking`` gets every step, epoch and the final checkpoint's KPIs."""
    import torch

    plugin, spec, dist = ctx.plugin, ctx.spec, D.state()
    num_epochs = iv["num_epochs"]

    sampler = None
    if dist.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(
            data.dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed,
            drop_last=False)
    if device.type == "cuda" and hasattr(data.collate, "defer_normalize"):
        data.collate.defer_normalize = True  # uint8 batches, normalised on the GPU by the plugin
    loader = R.loader(data.dataset, data.collate, batch_size, True,
                      R.workers(spec, plugin.task.workers_key), seed, sampler=sampler)
    steps_per_epoch = len(loader)
    max_step = steps_per_epoch * num_epochs
    optimizer = build_optimizer(plugin, spec, model, device)
    scheduler = build_lr_schedule(plugin, spec, optimizer, steps_per_epoch)
    ema = None
    if bool(S.get(spec, "train.enable_ema", False)):
        ema = EMA(model, float(S.get(spec, "train.ema.decay", 0.999)))
    scaler = precision.grad_scaler()
    start_epoch, global_step, skip_steps = _resume(ctx, arch, files, model, optimizer,
                                                   scheduler, ema, steps_per_epoch, scaler)
    if start_epoch >= num_epochs:
        resume_path = S.get(spec, "train.resume_training_checkpoint_path")
        return (f"Training already complete: {resume_path} finished epoch "
                f"{start_epoch - 1} of train.num_epochs={num_epochs}; raise "
                "train.num_epochs to train longer.")
    # The module that trains: DistributedDataParallel averages the gradients across the ranks.
    # ``model`` stays the plain module (checkpoints, EMA, validation).
    train_model = _ddp(ctx, model, arch, device) if dist.world_size > 1 else model
    loop = _Loop(ctx, arch, model, train_model, loader, sampler, optimizer, scheduler, ema,
                 data.val, iv, batch_size, device, steps_per_epoch, max_step, seed,
                 precision, scaler)
    loop.regulariser = reg
    loop.tracking = tracking
    last_ckpt = loop.run(start_epoch, global_step, skip_steps)
    # Every rank finished (a rank that failed after its last step fails the job here).
    D.barrier()
    final = ctx.status.kpi
    tracking.finish(final, str(last_ckpt) if last_ckpt is not None else None, ok=True)
    summary = ", ".join(f"{k}={v:.4f}" for k, v in final.items() if isinstance(v, float))
    where = last_ckpt.name if last_ckpt is not None else "no checkpoint"
    ranks = f" on {dist.world_size} processes" if dist.world_size > 1 else ""
    what = "Distill" if reg is not None else "Train"
    return (f"{what} finished successfully{ranks}: {num_epochs} epochs, {summary}; last "
            f"checkpoint {where}.")


class _Loop:
    """The epochs of one train job (state shared by the step, progress and epoch-end code)."""

    def __init__(self, ctx, arch, model, train_model, loader, sampler, optimizer, scheduler,
                 ema, val, iv, batch_size, device, steps_per_epoch, max_step, seed,
                 precision, scaler=None) -> None:
        self.ctx, self.arch, self.model, self.train_model = ctx, arch, model, train_model
        self.loader, self.sampler = loader, sampler
        self.optimizer, self.scheduler, self.ema = optimizer, scheduler, ema
        self.val, self.iv, self.batch_size, self.device = val, iv, batch_size, device
        self.steps_per_epoch, self.max_step = steps_per_epoch, max_step
        self.precision = precision
        self.scaler = scaler
        self.seed = seed
        self.skip_steps = 0
        spec = ctx.spec
        self.ema_every = max(1, int(S.get(spec, "train.ema.every_n_steps", 1)))
        self.val_original = bool(S.get(spec, "train.ema.validate_original_weights", False))
        self.clip = float(S.get(spec, "train.clip_grad_norm", 0.0) or 0.0)
        self.epoch_times: list[float] = []
        self.last_ckpt: Path | None = None
        self.global_step = 0
        self.regulariser = None
        self.tracking = None  # the job's Tracking (tao_sdk.worker.tracking)

    def run(self, start_epoch: int, global_step: int, skip_steps: int = 0) -> Path | None:
        """Train epochs ``start_epoch .. num_epochs - 1`` (the first ``skip_steps`` batches of
        ``start_epoch`` were trained before the checkpoint resumed from); return the last
        checkpoint."""
        self.global_step = global_step
        for epoch in range(start_epoch, self.iv["num_epochs"]):
            self.skip_steps = skip_steps if epoch == start_epoch else 0
            self._epoch(epoch)
        return self.last_ckpt

    def _step(self, batch, epoch: int) -> float:
        """One optimizer step under the job's precision; returns the (rank-averaged) loss.
        The loss value is the step's only host synchronisation (the divergence check)."""
        import torch

        ctx, dist = self.ctx, D.state()
        with self.precision.autocast():
            if self.regulariser is not None:
                loss = self.regulariser.step_loss(ctx.plugin, self.train_model, batch,
                                                  self.device, self.arch)
            else:
                out = ctx.plugin.forward(self.train_model, batch, self.device,
                                         with_labels=True)
                loss = ctx.plugin.loss(out, self.arch)
        # Mean over the ranks: every rank sees a divergence at the same step.
        value = (D.all_reduce_mean(loss.detach()) if dist.world_size > 1
                 else float(loss.detach()))
        if not math.isfinite(value):
            raise WorkerError(
                f"training diverged: loss is {value} at epoch {epoch}, step {self.global_step}; "
                f"lower train.optim.lr (now {S.get(ctx.spec, 'train.optim.lr')}) or raise "
                "train.optim.warmup_steps")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scaled loss, unscale before clipping
            self.scaler.scale(loss).backward()
            if self.clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        if self.ema is not None and self.global_step % self.ema_every == 0:
            self.ema.update(self.model)
        if self.tracking is not None:
            self.tracking.step(self.global_step, value, self.optimizer)
        return value

    def _checkpoint(self, epoch: int, partial_epoch: int | None = None) -> None:
        self.last_ckpt = save_checkpoint(self.ctx, self.model, self.optimizer, self.scheduler,
                                         self.ema, self.arch, epoch, self.global_step,
                                         self.ctx.status.kpi, partial_epoch=partial_epoch,
                                         scaler=self.scaler) \
            or self.last_ckpt

    def _progress(self, epoch: int, i: int, t0: float) -> None:
        now = time.monotonic()
        per_step = (now - t0) / (i + 1)
        recent = self.epoch_times[-3:]
        remaining = per_step * (self.steps_per_epoch - i - 1) + (
            (self.iv["num_epochs"] - epoch - 1) * (sum(recent) / len(recent) if recent
                                                   else per_step * self.steps_per_epoch))
        self.ctx.status.running(f"epoch {epoch}: step {i + 1}/{self.steps_per_epoch}",
                                epoch=epoch, max_epoch=self.iv["num_epochs"] - 1,
                                step=self.global_step, max_step=self.max_step,
                                eta=format_timedelta(remaining))

    def _epoch(self, epoch: int) -> None:
        ctx, iv = self.ctx, self.iv
        num_epochs = iv["num_epochs"]
        self.train_model.train()
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        else:
            self.loader.generator.manual_seed(self.seed + epoch)
        t0 = time.monotonic()
        last_progress = t0
        loss_sum, loss_n = 0.0, 0
        for i, batch in enumerate(self.loader):
            if i < self.skip_steps:
                continue  # done before the per-step checkpoint we resume from
            loss_sum += self._step(batch, epoch)
            loss_n += 1
            if (iv["ckpt_unit"] == "step" and self.global_step % iv["ckpt_interval"] == 0
                    and not (i + 1 == self.steps_per_epoch and epoch == num_epochs - 1)):
                # A mid-epoch checkpoint records the last *completed* epoch for resuming.
                done = epoch if i + 1 == self.steps_per_epoch else epoch - 1
                self._checkpoint(done, partial_epoch=epoch)
            if time.monotonic() - last_progress > PROGRESS_EVERY_S and \
                    i + 1 < self.steps_per_epoch:
                last_progress = time.monotonic()
                self._progress(epoch, i, t0)
        kpi: dict[str, Any] = {"train_loss": loss_sum / max(1, loss_n)}
        if self.val is not None and (epoch + 1) % iv["val_interval"] == 0:
            eval_model = (self.ema.module if self.ema is not None and not self.val_original
                          else self.model)
            D.sync_buffers(eval_model)  # every rank validates rank 0's model
            with self.precision.autocast():
                kpi.update(ctx.plugin.task.validate(ctx, ctx.plugin, eval_model, self.arch,
                                                    self.val, self.batch_size))
        epoch_time = time.monotonic() - t0
        self.epoch_times.append(epoch_time)
        recent = self.epoch_times[-3:]
        eta = (num_epochs - epoch - 1) * sum(recent) / len(recent)
        ctx.status.running("Train metrics generated.", kpi=kpi, epoch=epoch,
                           max_epoch=num_epochs - 1, step=self.global_step,
                           max_step=self.max_step, time_per_epoch=format_timedelta(epoch_time),
                           eta=format_timedelta(eta))
        if self.tracking is not None:
            self.tracking.epoch(epoch, self.global_step, ctx.status.kpi, self.optimizer)
        if epoch == num_epochs - 1 or (iv["ckpt_unit"] == "epoch"
                                       and (epoch + 1) % iv["ckpt_interval"] == 0):
            self._checkpoint(epoch)
