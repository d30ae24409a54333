"""The backbones the worker builds as TAO 7.3.0 does, per network (torch-free: the SDK asks at
plan time through :func:`tao_sdk.worker.registry.preflight`).

Each name builds TAO's own architecture (checked against the manifests recorded from TAO's
code, ``tools/manifests/``); TAO's other backbones (ConvNeXt-V2, EdgeNeXt, EfficientViT,
FAN, ...) are refused with this list.
"""

from __future__ import annotations

from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError

__all__ = ["CONVNEXTS", "GCVITS", "GCVIT_TINY", "RESNETS", "BUILDS", "check_backbone",
           "gcvit_config"]

#: name: (layer_type, depths, hidden_sizes) of TAO's (timm's) plain ResNets.
RESNETS = {
    "resnet_18": ("basic", [2, 2, 2, 2], [64, 128, 256, 512]),
    "resnet_34": ("basic", [3, 4, 6, 3], [64, 128, 256, 512]),
    "resnet_50": ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048]),
    "resnet_101": ("bottleneck", [3, 4, 23, 3], [256, 512, 1024, 2048]),
}
#: name: (depths, dims) of TAO's RT-DETR ConvNeXts (layer scale, no GRN; projections to
#: 512/1024/2048 channels).
CONVNEXTS = {
    "convnext_tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "convnext_small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "convnext_base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
    "convnext_large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
    "convnext_xlarge": ([3, 3, 27, 3], [256, 512, 1024, 2048]),
}
#: name: (depths, heads, windows, dim, mlp_ratio, layer_scale) of TAO's Deformable DETR
#: GC-ViTs (stage widths dim x 1/2/4/8; layer scale ``None`` = no ``gamma`` parameters).
GCVITS = {
    "gc_vit_xxtiny": ([2, 2, 6, 2], [2, 4, 8, 16], [7, 7, 14, 7], 64, 3, None),
    "gc_vit_xtiny": ([3, 4, 6, 5], [2, 4, 8, 16], [7, 7, 14, 7], 64, 3, None),
    "gc_vit_tiny": ([3, 4, 19, 5], [2, 4, 8, 16], [7, 7, 14, 7], 64, 3, None),
    "gc_vit_small": ([3, 4, 19, 5], [3, 6, 12, 24], [7, 7, 14, 7], 96, 2, 1e-5),
    "gc_vit_base": ([3, 4, 19, 5], [4, 8, 16, 32], [7, 7, 14, 7], 128, 2, 1e-5),
    "gc_vit_large": ([3, 4, 19, 5], [6, 12, 24, 48], [7, 7, 14, 7], 192, 2, 1e-5),
    "gc_vit_large_384": ([3, 4, 19, 5], [6, 12, 24, 48], [12, 12, 24, 12], 192, 2, 1e-5),
}
#: The narrow GC-ViT stand-in of ``TAO_WORKER_BACKBONE_SCALE=tiny`` (every GC-ViT name):
#: two blocks per stage (one local, one global-query attention), widths 16/32/64/128; the
#: named variant's layer scale (so its parameter names stay the variant's).
GCVIT_TINY = ([2, 2, 2, 2], [1, 2, 4, 8], [7, 7, 14, 7], 16, 2)
#: network -> the ``model.backbone`` values the worker builds.
BUILDS: dict[str, tuple[str, ...]] = {
    "rtdetr": (*RESNETS, *CONVNEXTS),
    # TAO's Deformable DETR offers resnet_50 and the GC-ViTs; the smaller / larger ResNets are
    # the same family, kept for small jobs (no TAO checkpoint exists for them)
    "deformable_detr": (*RESNETS, *GCVITS),
}


def check_backbone(network: str, spec: dict[str, Any], default: str = "resnet_50") -> None:
    """Refuse a ``model.backbone`` the worker cannot build as TAO does (SpecError with the
    list of those it can)."""
    builds = BUILDS.get(network)
    name = str(S.get(spec, "model.backbone", default))
    if builds is not None and name not in builds:
        raise SpecError(
            f"model.backbone={name!r} is a TAO backbone this worker does not build; "
            f"use one of: {', '.join(builds)}")


def gcvit_config(name: str, stages: list[int], scale: str) -> tuple[dict, list[int], str]:
    """``(backbone config dict, channels of the 0-based stages, description)`` of the
    GC-ViT ``name`` (:data:`GCVITS`; ``scale="tiny"``: the :data:`GCVIT_TINY` stand-in), as
    :func:`tao_sdk.worker.networks.gcvit.build` takes it."""
    depths, heads, windows, dim, mlp_ratio, layer_scale = GCVITS[name]
    if scale != "full":
        depths, heads, windows, dim, mlp_ratio = GCVIT_TINY
    cfg = {"model_type": "gc_vit", "depths": depths, "heads": heads, "windows": windows,
           "dim": dim, "mlp_ratio": mlp_ratio, "layer_scale": layer_scale,
           "stages": list(stages)}
    desc = (f"{name} (GC-ViT depths {depths}, dim {dim}, heads {heads}, windows {windows}"
            + (", TAO_WORKER_BACKBONE_SCALE=tiny stand-in)" if scale == "tiny" else ")"))
    return cfg, [dim * 2 ** i for i in stages], desc
