"""FastFoundationStereo (``depth_net``, ``model.model_type: FastFoundationStereo``): a compact
iterative stereo network of the FoundationStereo family, built from the spec's ``model`` section.

No maintained package implements FoundationStereo, so this module holds a compact network of
the same family (IGEV / RAFT-Stereo / FoundationStereo):

1. a shared CNN **feature encoder** for the left and right images (stem at 1/2 resolution with
   ``model.stem_2_widths``, features of ``model.hidden_dims[0]`` channels at the cost-volume
   scale 1/2^``model.n_downsample``);
2. a **hybrid cost volume** up to ``model.max_disparity`` (``max_disparity / 2^n_downsample``
   disparity levels): group-wise correlation (``model.cv_group`` groups, features L2-normalised
   with ``model.gwc_feature_normalize``) plus a concatenation volume (``model.concat_channel``
   features per image), filtered by 3D convolutions of ``model.volume_dim`` channels with an
   image-guided channel attention (``model.cam_mid_channels``), and a classifier
   (``model.classifier_mid``) giving the initial disparity by soft-argmin;
3. **iterative ConvGRU refinement**: each iteration looks up the filtered and the correlation
   volumes (``model.corr_levels`` levels, radius ``model.corr_radius``) around the current
   disparity, encodes them with the motion encoder (``model.motion_encoder_widths``,
   ``model.motion_encoder_final``), updates ``model.n_gru_layers`` ConvGRUs (finest width
   ``model.gru_hidden``, coarser ones ``model.hidden_dims[i]``; context from
   ``model.cnet_conv04_widths``) and adds the disparity head's update
   (``model.disp_head_input_dim`` -> ``model.disp_head_intermediate`` -> 1);
   ``model.train_iters`` iterations when training, ``model.valid_iters`` otherwise;
4. **learned convex upsampling** to full resolution: mask features (``model.mask_widths``) are
   brought to 1/2 resolution, joined with the stem features (``model.spx_2_gru_widths``) and
   turned into ``model.spx_gru_out`` (= 9, a 3x3 neighbourhood) weights per full-resolution
   pixel.

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
from tao_sdk.worker.plugin import NetworkPlugin, OnnxExport
from tao_sdk.worker.tasks.stereo import TASK

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
#: A small architecture (``model.*`` values) for CPU tests, benchmarks and the demo: about
#: 0.1 M parameters, a cost volume to 32 px, 4 iterations.
TINY_MODEL: dict[str, Any] = {
    "max_disparity": 32, "hidden_dims": [16], "gru_hidden": 16, "disp_head_input_dim": 16,
    "train_iters": 4, "valid_iters": 4, "motion_encoder_widths": [32, 24, 8, 8],
    "motion_encoder_final": 24, "volume_dim": 16, "concat_channel": 8,
    "cnet_conv04_widths": [24, 16], "corr_radius": 2, "cv_group": 4, "classifier_mid": 8,
    "disp_head_intermediate": 16, "mask_widths": [16, 8], "spx_2_gru_widths": [16],
    "stem_2_widths": [8, 12],
}
#: Spec fields this implementation reads (everything else under ``model.`` is reported).
_ARCH_FIELDS = {
    "max_disparity": "model.max_disparity", "n_downsample": "model.n_downsample",
    "stem_widths": "model.stem_2_widths", "hidden_dims": "model.hidden_dims",
    "cv_group": "model.cv_group", "gwc_normalize": "model.gwc_feature_normalize",
    "concat_channel": "model.concat_channel", "volume_dim": "model.volume_dim",
    "cam_mid": "model.cam_mid_channels", "classifier_mid": "model.classifier_mid",
    "corr_radius": "model.corr_radius", "corr_levels": "model.corr_levels",
    "motion_widths": "model.motion_encoder_widths", "motion_final": "model.motion_encoder_final",
    "gru_hidden": "model.gru_hidden", "n_gru_layers": "model.n_gru_layers",
    "context_widths": "model.cnet_conv04_widths", "disp_head": "model.disp_head_intermediate",
    "mask_widths": "model.mask_widths", "spx_widths": "model.spx_2_gru_widths",
    "spx_out": "model.spx_gru_out",
}


# --------------------------------------------------------------------------- architecture


def _int_list(spec: dict, key: str, default: list[int], length: int | None = None) -> list[int]:
    """A list of positive ints at ``key`` (``length`` entries when given)."""
    value = S.get(spec, key, default)
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise SpecError(f"{key}={value!r} must be a list of positive integers, e.g. {default}")
    if length is not None and len(value) != length:
        raise SpecError(f"{key}={value!r} must have {length} entries, e.g. {default}")
    return [int(v) for v in value]


def _pos_int(spec: dict, key: str, default: int, minimum: int = 1) -> int:
    """A positive int at ``key`` (``None`` -> ``default``)."""
    return as_int(S.get(spec, key, default), key, minimum=minimum, error=SpecError, hint=f" (default {default})")


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


def build_arch(spec: dict[str, Any]) -> dict[str, Any]:
    """The architecture record of the spec's ``model`` section (stored in checkpoints).

    Raises :class:`SpecError` naming the dotted key for a value this network cannot build
    (e.g. ``model.max_disparity`` not a multiple of 2^``n_downsample``, ``hidden_dims[0]``
    not divisible by ``cv_group``, fewer ``hidden_dims`` than ``n_gru_layers``).
    """
    model_type = S.get(spec, "model.model_type", "FastFoundationStereo")
    if model_type not in ("FastFoundationStereo", "FoundationStereo"):
        raise SpecError(
            f"model.model_type={model_type!r}: this worker runs the stereo models "
            "(FastFoundationStereo, FoundationStereo); mono depth (MetricDepthAnything, "
            "RelativeDepthAnything) needs the TAO container"
        )
    n_down = _pos_int(spec, "model.n_downsample", 2)
    if n_down > 2:
        raise SpecError(f"model.n_downsample={n_down} must be 1 or 2 (cost volume at 1/2 or 1/4)")
    scale = 2 ** n_down
    max_disp = _pos_int(spec, "model.max_disparity", 192, minimum=scale * 2)
    if max_disp % scale:
        raise SpecError(f"model.max_disparity={max_disp} must be a multiple of "
                        f"{scale} (2^model.n_downsample), e.g. {max_disp - max_disp % scale}")
    n_gru = _pos_int(spec, "model.n_gru_layers", 1)
    if n_gru > 3:
        raise SpecError(f"model.n_gru_layers={n_gru} must be 1, 2 or 3")
    hidden = _int_list(spec, "model.hidden_dims", [128])
    if len(hidden) < n_gru:
        raise SpecError(f"model.hidden_dims={hidden} has {len(hidden)} entries but "
                        f"model.n_gru_layers={n_gru}: give one width per GRU level "
                        f"(e.g. {[hidden[0]] * n_gru}) or lower model.n_gru_layers")
    cv_group = _pos_int(spec, "model.cv_group", 8)
    if hidden[0] % cv_group:
        raise SpecError(f"model.hidden_dims[0]={hidden[0]} (feature channels) must be divisible "
                        f"by model.cv_group={cv_group}; e.g. model.cv_group=8")
    levels = _pos_int(spec, "model.corr_levels", 2)
    if levels > 2:
        raise SpecError(f"model.corr_levels={levels} must be 1 or 2")
    gru_hidden = _pos_int(spec, "model.gru_hidden", 60)
    head_in = _pos_int(spec, "model.disp_head_input_dim", gru_hidden)
    if head_in != gru_hidden:
        raise SpecError(f"model.disp_head_input_dim={head_in} must equal the finest GRU width "
                        f"model.gru_hidden={gru_hidden} (the disparity head reads the GRU state)")
    spx_out = _pos_int(spec, "model.spx_gru_out", 9)
    if spx_out != 9:
        raise SpecError(f"model.spx_gru_out={spx_out} must be 9 (3x3 convex-upsampling weights)")
    mean, std = _norm_stats(spec)
    return {
        "network": NAME, "model_type": model_type, "version": 1, "num_classes": None,
        "backbone_desc": "compact CNN encoder",
        "max_disparity": max_disp, "n_downsample": n_down,
        "stem_widths": _int_list(spec, "model.stem_2_widths", [12, 16], 2),
        "hidden_dims": hidden[:n_gru], "cv_group": cv_group,
        "gwc_normalize": bool(S.get(spec, "model.gwc_feature_normalize", True)),
        "concat_channel": _pos_int(spec, "model.concat_channel", 24),
        "volume_dim": _pos_int(spec, "model.volume_dim", 28),
        "cam_mid": _pos_int(spec, "model.cam_mid_channels", 8),
        "classifier_mid": _pos_int(spec, "model.classifier_mid", 14),
        "corr_radius": _pos_int(spec, "model.corr_radius", 4),
        "corr_levels": levels,
        "motion_widths": _int_list(spec, "model.motion_encoder_widths", [56, 96, 16, 12], 4),
        "motion_final": _pos_int(spec, "model.motion_encoder_final", 48),
        "gru_hidden": gru_hidden, "n_gru_layers": n_gru,
        "context_widths": _int_list(spec, "model.cnet_conv04_widths", [60, 48], 2),
        "disp_head": _pos_int(spec, "model.disp_head_intermediate", 36),
        "mask_widths": _int_list(spec, "model.mask_widths", [32, 16], 2),
        "spx_widths": _int_list(spec, "model.spx_2_gru_widths", [16, 12, 16, 24]),
        "spx_out": spx_out,
        "train_iters": _pos_int(spec, "model.train_iters", 22),
        "valid_iters": _pos_int(spec, "model.valid_iters", 8),
        "mean": mean, "std": std,
    }


def arch_diff(ckpt_arch: dict[str, Any], spec_arch: dict[str, Any]) -> list[str]:
    """``model.<field> (checkpoint X, spec Y)`` for each architecture field that differs
    (iteration counts are not architecture: the spec's are used)."""
    return [f"{dotted} (checkpoint {ckpt_arch.get(key)}, spec {spec_arch.get(key)})"
            for key, dotted in _ARCH_FIELDS.items() if ckpt_arch.get(key) != spec_arch.get(key)]


def input_multiple(arch: dict[str, Any]) -> int:
    """Height and width of a network input must be multiples of this (the coarsest GRU
    level is 1/2^(n_downsample + n_gru_layers - 1))."""
    return 2 ** (arch["n_downsample"] + arch["n_gru_layers"] - 1)


# --------------------------------------------------------------------------- model


def build_model(arch: dict[str, Any]):
    """The ``torch.nn.Module`` for ``arch`` (random weights).

    ``model(left, right, iters=None)`` takes normalised ``[B, 3, H, W]`` images (H, W multiples
    of :func:`input_multiple`) and returns ``(init_disp, [disp_1 ... disp_iters])``: the
    initial disparity from the cost volume at 1/2^n_downsample resolution (in full-resolution
    pixels, not upsampled) and the full-resolution disparity after each GRU iteration.
    """
    from tao_sdk.worker.networks._depth_net_model import Stereo

    return Stereo(arch)


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
    (replicate) to multiples of :func:`input_multiple` and the output cropped back. ``model``
    may also be a TensorRT adapter without ``arch`` (a dynamic-shape engine: padded to
    multiples of 32)."""
    import torch
    from torch.nn import functional as F

    arch = getattr(model, "arch", None)
    m = input_multiple(arch) if arch else 32  # a dynamic-shape engine: the encoder stride
    h, w = left.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        pad = (0, pw, 0, ph)
        left = F.pad(left, pad, mode="replicate")
        right = F.pad(right, pad, mode="replicate")
    with torch.no_grad():
        _init, outs = model(left, right, iters)
    return outs[-1][..., :h, :w]


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
    "model.stereo_backbone.edgenext_pretrained_path": ("",),
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
    backbone_prefix = ""
    unhonoured_table = _UNHONOURED
    silent_fields = frozenset(_SILENT)
    trt_outputs = ONNX_OUTPUTS
    demo_metric = ("val_epe", "min")

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
        return (f"model: {self.display} (compact iterative stereo network: CNN encoder, hybrid "
                f"cost volume to {arch['max_disparity']} px, {arch['n_gru_layers']} ConvGRU "
                f"level(s), {arch['train_iters']} train / {arch['valid_iters']} eval "
                "iterations)")

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
