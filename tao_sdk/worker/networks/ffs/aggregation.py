"""Cost aggregation of FastFoundationStereo: a 3D hourglass over the 1/4-resolution hybrid
volume, gated by the left image's features at each scale, with a disparity transformer at
1/16 (TAO's ``_FFSHourGlass``, the distilled bp2 layout). The hourglass also carries the
modules of TAO's non-distilled hourglass that bp2 does not run (``conv3_up``, ``agg_*``,
``atts``...): they are part of TAO's checkpoints, so they are part of this model too."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tao_sdk.worker.networks.ffs.layers import (ConvUnit, FeatureGate, Residual, SplitConv3d,
                                                conv3d_bn)


class HeadsAttention(nn.Module):
    """Multi-head attention laid out as NVIDIA's bp2 was trained: the projected ``[B, L, E]``
    tokens are viewed as ``[B, L, heads, E / heads]``, so each token's heads attend to each
    other (TAO's ``qkv_layout='upstream_compat'``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        """``[B, L, E]`` -> ``[B, L, E]``."""
        b, n, e = x.shape
        q, k, v = (p(x).view(b, n, self.heads, e // self.heads)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(F.scaled_dot_product_attention(q, k, v).reshape(b, n, e))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer (attention, GELU MLP, dropout 0.1)."""

    def __init__(self, dim: int, heads: int, ff: int) -> None:
        super().__init__()
        self.self_attn = HeadsAttention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, ff), nn.Linear(ff, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1, self.dropout2 = (nn.Dropout(0.1) for _ in range(3))

    def forward(self, x):
        """One layer."""
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        y = self.linear2(self.dropout(F.gelu(self.linear1(x))))
        return self.norm2(x + self.dropout2(y))


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """``[1, length, dim]`` sine (even) / cosine (odd channels) position codes."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe[None]


class DisparityTransformer(nn.Module):
    """Transformer layers along the disparity axis of a ``[B, C, D, H, W]`` volume, one sequence
    per pixel, with fixed position codes for up to ``max_len`` disparities."""

    def __init__(self, dim: int, heads: int, ff: int, layers: int, max_len: int) -> None:
        super().__init__()
        self.sa = nn.ModuleList(EncoderLayer(dim, heads, ff) for _ in range(layers))
        self.max_len = max_len

    def forward(self, cv):
        """Same shape out."""
        b, c, d, h, w = cv.shape
        if d > self.max_len:
            raise RuntimeError(f"cost volume has {d} disparities, the transformer {self.max_len}")
        x = cv.permute(0, 3, 4, 2, 1).reshape(b * h * w, d, c)
        x = x + sinusoid(self.max_len, c)[:, :d].to(x)
        for layer in self.sa:
            x = layer(x)
        return x.reshape(b, h, w, d, c).permute(0, 4, 3, 1, 2)


def run_gated(mods, x, feat):
    """``x`` through ``mods`` in turn; :class:`FeatureGate` layers also take ``feat``."""
    for m in mods:
        x = m(x, feat) if isinstance(m, FeatureGate) else m(x)
    return x


class Chain(nn.Module):
    """Layers applied in turn (:func:`run_gated`)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, feat=None):
        """``x`` through the layers."""
        return run_gated(self.layers, x, feat)


class UpJoin(nn.Module):
    """``upsample(coarse) + fine``, then the ``out`` layers (TAO's post-forward helper)."""

    def __init__(self, upsample: list[nn.Module], out: list[nn.Module]) -> None:
        super().__init__()
        self.upsample = nn.Sequential(*upsample)
        self.out = nn.ModuleList(out)

    def forward(self, fine, coarse, feat=None):
        """See the class docstring."""
        return run_gated(self.out, self.upsample(coarse) + fine, feat)


def _legacy_modules(hg: nn.Module, c: int, feats: list[int], max_disp: int) -> None:
    """TAO's hourglass modules that the distilled forward never runs (kept for the layout)."""
    up = {"kernel_size": 4, "stride": 2, "padding": 1}
    hg.conv3_up = ConvUnit(6 * c, 4 * c, "up3d", "bn3d", True, **up)
    hg.conv2_up = ConvUnit(4 * c, 2 * c, "up3d", "bn3d", True, **up)
    hg.conv_out = nn.Sequential(SplitConv3d(c, c, 17), SplitConv3d(c, c, 17))
    hg.agg_0 = nn.Sequential(conv3d_bn(8 * c, 4 * c, kernel_size=1, padding=0),
                             SplitConv3d(4 * c, 4 * c, 17), SplitConv3d(4 * c, 4 * c, 17))
    hg.agg_1 = nn.Sequential(conv3d_bn(4 * c, 2 * c, kernel_size=1, padding=0),
                             SplitConv3d(2 * c, 2 * c, 17), SplitConv3d(2 * c, 2 * c, 17))
    hg.atts = nn.ModuleDict({"cost_vol_disp": DisparityTransformer(c, 4, c, 4, max_disp // 16)})
    hg.conv_patch = nn.Sequential(nn.Conv3d(c, c, 4, stride=4, groups=c), nn.BatchNorm3d(c))
    hg.feature_att_up_16 = FeatureGate(4 * c, feats[2])
    hg.feature_att_up_8 = FeatureGate(2 * c, feats[1])


class Hourglass(nn.Module):
    """``[B, c, D, H, W]`` volume at 1/4 and the left features at 1/4..1/32 -> the aggregated
    volume at 1/4 (``c`` = ``model.volume_dim``; D = ``model.max_disparity`` / 4)."""

    def __init__(self, c: int, feats: list[int], max_disp: int) -> None:
        super().__init__()
        down = {"stride": 2}
        self.conv1, self.conv2 = nn.Identity(), nn.Identity()
        self.feature_att_8 = Chain([conv3d_bn(c, c, **down), SplitConv3d(c, 2 * c, 17),
                                    FeatureGate(2 * c, feats[1])])
        self.feature_att_16 = Chain([conv3d_bn(2 * c, 4 * c, **down),
                                     SplitConv3d(4 * c, 2 * c, 13),
                                     SplitConv3d(2 * c, 4 * c, 3)])
        self.conv3 = nn.Sequential(conv3d_bn(4 * c, 6 * c, **down),
                                   SplitConv3d(6 * c, 6 * c, 17))
        self.feature_att_32 = FeatureGate(6 * c, feats[3])
        self.conv1_up = ConvUnit(2 * c, c, "up3d", "bn3d", True, kernel_size=4, stride=2,
                                 padding=1)
        _legacy_modules(self, c, feats, max_disp)
        self.post32_to_16 = UpJoin(
            [ConvUnit(6 * c, 4 * c, "up3d", "bn3d", True, kernel_size=3, stride=2, padding=1,
                      output_padding=1)],
            [FeatureGate(4 * c, feats[2]), conv3d_bn(4 * c, 4 * c),
             SplitConv3d(4 * c, 4 * c, 9), conv3d_bn(4 * c, 4 * c)])
        self.post16_to_8 = UpJoin(
            [ConvUnit(4 * c, 2 * c, "up3d", "bn3d", True, kernel_size=4, stride=2, padding=1)],
            [conv3d_bn(2 * c, 2 * c), FeatureGate(2 * c, feats[1]),
             SplitConv3d(2 * c, 2 * c, 9)])
        self.post8_to_4 = UpJoin(
            [conv3d_bn(c, c, kernel_size=4, stride=4, padding=0, act=False),
             DisparityTransformer(c, 4, 4 * c, 1, max_disp // 16),
             nn.Upsample(scale_factor=4, mode="trilinear", align_corners=False)],
            [conv3d_bn(c, c), Residual(c, True, nn.BatchNorm3d)])

    def forward(self, x, feats):
        """Down to 1/32 (gated at 1/8 and 1/32), back up joining each scale; the 1/4 result
        passes the disparity transformer at 1/16 and is added to the input volume."""
        c8 = self.feature_att_8(x, feats[1])
        c16 = self.feature_att_16(c8)
        c32 = self.feature_att_32(self.conv3(c16), feats[3])
        c16 = self.post32_to_16(c16, c32, feats[2])
        c8 = self.post16_to_8(c8, c16, feats[1])
        return self.post8_to_4(x, self.conv1_up(c8))
