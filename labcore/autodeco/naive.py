"""Naive soft top-p: one position at a time in plain Python floats, an independent reference for the
vectorised torch form and the Triton kernel (no torch.sort, no scatter, no autograd)."""

from __future__ import annotations

import math

import torch


def soft_top_p_naive(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                     alpha: float = 30.0) -> torch.Tensor:
    """Same maths as soft_top_p, row by row with Python lists (slow; for checks only)."""
    rows = logits.reshape(-1, logits.shape[-1]).tolist()
    temps = temperature.reshape(-1).tolist()
    ps = top_p.reshape(-1).tolist()
    out = []
    for row, t, top in zip(rows, temps, ps):
        scaled = [x / max(t, 1e-8) for x in row]
        mx = max(scaled)
        e = [math.exp(x - mx) for x in scaled]
        z = sum(e)
        p = [x / z for x in e]
        order = sorted(range(len(p)), key=lambda i: -p[i])
        m, c = [0.0] * len(p), 0.0
        for i in order:
            c += p[i]
            m[i] = math.exp(-alpha * max(c - top, 0.0))
        pm = [pi * mi for pi, mi in zip(p, m)]
        s = sum(pm)
        out.append([x / (s + 1e-9) for x in pm])
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape)
