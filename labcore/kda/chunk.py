"""KDA, chunkwise form (WY / UT transform). Kimi Linear (Moonshot AI, 2025, arXiv:2510.26692).
Taught in notebooks/02_kda.ipynb, section "Chunkwise form".

Split T into chunks of C tokens. Inside a chunk (rows i, j; G = inclusive cumsum of g, per channel):
    A[i, j]   = beta_i sum_c K[i,c] K[j,c] exp(G[i,c] - G[j,c])   for j < i     (strictly lower)
    T         = (I + A)^-1 diag(beta)                                (UT transform)
    W = T (exp(G) * K),  U = T V,  V' = U - W S                      (S = state entering the chunk)
    O         = (Q * exp(G)) S + tril(Aqk) V',  Aqk[i, j] = sum_c Q[i,c] K[j,c] exp(G[i,c] - G[j,c]), j <= i
    S        <- exp(G_last) * S + (exp(G_last - G) * K)^T V'
`naive_chunk_kda` (labcore/kda/naive.py) computes exactly this with a [C, C, K] tensor per chunk. Here the
score matrices are one matmul of k e^G by k e^-G for every channel whose decay over the chunk stays within
e^-60 (`_intra_chunk`), and, for the few strong-decay channels, matmuls whose every factor is a decay <= 1
(`_decayed_scores`), so any gate, from g = 0 to g = -inf, gives the same result; only the state recurrence
(V' and S) runs chunk by chunk.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from labcore.kda.naive import check_inputs, empty_result

# Decays below exp(-40) = 4e-18 are kept at exp(-40): at fp32 precision (eps 6e-8) such a term is zero next
# to any O(|k| |v|) term, while exp of very negative numbers and products in fp32's subnormal range run ~20x
# slower on CPU. The same floor on each token's g turns g = -inf into a finite number, so that the chunk's
# cumsum never subtracts -inf from -inf (NaN).
_EXP_FLOOR = -40.0


def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) for x <= 0, floored at exp(_EXP_FLOOR) (see above). Overwrites x: pass a temporary."""
    return x.clamp_min_(_EXP_FLOOR).exp_()


@functools.lru_cache(maxsize=16)
def _block_layout(C: int, device: torch.device) -> torch.Tensor:
    """Index [C, C] into the values `_decayed_scores` concatenates (diagonal, then each level's blocks),
    pointing at a trailing zero slot above the diagonal: one gather assembles the lower triangle."""
    idx = torch.full((C, C), C * (C + 1) // 2, dtype=torch.long)
    idx[torch.arange(C), torch.arange(C)] = torch.arange(C)
    offset, b = C, 1
    while b < C:
        P = C // (2 * b)
        p, i, j = torch.meshgrid(torch.arange(P), torch.arange(b), torch.arange(b), indexing="ij")
        idx[(2 * p + 1) * b + i, 2 * p * b + j] = offset + torch.arange(P * b * b).view(P, b, b)
        offset, b = offset + P * b * b, 2 * b
    return idx.flatten().to(device)


def _decayed_scores(k: torch.Tensor, q: torch.Tensor, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Akk[i, j] = sum_c k[i,c] k[j,c] exp(G[i,c] - G[j,c]) for j < i (0 elsewhere), and Aqk (q[i] in place
    of k[i], j <= i). k, q, G: [Z, C, K] with C a power of 2 -> two [Z, C, C].

    Block by block, halving: at block size b every pair of neighbouring blocks (rows I below, columns J
    above) factors around P = G at J's last row: exp(G_i - G_j) = exp(G_i - P) * exp(P - G_j), both <= 1
    because j <= last(J) < i and G only decreases. So each off-diagonal block is one matmul of decayed
    rows by decayed columns, exact for any decay (no overflow; an underflowed factor means a decay that is
    zero at fp32 precision anyway), and the log2(C) levels tile the whole lower triangle. This is fla's
    sub-chunk trick applied recursively instead of computing the diagonal sub-chunks as [s, s, K].
    """
    Z, C, K = G.shape
    # the diagonal (blocks of size 1): Akk has none (j < i), Aqk has q_i . k_i (decay 1)
    vals_k, vals_q = [torch.zeros_like(k[..., 0])], [(q * k).sum(-1)]  # [Z, C] each
    b = 1
    while b < C:
        P = C // (2 * b)  # pairs of neighbouring blocks
        Gb = G.view(Z, P, 2, b, K)
        ref = Gb[:, :, 0, -1:]  # [Z, P, 1, K] G at the last row of each upper block
        to_row = _exp(Gb[:, :, 1] - ref)  # [Z, P, b, K] decay from the boundary down to row i
        cols = k.view(Z, P, 2, b, K)[:, :, 0]  # [Z, P, b, K]
        if b > 1:  # (for b = 1 the column is the reference row: decay 1)
            cols = cols * _exp(ref - Gb[:, :, 0])
        for a, vals in ((k, vals_k), (q, vals_q)):
            rows = a.view(Z, P, 2, b, K)[:, :, 1] * to_row  # [Z, P, b, K]
            if b <= 2:  # tiny blocks: one broadcast product beats a batch of tiny matmuls
                blocks = (rows[:, :, :, None] * cols[:, :, None]).sum(-1)
            else:
                blocks = rows.reshape(Z * P, b, K) @ cols.reshape(Z * P, b, K).transpose(1, 2)
            vals.append(blocks.reshape(Z, P * b * b))  # [Z, P, b, b] blocks, flattened
        b *= 2
    zero = vals_k[0][:, :1]
    idx = _block_layout(C, G.device)
    return tuple(torch.cat((*vals, zero), -1).index_select(1, idx).view(Z, C, C) for vals in (vals_k, vals_q))


# A channel whose decay over the whole chunk stays within exp(-_FAST_RANGE) factors as
# exp(G_i - G_j) = exp(G_i) * exp(-G_j) (fla's form): both factors in [e^-60, e^60], inside fp32's normal
# range with room to spare (no product, forward or backward, comes near fp32's max 3e38 = e^88).
_FAST_RANGE = 60.0


def _intra_chunk(k: torch.Tensor, q: torch.Tensor, G: torch.Tensor):
    """Everything a chunk needs from its gate. k, q, G: [Z, C, K] (C a power of 2) ->
    Akk, Aqk [Z, C, C] (`_decayed_scores`' result), k * e^G, q * e^G, k * e^(G_last - G) [Z, C, K] and
    e^G_last [Z, 1, K], every decay floored at e^-_FAST_RANGE (see _EXP_FLOOR on why that is exact).

    Channel by channel, the cheap way where it is exact: a channel of a chunk whose total decay is within
    _FAST_RANGE joins one matmul (factored as above); the others (strong decay: a few channels of some
    chunks at a layer's init) go through `_decayed_scores`, gathered so that it sees only the chunks that
    have such channels and only as many channels as the worst of them has. One host sync (how many)."""
    Z, C, K = G.shape
    G_last = G[:, -1:]  # [Z, 1, K] the chunk's total decay per channel (G only decreases)
    safe = G_last >= -_FAST_RANGE  # [Z, 1, K]
    decay = G.clamp_min(-_FAST_RANGE).exp_()  # e^G, exact on safe channels
    # k e^-G on safe channels (<= e^60 |k|), exactly 0 on the others: they add nothing to this matmul
    right = torch.where(safe, k, 0.0) * G.neg().clamp_max_(_FAST_RANGE).exp_()
    k_dec, q_dec = k * decay, q * decay
    decay_last = decay[:, -1:]
    k_to_end = right * decay_last  # k_j e^(G_last - G_j) on safe channels (0 on the others, fixed below)
    right_t = right.transpose(1, 2)
    Akk = (k_dec @ right_t).tril_(-1)
    Aqk = (q_dec @ right_t).tril_(0)
    n_unsafe = (~safe[:, 0]).sum(-1)  # [Z]
    Ku = max(n_unsafe.tolist())  # the host sync
    if Ku == 0:
        return Akk, Aqk, k_dec, q_dec, k_to_end, decay_last
    zi = n_unsafe.nonzero()[:, 0]  # chunks with an unsafe channel
    unsafe = ~safe[zi]  # [Zu, 1, K]
    # the unsafe channels first; a chunk with fewer than Ku fills up with safe ones, zeroed by the mask
    ch = torch.argsort(unsafe[:, 0].to(torch.int8), dim=1, descending=True, stable=True)[:, :Ku]  # [Zu, Ku]
    idx = ch[:, None, :].expand(-1, C, -1)
    k_u, q_u, G_u = (x.index_select(0, zi) for x in (k, q, G))
    akk, aqk = _decayed_scores(*(x.gather(2, idx) for x in (k_u * unsafe, q_u * unsafe, G_u)))
    k_to_end.index_add_(0, zi, k_u * unsafe * _exp(G_u[:, -1:] - G_u))
    return Akk.index_add_(0, zi, akk), Aqk.index_add_(0, zi, aqk), k_dec, q_dec, k_to_end, decay_last


def _to_chunks(x: torch.Tensor, N: int, C: int, C2: int) -> torch.Tensor:
    """[B, T, H, D] -> [B, H, N, C2, D] fp32: T zero-padded to N * C tokens, then each chunk of C tokens
    zero-padded to C2 rows. A zero row is inert (k = 0 writes nothing, g = 0 decays nothing, beta = 0), so
    chunks of C tokens padded to C2 give the result of chunks of C tokens."""
    B, T, H, D = x.shape
    x = (F.pad(x.float(), (0, 0, 0, 0, 0, N * C - T)) if N * C > T else x.float()).view(B, N, C, H, D)
    if C2 > C:
        x = F.pad(x, (0, 0, 0, 0, 0, C2 - C))
    return x.permute(0, 3, 1, 2, 4).contiguous()


def chunk_kda_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                    scale: float | None = None, initial_state: torch.Tensor | None = None,
                    output_final_state: bool = False, chunk_size: int = 64
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunkwise form in plain torch (differentiable by autograd). Inputs are not re-checked."""
    with torch.autocast(q.device.type, enabled=False):  # fp32 inside, as fla's kernels
        return _chunk_kda_fp32(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)


def _chunk_kda_fp32(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size):
    B, T, H, K = q.shape
    V, C = v.shape[-1], chunk_size
    C2 = 1 << (C - 1).bit_length()  # rows per chunk in the computation: C rounded up to a power of 2
    N = -(-T // C)  # chunks
    scale = K ** -0.5 if scale is None else scale
    out_dtype = v.dtype
    q = _to_chunks(q * scale, N, C, C2)  # [B, H, N, C2, K]
    k, v = _to_chunks(k, N, C, C2), _to_chunks(v, N, C, C2)  # [B, H, N, C2, K], [.., V]
    g = _to_chunks(g, N, C, C2).clamp_min(_EXP_FLOOR)  # -inf -> finite (see _EXP_FLOOR)
    beta = _to_chunks(beta[..., None], N, C, C2)  # [B, H, N, C2, 1]

    G = g.cumsum(-2)  # [B, H, N, C2, K] inclusive cumsum inside each chunk
    Z = B * H * N
    Akk, Aqk, k_dec, q_dec, k_to_end, decay_last = _intra_chunk(k.view(Z, C2, K), q.view(Z, C2, K),
                                                                G.view(Z, C2, K))
    decay_last = decay_last.view(B * H, N, 1, K).transpose(-1, -2)  # [B*H, N, K, 1]
    k_to_end = k_to_end.view(B * H, N, C2, K).transpose(-1, -2)  # [B*H, N, K, C2] decayed to the chunk's end
    # UT transform: T = (I + A)^-1 diag(beta), A[i, j] = beta_i Akk[i, j]; then W = T (e^G K), U = T V.
    # Inverting once and multiplying twice is cheaper on CPU than one triangular solve with K + V columns.
    beta = beta.view(Z, C2, 1)
    eye = torch.eye(C2, device=q.device, dtype=q.dtype)
    T_inv = torch.linalg.solve_triangular(eye + Akk * beta, eye.expand_as(Akk), upper=False,
                                          unitriangular=True) * beta.transpose(1, 2)  # [Z, C2, C2]
    W = (T_inv @ k_dec).view(B * H, N, C2, K)
    U = (T_inv @ v.view(Z, C2, V)).view(B * H, N, C2, V)

    # the only sequential part: the state entering each chunk (fla's chunk_fwd_h), then all outputs at once
    S = q.new_zeros(B * H, K, V) if initial_state is None else initial_state.float().reshape(B * H, K, V)
    states, v_news = [], []
    for n in range(N):
        states.append(S)
        v_new = torch.baddbmm(U[:, n], W[:, n], S, alpha=-1)  # [B*H, C2, V]  V' = U - W S
        v_news.append(v_new)
        S = torch.baddbmm(decay_last[:, n] * S, k_to_end[:, n], v_new)
    S_in = torch.stack(states, 1).view(Z, K, V)
    v_new = torch.stack(v_news, 1).view(Z, C2, V)
    o = torch.baddbmm(Aqk @ v_new, q_dec, S_in).view(B, H, N, C2, V)
    S = S.view(B, H, K, V)
    o = o[:, :, :, :C].permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype).contiguous(), (S if output_final_state else None)


class _ChunkKDATriton(torch.autograd.Function):
    """Triton forward (kernels/kda_chunk.py); backward recomputes the torch chunk form and differentiates it."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, initial_state, scale):
        from kernels.kda_chunk import chunk_kda_fwd

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
    """Chunkwise KDA with the Triton forward; inputs are not re-checked (chunk_kda does that once).
    Differentiable (backward through the torch form); without gradients only the kernels run."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad
                                       for x in (q, k, v, g, beta, initial_state)):
        o, ht = _ChunkKDATriton.apply(q, k, v, g, beta, initial_state, scale)
        return o, (ht if output_final_state else None)
    from kernels.kda_chunk import chunk_kda_fwd

    return chunk_kda_fwd(q, k, v, g, beta, scale, initial_state, output_final_state)


def chunk_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
              scale: float | None = None, initial_state: torch.Tensor | None = None,
              output_final_state: bool = False, chunk_size: int = 64, backend: str = "auto"
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise KDA, equal to `recurrent_kda` (same arguments) for any T and any gate (g = -inf forgets
    the channel, as in the recurrence). Inputs are checked here, once per call (one host sync).

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

    use_triton = resolve_backend(backend, q) == "triton"
    empty = empty_result(q, v, initial_state, output_final_state)
    if empty is not None:
        return empty
    if use_triton:
        return chunk_kda_triton(q, k, v, g, beta, scale, initial_state, output_final_state)
    return chunk_kda_torch(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)
