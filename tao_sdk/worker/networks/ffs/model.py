"""The FastFoundationStereo network (TAO 7.3.0's ``FastFoundationStereo``, the distilled bp2
layout): EdgeNeXt features of both images, a hybrid (group-wise correlation + concatenation)
cost volume at 1/4 resolution aggregated by a gated 3D hourglass, a soft-argmin initial
disparity, iterative selective-ConvGRU refinement over the geometry volume, and convex 4x
up-sampling. Parameter names are TAO's (its checkpoints load key for key)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tao_sdk.worker.networks.ffs.aggregation import Hourglass, run_gated
from tao_sdk.worker.networks.ffs.features import (ChannelAttention, ContextHeads, Features,
                                                  SpatialAttention, feature_channels, left_stem)
from tao_sdk.worker.networks.ffs.layers import ConvUnit, FeatureGate, UpMerge, conv3d_bn
from tao_sdk.worker.networks.ffs.update import UpdateBlock
from tao_sdk.worker.networks.ffs.volume import (GeometryLookup, concat_volume, convex_upsample,
                                                group_correlation, soft_argmin)

#: Resolution of the cost volume and the GRU (1/4), fixed by the architecture.
SCALE = 4


def _upsampler(a: dict[str, Any]) -> tuple[UpMerge, nn.Sequential]:
    """Mask features (1/4) + left stem (1/2) -> 3x3 convex weights at full resolution
    (``model.spx_2_gru_widths`` = ``[mask, mid, stem, out]``, ``model.spx_gru_out``)."""
    w = a["spx_widths"]
    merge = UpMerge(w[0], w[1], None,
                    ConvUnit(w[1] + w[2], w[3], "2d", None, True, kernel_size=3, padding=1))
    return merge, nn.Sequential(nn.ConvTranspose2d(w[3], a["spx_out"], 4, stride=2, padding=1))


class FastFoundationStereo(nn.Module):
    """See the module docstring; ``arch`` is :func:`tao_sdk.worker.networks.depth_net.build_arch`'s
    record."""

    def __init__(self, a: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(a)
        scale = a.get("backbone_scale", "full")
        feats = feature_channels(a["encoder"], scale)
        ctx = a["context_widths"]
        vd = a["volume_dim"]
        self.update_block = UpdateBlock(a)
        self.sam = SpatialAttention()
        self.cam = ChannelAttention(ctx[1], a["cam_mid"] or ctx[1] // 16)
        self.context_zqr_convs = nn.ModuleList(  # TAO builds them; FFS does not run them
            nn.Conv2d(h, 3 * h, 3, padding=1) for h in a["hidden_dims"][:a["n_gru_layers"]])
        self.feature = Features(a["encoder"], scale)
        self.proj_cmb = nn.Conv2d(feats[0], a["concat_channel"] // 2, 1)
        self.cnet = ContextHeads(feats[0], ctx)
        self.stem_2 = left_stem(a["stem_widths"])
        self.spx_2_gru, self.spx_gru = _upsampler(a)
        self.corr_feature_att = nn.Sequential(
            conv3d_bn(2 * (a["concat_channel"] // 2) + a["cv_group"], vd), conv3d_bn(vd, vd),
            FeatureGate(vd, feats[0]))
        self.cost_agg = Hourglass(vd, feats, a["max_disparity"])
        self.classifier = nn.Sequential(nn.Conv3d(vd, 1, 3, padding=1))
        r = a["corr_radius"]
        self.register_buffer("dx", torch.arange(-r, r + 1, dtype=torch.int8).view(1, 1, -1, 1))

    def _volume(self, fl: list, fr: list):
        """The aggregated cost volume ``[B, vd, D, H/4, W/4]``."""
        a, levels = self.arch, self.arch["max_disparity"] // SCALE
        gwc = group_correlation(fl[0], fr[0], levels, a["cv_group"], a["gwc_normalize"])
        cat = concat_volume(self.proj_cmb(fl[0]), self.proj_cmb(fr[0]), levels)
        vol = run_gated(self.corr_feature_att, torch.cat([gwc, cat], 1), fl[0])
        return self.cost_agg(vol, fl)

    def _upsample(self, disp, mask, stem):
        weights = F.softmax(self.spx_gru(self.spx_2_gru(mask, stem)), 1)
        return convex_upsample(disp * SCALE, weights)

    def forward(self, left, right, iters: int | None = None):
        """``(init_disp, [disp ...])`` of normalised ``[B, 3, H, W]`` images (H, W multiples of
        32): the soft-argmin disparity of the cost volume at 1/4 resolution in full-resolution
        pixels, and the full-resolution disparity after each GRU iteration (training) or after
        the last one only (eval)."""
        a = self.arch
        if iters is None:
            iters = a["train_iters"] if self.training else a["valid_iters"]
        b = left.shape[0]
        out = self.feature(torch.cat([left, right], 0))
        fl, fr = [t[:b] for t in out], [t[b:] for t in out]
        stem = self.stem_2(left)
        vol = self._volume(fl, fr)
        disp = soft_argmin(F.softmax(self.classifier(vol).squeeze(1), 1))
        init_disp = disp
        h0, c0 = self.cnet(fl[0])
        h, context = torch.tanh(h0), F.relu(c0)
        context = self.cam(context) * context
        att = self.sam(context)
        geo = GeometryLookup(fl[0], fr[0], vol, a["corr_levels"], self.dx)
        outputs = []
        for i in range(iters):
            disp = disp.detach()
            h, mask, delta = self.update_block(h, context, geo(disp), disp, att)
            disp = disp + delta
            if self.training or i == iters - 1:
                outputs.append(self._upsample(disp, mask, stem))
        return init_disp * SCALE, outputs
