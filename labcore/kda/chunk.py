"""KDA, chunkwise form (WY / UT transform). Kimi Linear (Moonshot AI, 2025, arXiv:2510.26692).
Taught in notebooks/02_kda.ipynb, section "Chunkwise form".

Split T into chunks of C tokens. Inside a chunk (rows i, j; G = inclusive cumsum of g, per channel):
    A[i, j]   = beta_i sum_c K[i,c] K[j,c] exp(G[i,c] - G[j,c])   for j < i     (strictly lower)
    T         = (I + A)^-1 diag(beta)                                (UT transform)
    W = T (exp(G) * K),  U = T V,  V' = U - W S                      (S = state entering the chunk)
    O         = (Q * exp(G)) S + tril(Aqk) V',  Aqk[i, j] = sum_c Q[i,c] K[j,c] exp(G[i,c] - G[j,c]), j <= i
    S        <- exp(G_last) * S + (exp(G_last - G) * K)^T V'
Only the state recurrence (V' and S, given the state entering the chunk) runs chunk by chunk, so there
are T / C sequential steps instead of T; everything else, O included, runs for all chunks at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labcore.kda.naive import check_inputs

# exp(x) for x below this is subnormal in fp32 (< 1.2e-38): we flush it to exactly 0. Subnormals carry no
# useful precision here and make CPU exp ~50x slower (strong decay produces them constantly).
_EXP_FLOOR = -87.0


def _exp(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """exp(x) where `keep` (and x >= _EXP_FLOOR), else exactly 0; masked entries never reach exp, so a
    positive (overflowing) x there cannot turn into inf * 0 = NaN in the backward pass."""
    ok = x >= _EXP_FLOOR if keep is None else (x >= _EXP_FLOOR) & keep
    return torch.where(ok, x, 0.0).exp() * ok


def _masked_decay(G: torch.Tensor, strict: bool) -> torch.Tensor:
    """exp(G[i,c] - G[j,c]) for j < i (strict) or j <= i, else 0. G: [..., s, K] -> [..., s, s, K].

    The difference is masked *before* exp: for j > i it is positive and, with strong decay, overflows.
    """
    s = G.shape[-2]
    keep = torch.ones(s, s, dtype=torch.bool, device=G.device).tril(-1 if strict else 0)
    diff = G[..., :, None, :] - G[..., None, :, :]  # [..., s, s, K]
    return _exp(diff, keep[:, :, None])


# if no chunk decays by more than exp(-_FAST_RANGE) end to end, exp(G) and exp(-G) both fit in fp32
_FAST_RANGE = 40.0


def _decayed_scores_fast(q_decayed: torch.Tensor, k_decayed: torch.Tensor, k_inv: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as `_decayed_scores` via exp(G_i - G_j) = exp(G_i) * exp(-G_j): two plain matmuls.
    Takes q * exp(G), k * exp(G) and k * exp(-G); only valid when -G <= _FAST_RANGE everywhere (exp(-G)
    would overflow otherwise)."""
    k_right = k_inv.transpose(-1, -2)  # [..., K, C], entries <= exp(_FAST_RANGE)
    Akk = (k_decayed @ k_right).tril_(-1)  # [..., C, C]
    Aqk = (q_decayed @ k_right).tril_(0)  # [..., C, C]
    return Akk, Aqk


def _decayed_scores(q: torch.Tensor, k: torch.Tensor, G: torch.Tensor, sub: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Akk[i, j] = sum_c k[i,c] k[j,c] exp(G[i,c] - G[j,c]) for j < i, and Aqk (same with q[i], j <= i).

    q, k, G: [..., C, K] -> two [..., C, C]. Split C into sub-chunks of `sub` rows. Off the diagonal
    blocks, factor around the first row r of row i's sub-chunk: exp(G_i - G_r) * exp(G_r - G_j), both
    <= 1 because j < r <= i, so matmuls replace the [C, C, K] tensor with no overflow. The diagonal
    blocks are computed exactly ([sub, sub, K] each). This is fla's sub-chunk trick.
    """
    *lead, C, K = G.shape
    M = C // sub
    Gs = G.view(*lead, M, sub, K)
    q_s, k_s = q.view(*lead, M, sub, K), k.view(*lead, M, sub, K)
    G_ref = Gs[..., :1, :]  # [..., M, 1, K] first row of each sub-chunk
    to_ref = _exp(Gs - G_ref)  # [..., M, sub, K] exp(G_i - G_r) <= 1
    # exp(G_r[m] - G_j) only for j before sub-chunk m starts (0 elsewhere)
    before = torch.arange(C, device=G.device)[None, :] < (torch.arange(M, device=G.device) * sub)[:, None]
    diff = G_ref - G[..., None, :, :]  # [..., M, C, K]
    k_right = (k[..., None, :, :] * _exp(diff, before[:, :, None])).transpose(-1, -2)  # [..., M, K, C]
    decay = _masked_decay(Gs, strict=False)  # [..., M, sub, sub, K]
    eye = torch.eye(M, device=G.device, dtype=G.dtype)[:, None, :, None]  # [M, 1, M, 1]
    out = []
    for a, strict in ((k_s, True), (q_s, False)):
        off = ((a * to_ref) @ k_right).reshape(*lead, C, C)  # off-diagonal blocks
        diag = (a[..., :, None, :] * k_s[..., None, :, :] * decay).sum(-1)  # [..., M, sub, sub]
        if strict:  # exp(G_i - G_i) = 1 on the diagonal: drop it for Akk
            diag = diag.tril(-1)
        out.append(off + (diag[..., :, :, None, :] * eye).reshape(*lead, C, C))  # block m at (m, m)
    return out[0], out[1]


def chunk_kda_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                    scale: float | None = None, initial_state: torch.Tensor | None = None,
                    output_final_state: bool = False, chunk_size: int = 64
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunkwise form in plain torch (differentiable by autograd). Inputs are not re-checked."""
    with torch.autocast(q.device.type, enabled=False):  # fp32 inside, as fla's kernels
        return _chunk_kda_fp32(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)


def _to_chunks(x: torch.Tensor, N: int, C: int, pad: int) -> torch.Tensor:
    """[B, T, H, D] -> [B, H, N, C, D] fp32; zero padding is inert (k = 0 writes nothing, g = 0 decays
    nothing, beta = 0)."""
    B, _, H, D = x.shape
    x = F.pad(x.float(), (0, 0, 0, 0, 0, pad)) if pad else x.float()
    return x.view(B, N, C, H, D).permute(0, 3, 1, 2, 4).contiguous()


def _chunk_kda_fp32(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size):
    B, T, H, K = q.shape
    V, C = v.shape[-1], chunk_size
    scale = K ** -0.5 if scale is None else scale
    out_dtype = v.dtype
    N = -(-T // C)  # chunks
    pad = N * C - T
    q, k, v, g = (_to_chunks(x, N, C, pad) for x in (q, k, v, g))  # [B, H, N, C, D]
    q = q * scale
    beta = _to_chunks(beta[..., None], N, C, pad)  # [B, H, N, C, 1]

    G = g.cumsum(-2)  # [B, H, N, C, K] inclusive cumsum inside each chunk
    G_last = G[..., -1:, :]  # [B, H, N, 1, K]
    if float(G_last.detach().min()) >= -_FAST_RANGE:
        # mild decay (G is monotone, so its chunk-end value is its minimum): every exp below stays in
        # fp32's normal range, and exp(G_i - G_j) factors as exp(G_i) * exp(-G_j)
        decay, decay_inv = G.exp(), (-G).exp()  # [B, H, N, C, K]
        q_decayed, k_decayed, k_inv = q * decay, k * decay, k * decay_inv
        Akk, Aqk = _decayed_scores_fast(q_decayed, k_decayed, k_inv)  # [B, H, N, C, C] each
        decay_last = decay[..., -1:, :]  # [B, H, N, 1, K]
        k_to_end = k_inv * decay_last  # k_j exp(G_last - G_j) <= |k_j|
    else:  # strong decay: sub-chunks, never exponentiating a positive number
        sub = 8 if C % 8 == 0 else C  # sub-chunk rows (exact [C, C, K] form when C is not a multiple)
        Akk, Aqk = _decayed_scores(q, k, G, sub)
        decay = _exp(G)  # <= 1, flushed to 0 below fp32's normal range
        q_decayed, k_decayed = q * decay, k * decay
        decay_last = _exp(G_last)
        k_to_end = k * _exp(G_last - G)  # decay from each row to the chunk's end
    # UT transform: T = (I + A)^-1 diag(beta), A[i, j] = beta_i Akk[i, j]; then W = T (exp(G) K), U = T V.
    # Inverting once and multiplying twice is cheaper on CPU than one triangular solve with K + V columns.
    eye = torch.eye(C, device=q.device, dtype=q.dtype)
    T_inv = torch.linalg.solve_triangular(eye + Akk * beta, eye.expand_as(Akk), upper=False,
                                          unitriangular=True)  # [B, H, N, C, C] = (I + A)^-1
    W = T_inv @ (beta * k_decayed)  # [B, H, N, C, K]
    U = T_inv @ (beta * v)  # [B, H, N, C, V]
    k_to_end = k_to_end.transpose(-1, -2)  # [B, H, N, K, C]
    decay_last = decay_last.transpose(-1, -2)  # [B, H, N, K, 1]

    # the only sequential part: the state entering each chunk (fla's chunk_fwd_h), then all outputs at once
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    states, v_news = [], []
    for n in range(N):
        states.append(S)
        v_new = U[:, :, n] - W[:, :, n] @ S  # [B, H, C, V]  V' = U - W S
        v_news.append(v_new)
        S = decay_last[:, :, n] * S + k_to_end[:, :, n] @ v_new
    S_in, v_new = torch.stack(states, dim=2), torch.stack(v_news, dim=2)  # [B, H, N, K, V], [B, H, N, C, V]
    o = q_decayed @ S_in + Aqk @ v_new  # [B, H, N, C, V]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype).contiguous(), (S if output_final_state else None)


def chunk_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
              scale: float | None = None, initial_state: torch.Tensor | None = None,
              output_final_state: bool = False, chunk_size: int = 64, backend: str = "auto"
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise KDA, equal to `recurrent_kda` (same arguments) for any T.

    Args:
        q, k, g: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; initial_state: [B, H, K, V]
        chunk_size: tokens per chunk C (>= 1); T need not be a multiple of it
        backend: "auto" (Triton on CUDA, torch otherwise), "torch", or "triton" (kernels/kda_chunk.py;
            forward in Triton with its own 16-token chunks, backward recomputed through the torch form)
    Returns:
        o [B, T, H, V] and the final state [B, H, K, V] fp32 (None unless output_final_state)
    """
    check_inputs(q, k, v, g, beta, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    from kernels import resolve_backend

    if resolve_backend(backend, q) == "triton":
        from kernels.kda_chunk import chunk_kda_triton

        return chunk_kda_triton(q, k, v, g, beta, scale, initial_state, output_final_state)
    return chunk_kda_torch(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)
