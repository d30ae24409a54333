"""TAO's RT-DETR ConvNeXt backbone on transformers' ConvNeXt: the stages of
``ConvNextModel`` (layer scale, no GRN; its final ``layernorm`` kept, unused, as TAO keeps
its ``norm``) and one 3x3 convolution per returned stage projecting to TAO's
``512 / 1024 / 2048`` channels (TAO's ``conv_512`` / ``conv_1024`` / ``conv_2048``), with no
normalisation of the returned features (transformers' ``ConvNextBackbone`` would add one).
"""

from __future__ import annotations

from tao_sdk.worker.weights.keymap import Rule

__all__ = ["PROJ_NAMES", "attach_convnext_fpn", "convnext_rules"]

#: TAO's names of the projections of the three returned stages.
PROJ_NAMES = ("conv_512", "conv_1024", "conv_2048")


def convnext_rules(tao: str, ours: str) -> list[Rule]:
    """Rules of TAO's ConvNeXt FPN at ``tao`` held as :func:`attach_convnext_fpn`'s module at
    ``ours``."""
    layer = f"{ours}encoder.stages.{{i}}.layers.{{b}}"
    return [
        Rule(f"{tao}downsample_layers.0.0.{{p}}", f"{ours}embeddings.patch_embeddings.{{p}}"),
        Rule(f"{tao}downsample_layers.0.1.{{p}}", f"{ours}embeddings.layernorm.{{p}}"),
        Rule(f"{tao}downsample_layers.{{i}}.{{j}}.{{p}}",
             f"{ours}encoder.stages.{{i}}.downsampling_layer.{{j}}.{{p}}"),
        Rule(f"{tao}stages.{{i}}.{{b}}.gamma", f"{layer}.layer_scale_parameter"),
        Rule(f"{tao}stages.{{i}}.{{b}}.norm.{{p}}", f"{layer}.layernorm.{{p}}"),
        Rule(f"{tao}stages.{{i}}.{{b}}.{{m}}.{{p}}", f"{layer}.{{m}}.{{p}}"),
        Rule(f"{tao}norm.{{p}}", f"{ours}layernorm.{{p}}"),
        *(Rule(f"{tao}{name}.{{p}}", f"{ours}proj.{k}.{{p}}") for k, name in enumerate(PROJ_NAMES)),
    ]


def attach_convnext_fpn(model, backbone_config, out_channels: list[int]) -> None:
    """Replace the ConvNeXt backbone of a transformers ``RTDetrForObjectDetection`` by TAO's
    FPN variant projecting to ``out_channels`` (and rebuild the encoder's input projections
    for those widths)."""
    import torch
    import transformers
    from transformers.utils import ModelOutput

    stages = [int(f.replace("stage", "")) - 1 for f in backbone_config.out_features]
    dims = backbone_config.hidden_sizes

    class ConvNextFPN(torch.nn.Module):
        """ConvNeXt stages + per-stage 3x3 projections (TAO's ``ConvNeXtFPN``)."""

        def __init__(self) -> None:
            super().__init__()
            inner = transformers.ConvNextModel(backbone_config)
            self.embeddings, self.encoder = inner.embeddings, inner.encoder
            self.layernorm = torch.nn.LayerNorm(dims[-1], eps=1e-6)  # TAO's unused ``norm``
            self.proj = torch.nn.ModuleList(
                torch.nn.Conv2d(dims[s], c, kernel_size=3, padding=1)
                for s, c in zip(stages, out_channels))
            self.channels = list(out_channels)

        def forward(self, pixel_values):
            """``feature_maps``: the projected outputs of the returned stages."""
            hidden, maps = self.embeddings(pixel_values), []
            for i, stage in enumerate(self.encoder.stages):
                hidden = stage(hidden)
                if i in stages:
                    maps.append(self.proj[len(maps)](hidden))
            return ModelOutput(feature_maps=tuple(maps))

    encoder = model.model.backbone
    encoder.model = ConvNextFPN()
    encoder.intermediate_channel_sizes = list(out_channels)
    hidden = model.config.encoder_hidden_dim
    model.model.encoder_input_proj = torch.nn.ModuleList(
        torch.nn.Sequential(torch.nn.Conv2d(c, hidden, kernel_size=1, bias=False),
                            torch.nn.BatchNorm2d(hidden)) for c in out_channels)
