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

__all__ = ["CONVNEXTS", "RESNETS", "BUILDS", "check_backbone"]

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
#: network -> the ``model.backbone`` values the worker builds.
BUILDS: dict[str, tuple[str, ...]] = {
    "rtdetr": (*RESNETS, *CONVNEXTS),
    # TAO's Deformable DETR offers resnet_50 (and GC-ViTs); the smaller / larger ResNets are
    # the same family, kept for small jobs (no TAO checkpoint exists for them)
    "deformable_detr": tuple(RESNETS),
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
