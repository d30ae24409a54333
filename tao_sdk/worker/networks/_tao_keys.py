"""TAO <-> worker key rules the DETR plugins share (see :mod:`tao_sdk.worker.weights.keymap`):
backbones and transformer layers.

TAO's ResNets are timm's (``conv1`` / ``bn1`` stem, ``layer1..4.<block>.conv<j>`` /
``bn<j>`` / ``downsample.0|1``); the worker builds transformers' ``ResNetBackbone`` of the
same network (``embedder``, ``encoder.stages.<s>.layers.<b>.layer.<j>`` / ``shortcut``).
"""

from __future__ import annotations

from tao_sdk.worker.weights.keymap import Fused, Rule

__all__ = ["attention_rules", "gcvit_rules", "resnet_rules"]


def attention_rules(tao: str, ours: str, extra: list[tuple[str, str]]) -> list[Rule]:
    """A TAO transformer layer (``nn.MultiheadAttention`` ``self_attn``, ``linear1/2``) at
    ``tao`` -> transformers' layer at ``ours`` (``q/k/v_proj``, ``o_proj``, ``mlp.fc1/2``);
    ``extra``: the layer's other renames (its norms, whose order differs per network)."""
    pairs = [("self_attn.out_proj.{p}", "self_attn.o_proj.{p}"),
             ("linear1.{p}", "mlp.fc1.{p}"), ("linear2.{p}", "mlp.fc2.{p}"), *extra]
    return [Fused(f"{tao}self_attn.in_proj_{{p}}", f"{ours}self_attn.{{part}}_proj.{{p}}"),
            *(Rule(tao + a, ours + b) for a, b in pairs)]


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


def gcvit_rules(tao: str, ours: str) -> list[Rule]:
    """Rules of TAO's GC-ViT at ``tao`` held as :class:`tao_sdk.worker.networks.gcvit.GCViT`
    at ``ours`` (the same names: ``patch_embed``, ``levels``, ``norm<i>``)."""
    return [Rule(f"{tao}patch_embed.{{rest*}}", f"{ours}patch_embed.{{rest*}}"),
            Rule(f"{tao}levels.{{rest*}}", f"{ours}levels.{{rest*}}"),
            Rule(f"{tao}norm{{i}}.{{p}}", f"{ours}norm{{i}}.{{p}}")]
