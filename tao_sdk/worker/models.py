"""Model construction for the worker: TAO spec -> a transformers detection model.

- ``rtdetr`` -> :class:`transformers.RTDetrForObjectDetection` with an ``RTDetrResNetConfig``
  (``resnet_*``) or ``ConvNextConfig`` (``convnext_*``) backbone passed as a config object, so
  nothing is downloaded.
- ``deformable_detr`` -> :class:`transformers.DeformableDetrForObjectDetection` with a
  ``ResNetConfig`` backbone (pure-PyTorch multi-scale deformable attention on CPU).

Every architecture-defining value is saved in the checkpoint (``arch``), so evaluate / inference /
export rebuild exactly the trained network. Spec fields this implementation cannot honour are
collected by :func:`unhonoured_fields` and reported once at the start of a job.

Backbone scale: ``TAO_WORKER_BACKBONE_SCALE=tiny`` (environment) builds the named backbone family
with one block per stage and narrow stages (ResNet basic blocks 32/64/128/256 channels,
ConvNeXt 32/64/128/256) for CPU smoke runs and demos; the default ``full`` builds the real
architecture (ResNet-18/34/50/101 depths and widths, ConvNeXt-T/S/B/L/XL). The scale used is
recorded in the checkpoint and reported in ``status.json``.

``return_interm_indices`` follow TAO: for RT-DETR they are 0-based ResNet stage indices
(``[1, 2, 3]`` = strides 8/16/32), for Deformable DETR 1-based layer numbers (``[2, 3, 4]`` =
strides 8/16/32, ``[1, 2, 3, 4]`` adds stride 4). Feature levels beyond the backbone outputs
(``num_feature_levels`` > number of indices) are made by strided convolutions, as in TAO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError, WorkerError

__all__ = [
    "NetworkInfo",
    "NETWORK_INFO",
    "CHECKPOINT_FORMAT",
    "backbone_scale",
    "build_arch",
    "model_from_arch",
    "unhonoured_fields",
    "checkpoint_name",
    "load_checkpoint",
    "load_pretrained",
    "postprocess_arch",
]

#: Tag stored in every checkpoint this worker writes.
CHECKPOINT_FORMAT = "tao-skill-bank-worker/1"


@dataclass(frozen=True)
class NetworkInfo:
    """Per-network facts of the results contract.

    Attributes:
        name: TAO network name.
        display: human name.
        latest_link: file name of the ``<prefix>_model_latest.pth`` link.
        step_in_name: checkpoints are ``model_epoch_XXX_step_YYYYY.pth`` (else
            ``model_epoch_XXX.pth``).
    """

    name: str
    display: str
    latest_link: str
    step_in_name: bool


NETWORK_INFO: dict[str, NetworkInfo] = {
    "rtdetr": NetworkInfo("rtdetr", "RT-DETR", "rtdetr_model_latest.pth", False),
    "deformable_detr": NetworkInfo("deformable_detr", "Deformable DETR", "dd_model_latest.pth",
                                   True),
}


def checkpoint_name(network: str, epoch: int, step: int, ema: bool = False) -> str:
    """TAO checkpoint file name for ``epoch`` (0-based) and global ``step``.

    ``rtdetr`` -> ``model_epoch_005.pth`` (``model_epoch_005-EMA.pth`` for EMA weights);
    ``deformable_detr`` -> ``model_epoch_005_step_01200.pth``.
    """
    name = f"model_epoch_{epoch:03d}"
    if NETWORK_INFO[network].step_in_name:
        name += f"_step_{step:05d}"
    return name + ("-EMA" if ema else "") + ".pth"


def backbone_scale() -> str:
    """``full`` (default) or ``tiny``, from env ``TAO_WORKER_BACKBONE_SCALE``."""
    value = os.environ.get("TAO_WORKER_BACKBONE_SCALE", "full").strip().lower() or "full"
    if value not in ("full", "tiny"):
        raise SpecError(
            f"environment TAO_WORKER_BACKBONE_SCALE={value!r} is not supported: use 'full' "
            "(the real backbone) or 'tiny' (one narrow block per stage, for CPU smoke runs)"
        )
    return value


_RESNETS = {
    # name: (layer_type, depths, hidden_sizes)
    "resnet_18": ("basic", [2, 2, 2, 2], [64, 128, 256, 512]),
    "resnet_34": ("basic", [3, 4, 6, 3], [64, 128, 256, 512]),
    "resnet_50": ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048]),
    "resnet_101": ("bottleneck", [3, 4, 23, 3], [256, 512, 1024, 2048]),
}
_CONVNEXTS = {
    "convnext_tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "convnext_small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "convnext_base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
    "convnext_large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
    "convnext_xlarge": ([3, 3, 27, 3], [256, 512, 1024, 2048]),
}
_TINY = ("basic", [1, 1, 1, 1], [32, 64, 128, 256])


def _backbone(network: str, name: str, stages: list[int], scale: str) -> tuple[dict, list[int],
                                                                              str]:
    """Return (backbone config dict, channels of the selected stages, description)."""
    out_features = [f"stage{i}" for i in stages]
    if name in _RESNETS:
        layer_type, depths, widths = _RESNETS[name] if scale == "full" else _TINY
        desc = (f"{name} ({layer_type} blocks, depths {depths}, widths {widths}"
                + (", TAO_WORKER_BACKBONE_SCALE=tiny)" if scale == "tiny" else ")"))
        model_type = "rt_detr_resnet" if network == "rtdetr" else "resnet"
        cfg = {"model_type": model_type, "embedding_size": 64 if scale == "full" else widths[0],
               "hidden_sizes": widths, "depths": depths, "layer_type": layer_type,
               "out_features": out_features}
        if network == "rtdetr" and layer_type == "basic":
            cfg["embedding_size"] = widths[0]
        if network != "rtdetr":
            cfg["downsample_in_first_stage"] = False
        return cfg, [widths[i - 1] for i in stages], desc
    if name in _CONVNEXTS:
        depths, widths = _CONVNEXTS[name] if scale == "full" else ([1, 1, 1, 1],
                                                                    [32, 64, 128, 256])
        desc = (f"{name} (ConvNeXt depths {depths}, widths {widths}"
                + (", TAO_WORKER_BACKBONE_SCALE=tiny)" if scale == "tiny" else ")"))
        cfg = {"model_type": "convnext", "depths": depths, "hidden_sizes": widths,
               "out_features": out_features}
        return cfg, [widths[i - 1] for i in stages], desc
    supported = sorted(_RESNETS) + (sorted(_CONVNEXTS) if network == "rtdetr" else [])
    raise SpecError(
        f"model.backbone={name!r} is not available in this worker (its weights/code are not in "
        f"transformers); use one of: {', '.join(supported)}"
    )


def _int(spec: dict, key: str, default: int) -> int:
    value = S.get(spec, key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{key}={value!r} must be an integer") from None


def _float(spec: dict, key: str, default: float) -> float:
    value = S.get(spec, key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{key}={value!r} must be a number") from None


def _stages(network: str, spec: dict, default: list[int]) -> list[int]:
    """Backbone stages (1..4) selected by model.return_interm_indices."""
    idx = S.get(spec, "model.return_interm_indices", default)
    if not isinstance(idx, list) or not idx or not all(isinstance(i, int) for i in idx):
        raise SpecError(f"model.return_interm_indices={idx!r} must be a non-empty list of ints")
    stages = [i + 1 for i in idx] if network == "rtdetr" else list(idx)
    if any(s < 1 or s > 4 for s in stages) or sorted(set(stages)) != stages:
        allowed = "0..3" if network == "rtdetr" else "1..4"
        raise SpecError(
            f"model.return_interm_indices={idx!r}: use increasing, distinct stage indices in "
            f"{allowed}"
        )
    return stages


def build_arch(network: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Turn the spec's ``model`` / ``dataset`` sections into an architecture description.

    Returns a dict with ``network``, ``hf_config`` (kwargs for the transformers config),
    ``num_classes``, ``num_select``, ``mean``, ``std``, ``backbone``, ``backbone_scale``,
    ``backbone_desc``, ``loss_weights`` (deformable_detr). Raises :class:`SpecError` for values
    the model cannot be built with (the message names the key).
    """
    num_classes = _int(spec, "dataset.num_classes", 80 if network == "rtdetr" else 91)
    if num_classes < 1:
        raise SpecError(f"dataset.num_classes={num_classes} must be >= 1")
    hidden = _int(spec, "model.hidden_dim", 256)
    nheads = _int(spec, "model.nheads", 8)
    if hidden < 1 or nheads < 1 or hidden % nheads:
        raise SpecError(f"model.hidden_dim={hidden} must be a positive multiple of "
                        f"model.nheads={nheads}")
    num_queries = _int(spec, "model.num_queries", 300)
    if num_queries < 1:
        raise SpecError(f"model.num_queries={num_queries} must be >= 1")
    num_select = _int(spec, "model.num_select", 300)
    if num_select < 1:
        raise SpecError(f"model.num_select={num_select} must be >= 1")
    if num_select > num_queries * num_classes:
        raise SpecError(
            f"model.num_select={num_select} must be <= model.num_queries x dataset.num_classes "
            f"= {num_queries * num_classes}; lower model.num_select"
        )
    levels = _int(spec, "model.num_feature_levels", 3 if network == "rtdetr" else 4)
    backbone_name = str(S.get(spec, "model.backbone", "resnet_50"))
    scale = backbone_scale()
    ffn = _int(spec, "model.dim_feedforward", 1024)
    dropout = _float(spec, "model.dropout_ratio", 0.0 if network == "rtdetr" else 0.3)
    enc_layers = _int(spec, "model.enc_layers", 1 if network == "rtdetr" else 6)
    dec_layers = _int(spec, "model.dec_layers", 6)
    if enc_layers < 1 or dec_layers < 1:
        raise SpecError("model.enc_layers and model.dec_layers must be >= 1")

    if network == "rtdetr":
        stages = _stages(network, spec, [1, 2, 3])
        strides = S.get(spec, "model.feat_strides", [8, 16, 32])
        if not isinstance(strides, list) or len(strides) != len(stages):
            raise SpecError(
                f"model.feat_strides={strides!r} must list one stride per "
                f"model.return_interm_indices entry ({len(stages)})"
            )
        if levels < len(stages) or levels > 4:
            raise SpecError(
                f"model.num_feature_levels={levels} must be between the number of "
                f"model.return_interm_indices ({len(stages)}) and 4"
            )
        feat_channels = S.get(spec, "model.feat_channels", [hidden] * len(stages))
        if not isinstance(feat_channels, list) or any(int(c) != hidden for c in feat_channels):
            raise SpecError(
                f"model.feat_channels={feat_channels!r}: this implementation feeds the decoder "
                f"with the encoder's hidden size; set every entry to model.hidden_dim={hidden}"
            )
        enc_idx = S.get(spec, "model.use_encoder_idx", [len(stages) - 1])
        if (not isinstance(enc_idx, list) or not enc_idx
                or any(not isinstance(i, int) or i < 0 or i >= len(stages) for i in enc_idx)):
            raise SpecError(
                f"model.use_encoder_idx={enc_idx!r} must list indices into the "
                f"{len(stages)} backbone feature levels (0..{len(stages) - 1})"
            )
        bb, channels, desc = _backbone(network, backbone_name, stages, scale)
        hf = {
            "backbone_config": bb,
            "num_labels": num_classes,
            "encoder_in_channels": channels,
            "feat_strides": [int(s) for s in strides],
            "encoder_hidden_dim": hidden,
            "d_model": hidden,
            "decoder_in_channels": [hidden] * len(stages),
            "num_feature_levels": levels,
            "encode_proj_layers": [int(i) for i in enc_idx],
            "encoder_layers": enc_layers,
            "decoder_layers": dec_layers,
            "encoder_ffn_dim": ffn,
            "decoder_ffn_dim": ffn,
            "encoder_attention_heads": nheads,
            "decoder_attention_heads": nheads,
            "dropout": dropout,
            "positional_encoding_temperature": _int(spec, "model.pe_temperature", 10000),
            "hidden_expansion": _float(spec, "model.expansion", 1.0),
            "encoder_activation_function": str(S.get(spec, "model.enc_act", "gelu")),
            "activation_function": str(S.get(spec, "model.act", "silu")),
            "num_queries": num_queries,
            "num_denoising": _int(spec, "model.dn_number", 100),
            "auxiliary_loss": bool(S.get(spec, "model.aux_loss", True)),
            "weight_loss_vfl": _float(spec, "model.vfl_loss_coef", 1.0),
            "weight_loss_bbox": _float(spec, "model.bbox_loss_coef", 5.0),
            "weight_loss_giou": _float(spec, "model.giou_loss_coef", 2.0),
            "matcher_class_cost": _float(spec, "model.class_cost", 2.0),
            "matcher_bbox_cost": _float(spec, "model.bbox_cost", 5.0),
            "matcher_giou_cost": _float(spec, "model.giou_cost", 2.0),
            "focal_loss_alpha": _float(spec, "model.alpha", 0.75),
            "focal_loss_gamma": _float(spec, "model.gamma", 2.0),
            "anchor_image_size": None,
        }
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        loss_weights = None
    elif network == "deformable_detr":
        stages = _stages(network, spec, [1, 2, 3, 4])
        if levels < len(stages) or levels > 5:
            raise SpecError(
                f"model.num_feature_levels={levels} must be between the number of "
                f"model.return_interm_indices ({len(stages)}) and 5"
            )
        box_refine = bool(S.get(spec, "model.with_box_refine", True))
        if box_refine and dec_layers < 2:
            raise SpecError(
                "model.dec_layers=1 with model.with_box_refine=true is not supported by the "
                "transformers Deformable DETR; set model.dec_layers >= 2 or with_box_refine false"
            )
        bb, _channels, desc = _backbone(network, backbone_name, stages, scale)
        cls_w = _float(spec, "model.cls_loss_coef", 2.0)
        bbox_w = _float(spec, "model.bbox_loss_coef", 5.0)
        giou_w = _float(spec, "model.giou_loss_coef", 2.0)
        hf = {
            "backbone_config": bb,
            "use_timm_backbone": False,
            "use_pretrained_backbone": False,
            "num_labels": num_classes,
            "num_queries": num_queries,
            "num_feature_levels": levels,
            "d_model": hidden,
            "encoder_layers": enc_layers,
            "decoder_layers": dec_layers,
            "encoder_ffn_dim": ffn,
            "decoder_ffn_dim": ffn,
            "encoder_attention_heads": nheads,
            "decoder_attention_heads": nheads,
            "dropout": dropout,
            "encoder_n_points": _int(spec, "model.enc_n_points", 4),
            "decoder_n_points": _int(spec, "model.dec_n_points", 4),
            "with_box_refine": box_refine,
            "two_stage": False,
            "auxiliary_loss": bool(S.get(spec, "model.aux_loss", True)),
            "class_cost": cls_w,
            "bbox_cost": bbox_w,
            "giou_cost": giou_w,
            "bbox_loss_coefficient": bbox_w,
            "giou_loss_coefficient": giou_w,
            "focal_alpha": _float(spec, "model.focal_alpha", 0.25),
            "disable_custom_kernels": True,
        }
        mean = [float(v) for v in S.get(spec, "dataset.augmentation.input_mean",
                                         [0.485, 0.456, 0.406])]
        std = [float(v) for v in S.get(spec, "dataset.augmentation.input_std",
                                        [0.229, 0.224, 0.225])]
        loss_weights = {"loss_ce": cls_w, "loss_bbox": bbox_w, "loss_giou": giou_w}
    else:  # pragma: no cover - guarded by the CLI
        raise SpecError(f"unknown network {network!r}")
    return {
        "network": network,
        "hf_config": hf,
        "num_classes": num_classes,
        "num_select": num_select,
        "mean": mean,
        "std": std,
        "backbone": backbone_name,
        "backbone_scale": scale,
        "backbone_desc": desc,
        "loss_weights": loss_weights,
        "train_backbone": bool(S.get(spec, "model.train_backbone", True)),
    }


def postprocess_arch(network: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What running an exported engine needs from the spec: ``network``, ``num_classes``,
    ``num_select``, ``mean``, ``std`` (no backbone / architecture checks: the engine fixes
    those)."""
    num_classes = _int(spec, "dataset.num_classes", 80 if network == "rtdetr" else 91)
    if network == "rtdetr":
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    else:
        mean = [float(v) for v in S.get(spec, "dataset.augmentation.input_mean",
                                         [0.485, 0.456, 0.406])]
        std = [float(v) for v in S.get(spec, "dataset.augmentation.input_std",
                                        [0.229, 0.224, 0.225])]
    return {"network": network, "num_classes": num_classes,
            "num_select": _int(spec, "model.num_select", 300), "mean": mean, "std": std,
            "backbone_desc": "TensorRT engine", "loss_weights": None}


def model_from_arch(arch: dict[str, Any]):
    """Instantiate the (randomly initialised) transformers model described by ``arch``."""
    import transformers

    network = arch["network"]
    hf = dict(arch["hf_config"])
    bb = dict(hf.pop("backbone_config"))
    model_type = bb.pop("model_type")
    if model_type == "rt_detr_resnet":
        bb_cfg = transformers.RTDetrResNetConfig(**bb)
    elif model_type == "resnet":
        bb_cfg = transformers.ResNetConfig(**bb)
    elif model_type == "convnext":
        bb_cfg = transformers.ConvNextConfig(**bb)
    else:
        raise WorkerError(f"checkpoint architecture has an unknown backbone type {model_type!r}")
    if network == "rtdetr":
        cfg = transformers.RTDetrConfig(backbone_config=bb_cfg, **hf)
        return transformers.RTDetrForObjectDetection(cfg)
    # transformers types these weights as int; TAO specs give floats (2.0, 0.5...).
    weights = {k: hf.pop(k) for k in _DD_WEIGHT_KEYS if k in hf}
    cfg = transformers.DeformableDetrConfig(backbone_config=bb_cfg, **hf)
    for key, value in weights.items():
        object.__setattr__(cfg, key, float(value))
    return transformers.DeformableDetrForObjectDetection(cfg)


_DD_WEIGHT_KEYS = ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient",
                   "giou_loss_coefficient")


# Fields whose value this implementation cannot honour, with the values that ask for nothing
# (reported only when the spec asks for something else). Keys absent from the spec are skipped.
_COMMON_UNHONOURED: dict[str, tuple] = {
    "wandb.enable": (False,),
    # train.num_gpus / num_nodes / gpu_ids are honoured (tao_sdk.worker.distributed).
    "train.checkpointer.enable_topk": (False,),
    "train.freeze": ([],),
    "train.is_dry_run": (False,),
    "train.precision": ("fp32", "FP32"),
    "train.distributed_strategy": ("ddp",),
    "train.optim.monitor_name": ("val_loss",),
    "evaluate.trt_engine": (),
    "inference.trt_engine": (),
    "evaluate.num_gpus": (1,),
    "inference.num_gpus": (1,),
    "evaluate.is_quantized": (False,),
    "inference.is_quantized": (False,),
    "export.is_quantized": (False,),
    "export.serialize_nvdsinfer": (False,),
    "export.format": ("onnx",),
    "model.dilation": (False,),
}
_NET_UNHONOURED: dict[str, dict[str, tuple]] = {
    "rtdetr": {
        "model.load_teacher_enc_dec": (False,),
        "model.frozen_fm.enabled": (False,),
        "model.eval_idx": (-1,),
        "model.loss_types": (["vfl", "boxes"],),
        "model.backbone_names": (["backbone.0"],),
        "model.linear_proj_names": (["reference_points", "sampling_offsets"],),
        "dataset.augmentation.iou_crop_prob": (0.0,),
        "dataset.augmentation.preserve_aspect_ratio": (False,),
        "train.activation_checkpoint": (False, True),
    },
    "deformable_detr": {
        "model.loss_types": (["labels", "boxes"],),
        "model.backbone_names": (["backbone.0"],),
        "model.linear_proj_names": (["reference_points", "sampling_offsets"],),
        "model.dld_model_dir_path": (),
        "dataset.train_sampler": ("default_sampler",),
        "dataset.augmentation.train_random_resize": (),
        "dataset.augmentation.fixed_random_crop": (),
        "dataset.augmentation.pad_size_divisor": (),
        "train.input_width": (),
        "train.input_height": (),
        "train.activation_checkpoint": (False, True),
    },
}
# Fields that only matter for the TAO implementation and never change results here.
_SILENT = {"train.activation_checkpoint"}


def unhonoured_fields(network: str, action: str, spec: dict[str, Any]) -> list[str]:
    """``dotted=value`` for each spec field set to a value this implementation ignores.

    Only the sections used by ``action`` are looked at (``model``/``dataset`` always, plus
    ``train`` for train, ``evaluate`` for evaluate...). Unset (``None``/empty) fields are skipped.
    """
    sections = {"model", "dataset", action}
    if action == "train":
        sections.add("wandb")
    table = dict(_COMMON_UNHONOURED)
    table.update(_NET_UNHONOURED.get(network, {}))
    out = []
    for key, inactive in table.items():
        if key in _SILENT or key.split(".")[0] not in sections:
            continue
        value = S.get(spec, key)
        if value is None or value == "" or value == []:
            continue
        if value in inactive:
            continue
        out.append(f"{key}={value}")
    if (network == "rtdetr" and "train" in sections
            and S.get(spec, "model.clip_max_norm") is not None
            and S.get(spec, "train.clip_grad_norm") is not None
            and float(S.get(spec, "model.clip_max_norm")) != float(S.get(spec,
                                                                        "train.clip_grad_norm"))):
        out.append(f"model.clip_max_norm={S.get(spec, 'model.clip_max_norm')} "
                   "(train.clip_grad_norm is used)")
    return out


def load_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Load a checkpoint written by this worker (``weights_only``: no code is executed).

    Raises :class:`WorkerError` naming ``what`` (the spec key) when the file is unreadable or
    was not written by this worker.
    """
    import torch

    try:
        ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise WorkerError(
            f"{what}: cannot read checkpoint {path} ({type(exc).__name__}: {exc}); point "
            f"{what} at a .pth written by this worker's train action"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "arch" not in ckpt:
        raise WorkerError(
            f"{what}: {path} is not a checkpoint written by this worker (no architecture "
            "record); evaluate/inference/export need a model_epoch_*.pth from this worker's "
            "train action (use train.pretrained_model_path to start training from other weights)"
        )
    return ckpt


def load_pretrained(model, path: str | os.PathLike[str], what: str, prefix: str = ""
                    ) -> tuple[int, int, list[str]]:
    """Copy the tensors of a checkpoint / state dict into ``model`` where names and shapes match.

    ``prefix`` restricts loading to the module at that attribute path (``"model.backbone"``)
    and is prepended to the file's keys when they lack it. Accepts this worker's checkpoints,
    Lightning-style ``{"state_dict": ...}`` files and bare state dicts.

    Returns ``(loaded, total tensors in the file, skipped names with a shape mismatch)``.
    Raises :class:`WorkerError` when nothing matches (wrong file for this network/backbone).
    """
    import torch

    try:
        data = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WorkerError(f"{what}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    elif isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise WorkerError(f"{what}: {path} holds no state dict")
    own = model.state_dict()
    loaded: dict[str, Any] = {}
    mismatched = []
    for key, value in data.items():
        if not hasattr(value, "shape"):
            continue
        for cand in (key, f"{prefix}.{key}" if prefix else key):
            if cand in own and (not prefix or cand.startswith(prefix)):
                if tuple(own[cand].shape) == tuple(value.shape):
                    loaded[cand] = value
                else:
                    mismatched.append(cand)
                break
    if not loaded:
        sample = ", ".join(list(data)[:3])
        raise WorkerError(
            f"{what}: no tensor of {path} matches this {'backbone' if prefix else 'model'} "
            f"(file keys look like: {sample}); use weights saved from the same architecture "
            "(model.backbone, TAO_WORKER_BACKBONE_SCALE) or leave the field empty"
        )
    with torch.no_grad():
        for key, value in loaded.items():
            own[key].copy_(value)
    return len(loaded), len([v for v in data.values() if hasattr(v, "shape")]), mismatched
