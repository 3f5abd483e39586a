"""The KDA forget gate: a per-channel log decay from a low-rank projection.
Taught in notebooks/02_kda.ipynb, section "The gate and the layer".

g = -exp(A_log[h]) * softplus(f(x) + dt_bias)   (<= 0, so exp(g) in (0, 1])
A_log sets each head's decay *rate*; softplus(f(x) + dt_bias) is the data-dependent *step* per channel
(Mamba's dt); their product is the log of how much of each key channel survives one token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kda_gate(g: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Turn raw gate activations into log decays.

    Args:
        g: [..., H, K] raw activations f(x) (K = 1 for a scalar gate per head)
        A_log: [H] log of each head's decay rate
        dt_bias: [H * K] or [H, K] added before the softplus (None = 0)
    Returns:
        log decay [..., H, K] in fp32, all <= 0 and never NaN for non-NaN inputs: a huge A_log or step
        saturates to -inf (the channel forgets), a zero rate or step gives 0 (0 * inf counts as 0)
    """
    if g.dim() < 2:
        raise ValueError(f"g must be [..., H, K], got shape {tuple(g.shape)}")
    H, K = g.shape[-2:]
    if A_log.shape != (H,):
        raise ValueError(f"A_log must be [H] = [{H}], got {tuple(A_log.shape)}")
    g = g.float()
    if dt_bias is not None:
        if dt_bias.numel() != H * K:
            raise ValueError(f"dt_bias must have H*K = {H * K} elements, got {dt_bias.numel()}")
        g = g + dt_bias.float().view(H, K)
    big = torch.finfo(torch.float32).max  # both factors finite: their product is finite or inf, never NaN
    return -A_log.float().exp().clamp_max(big)[:, None] * F.softplus(g).clamp_max(big)


def init_A_log(n_head: int, low: float = 1.0, high: float = 16.0) -> torch.Tensor:
    """A_log = log(A), A ~ U(low, high) per head (Mamba2 / KDA release init)."""
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low}, high={high}")
    return torch.empty(n_head).uniform_(low, high).log()


def init_dt_bias(n: int, dt_min: float = 1e-3, dt_max: float = 1e-1) -> torch.Tensor:
    """Inverse softplus of dt ~ logU[dt_min, dt_max] (later fla; the paper leaves this unspecified)."""
    if not 0 < dt_min < dt_max:
        raise ValueError(f"need 0 < dt_min < dt_max, got {dt_min}, {dt_max}")
    dt = torch.empty(n).uniform_(math.log(dt_min), math.log(dt_max)).exp()
    return dt + torch.log(-torch.expm1(-dt))  # softplus^-1(dt)
