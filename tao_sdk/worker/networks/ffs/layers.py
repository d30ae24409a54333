"""Convolution building blocks of FastFoundationStereo (their attribute names are the ones TAO's
checkpoints use: ``conv`` / ``norm``, ``conv1`` / ``bn1`` ...)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_CONVS = {"2d": nn.Conv2d, "3d": nn.Conv3d, "up2d": nn.ConvTranspose2d,
          "up3d": nn.ConvTranspose3d}
_NORMS = {"bn2d": nn.BatchNorm2d, "bn3d": nn.BatchNorm3d, "in2d": nn.InstanceNorm2d}


class ConvUnit(nn.Module):
    """Bias-free convolution, optional norm, optional LeakyReLU(0.01)."""

    def __init__(self, cin: int, cout: int, kind: str, norm: str | None, act: bool,
                 **kw) -> None:
        super().__init__()
        self.conv = _CONVS[kind](cin, cout, bias=False, **kw)
        if norm is not None:
            self.norm = _NORMS[norm](cout)
        self.act = act

    def forward(self, x):
        """conv -> norm -> LeakyReLU."""
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        return F.leaky_relu(x, 0.01) if self.act else x


def conv3d_bn(cin: int, cout: int, **kw) -> ConvUnit:
    """3D convolution + BatchNorm3d + LeakyReLU (3x3x3, stride 1 unless given)."""
    kw.setdefault("kernel_size", 3)
    kw.setdefault("padding", 1)
    return ConvUnit(cin, cout, "3d", "bn3d", kw.pop("act", True), **kw)


class SplitConv3d(nn.Module):
    """A 3D convolution factored into a spatial (1 x k x k) and a disparity (kd x 1 x 1) one,
    each followed by BatchNorm3d and ReLU."""

    def __init__(self, cin: int, cout: int, kd: int, k: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, (1, k, k), padding=(0, k // 2, k // 2)),
                                   nn.BatchNorm3d(cout), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, (kd, 1, 1), padding=(kd // 2, 0, 0)),
                                   nn.BatchNorm3d(cout), nn.ReLU())

    def forward(self, x):
        """Spatial, then disparity."""
        return self.conv2(self.conv1(x))


class Residual(nn.Module):
    """Two bias-free convolutions with norm, ReLU, identity shortcut (2D or 3D)."""

    def __init__(self, ch: int, three_d: bool, norm) -> None:
        super().__init__()
        conv = nn.Conv3d if three_d else nn.Conv2d
        self.conv1 = conv(ch, ch, 3, padding=1, bias=False)
        self.bn1 = norm(ch)
        self.conv2 = conv(ch, ch, 3, padding=1, bias=False)
        self.bn2 = norm(ch)

    def forward(self, x):
        """relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class FeatureGate(nn.Module):
    """Gates a cost volume ``[B, C, D, H, W]`` channel-wise with a sigmoid computed from image
    features ``[B, F, H, W]`` (TAO's ``FeatureAtt``)."""

    def __init__(self, cv_ch: int, feat_ch: int) -> None:
        super().__init__()
        self.feat_att = nn.Sequential(
            ConvUnit(feat_ch, feat_ch // 2, "2d", "bn2d", True, kernel_size=1),
            nn.Conv2d(feat_ch // 2, cv_ch, 1))

    def forward(self, cv, feat):
        """``sigmoid(f(feat)) * cv``."""
        return torch.sigmoid(self.feat_att(feat)).unsqueeze(2) * cv


class UpMerge(nn.Module):
    """Transposed 4x4 convolution (2x up), concatenation with a skip tensor, then ``conv2``
    (TAO's ``Conv2xDownScale`` in its ``deconv2d`` / concat form)."""

    def __init__(self, cin: int, cout: int, norm: str | None, conv2: nn.Module) -> None:
        super().__init__()
        self.conv1 = ConvUnit(cin, cout, "up2d", norm, True, kernel_size=4, stride=2, padding=1)
        self.conv2 = conv2

    def forward(self, x, skip):
        """Up-sample ``x`` to ``skip``'s size, join, convolve."""
        x = self.conv1(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(torch.cat([x, skip], 1))
