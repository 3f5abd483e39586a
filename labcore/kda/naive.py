"""KDA, naive recurrent form. Kimi Linear (Moonshot AI, 2025, arXiv:2510.26692).
Taught in notebooks/02_kda.ipynb, section "Recurrent form, from scratch".

Per head, with a state S of shape [K, V] kept in fp32:
    S' = diag(exp g_t) S_{t-1}                        (decay each key channel first)
    S_t = S' + beta_t k_t (v_t - S'^T k_t)^T           (delta-rule write)
    o_t = S_t^T q_t
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                 initial_state: torch.Tensor | None = None) -> None:
    """Raise ValueError (naming the argument) on shapes, dtypes or values KDA is not defined for."""
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
    if q.dim() != 4:
        raise ValueError(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if g.shape != q.shape:
        raise ValueError(f"g must have q's shape {tuple(q.shape)}, got {tuple(g.shape)}")
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"v must be [B, T, H, V] = [{B}, {T}, {H}, V], got {tuple(v.shape)}")
    if beta.shape != (B, T, H):
        raise ValueError(f"beta must be [B, T, H] = [{B}, {T}, {H}], got {tuple(beta.shape)}")
    if T == 0:
        raise ValueError("sequence length T must be >= 1, got 0")
    if initial_state is not None and initial_state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"initial_state must be [B, H, K, V] = [{B}, {H}, {K}, {v.shape[-1]}], "
                         f"got {tuple(initial_state.shape)}")
    # every value check in one host sync: max and aminmax propagate NaN
    stats = [g.max()] if g.numel() else []
    stats += list(torch.aminmax(beta)) if beta.numel() else []
    vals = torch.stack([s.float() for s in stats]).tolist() if stats else []
    if g.numel():
        g_max = vals.pop(0)
        if math.isnan(g_max):
            raise ValueError("g contains NaN; it must be a log decay <= 0 (-inf: forget the channel)")
        if g_max > 0:
            raise ValueError(f"g is a log decay and must be <= 0, got max {g_max:.3g}")
    if vals:
        b_min, b_max = vals
        if math.isnan(b_min) or math.isnan(b_max):
            raise ValueError("beta contains NaN; it must be in [0, 1]")
        if b_min < 0 or b_max > 1:
            raise ValueError(f"beta must be in [0, 1], got range [{b_min:.3g}, {b_max:.3g}]")


def empty_result(q: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor | None,
                 output_final_state: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The exact result when B, H, K or V is 0 (o is all zeros: nothing to read or nothing read), else None.
    Lets every form skip its arithmetic (and K ** -0.5) on empty shapes."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if B and H and K and V:
        return None
    o = v.new_zeros(B, T, H, V)
    if not output_final_state:
        return o, None
    S = initial_state.float().clone() if initial_state is not None else q.new_zeros(B, H, K, V, dtype=torch.float32)
    return o, S


def recurrent_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                  scale: float | None = None, initial_state: torch.Tensor | None = None,
                  output_final_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token KDA, the reference every faster form is tested against.

    Args:
        q, k: [B, T, H, K] (L2-normalised by the caller); v: [B, T, H, V]
        g: [B, T, H, K] log decay per key channel, <= 0
        beta: [B, T, H] write strength in [0, 1]
        scale: multiplies q (default K ** -0.5, as fla)
        initial_state: [B, H, K, V] or None (zeros)
    Returns:
        o [B, T, H, V] (v's dtype) and the final state [B, H, K, V] fp32 (None unless output_final_state)
    """
    check_inputs(q, k, v, g, beta, initial_state)
    empty = empty_result(q, v, initial_state, output_final_state)
    if empty is not None:
        return empty
    with torch.autocast(q.device.type, enabled=False):  # the state stays fp32 under AMP too
        return _recurrent_fp32(q, k, v, g, beta, scale, initial_state, output_final_state)


def _recurrent_fp32(q, k, v, g, beta, scale, initial_state, output_final_state):
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    out_dtype = v.dtype
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    q = q * scale
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    o = []
    for t in range(T):
        # S' = diag(exp g_t) S: decay each key channel
        S = S * g[:, t, :, :, None].exp()  # [B, H, K, V]
        k_t, v_t = k[:, t], v[:, t]  # [B, H, K], [B, H, V]
        # delta rule: replace what S' recalls for k_t by v_t, by a fraction beta_t
        delta = v_t - torch.einsum("bhkv,bhk->bhv", S, k_t)  # [B, H, V]
        S = S + beta[:, t, :, None, None] * k_t[..., None] * delta[..., None, :]
        o.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))  # [B, H, V]
    o = torch.stack(o, dim=1).to(out_dtype)
    return o, (S if output_final_state else None)


def naive_chunk_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                    scale: float | None = None, initial_state: torch.Tensor | None = None,
                    output_final_state: bool = False, chunk_size: int = 64
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The readable chunkwise form, as notebooks/02_kda.ipynb teaches it in section "Chunkwise form"
    (`my_chunk_kda` + `my_chunk_scan`): an explicit [C, C, K] decay tensor per chunk, masked before exp.
    The reference `labcore.kda.chunk_kda` (the fast form) is tested against, next to `recurrent_kda`.

    Same arguments and results as recurrent_kda; chunk_size: C. Meant for mild and strong gates alike,
    but not g = -inf (G_i - G_j is then -inf - -inf = NaN; chunk_kda floors g first).
    """
    check_inputs(q, k, v, g, beta, initial_state)
    empty = empty_result(q, v, initial_state, output_final_state)
    if empty is not None:
        return empty
    B, T, H, K = q.shape
    V, C = v.shape[-1], chunk_size
    scale = K ** -0.5 if scale is None else scale
    out_dtype = v.dtype
    with torch.autocast(q.device.type, enabled=False):
        pad = -T % C
        q, k, v, g = (F.pad(x.float(), (0, 0, 0, 0, 0, pad)) for x in (q * scale, k, v, g))
        beta = F.pad(beta.float(), (0, 0, 0, pad))
        N = q.shape[1] // C
        q, k, v, g = (x.view(B, N, C, H, -1).transpose(2, 3) for x in (q, k, v, g))  # [B, N, H, C, D]
        beta = beta.view(B, N, C, H).transpose(2, 3)  # [B, N, H, C]
        G = g.cumsum(-2)
        diff = G[..., :, None, :] - G[..., None, :, :]  # [B, N, H, C, C, K]
        lower = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()[..., None]
        decay = diff.masked_fill(~lower, -float("inf")).exp()  # mask, then exp
        Aqk = (q[..., :, None, :] * k[..., None, :, :] * decay).sum(-1)  # j <= i
        A = beta[..., None] * (k[..., :, None, :] * k[..., None, :, :] * decay).sum(-1).tril(-1)  # j < i
        eye = torch.eye(C, device=q.device)
        Tm = torch.linalg.solve_triangular(eye + A, torch.diag_embed(beta), upper=False)
        # the sequential part: carry the state across chunks
        W, U = Tm @ (G.exp() * k), Tm @ v  # [B, N, H, C, K], [B, N, H, C, V]
        S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
        outs = []
        for n in range(N):
            v_new = U[:, n] - W[:, n] @ S  # V' = U - W S
            outs.append((q[:, n] * G[:, n].exp()) @ S + Aqk[:, n] @ v_new)
            G_last = G[:, n, :, -1:]  # [B, H, 1, K]
            S = G_last.transpose(-1, -2).exp() * S + (k[:, n] * (G_last - G[:, n]).exp()).transpose(-1, -2) @ v_new
        o = torch.stack(outs, 1).transpose(2, 3).reshape(B, N * C, H, V)[:, :T]  # [B, T, H, V]
    return o.to(out_dtype), (S if output_final_state else None)
