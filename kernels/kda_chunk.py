"""Chunkwise KDA forward in Triton (notebooks/02_kda.ipynb, section "Chunkwise form"; derivation there).

Three launches, as fla splits its chunk kernels, so that only the state recurrence is sequential:
1. `kda_chunk_prep_kernel`, one program per (chunk, batch x head), all in parallel: the decayed score
   matrices of the chunk exactly ([BT, BT, BK] per key block, masked before exp), (I + A)^-1 by forward
   substitution (the UT transform), W = T (e^G K), U = T V, and the decayed q and k.
2. `kda_chunk_state_kernel`, one program per (batch x head, block of value columns): walks the chunks
   keeping its slice of S [K, BV] in registers: V' = U - W S, S <- e^G_last S + (e^(G_last - G) K)^T V',
   storing the state entering each chunk and V'.
3. `kda_chunk_out_kernel`, one program per (chunk, batch x head, value block), in parallel:
   O = (Q e^G) S + tril(Aqk) V'.
Intermediates are fp32 buffers padded to whole chunks: a padded row loads k = 0, g = 0, beta = 0, so it
writes nothing and decays nothing. The backward pass recomputes through the torch form
(labcore.kda.chunk.chunk_kda_triton holds that autograd Function and dispatch). Reference:
labcore.kda.naive.recurrent_kda. Launchers only: this file imports nothing from labcore.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# each token's g is floored here: exp(-40) = 4e-18 is zero at fp32 precision, and a finite floor keeps the
# chunk's cumsum from subtracting -inf from -inf (NaN) when a channel forgets everything (g = -inf)
G_FLOOR = tl.constexpr(-40.0)


@triton.jit
def kda_chunk_prep_kernel(q, k, v, g, beta, qd, kt, dl, w, u, aqk, scale, T,
                          H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
                          BK: tl.constexpr, BV: tl.constexpr):
    i_n, i_bh = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    row = (i_b * T + t) * H + i_h  # [BT] rows of the [B, T, H, *] inputs
    prow = i_bh * NT * BT + t  # [BT] rows of the padded [B * H, NT * BT, *] buffers
    m_strict = o_t[:, None] > o_t[None, :]  # [BT, BT] j < i
    m_causal = o_t[:, None] >= o_t[None, :]  # [BT, BT] j <= i
    b_beta = tl.load(beta + row, mask=m_t, other=0.0).to(tl.float32)  # [BT]
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    b_Aqk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32) * scale
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_G = tl.cumsum(tl.maximum(b_g, G_FLOOR), 0)  # floored: see G_FLOOR
        # exp(G_i - G_j) for j <= i; the difference is zeroed above the diagonal *before* exp
        b_d = tl.where(m_causal[:, :, None], b_G[:, None, :] - b_G[None, :, :], 0.0)  # [BT, BT, BK]
        b_e = tl.where(m_causal[:, :, None], tl.exp(b_d), 0.0)
        b_A += tl.sum(b_k[:, None, :] * b_k[None, :, :] * b_e, axis=2)  # [BT, BT]
        b_Aqk += tl.sum(b_q[:, None, :] * b_k[None, :, :] * b_e, axis=2)
        b_Gl = tl.sum(tl.where(o_t[:, None] == BT - 1, b_G, 0.0), axis=0)  # [BK] G at the chunk's end
        p_buf = prow[:, None] * K + o_k[None, :]
        tl.store(qd + p_buf, b_q * tl.exp(b_G), mask=m_k[None, :])  # padded rows store zeros
        tl.store(kt + p_buf, b_k * tl.exp(b_Gl[None, :] - b_G), mask=m_k[None, :])  # <= |k|
        tl.store(dl + (i_bh * NT + i_n) * K + o_k, tl.exp(b_Gl), mask=m_k)
    b_A = tl.where(m_strict, b_A, 0.0) * b_beta[:, None]
    tl.store(aqk + prow[:, None] * BT + o_t[None, :], b_Aqk)  # zero above the diagonal, as b_e
    # UT transform: X = (I + A)^-1 by forward substitution, X_i = e_i - sum_{j<i} A_ij X_j
    eye = tl.where(o_t[:, None] == o_t[None, :], 1.0, 0.0)  # [BT, BT]
    b_X = eye
    for i in range(1, BT):
        b_a = tl.sum(tl.where(o_t[:, None] == i, b_A, 0.0), axis=0)  # row i of A, [BT]
        b_row = tl.sum(tl.where(o_t[:, None] == i, eye, 0.0), axis=0) - tl.sum(b_a[:, None] * b_X, axis=0)
        b_X = tl.where(o_t[:, None] == i, b_row[None, :], b_X)
    # W = X diag(beta) (e^G K): k and g are loaded again rather than read back from a buffer this program
    # wrote, since a program's threads need not see each other's global stores without a barrier
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        b_k = tl.load(k + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(g + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
        b_G = tl.cumsum(tl.maximum(b_g, G_FLOOR), 0)  # floored: see G_FLOOR
        b_w = tl.dot(b_X, b_k * tl.exp(b_G) * b_beta[:, None], input_precision="ieee")  # [BT, BK]
        tl.store(w + prow[:, None] * K + o_k[None, :], b_w, mask=m_k[None, :])
    for i_v in range(0, tl.cdiv(V, BV)):  # U = X diag(beta) V
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_u = tl.dot(b_X, b_v.to(tl.float32) * b_beta[:, None], input_precision="ieee")  # [BT, BV]
        tl.store(u + prow[:, None] * V + o_v[None, :], b_u, mask=m_v[None, :])


@triton.jit
def kda_chunk_state_kernel(w, u, kt, dl, h0, hs, vn, ht, T, K: tl.constexpr, V: tl.constexpr,
                           BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, USE_H0: tl.constexpr,
                           STORE_HT: tl.constexpr):
    i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S += tl.load(h0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :], mask=m_kv, other=0.0).to(tl.float32)
    for i_n in range(0, NT):
        prow = i_bh * NT * BT + i_n * BT + o_t  # [BT]
        tl.store(hs + (i_bh * NT + i_n) * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)
        b_w = tl.load(w + prow[:, None] * K + o_k[None, :], mask=m_k[None, :], other=0.0)  # [BT, BK]
        b_u = tl.load(u + prow[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0.0)  # [BT, BV]
        b_vn = b_u - tl.dot(b_w, b_S, input_precision="ieee")  # V' = U - W S
        tl.store(vn + prow[:, None] * V + o_v[None, :], b_vn, mask=m_v[None, :])
        b_kt = tl.load(kt + prow[:, None] * K + o_k[None, :], mask=m_k[None, :], other=0.0)  # [BT, BK]
        b_dl = tl.load(dl + (i_bh * NT + i_n) * K + o_k, mask=m_k, other=0.0)  # [BK] e^G_last
        b_S = b_S * b_dl[:, None] + tl.dot(tl.trans(b_kt), b_vn, input_precision="ieee")
    if STORE_HT:
        tl.store(ht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)


@triton.jit
def kda_chunk_out_kernel(qd, hs, aqk, vn, o, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                         BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    i_n, i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    t = i_n * BT + o_t
    prow = i_bh * NT * BT + t
    b_qd = tl.load(qd + prow[:, None] * K + o_k[None, :], mask=m_k[None, :], other=0.0)  # [BT, BK]
    b_S = tl.load(hs + (i_bh * NT + i_n) * K * V + o_k[:, None] * V + o_v[None, :],
                  mask=m_k[:, None] & m_v[None, :], other=0.0)  # [BK, BV] state entering the chunk
    b_A = tl.load(aqk + prow[:, None] * BT + o_t[None, :])  # [BT, BT]
    b_vn = tl.load(vn + prow[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0.0)  # [BT, BV]
    b_o = tl.dot(b_qd, b_S, input_precision="ieee") + tl.dot(b_A, b_vn, input_precision="ieee")
    row = (i_b * T + t) * H + i_h
    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=(t < T)[:, None] & m_v[None, :])


def chunk_kda_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                  scale: float, initial_state: torch.Tensor | None, output_final_state: bool,
                  chunk_size: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Host wrapper: allocate the fp32 chunk buffers, pick blocks, launch the three kernels.
    Shapes as chunk_kda; returns (o, final state or None)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BT = chunk_size
    NT = triton.cdiv(T, BT)
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    f32 = dict(device=q.device, dtype=torch.float32)
    qd, kt, w = (torch.empty(B * H, NT * BT, K, **f32) for _ in range(3))  # Q e^G, e^(G_last-G) K, W
    u, vn = torch.empty(B * H, NT * BT, V, **f32), torch.empty(B * H, NT * BT, V, **f32)  # U, V'
    dl = torch.empty(B * H, NT, K, **f32)  # e^G_last per chunk
    aqk = torch.empty(B * H, NT * BT, BT, **f32)  # tril(Aqk) per chunk
    hs = torch.empty(B * H, NT, K, V, **f32)  # the state entering each chunk
    o = torch.empty_like(v)
    ht = torch.empty(B, H, K, V, **f32) if output_final_state else hs
    h0 = initial_state.float().contiguous() if initial_state is not None else hs
    BK_prep = min(32, max(16, triton.next_power_of_2(K)))  # [BT, BT, BK] scores: keep it small
    BK = max(16, triton.next_power_of_2(K))  # the state kernels hold all of K
    BV = min(64, max(16, triton.next_power_of_2(V)))
    kda_chunk_prep_kernel[(NT, B * H)](q, k, v, g, beta, qd, kt, dl, w, u, aqk, scale, T, H=H, K=K, V=V,
                                       BT=BT, BK=BK_prep, BV=BV)
    kda_chunk_state_kernel[(B * H, triton.cdiv(V, BV))](w, u, kt, dl, h0, hs, vn, ht, T, K=K, V=V, BT=BT, BK=BK,
                                                        BV=BV, USE_H0=initial_state is not None,
                                                        STORE_HT=output_final_state)
    kda_chunk_out_kernel[(NT, B * H, triton.cdiv(V, BV))](qd, hs, aqk, vn, o, T, H=H, K=K, V=V, BT=BT, BK=BK,
                                                          BV=BV)
    return o, (ht if output_final_state else None)
