"""Soft top-p forward in Triton (AutoDeco, chapter 1). The sort stays in torch; the kernel does the
rest of the row in one program: softmax(l / T), cumulative mass, the soft mask, renormalisation.

    p = softmax(l_s / max(T, 1e-8))    (l_s: logits sorted descending, so p is sorted too)
    c = cumsum(p);  m = exp(-alpha * relu(c - P));  p~ = p * m / (sum(p * m) + 1e-9)

Launcher only (kernels/ imports nothing from labcore): the autograd wrapper, whose backward recomputes
the torch reference and differentiates it, lives in labcore/autodeco/soft_top_p.py. The kernel is for
inference-time speed, the maths has one home.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_V = 1 << 17  # one row must fit one program's block


@triton.jit
def soft_top_p_fwd_kernel(l_ptr, t_ptr, p_ptr, o_ptr, V, alpha, BV: tl.constexpr):
    i_n = tl.program_id(0).to(tl.int64)
    o_v = tl.arange(0, BV)
    m_v = o_v < V
    # [BV] sorted logits of this row; padding gets -inf so its probability is exactly 0
    b_l = tl.load(l_ptr + i_n * V + o_v, mask=m_v, other=float("-inf")).to(tl.float32)
    b_t = tl.maximum(tl.load(t_ptr + i_n).to(tl.float32), 1e-8)
    b_P = tl.load(p_ptr + i_n).to(tl.float32)
    b_s = b_l / b_t
    b_e = tl.where(m_v, tl.exp(b_s - tl.max(b_s, 0)), 0.0)
    b_p = b_e / tl.sum(b_e, 0)
    b_c = tl.cumsum(b_p, 0)
    b_m = tl.exp(-alpha * tl.maximum(b_c - b_P, 0.0))
    b_pm = b_p * b_m
    tl.store(o_ptr + i_n * V + o_v, b_pm / (tl.sum(b_pm, 0) + 1e-9), mask=m_v)


def soft_top_p_fwd(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                   alpha: float) -> torch.Tensor:
    """Host wrapper: sort in torch, one program per row, unsort in torch. Returns float32 [..., V]."""
    V = logits.shape[-1]
    if V > MAX_V:
        raise ValueError(f"vocabulary size must be <= {MAX_V} for the Triton kernel, got {V}")
    l2 = logits.reshape(-1, V)
    l_sorted, order = torch.sort(l2, dim=-1, descending=True)
    l_sorted = l_sorted.contiguous()
    t = temperature.reshape(-1).float().contiguous()
    p = top_p.reshape(-1).float().contiguous()
    o_sorted = torch.empty(l2.shape, dtype=torch.float32, device=logits.device)
    soft_top_p_fwd_kernel[(l2.shape[0],)](l_sorted, t, p, o_sorted, V, float(alpha),
                                          BV=triton.next_power_of_2(V))
    out = torch.zeros_like(o_sorted).scatter_(-1, order, o_sorted)
    return out.reshape(logits.shape)
