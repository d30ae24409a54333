"""FastFoundationStereo (``depth_net``, ``model.model_type: FastFoundationStereo``): TAO 7.3.0's
network, the distilled layout of NVIDIA's bp2 checkpoint, built from the spec's ``model``
section (the torch modules: :mod:`tao_sdk.worker.networks.ffs`).

1. **features**: TAO's fixed EdgeNeXt encoder (widths 48/96/160/304) of both images and a
   decoder to 1/4 resolution; ``model.encoder`` sets the width band TAO's ``Feature.conv4``
   keeps for its (absent) ViT branch (vits 32, vitb 64, vitl 128 channels);
2. **hybrid cost volume** at 1/4 to ``model.max_disparity``: group-wise correlation
   (``model.cv_group``, ``model.gwc_feature_normalize``) + concatenation of features projected
   to ``model.concat_channel / 2``, filtered to ``model.volume_dim`` channels, aggregated by a
   gated 3D hourglass with a disparity transformer at 1/16; a one-layer classifier gives the
   initial disparity by soft-argmin;
3. **iterative refinement**: the geometry volume (``model.corr_levels`` levels, radius
   ``model.corr_radius``) feeds the motion encoder (``model.motion_encoder_widths``,
   ``model.motion_encoder_final``) and one selective ConvGRU (``model.gru_hidden``, gates
   ``model.gru_gating_conv_widths``; context from ``model.cnet_conv04_widths`` with channel
   attention ``model.cam_mid_channels``); the disparity head (``model.disp_head_intermediate``,
   ``model.disp_head_pwconv1_widths``) adds an update per iteration (``model.train_iters`` /
   ``model.valid_iters``);
4. **convex 4x up-sampling**: mask features (``model.mask_widths``) and the left stem at 1/2
   (``model.stem_2_widths``) through ``model.spx_2_gru_widths`` to ``model.spx_gru_out`` (= 9)
   weights per full-resolution pixel.

As in TAO, ``model.hidden_dims`` only sizes ``context_zqr_convs`` (built, not run),
``model.classifier_mid`` and ``model.disp_head_input_dim`` size nothing. Settings TAO's FFS
cannot run (``n_gru_layers`` > 1, ``n_downsample`` != 2, ``encoder: vitg``) are refused.

Checkpoints: the state dict's keys are TAO's (minus the Lightning ``model.`` prefix), so TAO's
checkpoints load key for key (:data:`TAO_KEYS`); NVIDIA's research checkpoint layout (what
TAO's ``fast_foundation_stereo/ckpt_utils.py`` renames from: timm EdgeNeXt names,
``cost_agg.atts.4``, ``*.layers.``) loads through :data:`RESEARCH_KEYS`.

The architecture is a plain dict (:func:`build_arch`) saved in every checkpoint, so evaluate /
inference / export rebuild exactly the trained network. Fields of the FFS spec that have no
counterpart here are listed by :func:`unhonoured_fields` and reported by the worker.
"""

from __future__ import annotations

import json
from typing import Any

from tao_sdk.dotted import as_int
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.plugin import NetworkPlugin, OnnxExport, backbone_scale
from tao_sdk.worker.tasks.stereo import TASK
from tao_sdk.worker.weights.keymap import KeyMap, Rule

__all__ = [
    "NAME",
    "DISPLAY",
    "ONNX_INPUTS",
    "ONNX_OUTPUTS",
    "LOSS_GAMMA",
    "build_arch",
    "arch_diff",
    "build_model",
    "sequence_loss",
    "predict",
    "onnx_module",
    "unhonoured_fields",
    "unhonoured_augmentation",
    "input_multiple",
    "TINY_MODEL",
    "ENCODERS",
    "TAO_KEYS",
    "RESEARCH_KEYS",
    "DepthNetPlugin",
    "PLUGIN",
]

NAME = "depth_net"
DISPLAY = "FastFoundationStereo"
#: ONNX input names (left, right: ``[batch, 3, H, W]`` normalised RGB).
ONNX_INPUTS = ("left_image", "right_image")
#: ONNX output names (``[batch, 1, H, W]`` disparity in pixels of the input width).
ONNX_OUTPUTS = ("disparity",)
#: Exponential weight of the sequence loss (later iterations weigh more), as in RAFT-Stereo.
LOSS_GAMMA = 0.9
#: ImageNet statistics TAO uses by default (``dataset.*.augmentation.input_mean/std``).
_MEAN = [0.485, 0.456, 0.406]
_STD = [0.229, 0.224, 0.225]
#: A small architecture (``model.*`` values) for CPU tests, benchmarks and the demo: TAO's
#: EdgeNeXt encoder (fixed) with narrow heads, a cost volume to 32 px, 4 iterations.
TINY_MODEL: dict[str, Any] = {
    "encoder": "vits", "max_disparity": 32, "hidden_dims": [16], "gru_hidden": 16,
    "disp_head_input_dim": 16, "train_iters": 4, "valid_iters": 4,
    "motion_encoder_widths": [16, 16, 8, 8], "motion_encoder_final": 15, "volume_dim": 16,
    "concat_channel": 8, "cnet_conv04_widths": [16, 16], "corr_radius": 2, "cv_group": 4,
    "cam_mid_channels": 4, "gru_gating_conv_widths": [24, 32], "disp_head_intermediate": 16,
    "disp_head_pwconv1_widths": [32, 32], "mask_widths": [16, 8],
    "spx_2_gru_widths": [8, 8, 8, 8], "stem_2_widths": [8, 8],
}
#: ``model.encoder`` values TAO builds FastFoundationStereo with (the ViT band of
#: ``Feature.conv4``: half of DepthAnything V2's DPT width).
ENCODERS = ("vits", "vitb", "vitl")
#: Twice EdgeNeXt's first width per ``TAO_WORKER_BACKBONE_SCALE`` (the 1/4 features without the
#: ViT band; :data:`tao_sdk.worker.networks.ffs.edgenext.SCALES`).
_STEM_X2 = {"full": 96, "tiny": 32}
#: Architecture record key -> the spec field it comes from (checkpoint / spec comparison).
_ARCH_FIELDS = {
    "encoder": "model.encoder", "max_disparity": "model.max_disparity",
    "hidden_dims": "model.hidden_dims", "cv_group": "model.cv_group",
    "gwc_normalize": "model.gwc_feature_normalize", "concat_channel": "model.concat_channel",
    "volume_dim": "model.volume_dim", "cam_mid": "model.cam_mid_channels",
    "corr_radius": "model.corr_radius", "corr_levels": "model.corr_levels",
    "motion_widths": "model.motion_encoder_widths", "motion_out": "model.motion_encoder_final",
    "gru_hidden": "model.gru_hidden", "gru_gates": "model.gru_gating_conv_widths",
    "context_widths": "model.cnet_conv04_widths", "disp_head": "model.disp_head_intermediate",
    "disp_pw": "model.disp_head_pwconv1_widths", "mask_widths": "model.mask_widths",
    "stem_widths": "model.stem_2_widths", "spx_widths": "model.spx_2_gru_widths",
    "spx_out": "model.spx_gru_out",
}


# --------------------------------------------------------------------------- architecture


def _int_list(spec: dict, key: str, default: list[int] | None, length: int | None = None
              ) -> list[int] | None:
    """A list of positive ints at ``key`` (``length`` entries when given; ``None`` where the
    default is ``None`` and the field is unset)."""
    value = S.get(spec, key, default)
    if value is None and default is None:
        return None
    example = default or [16] * (length or 2)
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise SpecError(f"{key}={value!r} must be a list of positive integers, e.g. {example}")
    if length is not None and len(value) != length:
        raise SpecError(f"{key}={value!r} must have {length} entries, e.g. {example}")
    return [int(v) for v in value]


def _pos_int(spec: dict, key: str, default: int | None, minimum: int = 1) -> int | None:
    """A positive int at ``key`` (``None`` -> ``default``)."""
    value = S.get(spec, key, default)
    if value is None:
        return None
    return as_int(value, key, minimum=minimum, error=SpecError, hint=f" (default {default})")


def _norm_stats(spec: dict) -> tuple[list[float], list[float]]:
    """Input mean/std from ``dataset.train_dataset.augmentation`` (TAO's per-split fields)."""
    aug = "dataset.train_dataset.augmentation"
    mean = S.get(spec, f"{aug}.input_mean", _MEAN)
    std = S.get(spec, f"{aug}.input_std", _STD)
    for key, val in (("input_mean", mean), ("input_std", std)):
        if not (isinstance(val, list) and len(val) == 3):
            raise SpecError(f"{aug}.{key}={val!r} must be 3 numbers (RGB), e.g. {_MEAN}")
    if any(float(s) <= 0 for s in std):
        raise SpecError(f"{aug}.input_std={std!r} must be positive")
    return [float(v) for v in mean], [float(v) for v in std]


def _check_buildable(spec: dict) -> str:
    """Refuse the settings TAO's FastFoundationStereo does not build or run; return
    ``model.encoder``."""
    model_type = S.get(spec, "model.model_type", "FastFoundationStereo")
    if model_type != "FastFoundationStereo":
        raise SpecError(
            f"model.model_type={model_type!r}: this worker builds FastFoundationStereo only "
            "(FoundationStereo with its DepthAnything V2 ViT, MetricDepthAnything and "
            "RelativeDepthAnything need the TAO container); use one of: FastFoundationStereo")
    for key, allowed in (("model.n_downsample", 2), ("model.n_gru_layers", 1)):
        value = _pos_int(spec, key, allowed)
        if value != allowed:
            raise SpecError(f"{key}={value}: TAO's FastFoundationStereo runs one GRU level at 1/4 "
                            f"resolution; use one of: {allowed}")
    encoder = S.get(spec, "model.encoder", "vitl")
    if encoder not in ENCODERS:
        raise SpecError(f"model.encoder={encoder!r}: TAO's FastFoundationStereo has no feature "
                        f"layout for it; use one of: {', '.join(ENCODERS)} (bp2: vitl)")
    return str(encoder)


#: The defaults of unset fields: the skill's train template (NVIDIA's bp2 widths; TAO Core's
#: own dataclass defaults, e.g. ``n_gru_layers: 3``, build a network TAO's FFS cannot run).
BP2: dict[str, Any] = {
    "max_disparity": 192, "hidden_dims": [128], "cv_group": 8, "volume_dim": 28,
    "concat_channel": 24, "corr_radius": 4, "corr_levels": 2, "train_iters": 22,
    "valid_iters": 8, "motion_encoder_widths": [56, 96, 16, 12], "motion_encoder_final": 48,
    "gru_hidden": 60, "gru_gating_conv_widths": [100, 168], "disp_head_intermediate": 36,
    "disp_head_pwconv1_widths": [212, 244], "mask_widths": [32, 16], "stem_2_widths": [12, 16],
    "spx_2_gru_widths": [16, 12, 16, 24], "cnet_conv04_widths": [60, 48],
    "cam_mid_channels": 8,
}


def _bp2(spec: dict, field: str, length: int | None = None):
    """``model.<field>`` (a positive int, or ints with ``length`` entries); unset -> bp2's; an
    explicit ``null`` -> ``None`` (TAO's derived default)."""
    key = f"model.{field}"
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    if field in model and model[field] is None:
        return None
    if isinstance(BP2[field], list):
        return _int_list(spec, key, BP2[field], length)
    return _pos_int(spec, key, BP2[field])


def _widths(spec: dict, hidden0: int) -> dict[str, Any]:
    """The width fields (bp2's when unset; TAO's derivation where a field is ``null``)."""
    gru = _bp2(spec, "gru_hidden") or hidden0
    context = _bp2(spec, "cnet_conv04_widths", 2) or [hidden0, hidden0]
    motion_out = _bp2(spec, "motion_encoder_final")
    if motion_out is None and hidden0 != 128:
        raise SpecError(f"model.motion_encoder_final is null and model.hidden_dims[0]={hidden0}: "
                        "TAO then sizes the motion encoder (127) and the GRU input "
                        f"({hidden0 - 1}) differently; set model.motion_encoder_final (bp2: 48)")
    head = _pos_int(spec, "model.disp_head_input_dim", gru)
    if head != gru:
        raise SpecError(f"model.disp_head_input_dim={head} must equal model.gru_hidden={gru} "
                        "(the disparity head reads the GRU state)")
    return {
        "gru_hidden": gru, "context_widths": context,
        "motion_widths": _bp2(spec, "motion_encoder_widths", 4) or [256, 256, 64, 64],
        "motion_out": 127 if motion_out is None else motion_out,
        "motion_in": hidden0 - 1 if motion_out is None else motion_out,
        "gru_gates": _bp2(spec, "gru_gating_conv_widths", 2),
        "disp_head": _bp2(spec, "disp_head_intermediate") or gru,
        "disp_pw": _bp2(spec, "disp_head_pwconv1_widths", 2),
        "mask_widths": _bp2(spec, "mask_widths", 2) or [64, 32],
        "stem_widths": _bp2(spec, "stem_2_widths", 2) or [32, 32],
        "spx_widths": _bp2(spec, "spx_2_gru_widths", 4) or [32, 32, 32, 32],
        "cam_mid": _bp2(spec, "cam_mid_channels") or max(1, context[1] // 16),
    }


def _check_joins(a: dict[str, Any]) -> None:
    """Widths that must agree where modules meet."""
    joins = [("model.spx_2_gru_widths[0]", a["spx_widths"][0], "model.mask_widths[1]",
              a["mask_widths"][1]),
             ("model.spx_2_gru_widths[2]", a["spx_widths"][2], "model.stem_2_widths[1]",
              a["stem_widths"][1])]
    for key, value, other, want in joins:
        if value != want:
            raise SpecError(f"{key}={value} must equal {other}={want} (the tensors they size "
                            "are joined)")
    gates = a["gru_gates"]
    if gates is not None and gates[1] <= a["gru_hidden"]:
        raise SpecError(f"model.gru_gating_conv_widths[1]={gates[1]} must exceed "
                        f"model.gru_hidden={a['gru_hidden']}")
    channels = (32, 64, 128)[ENCODERS.index(a["encoder"])] + _STEM_X2[a["backbone_scale"]]
    if channels % a["cv_group"]:
        raise SpecError(f"model.cv_group={a['cv_group']} must divide the {channels} feature "
                        f"channels of model.encoder={a['encoder']}, e.g. 8")


def build_arch(spec: dict[str, Any]) -> dict[str, Any]:
    """The architecture record of the spec's ``model`` section (stored in checkpoints).

    Raises :class:`SpecError` naming the dotted key for a value TAO's FastFoundationStereo
    cannot build or run (see :func:`_check_buildable`, e.g. ``model.max_disparity`` not a
    multiple of 32, ``model.volume_dim`` not a multiple of 4, widths that do not join)."""
    encoder = _check_buildable(spec)
    max_disp = _pos_int(spec, "model.max_disparity", BP2["max_disparity"], minimum=32)
    if max_disp % 32:
        raise SpecError(f"model.max_disparity={max_disp} must be a multiple of 32 (the hourglass "
                        f"halves the 1/4 volume three times), e.g. {max_disp - max_disp % 32}")
    volume_dim = _pos_int(spec, "model.volume_dim", BP2["volume_dim"], minimum=4)
    if volume_dim % 4:
        raise SpecError(f"model.volume_dim={volume_dim} must be a multiple of 4 (4 attention "
                        f"heads), e.g. {volume_dim - volume_dim % 4 or 8}")
    levels = _pos_int(spec, "model.corr_levels", BP2["corr_levels"])
    if levels > 2:
        raise SpecError(f"model.corr_levels={levels}: use one of: 1, 2")
    spx_out = _pos_int(spec, "model.spx_gru_out", 9)
    if spx_out != 9:
        raise SpecError(f"model.spx_gru_out={spx_out}: use one of: 9 (3x3 convex weights)")
    hidden = _int_list(spec, "model.hidden_dims", BP2["hidden_dims"])
    mean, std = _norm_stats(spec)
    arch = {
        "network": NAME, "model_type": "FastFoundationStereo", "version": 2,
        "num_classes": None, "backbone_scale": backbone_scale(),
        "backbone_desc": "EdgeNeXt (TAO's FoundationStereo encoder)",
        "encoder": encoder, "max_disparity": max_disp, "n_downsample": 2, "n_gru_layers": 1,
        "hidden_dims": hidden[:1], "cv_group": _pos_int(spec, "model.cv_group", BP2["cv_group"]),
        "gwc_normalize": bool(S.get(spec, "model.gwc_feature_normalize", True)),
        "concat_channel": _pos_int(spec, "model.concat_channel", BP2["concat_channel"], minimum=2),
        "volume_dim": volume_dim, "corr_radius": _pos_int(spec, "model.corr_radius", BP2["corr_radius"]),
        "corr_levels": levels, **_widths(spec, hidden[0]), "spx_out": spx_out,
        "train_iters": _pos_int(spec, "model.train_iters", BP2["train_iters"]),
        "valid_iters": _pos_int(spec, "model.valid_iters", BP2["valid_iters"]),
        "mean": mean, "std": std,
    }
    _check_joins(arch)
    return arch


def arch_diff(ckpt_arch: dict[str, Any], spec_arch: dict[str, Any]) -> list[str]:
    """``model.<field> (checkpoint X, spec Y)`` for each architecture field that differs
    (iteration counts are not architecture: the spec's are used)."""
    out = [f"{dotted} (checkpoint {ckpt_arch.get(key)}, spec {spec_arch.get(key)})"
           for key, dotted in _ARCH_FIELDS.items() if ckpt_arch.get(key) != spec_arch.get(key)]
    if ckpt_arch.get("backbone_scale", "full") != spec_arch.get("backbone_scale", "full"):
        out.append(f"backbone scale (checkpoint {ckpt_arch.get('backbone_scale', 'full')}, "
                   f"TAO_WORKER_BACKBONE_SCALE {spec_arch.get('backbone_scale')})")
    return out


def input_multiple(arch: dict[str, Any]) -> int:
    """Height and width of a network input must be multiples of this (EdgeNeXt's stride 32;
    the hourglass then halves the 1/4 volume three times)."""
    return 32


# --------------------------------------------------------------------------- model


def build_model(arch: dict[str, Any]):
    """The ``torch.nn.Module`` for ``arch`` (random weights; TAO's initialisation scheme).

    ``model(left, right, iters=None)`` takes normalised ``[B, 3, H, W]`` images (H, W multiples
    of :func:`input_multiple`) and returns ``(init_disp, [disp ...])``: the initial disparity
    from the cost volume at 1/4 resolution (in full-resolution pixels, not upsampled) and the
    full-resolution disparity after each GRU iteration (training; eval: the last only).
    """
    if arch.get("version") != 2:
        raise SpecError("this checkpoint holds the worker's former compact stereo network "
                        "(architecture version 1), which this worker no longer builds; retrain "
                        "it, or start from a TAO / NVIDIA FastFoundationStereo checkpoint")
    from tao_sdk.worker.networks.ffs.model import FastFoundationStereo

    return FastFoundationStereo(arch)


# --------------------------------------------------------------------------- loss / predict


def sequence_loss(init_disp, outputs, gt, valid, gamma: float = LOSS_GAMMA):
    """The training loss: exponentially weighted L1 over the iterations (weight
    ``gamma^(N-1-i)``, the last iteration weighs 1) on valid pixels, plus a smooth-L1 term on
    the initial (cost-volume) disparity upsampled to full resolution.

    ``gt`` / ``valid``: ``[B, 1, H, W]`` disparity and boolean mask. Returns a scalar tensor
    (0 with gradient when no pixel is valid).
    """
    import torch
    from torch.nn import functional as F

    v = valid.to(gt.dtype)
    count = v.sum().clamp(min=1.0)
    scale = gt.shape[-1] // init_disp.shape[-1]
    init_up = F.interpolate(init_disp, scale_factor=scale, mode="bilinear", align_corners=False)
    loss = (F.smooth_l1_loss(init_up, gt, reduction="none") * v).sum() / count
    n = len(outputs)
    for i, pred in enumerate(outputs):
        loss = loss + gamma ** (n - 1 - i) * ((pred - gt).abs() * v).sum() / count
    return loss if torch.isfinite(loss) else loss * 0


def predict(model, left, right, iters: int | None = None):
    """Disparity ``[B, 1, H, W]`` for normalised images of any size: the inputs are padded
    (replicate) to multiples of :func:`input_multiple`, centred as TAO's ``InputPadder``
    (``sintel`` mode: left / top get half the padding, rounded down; right / bottom the rest),
    and the output cropped back. ``model``
    may also be a TensorRT adapter without ``arch`` (a dynamic-shape engine: padded to
    multiples of 32)."""
    import torch
    from torch.nn import functional as F

    arch = getattr(model, "arch", None)
    m = input_multiple(arch) if arch else 32  # a dynamic-shape engine: the encoder stride
    h, w = left.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    top, lft = ph // 2, pw // 2
    if ph or pw:
        pad = (lft, pw - lft, top, ph - top)
        left = F.pad(left, pad, mode="replicate")
        right = F.pad(right, pad, mode="replicate")
    with torch.no_grad():
        _init, outs = model(left, right, iters)
    return outs[-1][..., top:top + h, lft:lft + w]


def onnx_module(model, iters: int):
    """The module exported to ONNX: ``(left_image, right_image) -> disparity`` after ``iters``
    GRU iterations (``export.valid_iters``)."""
    import torch

    class Exported(torch.nn.Module):
        """Two-input stereo model returning the final full-resolution disparity."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, left_image, right_image):
            """Final disparity ``[B, 1, H, W]``."""
            return self.inner(left_image, right_image, iters)[1][-1]

    return Exported().eval()


# --------------------------------------------------------------------------- spec coverage

#: ``dotted field -> values that are equivalent to what this implementation does``; any other
#: value set in the spec is reported as not honoured.
_UNHONOURED: dict[str, tuple] = {
    "model.encoder": (),
    "model.low_memory": (0,),
    "model.mixed_precision": (False,),
    "model.gru_gating_conv_widths": (),
    "model.disp_head_pwconv1_widths": (),
    "model.cost_agg_conv_patch_padding": ([0, 0, 0],),
    "model.stereo_backbone.depth_anything_v2_pretrained_path": ("",),
    "model.stereo_backbone.use_bn": (False,),
    "model.stereo_backbone.use_clstoken": (False,),
    "model.mono_backbone.pretrained_path": ("",),
    "dataset.normalize_depth": (False,),
    "dataset.max_depth": (),
    "dataset.min_depth": (),
    "dataset.baseline": (),
    "dataset.focal_x": (),
    "train.activation_checkpoint": (False,),
    "train.inference_tile": (False,),
    "train.dataloader_visualize": (False,),
    "evaluate.native_padded": (False,),
    "inference.conf_threshold": (),
}
#: Augmentation fields applied (per split, train only): the others are reported.
_AUG_HONOURED = ("input_mean", "input_std", "crop_size", "color_aug_prob",
                 "color_aug_brightness", "color_aug_contrast", "color_aug_saturation",
                 "eraser_aug_prob", "v_flip_prob", "crop_min_valid_disp_ratio",
                 "spatial_aug_prob", "min_scale", "max_scale", "stretch_prob", "max_stretch",
                 "yjitter_prob")
#: Augmentation fields not applied and the values that are equivalent to not applying them
#: (a horizontal flip of a stereo pair needs the right view's disparity, which the data lacks).
_AUG_UNHONOURED: dict[str, tuple] = {
    "do_flip": (False,), "gamma": ([1, 1, 1, 1],), "color_aug_hue_range": (),
    "h_flip_prob": (), "hshift_prob": (),
}
#: Fields that never change results here and are not worth a line in the status.
_SILENT = {"inference.conf_threshold", "dataset.baseline", "dataset.focal_x"}


def unhonoured_augmentation(action: str, spec: dict[str, Any]) -> list[str]:
    """``dotted=value`` for each train-split augmentation field set to a value the stereo data
    pipeline does not apply (train only; evaluate / inference do not augment)."""
    if action != "train":
        return []
    out = []
    for field_name, inactive in _AUG_UNHONOURED.items():
        key = f"dataset.train_dataset.augmentation.{field_name}"
        value = S.get(spec, key)
        if value is None or value in inactive:
            continue
        if field_name.endswith("_prob") and not isinstance(value, bool) and value == 0:
            continue
        out.append(f"{key}={value}")
    return out


def unhonoured_fields(action: str, spec: dict[str, Any]) -> list[str]:
    """``dotted=value`` for each field set in ``spec`` that this implementation does not apply
    (the ``model`` / ``dataset`` sections and the ``action``'s own section, plus the train
    split's augmentation for train). The compact network replaces the ViT/EdgeNeXt backbone,
    so ``model.encoder`` is reported too."""
    sections = {"model", "dataset", action}
    out = []
    for key, inactive in _UNHONOURED.items():
        if key.split(".")[0] not in sections or key in _SILENT:
            continue
        value = S.get(spec, key)
        if value is None or value == "" or value == [] or value in inactive:
            continue
        out.append(f"{key}={value}")
    return out + unhonoured_augmentation(action, spec)


# --------------------------------------------------------------------------- checkpoint keys

#: TAO's Lightning checkpoint (``StereoDepthNetPlModel``: ``model.<TAO's key>``) -> the worker's
#: model: the same names (the worker builds TAO's modules under TAO's attribute names).
TAO_KEYS = KeyMap([Rule("{key*}", "{key*}")], tao_prefix="model.", worker_prefix="",
                  tao_backbone="feature.")
#: NVIDIA's research checkpoint of FastFoundationStereo (``model_best_bp2*.pth``, optionally
#: under ``model.`` / ``module.``) -> the worker's model: the renames TAO's
#: ``fast_foundation_stereo/ckpt_utils.py`` applies (timm's EdgeNeXt names, the hourglass's
#: ``atts.4``, the ``layers.`` of ``corr_feature_att`` / ``classifier``, and the ``.bn.`` /
#: ``.IN.`` names its convolution blocks give the norm TAO's ``Conv`` calls ``.norm.``). The
#: research file has no ``dx`` (a constant buffer): it stays at its built value.
RESEARCH_KEYS = KeyMap([
    Rule("cost_agg.atts.4.{rest*}", "cost_agg.atts.cost_vol_disp.{rest*}"),
    Rule("corr_feature_att.layers.{rest*}", "corr_feature_att.{rest*}"),
    Rule("classifier.layers.{rest*}", "classifier.{rest*}"),
    Rule("feature.stem.{rest*}", "feature.downsample_layers.0.{rest*}"),
    Rule("feature.stages.{s}.downsample.{rest*}", "feature.downsample_layers.{s}.{rest*}"),
    Rule("feature.stages.{s}.blocks.{b}.conv_dw.{p}", "feature.stages.{s}.{b}.dwconv.{p}"),
    Rule("feature.stages.{s}.blocks.{b}.mlp.fc1.{p}", "feature.stages.{s}.{b}.pwconv1.{p}"),
    Rule("feature.stages.{s}.blocks.{b}.mlp.fc2.{p}", "feature.stages.{s}.{b}.pwconv2.{p}"),
    Rule("feature.stages.{s}.blocks.{rest*}", "feature.stages.{s}.{rest*}"),
    Rule("{key*}", "{key*}"),
], tao_prefix="", worker_prefix="", aliases=((r"\.(?:bn|IN)\.", ".norm."),))


# --------------------------------------------------------------------------- the plugin


def _export_size(spec: dict[str, Any], arch: dict[str, Any]) -> tuple[int, int, int]:
    """``(height, width, batch)`` of ``export.*``, validated."""
    h = int(S.get(spec, "export.input_height", 544))
    w = int(S.get(spec, "export.input_width", 960))
    batch = int(S.get(spec, "export.batch_size", -1))
    m = max(32, input_multiple(arch))
    if h < m or w < m or h % m or w % m:
        raise SpecError(f"export.input_height/input_width={h}x{w} must be multiples of {m} "
                        "(the encoder stride), e.g. 480x736")
    if batch == 0 or batch < -1:
        raise SpecError(f"export.batch_size={batch}: use -1 (dynamic) or a positive batch size")
    channels = int(S.get(spec, "export.input_channel", 3))
    if channels != 3:
        raise SpecError(f"export.input_channel={channels}: the model takes RGB input; set 3")
    return h, w, batch


class DepthNetPlugin(NetworkPlugin):
    """FastFoundationStereo on the worker seam (see the module docstring)."""

    name = NAME
    display = DISPLAY
    task = TASK
    checkpoint_prefix = "dn_"
    step_in_checkpoint_name = True
    #: the EdgeNeXt (``feature.downsample_layers`` / ``feature.stages``) and its ImageNet PTM
    #: (TAO's ``edgenext_pretrained_path``: ``state_dict`` under ``model.``, read as TAO does)
    backbone_prefix = "feature"
    pretrained_backbone_key = "model.stereo_backbone.edgenext_pretrained_path"
    unhonoured_table = _UNHONOURED
    silent_fields = frozenset(_SILENT)
    trt_outputs = ONNX_OUTPUTS
    demo_metric = ("val_epe", "min")
    tao_keys = TAO_KEYS
    research_keys = RESEARCH_KEYS

    def build_arch(self, spec):
        """See :func:`build_arch`."""
        return build_arch(spec)

    def build_model(self, arch):
        """See :func:`build_model`."""
        return build_model(arch)

    def postprocess_arch(self, spec):
        """The input normalisation a TensorRT job needs (the spec's architecture record)."""
        return build_arch(spec)

    def checkpoint_arch(self, ckpt_arch, spec_arch):
        """The checkpoint's architecture with the spec's iteration counts
        (``model.train_iters`` / ``model.valid_iters`` are not architecture)."""
        arch = dict(ckpt_arch)
        if spec_arch is not None:
            arch["train_iters"] = spec_arch["train_iters"]
            arch["valid_iters"] = spec_arch["valid_iters"]
        return arch

    def arch_diff(self, ckpt_arch, spec_arch):
        """See :func:`arch_diff`."""
        return arch_diff(ckpt_arch, spec_arch)

    def describe(self, arch):
        """Model line of ``status.json``."""
        return (f"model: {self.display} (TAO's architecture: EdgeNeXt features, hybrid cost "
                f"volume to {arch['max_disparity']} px, gated 3D hourglass, selective ConvGRU, "
                f"{arch['train_iters']} train / {arch['valid_iters']} eval iterations)")

    def forward(self, model, batch, device, with_labels):
        """``{"init", "outputs", "gt", "valid"}`` of a collated stereo batch."""
        left = batch["left"].to(device, non_blocking=True)
        right = batch["right"].to(device, non_blocking=True)
        init, outputs = model(left, right)
        return {"init": init, "outputs": outputs,
                "gt": batch["disparity"].to(device), "valid": batch["valid"].to(device)}

    def loss(self, output, arch):
        """See :func:`sequence_loss`."""
        return sequence_loss(output["init"], output["outputs"], output["gt"], output["valid"])

    def predict_batch(self, model, batch, device, size=None):
        """Full-resolution disparity (CPU) of a collated batch; with ``size`` (a TensorRT
        engine's fixed input) the pair is resized to it and the disparity scaled back."""
        import torch
        from torch.nn import functional as F

        left = batch["left"].to(device)
        right = batch["right"].to(device)
        if size is None or min(size) < 1:  # a checkpoint, or an engine with dynamic H / W
            return predict(model, left, right).float().cpu()
        h, w = left.shape[-2:]
        args = {"mode": "bilinear", "align_corners": False}
        with torch.no_grad():
            _init, outs = model(F.interpolate(left, size=size, **args),
                                F.interpolate(right, size=size, **args))
        disp = outs[-1].float().to(left.device)
        return (F.interpolate(disp, size=(h, w), **args) * (w / size[1])).cpu()

    def unhonoured(self, action, spec):
        """The common table, this network's, and the train-split augmentation fields."""
        out = super().unhonoured(action, spec)
        return out + [x for x in unhonoured_augmentation(action, spec) if x not in out]

    def onnx_export(self, model, arch, spec):
        """Two inputs (``left_image``, ``right_image``), one output (``disparity``) after
        ``export.valid_iters`` iterations; ``export.batch_size: -1`` -> dynamic batch,
        ``export.dynamic_hw`` -> dynamic height / width."""
        import torch

        h, w, batch = _export_size(spec, arch)
        iters = int(S.get(spec, "export.valid_iters", arch["valid_iters"]))
        if iters < 1:
            raise SpecError(f"export.valid_iters={iters} must be >= 1 (bp2: 8)")
        dynamic_hw = bool(S.get(spec, "export.dynamic_hw", False))
        module = onnx_module(model, iters)
        gen = torch.Generator().manual_seed(1)
        example = tuple(torch.randn(batch if batch > 0 else 1, 3, h, w, generator=gen)
                        for _ in ONNX_INPUTS)
        axes: dict[int, str] = {}
        if batch == -1:
            axes[0] = "batch"
        if dynamic_hw:
            axes.update({2: "height", 3: "width"})
        dynamic = {n: dict(axes) for n in (*ONNX_INPUTS, *ONNX_OUTPUTS)} if axes else None

        def check(onnx_path, _task_dir):
            """onnxruntime vs PyTorch on random pairs (batch 2 when dynamic; with dynamic H/W
            also at a second size)."""
            import numpy as np
            import onnxruntime as ort

            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            b = 2 if batch == -1 else batch
            sizes = [(h, w)] + ([(h + 32, w - 32 if w > 64 else w + 32)] if dynamic_hw else [])
            worst = 0.0
            g = torch.Generator().manual_seed(7)
            for sh, sw in sizes:
                pair = [torch.randn(b, 3, sh, sw, generator=g) for _ in ONNX_INPUTS]
                with torch.no_grad():
                    ref = module(*pair).numpy()
                got = sess.run(None, {n: t.numpy() for n, t in zip(ONNX_INPUTS, pair)})[0]
                worst = max(worst, float(np.abs(got - ref).max()))
            return {"checked_batch": b, "checked_sizes": [f"{a}x{c}" for a, c in sizes],
                    "disparity": worst, "max_abs_diff": worst}

        shape = ["batch" if batch == -1 else batch, 3, "height" if dynamic_hw else h,
                 "width" if dynamic_hw else w]
        return OnnxExport(
            module=module, example_inputs=example, input_names=list(ONNX_INPUTS),
            output_names=list(ONNX_OUTPUTS), dynamic_axes=dynamic,
            metadata={"tao_worker.mean": json.dumps(arch["mean"]),
                      "tao_worker.std": json.dumps(arch["std"]), "tao_worker.scale": "1/255",
                      "tao_worker.max_disparity": str(arch["max_disparity"]),
                      "tao_worker.valid_iters": str(iters)},
            info={"inputs": {n: {"shape": shape, "preprocessing": {
                      "scale": "1/255", "mean": arch["mean"], "std": arch["std"],
                      "channel_order": "RGB"}} for n in ONNX_INPUTS},
                  "outputs": {"disparity": "[batch, 1, height, width] disparity of the left "
                                           "image, in pixels"},
                  "valid_iters": iters, "max_disparity": arch["max_disparity"]},
            checker=check,
            describe=f"{'dynamic ' if dynamic_hw else ''}{h}x{w}, two inputs, {iters} iterations")

    def tiny_overrides(self, size):
        """The small architecture used by tests, benchmarks and the demo."""
        return {f"model.{k}": v for k, v in TINY_MODEL.items()}

    def demo_plan(self, quick):
        """64x128 synthetic pairs; ``--quick``: 24 train / 8 val pairs, 10 epochs."""
        return ({"epochs": 10, "n_train": 24, "n_val": 8, "size": 128} if quick
                else {"epochs": 30, "n_train": 64, "n_val": 16, "size": 128})

    def demo_untrained_overrides(self):
        """One epoch at the schema's smallest learning rate, 1e-6 (the depth_net train schema
        rejects the default 1e-12): a few steps that leave the weights effectively
        untrained."""
        return {**super().demo_untrained_overrides(), "train.optim.lr": 1e-6}

    def demo_train_overrides(self, epochs, size):
        """The tiny network, batch 4, crops of the whole pair, no augmentation, lr 2e-3."""
        over = {**self.tiny_overrides(size), **self.task.demo_overrides("train", size)}
        over.update({
            "dataset.train_dataset.batch_size": 4, "dataset.val_dataset.batch_size": 4,
            "dataset.train_dataset.augmentation.crop_size": [size // 2, size],
            "train.num_epochs": epochs, "train.checkpoint_interval": max(1, epochs // 4),
            "train.validation_interval": max(1, epochs // 4), "train.optim.lr": 2e-3,
            "train.optim.warmup_steps": 0, "wandb.enable": False})
        for name in ("spatial_aug_prob", "color_aug_prob", "eraser_aug_prob", "v_flip_prob",
                     "yjitter_prob", "h_flip_prob", "hshift_prob", "stretch_prob"):
            over[f"dataset.train_dataset.augmentation.{name}"] = 0.0
        return over


PLUGIN = DepthNetPlugin()
