"""Vision transformer blocks shared by chapters 5 (RAE) and 6 (ThinkMorph).

Patchify / unpatchify, fixed 2-D sin-cos positions (MAE), the pre-norm ViT block, the sinusoidal
timestep embedding and the adaLN-Zero DiT block (Peebles & Xie, 2023) with its final layer. Their attention
is labcore.nn.Attention (with biases, bidirectional), the one every chapter uses.
Taught in notebooks/05_rae.ipynb, sections "Patches and positions" and "The DiT block".

Layouts: images [B, C, H, W]; token sequences [B, N, D] with N = (H / p) * (W / p) in row-major patch
order; attention heads [B, N, H, Dh] like fla. Stable API (chapter 6 builds on it): every public name
below keeps its signature; new arguments only ever get defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn.attention import Attention  # bias=True, causal=False: the ViT's attention

__all__ = ["patchify", "unpatchify", "sincos_pos_embed_2d", "timestep_embedding", "modulate",
           "PatchEmbed", "Mlp", "ViTBlock", "TimestepEmbedder", "LabelEmbedder",
           "DiTBlock", "FinalLayer"]


# ---- patches ---------------------------------------------------------------------------------------

def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p*p*C] with N = (H/p)(W/p); each token is (p_row, p_col, channel)-ordered."""
    if x.dim() != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    if patch <= 0 or H % patch or W % patch:
        raise ValueError(f"patch must be > 0 and divide H={H} and W={W}, got {patch}")
    h, w = H // patch, W // patch
    x = x.reshape(B, C, h, patch, w, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, p, C]
    return x.reshape(B, h * w, patch * patch * C)


def unpatchify(x: torch.Tensor, patch: int, channels: int, height: int | None = None,
               width: int | None = None) -> torch.Tensor:
    """Inverse of patchify: [B, N, p*p*C] -> [B, C, H, W]; a square grid is assumed when H, W are omitted."""
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, p*p*C], got shape {tuple(x.shape)}")
    B, N, D = x.shape
    if D != patch * patch * channels:
        raise ValueError(f"last dim must be patch*patch*channels = {patch * patch * channels}, got {D}")
    if height is None or width is None:
        side = math.isqrt(N)
        if side * side != N:
            raise ValueError(f"N={N} is not a square; pass height and width")
        height = width = side * patch
    h, w = height // patch, width // patch
    if h * w != N:
        raise ValueError(f"height/patch * width/patch must equal N={N}, got {h} * {w}")
    x = x.reshape(B, h, w, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)  # [B, C, h, p, w, p]
    return x.reshape(B, channels, height, width)


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    # omega_i = 1 / 10000^(2i / dim); half sin, half cos
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos.double().reshape(-1, 1) * omega[None]  # [N, dim/2]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int | None = None) -> torch.Tensor:
    """Fixed 2-D sin-cos positions (MAE): first half of the channels encode the row, second half the column.

    Returns [grid_h * grid_w, dim] float32, row-major like patchify.
    """
    grid_w = grid_h if grid_w is None else grid_w
    if dim <= 0 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4, got {dim}")
    if grid_h <= 0 or grid_w <= 0:
        raise ValueError(f"grid sizes must be > 0, got {grid_h} x {grid_w}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # [N]
    cols = torch.arange(grid_w).repeat(grid_h)  # [N]
    return torch.cat([_sincos_1d(dim // 2, rows), _sincos_1d(dim // 2, cols)], dim=1).float()


class PatchEmbed(nn.Module):
    """Image -> patch tokens: patchify, then one linear map (= a stride-p conv). [B, C, H, W] -> [B, N, D]."""

    def __init__(self, in_channels: int, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_channels * patch * patch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(x, self.patch))


# ---- the transformer block -------------------------------------------------------------------------

class Mlp(nn.Module):
    """Linear -> GELU(tanh) -> Linear, the ViT/DiT MLP."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + mlp(LN x). [B, N, D] -> [B, N, D]."""

    def __init__(self, dim: int, n_head: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, n_head, bias=True, causal=False)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))[0]
        return x + self.mlp(self.norm2(x))


# ---- conditioning: time and labels -----------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) times t [B] -> [B, dim]: [cos(t w_i), sin(t w_i)].

    Flow-matching t lives in [0, 1]; callers scale it (DiT passes 1000 t) so the frequencies resolve it.
    """
    if t.dim() != 1:
        raise ValueError(f"t must be 1-D [B], got shape {tuple(t.shape)}")
    if dim <= 0 or dim % 2:
        raise ValueError(f"dim must be a positive even int, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    """t in [0, 1] [B] -> [B, dim]: sinusoid of 1000 t, then a 2-layer SiLU MLP (DiT)."""

    def __init__(self, dim: int, freq_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t * self.scale, self.freq_dim))


class LabelEmbedder(nn.Module):
    """Class labels [B] -> [B, dim]; index num_classes is the "null" label (classifier-free guidance)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes}] ({self.num_classes} = null), "
                             f"got [{int(y.min())}, {int(y.max())}]")
        return self.table(y)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift. x [B, N, D]; shift, scale [B, D] or per token [B, N, D]."""
    if shift.dim() == 2:
        shift, scale = shift[:, None], scale[:, None]
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """adaLN-Zero DiT block. forward(x [B, N, D], c [B, Dc] or [B, N, Dc]) -> [B, N, D].

    c (time + label embedding, or per-token conditioning in the DiT-DH head) is mapped to six vectors:
    shift/scale/gate for attention and for the MLP. The map is zero-initialised, so every block starts
    as the identity (the "Zero" in adaLN-Zero) and training is stable from step 0.
    """

    def __init__(self, dim: int, n_head: int, mlp_ratio: float = 4.0, cond_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, n_head, bias=True, causal=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim or dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # [B, (N,) D] each
        if gate1.dim() == 2:
            gate1, gate2 = gate1[:, None], gate2[:, None]
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))[0]
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN final norm + zero-init linear. x [B, N, D], c [B, Dc] or [B, N, Dc] -> [B, N, out_dim]."""

    def __init__(self, dim: int, out_dim: int, cond_dim: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim or dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for m in (self.ada[1], self.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
