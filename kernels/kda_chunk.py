"""Chunkwise KDA forward in Triton (notebooks/02_kda.ipynb, section "Chunkwise form"; derivation there).

One program per (batch x head, block of value columns) walks the sequence chunk by chunk, keeping its
slice of the state S [K, BV] in registers (fp32). Inside a chunk it builds the decayed score matrices
exactly ([BT, BT, BK], masked before exp), inverts (I + A) by forward substitution (the UT transform),
then applies V' = U - W S, O = (Q e^G) S + tril(Aqk) V', S <- e^G_last S + (e^(G_last - G) K)^T V'.
The backward pass recomputes through the torch form (labcore.kda.chunk.chunk_kda_torch).
Reference: labcore.kda.naive.recurrent_kda / labcore.kda.chunk.chunk_kda_torch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from labcore.kda.chunk import chunk_kda_torch
from labcore.kda.naive import check_inputs


@triton.jit
def kda_chunk_fwd_kernel(q, k, v, g, beta, h0, o, ht, scale, T,
                         H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                         BK: tl.constexpr, BV: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr):
    i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    m_strict = o_t[:, None] > o_t[None, :]  # [BT, BT] j < i
    m_causal = o_t[:, None] >= o_t[None, :]  # [BT, BT] j <= i
    eye = tl.where(o_t[:, None] == o_t[None, :], 1.0, 0.0)  # [BT, BT]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        p_h0 = h0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :]
        b_S += tl.load(p_h0, mask=m_kv, other=0.0).to(tl.float32)
    for i_t in range(0, tl.cdiv(T, BT)):
        t = i_t * BT + o_t
        m_t = t < T
        row = (i_b * T + t) * H + i_h  # [BT] token-head row index
        m_tk, m_tv = m_t[:, None] & m_k[None, :], m_t[:, None] & m_v[None, :]
        # padding is inert: k = 0 writes nothing, g = 0 decays nothing, beta = 0
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32) * scale
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_tv, other=0.0).to(tl.float32)
        b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)  # [BT]
        b_G = tl.cumsum(b_g, axis=0)  # [BT, BK]
        # exp(G_i - G_j) for j <= i; the difference is zeroed above the diagonal *before* exp
        b_d = tl.where(m_causal[:, :, None], b_G[:, None, :] - b_G[None, :, :], 0.0)  # [BT, BT, BK]
        b_e = tl.where(m_causal[:, :, None], tl.exp(b_d), 0.0)
        b_A = tl.sum(b_k[:, None, :] * b_k[None, :, :] * b_e, axis=2)  # [BT, BT]
        b_A = tl.where(m_strict, b_A, 0.0) * b_beta[:, None]
        b_Aqk = tl.sum(b_q[:, None, :] * b_k[None, :, :] * b_e, axis=2)  # [BT, BT], j <= i
        # UT transform: X = (I + A)^-1 by forward substitution, X_i = e_i - sum_{j<i} A_ij X_j
        b_X = eye
        for i in range(1, BT):
            b_a = tl.sum(tl.where(o_t[:, None] == i, b_A, 0.0), axis=0)  # row i of A, [BT]
            b_row = tl.sum(tl.where(o_t[:, None] == i, eye, 0.0), axis=0) - tl.sum(b_a[:, None] * b_X, axis=0)
            b_X = tl.where(o_t[:, None] == i, b_row[None, :], b_X)
        b_eG = tl.exp(b_G)  # [BT, BK], <= 1
        b_W = tl.dot(b_X, b_k * b_eG * b_beta[:, None], input_precision="ieee")  # [BT, BK]
        b_U = tl.dot(b_X, b_v * b_beta[:, None], input_precision="ieee")  # [BT, BV]
        b_vn = b_U - tl.dot(b_W, b_S, input_precision="ieee")  # V' = U - W S, [BT, BV]
        b_o = tl.dot(b_q * b_eG, b_S, input_precision="ieee") + tl.dot(b_Aqk, b_vn, input_precision="ieee")
        tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)
        b_Gl = tl.sum(tl.where(o_t[:, None] == BT - 1, b_G, 0.0), axis=0)  # [BK] G at the chunk's end
        b_kd = b_k * tl.exp(b_Gl[None, :] - b_G)  # [BT, BK], <= |k|
        b_S = b_S * tl.exp(b_Gl)[:, None] + tl.dot(tl.trans(b_kd), b_vn, input_precision="ieee")
    if STORE_HT:
        tl.store(ht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)


def chunk_kda_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                  scale: float, initial_state: torch.Tensor | None, output_final_state: bool,
                  chunk_size: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Host wrapper: allocate, pick blocks, launch. Shapes as chunk_kda; returns (o, final state or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    o = torch.empty_like(v)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if output_final_state else o
    h0 = initial_state.float().contiguous() if initial_state is not None else o
    BK = max(16, triton.next_power_of_2(K))
    BV = min(64, max(16, triton.next_power_of_2(V)))
    grid = (B * H, triton.cdiv(V, BV))
    kda_chunk_fwd_kernel[grid](q, k, v, g, beta, h0, o, ht, scale, T, H=H, K=K, V=V, BT=chunk_size, BK=BK,
                               BV=BV, USE_H0=initial_state is not None, STORE_HT=output_final_state)
    return o, (ht if output_final_state else None)


class ChunkKDAFunction(torch.autograd.Function):
    """Triton forward; backward recomputes the torch chunkwise form and differentiates it."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, initial_state, scale):
        o, ht = chunk_kda_fwd(q, k, v, g, beta, scale, initial_state, True)
        ctx.save_for_backward(q, k, v, g, beta, initial_state)
        ctx.scale = scale
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        saved = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_(x.requires_grad) if x is not None else None for x in saved]
            o, ht = chunk_kda_torch(*leaves[:5], scale=ctx.scale, initial_state=leaves[5],
                                    output_final_state=True)
            need = [x for x in leaves if x is not None and x.requires_grad]
            grads = iter(torch.autograd.grad((o, ht), need, (do, dht), allow_unused=True))
        return (*[next(grads) if x is not None and x.requires_grad else None for x in leaves], None)


def chunk_kda_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                     scale: float | None = None, initial_state: torch.Tensor | None = None,
                     output_final_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise KDA with the Triton forward (same arguments and results as labcore.kda.chunk_kda).

    q, k, g: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; initial_state: [B, H, K, V].
    Differentiable (backward through the torch form); without gradients only the kernel runs.
    """
    check_inputs(q, k, v, g, beta, initial_state)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, g, beta, initial_state))
    if needs_grad:
        o, ht = ChunkKDAFunction.apply(q, k, v, g, beta, initial_state, scale)
        return o, (ht if output_final_state else None)
    return chunk_kda_fwd(q, k, v, g, beta, scale, initial_state, output_final_state)
