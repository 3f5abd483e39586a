"""Naive soft top-p: one position at a time in plain Python floats, an independent reference for the
vectorised torch form and the Triton kernel (no torch.sort, no scatter, no autograd)."""

from __future__ import annotations

import math

import torch


def soft_top_p_naive(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                     alpha: float = 30.0) -> torch.Tensor:
    """Same maths as soft_top_p (alpha = inf included), row by row with Python lists (slow; checks only)."""
    rows = logits.reshape(-1, logits.shape[-1]).tolist()
    temps = temperature.reshape(-1).tolist()
    ps = top_p.reshape(-1).tolist()
    out = []
    for row, t, top in zip(rows, temps, ps):
        scaled = [x / max(t, 1e-8) for x in row]
        mx = max(scaled)
        lz = mx + math.log(sum(math.exp(x - mx) for x in scaled))
        log_p = [x - lz for x in scaled]
        order = sorted(range(len(log_p)), key=lambda i: -log_p[i])
        log_m, c = [0.0] * len(log_p), 0.0
        for rank, i in enumerate(order):
            c += math.exp(log_p[i])
            if alpha == math.inf:  # the hard limit: c <= P (all at P = 1), and always the top token
                log_m[i] = 0.0 if (c <= top or top >= 1 or rank == 0) else -math.inf
            else:
                log_m[i] = -alpha * max(c - top, 0.0)
        # p~ = p m / sum(p m), normalised in log space so tiny p m do not all round to 0
        s = [a + b for a, b in zip(log_p, log_m)]
        ms = max(s)
        e = [math.exp(x - ms) for x in s]
        z = sum(e)
        out.append([x / z for x in e])
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape)
