"""The torch modules of the worker's FastFoundationStereo-style network (imported only when a
model is built: :func:`tao_sdk.worker.networks.depth_net.build_model`; the plugin module itself
stays torch-free for plan-time checks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2)]
    if act:
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


def conv3d(cin: int, cout: int, act: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv3d(cin, cout, 3, 1, 1)]
    if act:
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and a residual connection."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, 1, 1)
        self.b = nn.Conv2d(ch, ch, 3, 1, 1)
        self.na = nn.InstanceNorm2d(ch, affine=True)
        self.nb = nn.InstanceNorm2d(ch, affine=True)

    def forward(self, x):
        """x + f(x)."""
        y = F.leaky_relu(self.na(self.a(x)), 0.1)
        return F.leaky_relu(x + self.nb(self.b(y)), 0.1)


class Encoder(nn.Module):
    """Image -> (stem features at 1/2, features at the cost-volume scale)."""

    def __init__(self, stem: list[int], out: int, n_down: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv(3, stem[0], 3, 2), conv(stem[0], stem[1]))
        self.down = conv(stem[1], out, 3, 2 if n_down == 2 else 1)
        self.res = ResBlock(out)

    def forward(self, x):
        """Return ``(stem, features)``."""
        s = self.stem(x)
        return s, self.res(self.down(s))


class ConvGRU(nn.Module):
    """Convolutional GRU cell."""

    def __init__(self, hidden: int, inp: int) -> None:
        super().__init__()
        self.z = nn.Conv2d(hidden + inp, hidden, 3, 1, 1)
        self.r = nn.Conv2d(hidden + inp, hidden, 3, 1, 1)
        self.q = nn.Conv2d(hidden + inp, hidden, 3, 1, 1)

    def forward(self, h, x):
        """One update of the hidden state ``h`` from the input ``x``."""
        hx = torch.cat([h, x], 1)
        z = torch.sigmoid(self.z(hx))
        r = torch.sigmoid(self.r(hx))
        q = torch.tanh(self.q(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class Stereo(nn.Module):
    """The compact FoundationStereo-family network (see the module docstring)."""

    def __init__(self, a: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(a)
        self.scale = 2 ** a["n_downsample"]
        self.levels_d = a["max_disparity"] // self.scale
        feat = a["hidden_dims"][0]
        self.feature = Encoder(a["stem_widths"], feat, a["n_downsample"])
        self.context_stem = nn.Sequential(conv(3, a["stem_widths"][0], 3, 2),
                                          conv(a["stem_widths"][0], a["stem_widths"][1]))
        cw = a["context_widths"]
        self.context = nn.Sequential(
            conv(a["stem_widths"][1], cw[0], 3, 2 if a["n_downsample"] == 2 else 1),
            conv(cw[0], cw[1]))
        hid = [a["gru_hidden"]] + list(a["hidden_dims"][1:])
        self.hidden_sizes = hid
        self.h_init = nn.ModuleList(nn.Conv2d(cw[1], h, 3, 1, 1) for h in hid)
        cc = a["concat_channel"]
        self.concat_proj = nn.Conv2d(feat, cc, 1)
        vd = a["volume_dim"]
        self.vol_in = conv3d(a["cv_group"] + 2 * cc, vd)
        self.cam = nn.Sequential(nn.Conv2d(feat, a["cam_mid"], 1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(a["cam_mid"], vd, 1))
        self.vol_res = nn.Sequential(conv3d(vd, vd), conv3d(vd, vd, act=False))
        self.classifier = nn.Sequential(conv3d(vd, a["classifier_mid"]),
                                        nn.Conv3d(a["classifier_mid"], 1, 3, 1, 1))
        self.geo = nn.Conv3d(vd, a["cv_group"], 1)
        r = a["corr_radius"]
        lookup = a["corr_levels"] * (2 * r + 1) * 2 * a["cv_group"]
        mw = a["motion_widths"]
        self.mc1 = conv(lookup, mw[0], 1)
        self.mc2 = conv(mw[0], mw[1])
        self.md1 = conv(1, mw[2], 7)
        self.md2 = conv(mw[2], mw[3])
        self.mout = conv(mw[1] + mw[3], a["motion_final"])
        gin0 = a["motion_final"] + 1 + cw[1] + (hid[1] if len(hid) > 1 else 0)
        grus = [ConvGRU(hid[0], gin0)]
        for i in range(1, len(hid)):
            grus.append(ConvGRU(hid[i], hid[i - 1] + (hid[i + 1] if i + 1 < len(hid) else 0)))
        self.grus = nn.ModuleList(grus)
        self.disp_head = nn.Sequential(conv(hid[0], a["disp_head"]),
                                       nn.Conv2d(a["disp_head"], 1, 3, 1, 1))
        mk = a["mask_widths"]
        self.mask_feat = nn.Sequential(conv(hid[0], mk[0]), conv(mk[0], mk[1]))
        spx: list[nn.Module] = []
        cin = mk[1] + a["stem_widths"][1]
        for w in a["spx_widths"]:
            spx.append(conv(cin, w))
            cin = w
        self.spx = nn.Sequential(*spx)
        self.spx_out = nn.ConvTranspose2d(cin, a["spx_out"], 4, 2, 1)

    # ----------------------------------------------------------- cost volume
    def cost_volume(self, fl, fr):
        """Group-wise correlation + concatenation volume ``[B, G + 2cc, D, h, w]``."""
        g = self.arch["cv_group"]
        b, c, h, w = fl.shape
        nl, nr = fl, fr
        if self.arch["gwc_normalize"]:
            nl = F.normalize(fl, dim=1)
            nr = F.normalize(fr, dim=1)
        cl = self.concat_proj(fl)
        cr = self.concat_proj(fr)
        gwc, cat = [], []
        for d in range(self.levels_d):
            if d >= w:  # shift beyond the image: no overlap, an empty slice
                gwc.append(nl.new_zeros(b, g, h, w))
                cat.append(cl.new_zeros(b, 2 * cl.shape[1], h, w))
                continue
            if d == 0:
                sl, sr, pl, pr = nl, nr, cl, cr
            else:
                sl, sr = nl[..., d:], nr[..., :-d]
                pl, pr = cl[..., d:], cr[..., :-d]
            corr = (sl * sr).reshape(b, g, c // g, h, -1).mean(2)
            both = torch.cat([pl, pr], 1)
            if d:
                corr = F.pad(corr, (d, 0))
                both = F.pad(both, (d, 0))
            gwc.append(corr)
            cat.append(both)
        gwc_v = torch.stack(gwc, 2)
        return gwc_v, torch.cat([gwc_v, torch.stack(cat, 2)], 1)

    @staticmethod
    def lookup(volume, disp, radius: int):
        """Linear samples of ``volume`` [B, C, D, h, w] at ``disp + [-r..r]`` along D
        (zero outside) -> ``[B, C*(2r+1), h, w]``."""
        b, c, dd, h, w = volume.shape
        offs = torch.arange(-radius, radius + 1, dtype=disp.dtype, device=disp.device)
        x = disp + offs.view(1, -1, 1, 1)                       # [B, K, h, w]
        x0 = torch.floor(x)
        wt = (x - x0).unsqueeze(1)
        out = 0
        for idx, weight in ((x0, 1 - wt), (x0 + 1, wt)):
            valid = ((idx >= 0) & (idx <= dd - 1)).unsqueeze(1).to(volume.dtype)
            ii = idx.clamp(0, dd - 1).long().unsqueeze(1).expand(b, c, -1, h, w)
            out = out + torch.gather(volume, 2, ii) * weight * valid
        return out.reshape(b, c * (2 * radius + 1), h, w)

    def upsample(self, disp, mask_feat, stem):
        """Convex 3x3 upsampling of ``disp`` (1/scale resolution) to full resolution."""
        if self.scale > 2:
            mask_feat = F.interpolate(mask_feat, scale_factor=self.scale // 2,
                                      mode="bilinear", align_corners=False)
        weights = self.spx_out(self.spx(torch.cat([mask_feat, stem], 1)))
        weights = torch.softmax(weights, 1)                    # [B, 9, H, W]
        up = F.interpolate(disp * self.scale, scale_factor=self.scale, mode="nearest")
        b, _, hh, ww = up.shape
        patches = F.unfold(up, 3, padding=1).reshape(b, 9, hh, ww)
        return (patches * weights).sum(1, keepdim=True)

    def forward(self, left, right, iters: int | None = None):
        """See :func:`build_model`."""
        a = self.arch
        if iters is None:
            iters = a["train_iters"] if self.training else a["valid_iters"]
        both = torch.cat([left, right], 0)
        stem_both, feat_both = self.feature(both)
        b = left.shape[0]
        stem, fl, fr = stem_both[:b], feat_both[:b], feat_both[b:]
        gwc, vol = self.cost_volume(fl, fr)
        vol = self.vol_in(vol)
        vol = vol * torch.sigmoid(self.cam(fl)).unsqueeze(2)
        vol = F.leaky_relu(vol + self.vol_res(vol), 0.1)
        prob = torch.softmax(self.classifier(vol).squeeze(1), 1)  # [B, D, h, w]
        levels = torch.arange(self.levels_d, dtype=prob.dtype, device=prob.device)
        disp = (prob * levels.view(1, -1, 1, 1)).sum(1, keepdim=True)
        init_disp = disp * self.scale
        geo = torch.cat([self.geo(vol), gwc], 1)
        pyramid = [geo]
        for _ in range(1, a["corr_levels"]):
            pyramid.append(F.avg_pool3d(pyramid[-1], (2, 1, 1), (2, 1, 1)))
        ctx = self.context(self.context_stem(left))
        hs = []
        for i, init in enumerate(self.h_init):
            src = ctx if i == 0 else F.avg_pool2d(ctx, 2 ** i)
            hs.append(torch.tanh(init(src)))
        outputs = []
        for _ in range(iters):
            disp = disp.detach()
            corr = torch.cat([self.lookup(v, disp / (2 ** i), a["corr_radius"])
                              for i, v in enumerate(pyramid)], 1)
            c = self.mc2(self.mc1(corr))
            dfeat = self.md2(self.md1(disp))
            motion = torch.cat([self.mout(torch.cat([c, dfeat], 1)), disp], 1)
            for i in range(len(hs) - 1, 0, -1):
                inp = [F.avg_pool2d(hs[i - 1], 2)]
                if i + 1 < len(hs):
                    inp.append(F.interpolate(hs[i + 1], scale_factor=2, mode="bilinear",
                                             align_corners=False))
                hs[i] = self.grus[i](hs[i], torch.cat(inp, 1))
            inp0 = [motion, F.relu(ctx)]
            if len(hs) > 1:
                inp0.append(F.interpolate(hs[1], scale_factor=2, mode="bilinear",
                                          align_corners=False))
            hs[0] = self.grus[0](hs[0], torch.cat(inp0, 1))
            disp = disp + self.disp_head(hs[0])
            if self.training and len(outputs) + 1 < iters:
                # Intermediate iterations (supervised while training only): bilinear.
                outputs.append(F.interpolate(disp * self.scale, scale_factor=self.scale,
                                             mode="bilinear", align_corners=False))
        outputs.append(self.upsample(disp, self.mask_feat(hs[0]), stem))
        return init_disp, outputs
