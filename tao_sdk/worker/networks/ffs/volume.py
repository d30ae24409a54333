"""Cost volumes and their look-up: group-wise correlation and concatenation volumes, soft-argmin
disparity, the combined geometry encoding sampled around the current disparity, and the
convex 4x up-sampling of the disparity."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _shifted(left, right, levels: int):
    """``(left[..., d:], right[..., :-d], d)`` for each disparity ``d`` < ``levels``."""
    w = left.shape[-1]
    for d in range(levels):
        if d >= w:
            yield None, None, d
        elif d == 0:
            yield left, right, 0
        else:
            yield left[..., d:], right[..., :-d], d


def group_correlation(left, right, levels: int, groups: int, normalize: bool):
    """``[B, G, D, H, W]``: per channel group, the (L2-normalised) feature dot product of the left
    pixel and the right pixel ``d`` columns to its left (0 where that is outside the image)."""
    b, c, h, w = left.shape
    fl = left.reshape(b, groups, c // groups, h, w)
    fr = right.reshape(b, groups, c // groups, h, w)
    if normalize:
        fl, fr = F.normalize(fl, dim=2), F.normalize(fr, dim=2)
    planes = []
    for sl, sr, d in _shifted(fl, fr, levels):
        planes.append(fl.new_zeros(b, groups, h, w) if sl is None
                      else F.pad((sl * sr).sum(2), (d, 0)))
    return torch.stack(planes, 2)


def concat_volume(left, right, levels: int):
    """``[B, 2C, D, H, W]``: the left features at every disparity, beside the right features
    shifted by it (zeros where shifted out)."""
    b, c, h, w = left.shape
    planes = []
    for _sl, sr, d in _shifted(left, right, levels):
        r = right.new_zeros(b, c, h, w) if sr is None else F.pad(sr, (d, 0))
        planes.append(torch.cat([left, r], 1))
    return torch.stack(planes, 2)


def soft_argmin(prob):
    """Expected disparity ``[B, 1, H, W]`` of a ``[B, D, H, W]`` distribution."""
    levels = torch.arange(prob.shape[1], dtype=prob.dtype, device=prob.device)
    return (prob * levels.view(1, -1, 1, 1)).sum(1, keepdim=True)


def _halve(x):
    """Average neighbouring pairs along the last dimension (an odd last element is dropped)."""
    return 0.5 * (x[..., 0:-1:2] + x[..., 1::2])


def _sample(rows, x):
    """Linear samples of ``rows`` ``[N, C, 1, L]`` at positions ``x`` ``[N, 1, K, 1]`` (zero
    outside) -> ``[N, C, 1, K]``."""
    grid = torch.cat([2 * x / (rows.shape[-1] - 1) - 1, torch.zeros_like(x)], -1)
    return F.grid_sample(rows, grid.to(rows.dtype), align_corners=True)


class GeometryLookup:
    """The geometry volume (the aggregated cost volume and the full-width correlation of the
    1/4 features) as a ``levels``-level pyramid along disparity, sampled at
    ``disp + offsets`` (TAO's ``CombinedGeoEncodingVolume``)."""

    def __init__(self, left, right, volume, levels: int, offsets) -> None:
        b, c, d, h, w = volume.shape
        fl, fr = F.normalize(left.float(), dim=1), F.normalize(right.float(), dim=1)
        corr = torch.einsum("bchw,bchv->bhwv", fl, fr).reshape(b * h * w, 1, 1, -1)
        geo = volume.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, 1, d)
        self.geo, self.corr = [geo], [corr]
        for _ in range(levels - 1):
            self.geo.append(_halve(self.geo[-1]))
            self.corr.append(_halve(self.corr[-1]))
        self.offsets = offsets
        self.shape = (b, h, w)

    def __call__(self, disp):
        """``[B, levels * K * (C + 1), H, W]`` samples around ``disp`` ``[B, 1, H, W]``."""
        b, h, w = self.shape
        d = disp.reshape(b * h * w, 1, 1, 1)
        cols = torch.arange(w, dtype=disp.dtype, device=disp.device).view(1, 1, w, 1)
        cols = cols.expand(b, h, w, 1).reshape(b * h * w, 1, 1, 1)
        offs = self.offsets.to(disp.device)
        out = []
        for i, (geo, corr) in enumerate(zip(self.geo, self.corr)):
            out.append(_sample(geo, offs + d / 2 ** i).reshape(b, h, w, -1))
            out.append(_sample(corr, cols / 2 ** i - d / 2 ** i + offs).reshape(b, h, w, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2)


def convex_upsample(disp, weights):
    """Full-resolution disparity ``[B, 1, 4H, 4W]``: each pixel a convex combination (``weights``
    ``[B, 9, 4H, 4W]``) of the 3x3 neighbourhood of its 1/4-resolution pixel in ``disp``."""
    b, _, h, w = disp.shape
    patches = F.unfold(disp, 3, padding=1).reshape(b, 9, h, w)
    patches = F.interpolate(patches, (4 * h, 4 * w), mode="nearest")
    return (patches * weights).sum(1, keepdim=True)
