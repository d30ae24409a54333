"""EdgeNeXt image encoder (Maaz et al. 2022) as FoundationStereo uses it: four stages of
depth-wise convolution blocks, the last block of stages 2-4 a split depth-wise transposed
attention (SDTA) block. Parameter names follow TAO's ``backbone_v2`` EdgeNeXt (and so its
checkpoints)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: FoundationStereo's fixed EdgeNeXt configuration (widths, blocks per stage), and the
#: worker's ``TAO_WORKER_BACKBONE_SCALE=tiny`` stand-in for CPU smoke runs (one narrow block per
#: stage; not TAO's network: its checkpoints do not load into it).
SCALES = {"full": ((48, 96, 160, 304), (3, 3, 9, 3)),
          "tiny": ((16, 24, 32, 48), (1, 1, 1, 1))}
KERNELS = (3, 5, 7, 9)
SPLITS = (2, 2, 3, 4)
SDTA_STAGES = (1, 2, 3)
POS_EMBED_STAGES = (1,)
HEADS = 8
EXPANSION = 4
LAYER_SCALE = 1e-6


class ChannelsFirstNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, H, W]`` tensor."""

    def forward(self, x):
        """Normalise over dim 1."""
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return y.permute(0, 3, 1, 2)


class PointwiseMlp(nn.Module):
    """The blocks' channels-last tail: LayerNorm, Linear-GELU-Linear, layer scale."""

    def _mlp(self, x, norm: bool = True):
        x = self.pwconv2(F.gelu(self.pwconv1(self.norm(x) if norm else x)))
        return self.gamma * x


class ConvBlock(PointwiseMlp):
    """Depth-wise k x k convolution + pointwise MLP, residual (TAO's ``ConvEncoder``).
    ``norm=False``: no LayerNorm (FoundationStereo's disparity head)."""

    def __init__(self, dim: int, kernel: int, hidden: int | None = None, norm: bool = True):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6) if norm else nn.Identity()
        hidden = hidden or EXPANSION * dim
        self.pwconv1 = nn.Linear(dim, hidden)
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def forward(self, x):
        """x + mlp(dwconv(x))."""
        y = self.dwconv(x).permute(0, 2, 3, 1)
        return x + self._mlp(y).permute(0, 3, 1, 2)


class FourierPositions(nn.Module):
    """Sine / cosine encoding of normalised (y, x) positions, projected to ``dim``."""

    def __init__(self, dim: int, hidden: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        self.hidden = hidden
        self.temperature = temperature
        self.token_projection = nn.Conv2d(2 * hidden, dim, 1)

    def forward(self, b: int, h: int, w: int):
        """``[b, dim, h, w]`` position codes."""
        dev = self.token_projection.weight.device
        eps, scale = 1e-6, 2 * math.pi
        ys = torch.arange(1, h + 1, dtype=torch.float32, device=dev) / (h + eps) * scale
        xs = torch.arange(1, w + 1, dtype=torch.float32, device=dev) / (w + eps) * scale
        i = torch.arange(self.hidden, dtype=torch.float32, device=dev)
        div = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.hidden)

        def code(v):  # [n] -> [n, hidden]: sin on even, cos on odd slots, interleaved
            t = v[:, None] / div
            return torch.stack([t[:, 0::2].sin(), t[:, 1::2].cos()], 2).flatten(1)

        cy = code(ys)[:, None, :].expand(h, w, self.hidden)
        cx = code(xs)[None, :, :].expand(h, w, self.hidden)
        pos = torch.cat([cy, cx], 2).permute(2, 0, 1)[None].expand(b, -1, -1, -1)
        return self.token_projection(pos)


class CrossCovarianceAttention(nn.Module):
    """Attention across channels (XCiT's XCA): per head, a ``d x d`` map from L2-normalised
    queries / keys over the tokens, scaled by a learned temperature."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        """``[B, N, C]`` -> ``[B, N, C]``."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)
        q, k, v = F.normalize(qkv[0], dim=-1), F.normalize(qkv[1], dim=-1), qkv[2]
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)  # [B, h, d, d]
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(b, n, c))


class SdtaBlock(PointwiseMlp):
    """Split depth-wise transposed attention block (TAO's ``SDTAEncoder``): channel groups
    convolved hierarchically, cross-covariance attention, pointwise MLP; residual."""

    def __init__(self, dim: int, splits: int, pos_embed: bool) -> None:
        super().__init__()
        self.width = max(math.ceil(dim / splits), dim // splits)
        self.n_convs = max(1, splits - 1)
        self.convs = nn.ModuleList(nn.Conv2d(self.width, self.width, 3, padding=1,
                                             groups=self.width) for _ in range(self.n_convs))
        if pos_embed:
            self.pos_embd = FourierPositions(dim)
        self.norm_xca = nn.LayerNorm(dim, eps=1e-6)
        self.gamma_xca = nn.Parameter(torch.full((dim,), LAYER_SCALE))
        self.xca = CrossCovarianceAttention(dim, HEADS)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, EXPANSION * dim)
        self.pwconv2 = nn.Linear(EXPANSION * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE))

    def _split_convs(self, x):
        parts = torch.split(x, self.width, 1)
        outs, sp = [], None
        for i, conv in enumerate(self.convs):
            sp = conv(parts[i] if sp is None else sp + parts[i])
            outs.append(sp)
        return torch.cat([*outs, *parts[self.n_convs:]], 1)

    def forward(self, x):
        """See the class docstring."""
        b, c, h, w = x.shape
        t = self._split_convs(x).reshape(b, c, h * w).transpose(1, 2)   # [B, N, C]
        if hasattr(self, "pos_embd"):
            t = t + self.pos_embd(b, h, w).reshape(b, c, h * w).transpose(1, 2)
        t = t + self.gamma_xca * self.xca(self.norm_xca(t))
        t = self._mlp(t.reshape(b, h, w, c))
        return x + t.permute(0, 3, 1, 2)


def _init(module: nn.Module) -> None:
    """EdgeNeXt's initialisation: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_stages(scale: str) -> tuple[nn.ModuleList, nn.ModuleList]:
    """``(downsample_layers, stages)`` of FoundationStereo's EdgeNeXt (strides 4, 8, 16, 32) at
    ``scale`` (:data:`SCALES`)."""
    dims, depths = SCALES[scale]
    down = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4),
                                        ChannelsFirstNorm(dims[0], eps=1e-6))])
    for i in range(3):
        down.append(nn.Sequential(ChannelsFirstNorm(dims[i], eps=1e-6),
                                  nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)))
    stages = nn.ModuleList()
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        blocks: list[nn.Module] = [ConvBlock(dim, KERNELS[i]) for _ in range(depth - 1)]
        blocks.append(SdtaBlock(dim, SPLITS[i], i in POS_EMBED_STAGES) if i in SDTA_STAGES
                      else ConvBlock(dim, KERNELS[i]))
        stages.append(nn.Sequential(*blocks))
    down.apply(_init)
    stages.apply(_init)
    return down, stages
