"""GC-ViT (Hatamizadeh et al., "Global Context Vision Transformers") as TAO 7.3.0's
Deformable DETR builds it: pure PyTorch, parameter and buffer names as TAO's
(``patch_embed``, ``levels.<i>.blocks.<j>.attn.qkv``, ``levels.<i>.q_global_gen.to_q_global``,
``norm<i>`` per returned stage), so TAO's checkpoint keys map one to one.

Stages of width ``dim x 2**i`` at strides 4/8/16/32; blocks alternate local window attention
(even) and global-query window attention (odd, queries made from the whole stage by
:class:`GlobalQueryGen`); windows are padded at the bottom / right. As TAO's: the global-query
generators are sized for a 224 px image (their pooling count per stage does not follow the
input size; the queries are resized bicubically to the window), relative position biases in
every block, drop path linearly rising to 0.2, PyTorch's default initialisation (biases
tables zero). :func:`build` returns a module whose forward gives the feature maps of the
selected stages (``[B, C, H, W]`` each, layer-normed), as transformers' DETR conv encoder
takes them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GCViT", "GlobalQueryGen", "build"]

#: The image size TAO's global-query generators are built for.
_RESOLUTION = 224
_DROP_PATH = 0.2


def _last(x):
    return x.permute(0, 2, 3, 1)


def _first(x):
    return x.permute(0, 3, 1, 2)


class _SqueezeExcite(nn.Module):
    """Channel gating (``fc``: two bias-free linears, a quarter of the width between)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(dim, dim // 4, bias=False), nn.GELU(),
                                nn.Linear(dim // 4, dim, bias=False), nn.Sigmoid())

    def forward(self, x):
        """``x [B, C, H, W]`` scaled per channel."""
        return x * self.fc(self.avg_pool(x).flatten(1))[:, :, None, None]


def _mixer(dim: int) -> nn.Sequential:
    """Depthwise 3x3, GELU, squeeze-excite, pointwise 1x1 (TAO's ``conv`` residual branch)."""
    return nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False), nn.GELU(),
                         _SqueezeExcite(dim), nn.Conv2d(dim, dim, 1, 1, 0, bias=False))


class _ReduceSize(nn.Module):
    """Channels-last downsampling: norm, residual mixer, strided 3x3 (x2 width unless
    ``keep_dim``), norm."""

    def __init__(self, dim: int, keep_dim: bool = False) -> None:
        super().__init__()
        out = dim if keep_dim else 2 * dim
        self.conv = _mixer(dim)
        self.reduction = nn.Conv2d(dim, out, 3, 2, 1, bias=False)
        self.norm2 = nn.LayerNorm(out)
        self.norm1 = nn.LayerNorm(dim)

    def forward(self, x):
        """``[B, H, W, C] -> [B, H/2, W/2, C']``."""
        x = _first(self.norm1(x))
        x = x + self.conv(x)
        return self.norm2(_last(self.reduction(x)))


class _PatchEmbed(nn.Module):
    """Stride-2 3x3 projection, then a width-keeping :class:`_ReduceSize` (stride 4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 3, 2, 1)
        self.conv_down = _ReduceSize(dim, keep_dim=True)

    def forward(self, x):
        """``[B, 3, H, W] -> [B, H/4, W/4, dim]`` (channels last)."""
        return self.conv_down(_last(self.proj(x)))


class _FeatExtract(nn.Module):
    """Channels-first residual mixer, then a stride-2 max pool unless ``keep_dim``."""

    def __init__(self, dim: int, keep_dim: bool) -> None:
        super().__init__()
        self.conv = _mixer(dim)
        self.keep_dim = keep_dim
        if not keep_dim:
            self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        """``[B, C, H, W]`` -> the same (or halved) size."""
        x = x + self.conv(x)
        return x if self.keep_dim else self.pool(x)


def _query_pools(level: int, window: int) -> list[bool]:
    """``keep_dim`` of each :class:`_FeatExtract` of stage ``level``'s global-query
    generator (TAO's rule for its 224 px design size)."""
    size = _RESOLUTION >> (2 + level)
    pools = {_RESOLUTION // 4: [False] * 3, _RESOLUTION // 8: [False] * 2,
             _RESOLUTION // 16: [window == size], _RESOLUTION // 32: [True]}
    return pools[size]


class GlobalQueryGen(nn.Module):
    """Global queries of one stage: ``[B, 1, heads, window**2, head_dim]`` from the stage
    input."""

    def __init__(self, dim: int, level: int, window: int, heads: int) -> None:
        super().__init__()
        self.to_q_global = nn.Sequential(*(_FeatExtract(dim, keep)
                                           for keep in _query_pools(level, window)))
        self.window, self.heads = window, heads

    def forward(self, x):
        """``x [B, C, H, W]`` -> the queries."""
        x = self.to_q_global(x)
        if x.shape[-2:] != (self.window, self.window):
            x = F.interpolate(x, size=(self.window, self.window), mode="bicubic")
        b, c = x.shape[:2]
        x = _last(x).reshape(b, 1, self.window ** 2, self.heads, c // self.heads)
        return x.permute(0, 1, 3, 2, 4)


def _relative_index(window: int):
    """``[w*w, w*w]`` index of each token pair's relative offset into the bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class _WindowAttention(nn.Module):
    """Window self-attention with a relative position bias; ``global_query``: the queries
    are the stage's global ones (``qkv`` makes keys and values only)."""

    def __init__(self, dim: int, heads: int, window: int, global_query: bool) -> None:
        super().__init__()
        self.heads, self.window, self.global_query = heads, window, global_query
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_index(window))
        self.qkv = nn.Linear(dim, dim * (2 if global_query else 3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, q_global):
        """``x [B*windows, N, C]`` -> the same shape."""
        bw, n, c = x.shape
        parts = self.qkv(x).reshape(bw, n, -1, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.global_query:
            k, v = parts[0], parts[1]
            per_image = bw // q_global.shape[0]
            q = q_global.repeat(1, per_image, 1, 1, 1).reshape(bw, self.heads, n, -1)
        else:
            q, k, v = parts[0], parts[1], parts[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        """Two linears with a GELU between."""
        return self.fc2(self.act(self.fc1(x)))


def _drop_path(x, rate: float, training: bool):
    """Stochastic depth: zero whole samples of the residual branch at ``rate``."""
    if not training or rate == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)


class _Block(nn.Module):
    """Pre-norm window attention + MLP block (layer scale ``gamma1/2`` when given)."""

    def __init__(self, dim, heads, window, mlp_ratio, layer_scale, drop_path, global_query):
        super().__init__()
        self.window, self.drop_path = window, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, heads, window, global_query)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        else:
            self.gamma1 = self.gamma2 = 1.0

    def _attend(self, x, q_global):
        b, h, w, c = x.shape
        s = self.window
        x = F.pad(x, (0, 0, 0, (s - w % s) % s, 0, (s - h % s) % s))
        hp, wp = x.shape[1:3]
        win = x.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        out = self.attn(win, q_global).view(b, hp // s, wp // s, s, s, c)
        return out.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)[:, :h, :w]

    def forward(self, x, q_global):
        """``x [B, H, W, C]`` -> the same shape."""
        x = x + _drop_path(self.gamma1 * self._attend(self.norm1(x), q_global),
                           self.drop_path, self.training)
        return x + _drop_path(self.gamma2 * self.mlp(self.norm2(x)), self.drop_path,
                              self.training)


class _Level(nn.Module):
    """One stage: blocks (local, global, local...), the global-query generator and the
    downsampling to the next stage (none after the last)."""

    def __init__(self, i, depth, dim, heads, window, mlp_ratio, layer_scale, rates, last):
        super().__init__()
        self.blocks = nn.ModuleList(
            _Block(dim, heads, window, mlp_ratio, layer_scale, rates[j], j % 2 == 1)
            for j in range(depth))
        self.downsample = None if last else _ReduceSize(dim)
        self.q_global_gen = GlobalQueryGen(dim, i, window, heads)

    def forward(self, x):
        """``(input of the next stage, this stage's output)``, channels last."""
        q_global = self.q_global_gen(_first(x))
        for block in self.blocks:
            x = block(x, q_global)
        return (x if self.downsample is None else self.downsample(x)), x


class GCViT(nn.Module):
    """The GC-ViT feature extractor; ``stages``: the 0-based stages returned (each with its
    ``norm<i>``)."""

    def __init__(self, depths, heads, windows, dim, mlp_ratio, layer_scale, stages) -> None:
        super().__init__()
        self.stages = list(stages)
        self.channels = [dim * 2 ** i for i in self.stages]
        self.patch_embed = _PatchEmbed(dim)
        total = sum(depths)
        rates = [_DROP_PATH * k / max(total - 1, 1) for k in range(total)]  # linspace
        self.levels = nn.ModuleList(
            _Level(i, depths[i], dim * 2 ** i, heads[i], windows[i], mlp_ratio, layer_scale,
                   rates[sum(depths[:i]):sum(depths[:i + 1])], i == len(depths) - 1)
            for i in range(len(depths)))
        for i in self.stages:
            self.add_module(f"norm{i}", nn.LayerNorm(dim * 2 ** i))

    def forward(self, pixel_values):
        """``[B, 3, H, W]`` -> the selected stages' maps ``[B, C_i, H/2**(i+2), W/...]``."""
        x = self.patch_embed(pixel_values)
        out = []
        for i, level in enumerate(self.levels):
            x, feat = level(x)
            if i in self.stages:
                out.append(_first(getattr(self, f"norm{i}")(feat)).contiguous())
        return out


def build(cfg: dict) -> GCViT:
    """The GC-ViT of a stored backbone config (``depths``, ``heads``, ``windows``, ``dim``,
    ``mlp_ratio``, ``layer_scale``, ``stages``: see :func:`tao_sdk.worker.networks._detr.
    backbone_config`)."""
    return GCViT(cfg["depths"], cfg["heads"], cfg["windows"], cfg["dim"], cfg["mlp_ratio"],
                 cfg["layer_scale"], cfg["stages"])
