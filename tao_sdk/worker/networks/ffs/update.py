"""The iterative update of FastFoundationStereo: the motion encoder of the geometry samples and
the current disparity, a selective ConvGRU (1x1 and 3x3 GRUs mixed by the spatial attention),
the disparity head and the up-sampling mask features (TAO's ``BasicSelectiveMultiUpdateBlock``
with one GRU level)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tao_sdk.worker.networks.ffs.edgenext import ConvBlock


class MotionEncoder(nn.Module):
    """Geometry samples and disparity -> motion features (``widths`` = ``[c1, c2, d1, d2]``,
    ``model.motion_encoder_widths``; ``out`` = ``model.motion_encoder_final``) plus the
    disparity itself."""

    def __init__(self, lookup: int, widths: list[int], out: int) -> None:
        super().__init__()
        c1, c2, d1, d2 = widths
        self.convc1 = nn.Conv2d(lookup, c1, 1)
        self.convc2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.convd1 = nn.Conv2d(1, d1, 7, padding=3)
        self.convd2 = nn.Conv2d(d1, d2, 3, padding=1)
        self.conv = nn.Conv2d(c2 + d2, out, 3, padding=1)

    def forward(self, disp, corr):
        """``[B, out + 1, H, W]``."""
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        d = F.relu(self.convd2(F.relu(self.convd1(disp))))
        return torch.cat([F.relu(self.conv(torch.cat([c, d], 1))), disp], 1)


class GruCell(nn.Module):
    """ConvGRU cell whose gates read a precomputed ``hx`` (RAFT's form)."""

    def __init__(self, hidden: int, gate_in: int, q_in: int, k: int) -> None:
        super().__init__()
        self.convz = nn.Conv2d(gate_in, hidden, k, padding=k // 2)
        self.convr = nn.Conv2d(gate_in, hidden, k, padding=k // 2)
        self.convq = nn.Conv2d(q_in, hidden, k, padding=k // 2)

    def forward(self, h, x, hx):
        """The new state."""
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class SelectiveGru(nn.Module):
    """Input and state through two 3x3 convolutions (``gates`` widths,
    ``model.gru_gating_conv_widths``), then a 1x1 and a 3x3 GRU mixed by ``att``."""

    def __init__(self, hidden: int, inp: int, gates: list[int]) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(nn.Conv2d(inp, gates[0], 3, padding=1), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(gates[0] + hidden, gates[1], 3, padding=1),
                                   nn.ReLU())
        self.small_gru = GruCell(hidden, gates[1], gates[0] + hidden, 1)
        self.large_gru = GruCell(hidden, gates[1], gates[0] + hidden, 3)

    def forward(self, att, h, x):
        """The new state."""
        x = self.conv0(x)
        hx = self.conv1(torch.cat([x, h], 1))
        return self.small_gru(h, x, hx) * att + self.large_gru(h, x, hx) * (1 - att)


class DispHead(nn.Module):
    """GRU state -> disparity update: 3x3 conv, two EdgeNeXt conv blocks (7x7, no norm,
    ``model.disp_head_pwconv1_widths``), 3x3 conv to one channel."""

    def __init__(self, cin: int, mid: int, pw: list[int]) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(),
                                  ConvBlock(mid, 7, pw[0], norm=False),
                                  ConvBlock(mid, 7, pw[1], norm=False),
                                  nn.Conv2d(mid, 1, 3, padding=1))

    def forward(self, h):
        """``[B, 1, H, W]``."""
        return self.conv(h)


class UpdateBlock(nn.Module):
    """One refinement step: ``(state, context, geometry, disp, att) -> (state, mask, delta)``."""

    def __init__(self, a: dict) -> None:
        super().__init__()
        hid = a["gru_hidden"]
        lookup = a["corr_levels"] * (2 * a["corr_radius"] + 1) * (a["volume_dim"] + 1)
        self.encoder = MotionEncoder(lookup, a["motion_widths"], a["motion_out"])
        gru_in = a["motion_in"] + 1 + a["context_widths"][1]
        self.gru04 = SelectiveGru(hid, gru_in, a["gru_gates"] or [gru_in, gru_in + hid])
        mid = a["disp_head"]
        self.disp_head = DispHead(hid, mid, a["disp_pw"] or [4 * mid, 4 * mid])
        m = a["mask_widths"]
        self.mask = nn.Sequential(nn.Conv2d(hid, m[0], 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(m[0], m[1], 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, h, context, geo, disp, att):
        """See the class docstring."""
        motion = torch.cat([context, self.encoder(disp, geo)], 1)
        h = self.gru04(att, h, motion)
        return h, 0.25 * self.mask(h), self.disp_head(h)
