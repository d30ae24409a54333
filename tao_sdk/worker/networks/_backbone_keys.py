"""TAO <-> worker key rules of the backbones the DETR plugins share (see
:mod:`tao_sdk.worker.weights.keymap`).

TAO's ResNets are timm's (``conv1`` / ``bn1`` stem, ``layer1..4.<block>.conv<j>`` /
``bn<j>`` / ``downsample.0|1``); the worker builds transformers' ``ResNetBackbone`` of the
same network (``embedder``, ``encoder.stages.<s>.layers.<b>.layer.<j>`` / ``shortcut``).
"""

from __future__ import annotations

from tao_sdk.worker.weights.keymap import Rule

__all__ = ["resnet_rules"]


def resnet_rules(tao: str, ours: str) -> list[Rule]:
    """Rules of a timm ResNet at ``tao`` (e.g. ``backbone.``) held as transformers'
    ``ResNetBackbone`` at ``ours`` (e.g. ``backbone.model.``)."""
    stage = f"{ours}encoder.stages.{{s}}.layers.{{b}}"
    return [
        Rule(f"{tao}conv1.{{p}}", f"{ours}embedder.embedder.convolution.{{p}}"),
        Rule(f"{tao}bn1.{{p}}", f"{ours}embedder.embedder.normalization.{{p}}"),
        Rule(f"{tao}layer{{s}}.{{b}}.conv{{j}}.{{p}}",
             f"{stage}.layer.{{j}}.convolution.{{p}}", {"s": -1, "j": -1}),
        Rule(f"{tao}layer{{s}}.{{b}}.bn{{j}}.{{p}}",
             f"{stage}.layer.{{j}}.normalization.{{p}}", {"s": -1, "j": -1}),
        Rule(f"{tao}layer{{s}}.{{b}}.downsample.0.{{p}}",
             f"{stage}.shortcut.convolution.{{p}}", {"s": -1}),
        Rule(f"{tao}layer{{s}}.{{b}}.downsample.1.{{p}}",
             f"{stage}.shortcut.normalization.{{p}}", {"s": -1}),
    ]
