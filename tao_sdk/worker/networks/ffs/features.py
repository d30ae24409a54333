"""Image features of FastFoundationStereo: the EdgeNeXt encoder with a U-Net style decoder to
1/4 resolution (TAO's ``Feature`` without its ViT branch), the 1/2-resolution stem of the left
image for the final up-sampling, and the context heads of the GRU."""

from __future__ import annotations

from torch import nn

from tao_sdk.worker.networks.ffs.edgenext import SCALES, build_stages
from tao_sdk.worker.networks.ffs.layers import ConvUnit, Residual, UpMerge

#: ``model.encoder`` -> the channels TAO's ``Feature.conv4`` adds for the (absent) ViT branch
#: (half of DepthAnything V2's DPT feature width). TAO builds no other encoder for FFS.
VIT_BAND = {"vits": 32, "vitb": 64, "vitl": 128}


def feature_channels(encoder: str, scale: str = "full") -> list[int]:
    """Channels of the features at 1/4, 1/8, 1/16 and 1/32."""
    dims = SCALES[scale][0]
    return [2 * dims[0] + VIT_BAND[encoder], 2 * dims[1], 2 * dims[2], dims[3]]


def _up(cin: int, cout: int) -> UpMerge:
    return UpMerge(cin, cout, "in2d", Residual(2 * cout, False, nn.InstanceNorm2d))


class Features(nn.Module):
    """``[B, 3, H, W]`` -> features at 1/4, 1/8, 1/16, 1/32 (:func:`feature_channels`)."""

    def __init__(self, encoder: str, scale: str = "full") -> None:
        super().__init__()
        dims = SCALES[scale][0]
        self.downsample_layers, self.stages = build_stages(scale)
        self.deconv32_16 = _up(dims[3], dims[2])
        self.deconv16_8 = _up(2 * dims[2], dims[1])
        self.deconv8_4 = _up(2 * dims[1], dims[0])
        self.conv4 = nn.Conv2d(2 * dims[0], feature_channels(encoder, scale)[0], 1)

    def forward(self, x):
        """Encoder, then decoder joining each scale with the one below."""
        skips = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            skips.append(x)
        x4, x8, x16, x32 = skips
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.deconv8_4(x8, x4)
        return [self.conv4(x4), x8, x16, x32]


def left_stem(widths: list[int]) -> nn.Sequential:
    """The left image at 1/2 resolution (``model.stem_2_widths``), for convex up-sampling."""
    return nn.Sequential(
        ConvUnit(3, widths[0], "2d", "in2d", True, kernel_size=3, stride=2, padding=1),
        nn.Conv2d(widths[0], widths[1], 3, 1, 1, bias=False),
        nn.InstanceNorm2d(widths[1]), nn.ReLU())


class ContextHeads(nn.Module):
    """Two heads on the 1/4 features: the GRU's initial state and its context input
    (``model.cnet_conv04_widths``)."""

    def __init__(self, cin: int, widths: list[int]) -> None:
        super().__init__()
        self.conv04 = nn.ModuleList(
            ConvUnit(cin, w, "2d", "bn2d", True, kernel_size=3, padding=1) for w in widths)

    def forward(self, x4):
        """``[state, context]`` pre-activations."""
        return [head(x4) for head in self.conv04]


class ChannelAttention(nn.Module):
    """Channel weights from average- and max-pooled features through a shared bottleneck."""

    def __init__(self, ch: int, mid: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(ch, mid, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(mid, ch, 1, bias=False))

    def forward(self, x):
        """``sigmoid(fc(avg) + fc(max))``, ``[B, C, 1, 1]``."""
        return (self.fc(x.mean((2, 3), keepdim=True)) +
                self.fc(x.amax((2, 3), keepdim=True))).sigmoid()


class SpatialAttention(nn.Module):
    """A per-pixel weight from the channel mean and max (7x7 convolution, sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.samconv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        """``[B, 1, H, W]`` in (0, 1)."""
        import torch

        both = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return self.samconv(both).sigmoid()
