"""The actions the worker runs: train, evaluate, inference, export, gen_trt_engine.

Each action takes a :class:`tao_sdk.worker.job.JobContext`, writes its artifacts into the task
folder and RUNNING lines into ``status.json``, and returns the SUCCESS message; failures raise
(see :mod:`tao_sdk.worker.errors`).

Train semantics (TAO's, with two stated choices):

- one RUNNING line per epoch with ``epoch`` (0-based), ``max_epoch``, ``step`` (global step),
  ``max_step`` (total steps), ``time_per_epoch`` (training + validation), ``eta`` and the KPIs
  ``train_loss`` (every epoch), ``val_mAP`` / ``val_mAP50`` / ``val_loss`` (every
  ``validation_interval`` epochs; sticky in between);
- checkpoints every ``checkpoint_interval`` epochs (or steps with
  ``checkpoint_interval_unit: step``) **and always after the last epoch**, so a finished job
  always has its final weights; ``<prefix>_model_latest.pth`` links to the newest one;
- ``lr_steps`` / ``lr_step_size`` count epochs; ``warmup_steps`` counts optimizer steps;
- resuming restores model, optimizer, schedule, EMA and step counter and continues with the
  epoch after the checkpoint's (a mid-epoch ``step`` checkpoint restarts its epoch);
- data-parallel training (``train.num_gpus`` > 1, multi-node environment; see
  :mod:`tao_sdk.worker.distributed`): ``dataset.batch_size`` per process, the train images
  split by ``DistributedSampler`` (``step`` / ``max_step`` count each rank's steps), gradients
  averaged by ``DistributedDataParallel``, ``train_loss`` averaged over the ranks, validation
  images split across the ranks with the metrics computed on rank 0, which alone writes status
  lines and checkpoints.

Evaluate / inference / export rebuild the network from the architecture stored in the
checkpoint; differences with the spec's ``model`` section are reported, not silently applied.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import DatasetError, SpecError, WorkerError
from tao_sdk.worker.job import JobContext
from tao_sdk.worker.models import (
    CHECKPOINT_FORMAT,
    build_arch,
    checkpoint_name,
    load_checkpoint,
    load_pretrained,
    model_from_arch,
    postprocess_arch,
    unhonoured_fields,
)
from tao_sdk.worker.staging import (
    CocoData,
    fetch_file,
    list_images,
    load_coco,
    read_label_map,
    stage_image_dir,
    stage_spec,
)
from tao_sdk.worker.status import format_timedelta

__all__ = ["ACTIONS", "train", "evaluate", "inference", "export", "gen_trt_engine"]

#: Seconds between progress lines inside a long epoch.
PROGRESS_EVERY_S = 60.0


# --------------------------------------------------------------------------- helpers


def _stage(ctx: JobContext) -> None:
    """Download / extract the files the action reads and point ``ctx.spec`` at local copies."""
    ctx.spec = stage_spec(ctx.spec, ctx.action, ctx.log.info)


def _device():
    """The current CUDA device (set per rank in a distributed job), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _seed(spec: dict) -> int:
    import numpy as np
    import torch

    seed = int(S.get(spec, "train.seed", 1234))
    torch.backends.cudnn.benchmark = bool(S.get(spec, "train.cudnn.benchmark", False))
    torch.backends.cudnn.deterministic = bool(S.get(spec, "train.cudnn.deterministic", True))
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return seed


def _report_start(ctx: JobContext, arch: dict | None = None, extra: list[str] | None = None
                  ) -> None:
    """One RUNNING line naming the model built and the spec fields not honoured."""
    ignored = unhonoured_fields(ctx.network, ctx.action, ctx.spec)
    parts = []
    if arch is not None:
        parts.append(f"model: {ctx.info.display}, backbone {arch['backbone_desc']}, "
                     f"{arch['num_classes']} classes, device {_device().type}")
    parts += list(extra or [])
    if ignored:
        parts.append("spec fields not honoured by this implementation: " + "; ".join(ignored))
    if parts:
        ctx.status.running(". ".join(parts))


def _sources(value: Any, key: str) -> list[dict]:
    """Normalise a data-sources value (one mapping or a list of them) to a list."""
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict) or not item.get("image_dir") or not item.get("json_file"):
            raise SpecError(
                f"{key} entries need image_dir and json_file (dataset images.tar.gz and "
                f"annotations.json URIs); got {item!r}"
            )
    return items


def _stage_coco(ctx: JobContext, key: str, sources: list[dict], num_classes: int
                ) -> list[CocoData]:
    """Download / extract / validate each ``{image_dir, json_file}`` source."""
    remap = bool(S.get(ctx.spec, "dataset.remap_mscoco_category", False))
    out = []
    for i, src in enumerate(sources):
        what = f"{key}[{i}]" if len(sources) > 1 or key.endswith("train_data_sources") else key
        json_path = fetch_file(str(src["json_file"]), f"{what}.json_file")
        image_dir = stage_image_dir(str(src["image_dir"]), f"{what}.image_dir")
        data = load_coco(json_path, image_dir, num_classes, remap=remap, what=what)
        ctx.log.info("%s: %d images, %d boxes (%s)", what, len(data.images),
                     sum(len(im.boxes) for im in data.images), src["json_file"])
        summary = data.issues_summary(what)
        if summary:  # every dropped / clipped box is reported, in status.json too
            ctx.log.warning("%s", summary)
            ctx.status.write("RUNNING", summary, verbosity="WARNING")
        out.append(data)
    return out


def _policy(network: str, spec: dict, eval_override: tuple[int, int] | None = None):
    """The resize policy of ``network`` from the spec's augmentation section."""
    from tao_sdk.worker.data import ResizePolicy

    aug = "dataset.augmentation"
    if network == "rtdetr":
        train_size = S.get(spec, f"{aug}.train_spatial_size", [640, 640])
        eval_size = S.get(spec, f"{aug}.eval_spatial_size", train_size)
        for key, val in (("train_spatial_size", train_size), ("eval_spatial_size", eval_size)):
            if not (isinstance(val, list) and len(val) == 2 and all(int(v) > 0 for v in val)):
                raise SpecError(f"{aug}.{key}={val!r} must be [height, width]")
        scales = S.get(spec, f"{aug}.multi_scales", [])
        # a scale is a square side or, for rectangle training, an [h, w] pair
        train_sizes = ([(int(s[0]), int(s[1])) if isinstance(s, (list, tuple)) else (int(s), int(s))
                        for s in scales] if scales else [tuple(int(v) for v in train_size)])
        return ResizePolicy("fixed", train_sizes,
                            eval_override or tuple(int(v) for v in eval_size))
    scales = [int(s) for s in S.get(spec, f"{aug}.scales", [800])]
    test_size = int(S.get(spec, f"{aug}.test_random_resize", 800))
    max_size = int(S.get(spec, f"{aug}.random_resize_max_size", 1333))
    if eval_override is not None:
        return ResizePolicy("fixed", [eval_override], eval_override)
    return ResizePolicy("shorter", scales, test_size, max_size)


def _flip_prob(network: str, spec: dict) -> float:
    if network == "rtdetr":
        return 0.5
    return float(S.get(spec, "dataset.augmentation.horizontal_flip_prob", 0.5))


def _workers(spec: dict) -> int:
    """DataLoader workers: ``dataset.workers`` capped at (CPU cores - 1) shared by the
    processes of this node; 0 when training on the CPU, where loader processes only compete
    with the model for the same cores."""
    if _device().type == "cpu":
        return 0
    requested = int(S.get(spec, "dataset.workers", 0))
    per_node = max(1, D.state().local_world_size)
    return max(0, min(requested, ((os.cpu_count() or 1) - 1) // per_node))


def _loader(dataset, collator, batch_size: int, shuffle: bool, workers: int, seed: int,
            sampler=None):
    """A DataLoader over ``dataset``; with ``sampler`` (a ``DistributedSampler``) the sampler
    decides the order and ``shuffle`` is not used."""
    import torch

    def _init(worker_id: int) -> None:
        s = (torch.initial_seed() + worker_id) % (2 ** 32)
        if hasattr(dataset, "rng"):
            dataset.rng.seed(s)
        collator.rng.seed(s + 7)

    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
        sampler=sampler, num_workers=workers,
        collate_fn=collator, worker_init_fn=_init if workers else None, generator=gen,
        persistent_workers=bool(workers), drop_last=False,
    )


def _batch_size(spec: dict, key: str | None = None) -> int:
    value = S.get(spec, key, -1) if key else -1
    if value in (None, -1):
        value = S.get(spec, "dataset.batch_size", 4)
    value = int(value)
    if value < 1:
        raise SpecError(f"{key or 'dataset.batch_size'}={value} must be >= 1")
    return value


def _local_model_file(ctx: JobContext, key: str, what: str) -> Path:
    uri = S.require(ctx.spec, key, what)
    return fetch_file(str(uri), key)


def _model_from_checkpoint(ctx: JobContext, key: str):
    """Load ``spec[key]`` (a checkpoint of this worker) -> ``(model, arch, ckpt)``.

    The checkpoint's architecture is used; differences with the spec's ``model`` section are
    reported; ``model.num_select`` of the spec is honoured (post-processing only).
    """
    path = _local_model_file(ctx, key, "the .pth checkpoint to use (model_epoch_XXX.pth)")
    ckpt = load_checkpoint(path, key)
    if ckpt["arch"].get("network") != ctx.network:
        raise WorkerError(
            f"{key}: {path} is a {ckpt['arch'].get('network')} checkpoint, not {ctx.network}; "
            "use a checkpoint from this network's train job"
        )
    arch = copy.deepcopy(ckpt["arch"])
    notes = []
    try:
        spec_arch = build_arch(ctx.network, ctx.spec)
    except SpecError as exc:
        spec_arch = None
        notes.append(f"model section not used ({exc})")
    if spec_arch is not None:
        diffs = _arch_diff(arch, spec_arch)
        if diffs:
            notes.append("The checkpoint's architecture is used; it differs from the spec in "
                         + ", ".join(diffs))
        if spec_arch["num_classes"] != arch["num_classes"]:
            raise SpecError(
                f"dataset.num_classes={spec_arch['num_classes']} but {path} was trained with "
                f"{arch['num_classes']} classes; set dataset.num_classes={arch['num_classes']}"
            )
        arch["num_select"] = min(spec_arch["num_select"],
                                 arch["hf_config"]["num_queries"] * arch["num_classes"])
    model = model_from_arch(arch)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise WorkerError(
            f"{key}: {path} does not fit its own architecture record (missing {list(missing)[:5]},"
            f" unexpected {list(unexpected)[:5]}); the file is damaged - use another checkpoint"
        )
    ctx.log.info("loaded %s (epoch %s, step %s)", path, ckpt.get("epoch"), ckpt.get("global_step"))
    return model, arch, ckpt, notes


def _detector(ctx: JobContext, section: str):
    """The model an evaluate / inference job runs: ``(model, arch, notes, input size)``.

    A TensorRT job (``<section>.trt_engine`` set, no checkpoint) checks for the GPU first,
    then stages the data and loads the engine (its input size fixes the resize); otherwise the
    checkpoint is loaded (input size from ``<section>.input_height/width`` when set).
    """
    if S.is_tensorrt_job(ctx.spec, section):
        from tao_sdk.worker.trt import TrtDetector, require_tensorrt

        require_tensorrt()  # fails at once without an NVIDIA GPU / tensorrt
        _stage(ctx)
        key = f"{section}.trt_engine"
        engine = fetch_file(str(S.get(ctx.spec, key)), key)
        det = TrtDetector(engine, key)
        arch = postprocess_arch(ctx.network, ctx.spec)
        return det, arch, [f"TensorRT engine {engine.name}, input {det.input_hw}, "
                           f"max batch {det.max_batch}"], det.input_hw
    _stage(ctx)
    model, arch, _ckpt, notes = _model_from_checkpoint(ctx, f"{section}.checkpoint")
    return model, arch, notes, _eval_size(ctx, section)


_ARCH_KEYS = {
    "num_queries": "model.num_queries", "d_model": "model.hidden_dim",
    "encoder_layers": "model.enc_layers", "decoder_layers": "model.dec_layers",
    "num_feature_levels": "model.num_feature_levels", "encoder_ffn_dim": "model.dim_feedforward",
    "encoder_attention_heads": "model.nheads",
}


def _arch_diff(ckpt_arch: dict, spec_arch: dict) -> list[str]:
    """Human list of architecture differences (``model.num_queries: 20 vs spec 300``)."""
    out = []
    for key, dotted in _ARCH_KEYS.items():
        a = ckpt_arch["hf_config"].get(key)
        b = spec_arch["hf_config"].get(key)
        if a != b:
            out.append(f"{dotted} (checkpoint {a}, spec {b})")
    if ckpt_arch.get("backbone") != spec_arch.get("backbone"):
        out.append(f"model.backbone (checkpoint {ckpt_arch.get('backbone')}, spec "
                   f"{spec_arch.get('backbone')})")
    if ckpt_arch.get("backbone_scale") != spec_arch.get("backbone_scale"):
        out.append(f"backbone scale (checkpoint {ckpt_arch.get('backbone_scale')}, "
                   f"TAO_WORKER_BACKBONE_SCALE {spec_arch.get('backbone_scale')})")
    return out


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _eval_sets(ctx: JobContext, model, arch, datas: list[CocoData], policy, batch_size: int,
               with_loss: bool, conf_threshold: float = 0.0):
    """COCO-evaluate ``model`` on ``datas`` (merged); return ``(metrics, mean_loss, results)``.

    In a distributed job each rank predicts its slice of the images (``images[rank::world]``,
    no image twice) and rank 0 gathers the detections and losses and computes the metrics;
    the other ranks get ``(None, None, [], merged)``.
    """
    from tao_sdk.worker.data import Collator, DetectionDataset
    from tao_sdk.worker.evaluation import coco_map, merge_coco, predict

    dist = D.state()
    merged, maps = merge_coco([d.raw for d in datas])
    results_all = []
    losses = []
    for data, id_map in zip(datas, maps):
        images = data.images[dist.rank::dist.world_size] if dist.world_size > 1 else data.images
        results, loss = [], None
        if images:
            ds = DetectionDataset(images, train=False)
            coll = Collator(policy, arch["mean"], arch["std"], train=False)
            loader = _loader(ds, coll, batch_size, False, 0, 0)
            results, loss = predict(model, loader, arch, _device(), with_loss=with_loss,
                                    pass_mask=ctx.network == "deformable_detr")
        for meta, s, lab, b in results:
            keep = s >= conf_threshold
            results_all.append(({**meta, "image_id": id_map[meta["image_id"]]}, s[keep],
                                lab[keep], b[keep]))
        if loss is not None:
            losses.append((loss, len(images)))
    if dist.world_size > 1:
        gathered = D.gather_to_main((results_all, losses))
        if gathered is None:
            return None, None, [], merged
        results_all = [r for part, _ in gathered for r in part]
        losses = [x for _, part in gathered for x in part]
    label_to_cat: dict[int, int] = {}
    for d in datas:
        label_to_cat.update(d.label_to_category)
    class_ids = S.get(ctx.spec, "dataset.eval_class_ids") or None
    metrics = coco_map(merged, results_all, label_to_cat, class_ids=class_ids)
    mean_loss = (sum(l * n for l, n in losses) / max(1, sum(n for _, n in losses))
                 if losses else None)
    return metrics, mean_loss, results_all, merged


# --------------------------------------------------------------------------- train


class _EMA:
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


def _optimizer(ctx: JobContext, model, arch):
    import torch

    spec = ctx.spec
    lr = float(S.get(spec, "train.optim.lr", 1e-4))
    lr_backbone = float(S.get(spec, "train.optim.lr_backbone", lr * 0.1))
    wd = float(S.get(spec, "train.optim.weight_decay", 1e-4))
    proj_mult = float(S.get(spec, "train.optim.lr_linear_proj_mult", 1.0))
    if lr <= 0:
        raise SpecError(f"train.optim.lr={lr} must be > 0")
    groups: dict[str, list] = {"backbone": [], "proj": [], "rest": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".backbone." in f".{name}":
            groups["backbone"].append(p)
        elif ctx.network == "deformable_detr" and ("sampling_offsets" in name
                                                   or "reference_points" in name):
            groups["proj"].append(p)
        else:
            groups["rest"].append(p)
    params = [{"params": groups["rest"], "lr": lr}]
    if groups["backbone"]:
        params.append({"params": groups["backbone"], "lr": lr_backbone})
    if groups["proj"]:
        params.append({"params": groups["proj"], "lr": lr * proj_mult})
    kind = str(S.get(spec, "train.optim.optimizer", "AdamW"))
    if kind.lower() == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if kind.lower() == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd,
                               momentum=float(S.get(spec, "train.optim.momentum", 0.9)))
    raise SpecError(f"train.optim.optimizer={kind!r} is not supported; use AdamW or SGD")


def _scheduler(ctx: JobContext, optimizer, steps_per_epoch: int):
    """Per-step LambdaLR: linear warm-up over ``warmup_steps``, then MultiStep / StepLR decay
    by ``lr_decay`` at epoch boundaries (``lr_steps`` / ``lr_step_size`` are in epochs)."""
    import torch

    spec = ctx.spec
    kind = str(S.get(spec, "train.optim.lr_scheduler", "MultiStep"))
    decay = float(S.get(spec, "train.optim.lr_decay", 0.1))
    warmup = int(S.get(spec, "train.optim.warmup_steps", 0))
    if kind == "MultiStep":
        milestones = sorted(int(s) for s in S.get(spec, "train.optim.lr_steps", []))

        def epoch_factor(epoch: int) -> float:
            """Decay applied at ``epoch``: one ``lr_decay`` per milestone reached."""
            return decay ** sum(1 for m in milestones if epoch >= m)
    elif kind == "StepLR":
        size = int(S.get(spec, "train.optim.lr_step_size", 1))
        if size < 1:
            raise SpecError(f"train.optim.lr_step_size={size} must be >= 1")

        def epoch_factor(epoch: int) -> float:
            """Decay applied at ``epoch``: one ``lr_decay`` every ``lr_step_size`` epochs."""
            return decay ** (epoch // size)
    else:
        raise SpecError(f"train.optim.lr_scheduler={kind!r} is not supported; use MultiStep or "
                        "StepLR")

    def factor(step: int) -> float:
        """Learning-rate multiplier at global ``step`` (warm-up x epoch decay)."""
        warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return warm * epoch_factor(step // max(1, steps_per_epoch))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _save_checkpoint(ctx: JobContext, payload: dict, name: str) -> Path:
    import torch

    path = ctx.task_dir / name
    tmp = path.with_name(".tao-tmp-" + name)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _update_latest(ctx: JobContext, target: Path) -> None:
    """Point ``<prefix>_model_latest.pth`` at ``target`` (relative symlink; copy if links fail)."""
    import shutil

    link = ctx.task_dir / ctx.info.latest_link
    tmp = ctx.task_dir / (".tao-tmp-" + ctx.info.latest_link)
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        os.symlink(target.name, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def _ddp(ctx: JobContext, model, arch: dict, device):
    """Wrap ``model`` in ``DistributedDataParallel``.

    RT-DETR with denoising queries leaves its denoising class embedding unused in a step whose
    batch holds no box at all, so DDP is told to look for unused parameters (an extra pass
    over the autograd graph); every Deformable DETR parameter is used in every step. Buffers
    are synchronised from rank 0 only when the model has BatchNorm running statistics.
    Environment ``TAO_WORKER_DDP_FIND_UNUSED=0/1`` overrides the choice.
    """
    import inspect

    import torch

    find_unused = ctx.network == "rtdetr" and int(arch["hf_config"].get("num_denoising", 0)) > 0
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


def _prepare_train(ctx: JobContext, num_classes: int) -> dict[str, Any]:
    """Stage the train job's files (datasets, pretrained / resume checkpoints) and load the
    annotations; returns the local data and paths."""
    _stage(ctx)
    spec = ctx.spec
    train_sources = _sources(S.get(spec, "dataset.train_data_sources"),
                             "dataset.train_data_sources")
    if not train_sources:
        raise SpecError("dataset.train_data_sources is empty: set it to a list of "
                        "{image_dir: <images.tar.gz>, json_file: <annotations.json>}")
    val_sources = _sources(S.get(spec, "dataset.val_data_sources"), "dataset.val_data_sources")
    out: dict[str, Any] = {
        "train": _stage_coco(ctx, "dataset.train_data_sources", train_sources, num_classes),
        "val": _stage_coco(ctx, "dataset.val_data_sources", val_sources, num_classes),
    }
    for key in ("model.pretrained_backbone_path", "train.pretrained_model_path",
                "train.resume_training_checkpoint_path"):
        uri = S.get(spec, key)
        out[key] = fetch_file(str(uri), key) if uri else None
    return out


def train(ctx: JobContext) -> str:
    """Train the network; write checkpoints, the latest link and per-epoch status lines.

    In a distributed job (see :mod:`tao_sdk.worker.distributed`) every rank runs this: the
    model is wrapped in ``DistributedDataParallel``, the train images are split by a
    ``DistributedSampler`` (``dataset.batch_size`` per process), validation is sharded, and
    only rank 0 writes status lines and checkpoints.
    """
    import torch

    from tao_sdk.worker.data import Collator, DetectionDataset

    dist = D.state()
    spec = ctx.spec
    seed = _seed(spec)
    arch = build_arch(ctx.network, spec)
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
    batch_size = _batch_size(spec)
    num_classes = arch["num_classes"]

    # Downloads and extraction happen once per node (local rank 0 first, then the others).
    with D.local_first("preparing the data"):
        inputs = _prepare_train(ctx, num_classes)
    spec = ctx.spec  # now with local paths
    train_data, val_data = inputs["train"], inputs["val"]
    # what each class index means, kept in the checkpoints: inference names classes the same way
    arch["class_names"] = {lab: name for d in train_data for lab, name in d.class_names().items()}
    images = [im for d in train_data for im in d.images]
    if not images:
        raise DatasetError("dataset.train_data_sources hold no images; check annotations.json")

    extra = []
    if not val_data:
        extra.append("no dataset.val_data_sources: val_mAP / val_mAP50 are not computed")
    if dist.world_size > 1:
        extra.append(
            f"distributed data parallel: {dist.describe()}; dataset.batch_size {batch_size} per "
            f"process, effective batch {batch_size * dist.world_size}; train images split by "
            "DistributedSampler, validation images split across the ranks (metrics computed on "
            "rank 0)")
        extra += D.launch_notes()
    else:
        extra += D.single_process_notes(spec)
    _report_start(ctx, arch, extra)

    model = model_from_arch(arch)
    bb_path = S.get(spec, "model.pretrained_backbone_path")
    if bb_path:
        n, total, bad = load_pretrained(model, inputs["model.pretrained_backbone_path"],
                                        "model.pretrained_backbone_path", prefix="model.backbone")
        ctx.status.running(f"loaded {n} of {total} backbone tensors from {bb_path}"
                           + (f" ({len(bad)} skipped: shape mismatch)" if bad else ""))
    pre_path = S.get(spec, "train.pretrained_model_path")
    resume_path = S.get(spec, "train.resume_training_checkpoint_path")
    if pre_path and not resume_path:
        n, total, bad = load_pretrained(model, inputs["train.pretrained_model_path"],
                                        "train.pretrained_model_path")
        ctx.status.running(f"loaded {n} of {total} tensors from {pre_path}"
                           + (f" ({len(bad)} skipped: shape mismatch, e.g. {bad[0]})"
                              if bad else ""))
    if not arch["train_backbone"]:
        for name, p in model.named_parameters():
            if ".backbone." in f".{name}":
                p.requires_grad_(False)
    device = _device()
    gpu_ids = S.get(spec, "train.gpu_ids")
    if (dist.world_size == 1 and device.type == "cuda" and isinstance(gpu_ids, list)
            and len(gpu_ids) == 1 and isinstance(gpu_ids[0], int)):
        if gpu_ids[0] >= torch.cuda.device_count():
            raise SpecError(f"train.gpu_ids={gpu_ids}: only {torch.cuda.device_count()} GPU(s) "
                            "are visible; use an index below that")
        torch.cuda.set_device(gpu_ids[0])
        device = _device()
    model.to(device)

    # Each rank draws its own augmentations; the model starts from the same weights everywhere.
    aug_seed = seed + 1000 * dist.rank
    ds = DetectionDataset(images, train=True, hflip_prob=_flip_prob(ctx.network, spec),
                          distortion_prob=float(S.get(
                              spec, "dataset.augmentation.distortion_prob", 0.0)
                              if ctx.network == "rtdetr" else 0.0), seed=aug_seed)
    policy = _policy(ctx.network, spec)
    coll = Collator(policy, arch["mean"], arch["std"], train=True, seed=aug_seed)
    sampler = None
    if dist.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(
            ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed,
            drop_last=False)
    loader = _loader(ds, coll, batch_size, True, _workers(spec), seed, sampler=sampler)
    steps_per_epoch = len(loader)
    max_step = steps_per_epoch * num_epochs
    optimizer = _optimizer(ctx, model, arch)
    scheduler = _scheduler(ctx, optimizer, steps_per_epoch)
    ema = None
    if bool(S.get(spec, "train.enable_ema", False)):
        ema = _EMA(model, float(S.get(spec, "train.ema.decay", 0.999)))
    ema_every = max(1, int(S.get(spec, "train.ema.every_n_steps", 1)))
    val_original = bool(S.get(spec, "train.ema.validate_original_weights", False))
    clip = float(S.get(spec, "train.clip_grad_norm", 0.0) or 0.0)

    start_epoch, global_step, skip_steps = 0, 0, 0
    if resume_path:
        ckpt = load_checkpoint(inputs["train.resume_training_checkpoint_path"],
                               "train.resume_training_checkpoint_path")
        diffs = _arch_diff(ckpt["arch"], arch)
        if diffs or ckpt["arch"].get("num_classes") != num_classes:
            raise SpecError(
                f"train.resume_training_checkpoint_path={resume_path} was trained with another "
                f"model ({', '.join(diffs) or 'dataset.num_classes'}); resume with the same "
                "model settings, or start a new training with train.pretrained_model_path"
            )
        model.load_state_dict(ckpt["state_dict"])
        if ckpt.get("optimizer_states"):
            optimizer.load_state_dict(ckpt["optimizer_states"][0])
        if ckpt.get("lr_schedulers"):
            scheduler.load_state_dict(ckpt["lr_schedulers"][0])
        if ema is not None and ckpt.get("ema_state_dict"):
            ema.module.load_state_dict(ckpt["ema_state_dict"])
        start_epoch = int(ckpt.get("epoch", -1)) + 1
        global_step = int(ckpt.get("global_step", 0))
        # A per-step checkpoint taken inside an epoch: that epoch resumes after its done steps
        # (same batch order: the order of an epoch depends only on the seed and the epoch).
        skip_steps = min(max(global_step - start_epoch * steps_per_epoch, 0), steps_per_epoch)
        global_step = start_epoch * steps_per_epoch + skip_steps
        ctx.status.running(f"resuming from {resume_path} (completed epoch "
                           f"{start_epoch - 1}, step {global_step})",
                           kpi=ckpt.get("kpi") or None)
        if start_epoch >= num_epochs:
            return (f"Training already complete: {resume_path} finished epoch "
                    f"{start_epoch - 1} of train.num_epochs={num_epochs}; raise "
                    "train.num_epochs to train longer.")

    # The module that trains: DistributedDataParallel averages the gradients across the ranks.
    # ``model`` stays the plain module (checkpoints, EMA, validation).
    train_model = model
    if dist.world_size > 1:
        train_model = _ddp(ctx, model, arch, device)

    eval_policy = _policy(ctx.network, spec)
    pass_mask = ctx.network == "deformable_detr"
    from tao_sdk.worker.evaluation import weighted_loss

    epoch_times: list[float] = []
    last_ckpt: Path | None = None
    for epoch in range(start_epoch, num_epochs):
        train_model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        else:
            loader.generator.manual_seed(seed + epoch)
        t0 = time.monotonic()
        last_progress = t0
        loss_sum, loss_n = 0.0, 0
        for i, batch in enumerate(loader):
            if epoch == start_epoch and i < skip_steps:
                continue  # done before the per-step checkpoint we resume from
            kwargs: dict[str, Any] = {"pixel_values": batch["pixel_values"].to(device)}
            if pass_mask:
                kwargs["pixel_mask"] = batch["pixel_mask"].to(device)
            kwargs["labels"] = [{k: v.to(device) for k, v in t.items()} for t in batch["labels"]]
            out = train_model(**kwargs)
            loss = weighted_loss(out, arch)
            # Mean over the ranks: every rank sees a divergence at the same step.
            loss_value = D.all_reduce_mean(loss.detach()) if dist.world_size > 1 else None
            if not (math.isfinite(loss_value) if loss_value is not None
                    else bool(torch.isfinite(loss))):
                raise WorkerError(
                    f"training diverged: loss is "
                    f"{loss_value if loss_value is not None else float(loss)} at epoch {epoch}, "
                    f"step {global_step}; lower train.optim.lr (now "
                    f"{S.get(spec, 'train.optim.lr')}) or raise train.optim.warmup_steps"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            global_step += 1
            if ema is not None and global_step % ema_every == 0:
                ema.update(model)
            loss_sum += loss_value if loss_value is not None else float(loss.detach())
            loss_n += 1
            if (ckpt_unit == "step" and global_step % ckpt_interval == 0
                    and not (i + 1 == steps_per_epoch and epoch == num_epochs - 1)):
                # A mid-epoch checkpoint records the last *completed* epoch for resuming.
                done = epoch if i + 1 == steps_per_epoch else epoch - 1
                last_ckpt = _checkpoint(ctx, model, optimizer, scheduler, ema, arch, done,
                                        global_step, ctx.status.kpi, partial_epoch=epoch)
            now = time.monotonic()
            if now - last_progress > PROGRESS_EVERY_S and i + 1 < steps_per_epoch:
                last_progress = now
                per_step = (now - t0) / (i + 1)
                remaining = per_step * (steps_per_epoch - i - 1) + (
                    (num_epochs - epoch - 1) * (sum(epoch_times[-3:]) / len(epoch_times[-3:])
                                                if epoch_times else per_step * steps_per_epoch))
                ctx.status.running(f"epoch {epoch}: step {i + 1}/{steps_per_epoch}",
                                   epoch=epoch, max_epoch=num_epochs - 1, step=global_step,
                                   max_step=max_step, eta=format_timedelta(remaining))
        train_loss = loss_sum / max(1, loss_n)
        kpi: dict[str, Any] = {"train_loss": train_loss}
        if val_data and (epoch + 1) % val_interval == 0:
            eval_model = ema.module if ema is not None and not val_original else model
            D.sync_buffers(eval_model)  # every rank validates rank 0's model
            metrics, val_loss, _r, _m = _eval_sets(ctx, eval_model, arch, val_data, eval_policy,
                                                  batch_size, with_loss=True)
            if metrics is not None:
                kpi.update({"val_mAP": metrics["mAP"], "val_mAP50": metrics["mAP50"]})
            if val_loss is not None:
                kpi["val_loss"] = val_loss
        epoch_time = time.monotonic() - t0
        epoch_times.append(epoch_time)
        recent = epoch_times[-3:]
        eta = (num_epochs - epoch - 1) * sum(recent) / len(recent)
        is_last = epoch == num_epochs - 1
        ctx.status.running("Train metrics generated.", kpi=kpi, epoch=epoch,
                           max_epoch=num_epochs - 1, step=global_step, max_step=max_step,
                           time_per_epoch=format_timedelta(epoch_time),
                           eta=format_timedelta(eta))
        if is_last or (ckpt_unit == "epoch" and (epoch + 1) % ckpt_interval == 0):
            last_ckpt = _checkpoint(ctx, model, optimizer, scheduler, ema, arch, epoch,
                                    global_step, ctx.status.kpi)
    # Every rank finished (a rank that failed after its last step fails the job here).
    D.barrier()
    final = ctx.status.kpi
    summary = ", ".join(f"{k}={v:.4f}" for k, v in final.items() if isinstance(v, float))
    where = last_ckpt.name if last_ckpt is not None else "no checkpoint"
    ranks = f" on {dist.world_size} processes" if dist.world_size > 1 else ""
    return (f"Train finished successfully{ranks}: {num_epochs} epochs, {summary}; last "
            f"checkpoint {where}.")


def _checkpoint(ctx: JobContext, model, optimizer, scheduler, ema, arch, epoch: int,
                step: int, kpi: dict, partial_epoch: int | None = None) -> Path | None:
    """Write ``model_epoch_...pth`` (+ ``-EMA``), update the latest link, upload (rank 0 only;
    the other ranks of a distributed job return ``None``)."""
    from tao_sdk.worker.spec import redact

    if not ctx.main:
        return None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "network": ctx.network,
        "arch": arch,
        "state_dict": model.state_dict(),
        "ema_state_dict": ema.module.state_dict() if ema is not None else None,
        "epoch": epoch,
        "global_step": step,
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        "kpi": dict(kpi),
        "world_size": D.state().world_size,
        "hyper_parameters": {"experiment_spec": json.loads(json.dumps(redact(ctx.spec),
                                                                      default=str))},
    }
    name_epoch = partial_epoch if partial_epoch is not None else epoch
    path = _save_checkpoint(ctx, payload, checkpoint_name(ctx.network, max(0, name_epoch), step))
    if ema is not None:
        ema_payload = {"format": CHECKPOINT_FORMAT, "network": ctx.network, "arch": arch,
                       "state_dict": ema.module.state_dict(), "epoch": epoch,
                       "global_step": step, "kpi": dict(kpi), "ema": True}
        _save_checkpoint(ctx, ema_payload,
                         checkpoint_name(ctx.network, max(0, name_epoch), step, ema=True))
    _update_latest(ctx, path)
    ctx.log.info("saved checkpoint %s", path.name)
    ctx.upload_now()
    return path


# --------------------------------------------------------------------------- evaluate


def _eval_size(ctx: JobContext, section: str) -> tuple[int, int] | None:
    h = S.get(ctx.spec, f"{section}.input_height")
    w = S.get(ctx.spec, f"{section}.input_width")
    if h and w:
        return int(h), int(w)
    return None


def evaluate(ctx: JobContext) -> str:
    """COCO-evaluate a checkpoint on ``dataset.test_data_sources``; KPIs test_mAP / test_mAP50."""
    model, arch, notes, size = _detector(ctx, "evaluate")
    _report_start(ctx, arch, notes)
    sources = _sources(S.get(ctx.spec, "dataset.test_data_sources"),
                       "dataset.test_data_sources")
    if not sources:
        raise SpecError("dataset.test_data_sources is not set: set it to {image_dir: "
                        "<images.tar.gz>, json_file: <annotations.json>}")
    datas = _stage_coco(ctx, "dataset.test_data_sources", sources, arch["num_classes"])
    for data in datas:  # the model's class i must be the evaluation set's class i
        data.check_classes(arch.get("class_names"), "dataset.test_data_sources")
    model.to(_device())
    policy = _policy(ctx.network, ctx.spec, size)
    conf = float(S.get(ctx.spec, "evaluate.conf_threshold", 0.0))
    t0 = time.monotonic()
    batch = min(_batch_size(ctx.spec, "evaluate.batch_size"),
                getattr(model, "max_batch", 1 << 30))
    metrics, _loss, _res, merged = _eval_sets(ctx, model, arch, datas, policy, batch,
                                              with_loss=False, conf_threshold=conf)
    names = {c["id"]: str(c.get("name", c["id"])) for c in merged.get("categories", [])}
    per_class = {names.get(cid, str(cid)): ap for cid, ap in metrics["per_class"].items()}
    _write_json(ctx.task_dir / "results.json", {
        "test_mAP": metrics["mAP"], "test_mAP50": metrics["mAP50"],
        "test_mAP75": metrics["mAP75"], "per_class_AP": per_class,
        "images": len(merged["images"]), "seconds": time.monotonic() - t0,
    })
    ctx.status.running("Evaluation metrics generated.",
                       kpi={"test_mAP": metrics["mAP"], "test_mAP50": metrics["mAP50"]},
                       categorical={"test_AP_per_class": per_class} if per_class else None)
    return (f"Evaluation finished successfully: test_mAP={metrics['mAP']:.4f}, "
            f"test_mAP50={metrics['mAP50']:.4f} on {len(merged['images'])} images.")


# --------------------------------------------------------------------------- inference


_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def inference(ctx: JobContext) -> str:
    """Detect objects in ``dataset.infer_data_sources.image_dir``; write detections.json,
    KITTI labels and images with drawn boxes named from the classmap."""
    from PIL import ImageDraw

    from tao_sdk.worker.data import Collator, ImageListDataset, load_rgb
    from tao_sdk.worker.evaluation import predict

    model, arch, notes, size = _detector(ctx, "inference")
    _report_start(ctx, arch, notes)
    src = S.get(ctx.spec, "dataset.infer_data_sources")
    if not isinstance(src, dict) or not src.get("image_dir"):
        raise SpecError("dataset.infer_data_sources.image_dir is not set: set it to a list of "
                        "image folders / images.tar.gz URIs")
    dirs = src["image_dir"] if isinstance(src["image_dir"], list) else [src["image_dir"]]
    classmap = S.require(ctx.spec, "dataset.infer_data_sources.classmap",
                         "the label_map.txt of the dataset (one class name per line)")
    names = read_label_map(fetch_file(str(classmap), "dataset.infer_data_sources.classmap"),
                           arch["num_classes"], "dataset.infer_data_sources.classmap",
                           trained=arch.get("class_names"))
    paths: list[tuple[Path, Path]] = []
    multi = len(dirs) > 1
    for i, d in enumerate(dirs):
        folder = stage_image_dir(str(d), f"dataset.infer_data_sources.image_dir[{i}]")
        found = list_images(folder)
        if not found:
            raise DatasetError(f"dataset.infer_data_sources.image_dir[{i}]: no images "
                               f"({', '.join(x.lstrip('.') for x in ('.jpg', '.png'))}...) in {d}")
        # With several folders, outputs go to <index>/<relative path> so names cannot clash.
        paths += [(p, Path(str(i)) / p.relative_to(folder) if multi else p.relative_to(folder))
                  for p in found]
    model.to(_device())
    policy = _policy(ctx.network, ctx.spec, size)
    coll = Collator(policy, arch["mean"], arch["std"], train=False)
    batch = min(_batch_size(ctx.spec, "inference.batch_size"),
                getattr(model, "max_batch", 1 << 30))
    loader = _loader(ImageListDataset([p for p, _ in paths]), coll, batch, False, 0, 0)
    t0 = time.monotonic()
    results, _ = predict(model, loader, arch, _device(),
                         pass_mask=ctx.network == "deformable_detr")
    conf = float(S.get(ctx.spec, "inference.conf_threshold", 0.5))
    width = int(S.get(ctx.spec, "inference.outline_width", 3))
    out_img = ctx.task_dir / "images_annotated"
    out_lbl = ctx.task_dir / "labels"
    detections = []
    count = 0
    for (meta, scores, labels, boxes), (_path, rel_out) in zip(results, paths):
        img = load_rgb(Path(meta["path"]))
        draw = ImageDraw.Draw(img)
        lines = []
        dets = []
        for s, lab, b in zip(scores, labels, boxes):
            if s < conf:
                continue
            name = names.get(int(lab), str(int(lab)))
            color = _PALETTE[int(lab) % len(_PALETTE)]
            x0, y0, x1, y1 = (float(v) for v in b)
            draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
            draw.text((x0 + 2, max(0.0, y0 - 11)), f"{name} {s:.2f}", fill=color)
            lines.append(f"{name.replace(' ', '_')} 0.00 0 0.00 {x0:.2f} {y0:.2f} {x1:.2f} "
                         f"{y1:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00 {s:.3f}")
            dets.append({"bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2),
                                  round(y1 - y0, 2)],
                         "score": round(float(s), 4), "category_id": int(lab),
                         "category_name": name})
        target = out_img / rel_out
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target.with_suffix(".jpg"), quality=90)
        lbl = (out_lbl / rel_out).with_suffix(".txt")
        lbl.parent.mkdir(parents=True, exist_ok=True)
        lbl.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        detections.append({"file_name": rel_out.as_posix(), "width": meta["orig_size"][1],
                           "height": meta["orig_size"][0], "detections": dets})
        count += len(dets)
    _write_json(ctx.task_dir / "detections.json", {
        "conf_threshold": conf, "class_names": {str(k): v for k, v in names.items()},
        "images": detections,
    })
    ctx.upload_now()
    return (f"Inference finished successfully: {count} detections (score >= {conf}) in "
            f"{len(paths)} images ({time.monotonic() - t0:.1f} s); see detections.json and "
            "images_annotated/.")


# --------------------------------------------------------------------------- export


class _ExportWrapper:
    """Factory for the modules that are exported to ONNX."""

    @staticmethod
    def wrap(model, with_encoder_scores: bool = False):
        """``inputs -> (pred_logits, pred_boxes)``; with ``with_encoder_scores`` also the
        RT-DETR encoder's per-anchor class logits (used only to verify an export)."""
        import torch

        class Wrapper(torch.nn.Module):
            """The exported module (input ``inputs``, preprocessed images)."""

            def __init__(self, inner) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, inputs):
                """Run the detector; return its class logits and boxes."""
                out = self.inner(pixel_values=inputs)
                if with_encoder_scores:
                    return out.logits, out.pred_boxes, out.enc_outputs_class
                return out.logits, out.pred_boxes

        return Wrapper(model).eval()


#: Largest accepted difference between ONNX Runtime and PyTorch outputs.
ONNX_TOLERANCE = 1e-3
#: Encoder-score margin below which RT-DETR's top-k query selection is ambiguous.
_TIE_MARGIN = 1e-4


def _onnx_export(module, example, path: Path, opset: int, dynamic: bool, names: list[str]) -> None:
    import warnings

    import torch

    axes = {n: {0: "batch"} for n in ["inputs", *names]} if dynamic else None
    tmp = path.with_name(".tao-tmp-" + path.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(tmp), input_names=["inputs"],
                          output_names=names, opset_version=opset, dynamic_axes=axes,
                          do_constant_folding=True, dynamo=False)
    os.replace(tmp, path)


def _matched_diff(a_logits, a_boxes, b_logits, b_boxes) -> float:
    """Largest output difference after pairing each query of ``a`` with one of ``b``
    (Hungarian matching): DETR decoders are permutation-equivariant over queries."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    worst = 0.0
    for i in range(a_logits.shape[0]):
        fa = np.concatenate([a_logits[i], a_boxes[i]], axis=1)
        fb = np.concatenate([b_logits[i], b_boxes[i]], axis=1)
        cost = np.abs(fa[:, None, :] - fb[None, :, :]).max(-1)
        r, c = linear_sum_assignment(cost)
        worst = max(worst, float(cost[r, c].max()))
    return worst


def _check_onnx(ctx: JobContext, model, onnx_path: Path, arch: dict, height: int, width: int,
                batch: int, opset: int) -> dict[str, Any]:
    """Compare onnxruntime with PyTorch on the exported file.

    Deformable DETR: every output, position by position. RT-DETR selects its decoder queries
    with a top-k over encoder scores, which near-ties (typical of an under-trained model) can
    resolve differently across runtimes; so the encoder scores are compared exactly (through a
    verification export with that extra output), and the decoder outputs after matching
    queries. Returns a dict of differences and notes; ``max_abs_diff`` is what must be small.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    gen = torch.Generator().manual_seed(0)
    check_batch = 2 if batch == -1 else batch
    mean = torch.tensor(arch["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(arch["std"]).view(1, 3, 1, 1)
    check = (torch.rand(check_batch, 3, height, width, generator=gen) - mean) / std
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_logits, got_boxes = sess.run(None, {"inputs": check.numpy()})
    out: dict[str, Any] = {"checked_batch": check_batch}
    if ctx.network != "rtdetr":
        wrapper = _ExportWrapper.wrap(model)
        with torch.no_grad():
            ref_logits, ref_boxes = (t.numpy() for t in wrapper(check))
        out["logits"] = float(np.abs(got_logits - ref_logits).max())
        out["boxes"] = float(np.abs(got_boxes - ref_boxes).max())
        out["max_abs_diff"] = max(out["logits"], out["boxes"])
        return out
    verify = _ExportWrapper.wrap(model, with_encoder_scores=True)
    with torch.no_grad():
        ref_logits, ref_boxes, ref_enc = (t.numpy() for t in verify(check))
    vpath = ctx.task_dir / ".tao-verify.onnx"
    try:
        _onnx_export(verify, check[:1], vpath, opset, batch == -1 or check_batch == 1,
                     ["pred_logits", "pred_boxes", "enc_scores"])
        vsess = ort.InferenceSession(str(vpath), providers=["CPUExecutionProvider"])
        v_logits, v_boxes, v_enc = vsess.run(None, {"inputs": check.numpy()})
    finally:
        if vpath.exists():
            vpath.unlink()
    out["encoder_scores"] = float(np.abs(v_enc - ref_enc).max())
    out["deployed_vs_verify"] = max(float(np.abs(v_logits - got_logits).max()),
                                    float(np.abs(v_boxes - got_boxes).max()))
    out["logits"] = float(np.abs(got_logits - ref_logits).max())
    out["boxes"] = float(np.abs(got_boxes - ref_boxes).max())
    out["decoder_matched"] = _matched_diff(got_logits, got_boxes, ref_logits, ref_boxes)
    k = ref_logits.shape[1]
    scores = np.sort(ref_enc.max(-1), axis=1)[:, ::-1]
    margins = scores[:, k - 1] - scores[:, k] if scores.shape[1] > k else np.full(len(scores),
                                                                                 np.inf)
    out["topk_margin"] = float(margins.min())
    ambiguous = bool(out["topk_margin"] < _TIE_MARGIN)
    out["query_selection_ambiguous"] = ambiguous
    checked = [out["encoder_scores"], out["deployed_vs_verify"]]
    if not ambiguous:
        checked.append(out["decoder_matched"])
    out["max_abs_diff"] = max(checked)
    return out


def _add_metadata(path: Path, network: str, arch: dict) -> None:
    """Store the preprocessing and class count in the ONNX file's metadata_props
    (``tao_worker.*``), so deploy tools (and INT8 calibration) can read them."""
    import onnx

    model = onnx.load(str(path))
    props = {"tao_worker.network": network, "tao_worker.mean": json.dumps(arch["mean"]),
             "tao_worker.std": json.dumps(arch["std"]), "tao_worker.scale": "1/255",
             "tao_worker.num_classes": str(arch["num_classes"]),
             "tao_worker.num_select": str(arch["num_select"])}
    onnx.helper.set_model_props(model, props)
    tmp = path.with_name(".tao-tmp-" + path.name)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def export(ctx: JobContext) -> str:
    """Export a checkpoint to ONNX (``export.onnx_file``), check it with onnx and onnxruntime,
    and report the largest output difference against PyTorch."""
    _stage(ctx)
    import onnx

    model, arch, _ckpt, notes = _model_from_checkpoint(ctx, "export.checkpoint")
    _report_start(ctx, arch, notes)
    onnx_uri = S.require(ctx.spec, "export.onnx_file",
                         "the ONNX file to write (e.g. <results_dir>/export/model.onnx)")
    height = int(S.get(ctx.spec, "export.input_height", 640))
    width = int(S.get(ctx.spec, "export.input_width", 640))
    channels = int(S.get(ctx.spec, "export.input_channel", 3))
    opset = int(S.get(ctx.spec, "export.opset_version", 17))
    batch = int(S.get(ctx.spec, "export.batch_size", -1))
    if channels != 3:
        raise SpecError(f"export.input_channel={channels}: the model takes RGB input; set 3")
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise SpecError(f"export.input_height/input_width={height}x{width} must be multiples of "
                        "32 (the backbone stride), e.g. 640x640")
    if batch == 0 or batch < -1:
        raise SpecError(f"export.batch_size={batch}: use -1 (dynamic) or a positive batch size")
    if opset < 16:
        raise SpecError(f"export.opset_version={opset}: the deformable attention needs "
                        "GridSample from opset 16; use 17")
    import torch

    out_path = ctx.output_path(str(onnx_uri), "export.onnx_file")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    example = torch.rand(batch if batch > 0 else 1, 3, height, width,
                         generator=torch.Generator().manual_seed(1))
    t0 = time.monotonic()
    _onnx_export(_ExportWrapper.wrap(model), example, out_path, opset, batch == -1,
                 ["pred_logits", "pred_boxes"])
    export_s = time.monotonic() - t0
    _add_metadata(out_path, ctx.network, arch)
    onnx.checker.check_model(str(out_path))
    diffs = _check_onnx(ctx, model, out_path, arch, height, width, batch, opset)
    diff = diffs["max_abs_diff"]
    kpi = {"onnx_max_abs_diff": diff}
    info = {
        "onnx_file": str(onnx_uri), "opset_version": opset,
        "input": {"name": "inputs", "shape": ["batch" if batch == -1 else batch, 3, height,
                                                width],
                  "preprocessing": {"scale": "1/255", "mean": arch["mean"], "std": arch["std"],
                                    "channel_order": "RGB"}},
        "outputs": {"pred_logits": "[batch, num_queries, num_classes] (sigmoid -> scores)",
                    "pred_boxes": "[batch, num_queries, 4] normalised cx, cy, w, h"},
        "num_classes": arch["num_classes"], "num_select": arch["num_select"],
        "parity": diffs, "export_seconds": export_s,
    }
    _write_json(ctx.task_dir / "export_info.json", info)
    detail = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()
                       if isinstance(v, float) and k != "max_abs_diff")
    note = ""
    if diffs.get("query_selection_ambiguous"):
        note = ("; RT-DETR query selection is ambiguous for this model (encoder scores tie at "
                "the top-k boundary, typical of an under-trained model), so decoder outputs "
                "were compared only through the encoder scores")
    ctx.status.running(f"ONNX export checked with onnxruntime at batch {diffs['checked_batch']}: "
                       f"max abs difference vs PyTorch {diff:.3g} ({detail}){note}", kpi=kpi)
    if not math.isfinite(diff) or diff > ONNX_TOLERANCE:
        raise WorkerError(
            f"export.onnx_file {onnx_uri}: onnxruntime outputs differ from PyTorch by {diff:.3g} "
            f"(> {ONNX_TOLERANCE}); try another export.opset_version (now {opset}) or a fixed "
            "export.batch_size"
        )
    return (f"Export finished successfully: {onnx_uri} ({out_path.stat().st_size / 1e6:.1f} MB, "
            f"opset {opset}, input {height}x{width}); onnxruntime max abs diff {diff:.3g}.")


# --------------------------------------------------------------------------- TensorRT


def gen_trt_engine(ctx: JobContext) -> str:
    """Build a TensorRT engine from ``gen_trt_engine.onnx_file`` (NVIDIA GPU + tensorrt only)."""
    from tao_sdk.worker.trt import build_engine, require_tensorrt

    require_tensorrt()  # fails at once without an NVIDIA GPU / tensorrt
    return build_engine(ctx)


ACTIONS = {
    "train": train,
    "evaluate": evaluate,
    "inference": inference,
    "export": export,
    "gen_trt_engine": gen_trt_engine,
}
