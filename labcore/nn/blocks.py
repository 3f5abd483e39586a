"""Small building blocks: RMSNorm, SwiGLU MLP, short causal depthwise conv."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # label of a position that carries no loss (F.cross_entropy's default ignore_index)


def swiglu_hidden(dim: int) -> int:
    """SwiGLU's default hidden width: ~8/3 dim (same parameters as a 4x GELU MLP), rounded up to 16."""
    return 16 * ((8 * dim // 3 + 15) // 16)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(build: Callable[[int], nn.Module], target: int, default: int) -> int:
    """The MLP hidden width h for which build(h) has closest to `target` parameters.

    Compares models at equal parameters: mixers differ in size, so the MLP absorbs the difference.
    build(h) must widen every MLP alike, so the count is linear in h. The models are built on the meta
    device under a forked RNG: no memory, and the RNG that initialises the real model is left as it was.
    """
    if target <= 0:
        raise ValueError(f"target must be > 0, got {target}")
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        base = count_params(build(default))
        per_unit = count_params(build(default + 1)) - base
    if per_unit <= 0:
        raise ValueError("build(h) must grow with h (its MLPs must use the hidden width it is given)")
    hidden = default + round((target - base) / per_unit)
    if hidden < 1:
        raise ValueError(f"target {target} is too small: it needs MLP hidden width {hidden} < 1")
    return hidden


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32 (Zhang & Sennrich, 2019)."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.float()
        return y.to(x.dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer, 2020); hidden defaults to ~8/3 d rounded to 16."""

    def __init__(self, dim: int, hidden: int | None = None, bias: bool = False):
        super().__init__()
        hidden = hidden or swiglu_hidden(dim)
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class CausalConv1d(nn.Module):
    """Depthwise causal conv over time on [B, T, C] with a cache of the last kernel_size-1 inputs.

    forward(x, cache) -> (y, new_cache); cache is [B, kernel_size-1, C] (zeros when None), so
    feeding a sequence in pieces gives the same output as feeding it whole.
    """

    def __init__(self, channels: int, kernel_size: int = 4, bias: bool = False):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None):
        B, T, C = x.shape
        if cache is None:
            cache = x.new_zeros(B, self.kernel_size - 1, C)
        xp = torch.cat([cache, x], dim=1)  # [B, k-1+T, C]
        y = self.conv(xp.transpose(1, 2)).transpose(1, 2)  # [B, T, C]
        return y, xp[:, xp.shape[1] - (self.kernel_size - 1):]
