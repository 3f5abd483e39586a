"""Fused recurrent KDA in Triton: the decode step (notebooks/02_kda.ipynb, section "Recurrent form").

One program per (batch x head, block of value columns) keeps its slice of S [K, BV] in registers and
runs the recurrence over the given tokens (T = 1 when decoding): decay, delta-rule write, read.
Reference: labcore.kda.naive.recurrent_kda; the dispatch (input checks, the torch form whenever gradients
are needed) is labcore.kda.fused.fused_recurrent_kda. Launchers only: nothing here imports labcore.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def kda_recurrent_fwd_kernel(q, k, v, g, beta, h0, o, ht, scale, T,
                             H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                             BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr):
    i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        p_h0 = h0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :]
        b_S += tl.load(p_h0, mask=m_kv, other=0.0).to(tl.float32)
    for t in range(0, T):
        row = (i_b * T + t) * H + i_h
        b_q = tl.load(q + row * K + o_k, mask=m_k, other=0.0).to(tl.float32) * scale  # [BK]
        b_k = tl.load(k + row * K + o_k, mask=m_k, other=0.0).to(tl.float32)  # [BK]
        b_g = tl.load(g + row * K + o_k, mask=m_k, other=0.0).to(tl.float32)  # [BK]
        b_v = tl.load(v + row * V + o_v, mask=m_v, other=0.0).to(tl.float32)  # [BV]
        b_beta = tl.load(beta + row).to(tl.float32)
        b_S = b_S * tl.exp(b_g)[:, None]  # S' = diag(exp g) S
        b_delta = b_v - tl.sum(b_S * b_k[:, None], axis=0)  # v - S'^T k, [BV]
        b_S = b_S + b_beta * b_k[:, None] * b_delta[None, :]
        b_o = tl.sum(b_S * b_q[:, None], axis=0)  # S^T q, [BV]
        tl.store(o + row * V + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
    if STORE_HT:
        tl.store(ht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)


def fused_recurrent_kda_fwd(q, k, v, g, beta, scale: float, initial_state, output_final_state: bool):
    """Host wrapper: allocate, pick blocks, launch."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    o = torch.empty_like(v)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if output_final_state else o
    h0 = initial_state.float().contiguous() if initial_state is not None else o
    BK = triton.next_power_of_2(K)
    BV = min(32, triton.next_power_of_2(V))
    grid = (B * H, triton.cdiv(V, BV))
    kda_recurrent_fwd_kernel[grid](q, k, v, g, beta, h0, o, ht, scale, T, H=H, K=K, V=V, BK=BK, BV=BV,
                                   USE_H0=initial_state is not None, STORE_HT=output_final_state)
    return o, (ht if output_final_state else None)
