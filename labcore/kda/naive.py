"""KDA, naive recurrent form. Kimi Linear (Moonshot AI, 2025, arXiv:2510.26692).
Taught in notebooks/02_kda.ipynb, section "Recurrent form".

Per head, with a state S of shape [K, V] kept in fp32:
    S' = diag(exp g_t) S_{t-1}                        (decay each key channel first)
    S_t = S' + beta_t k_t (v_t - S'^T k_t)^T           (delta-rule write)
    o_t = S_t^T q_t
"""

from __future__ import annotations

import torch


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
    if bool((g > 0).any()):
        raise ValueError(f"g is a log decay and must be <= 0, got max {float(g.max()):.3g}")
    if bool(((beta < 0) | (beta > 1)).any()):
        raise ValueError(f"beta must be in [0, 1], got range "
                         f"[{float(beta.min()):.3g}, {float(beta.max()):.3g}]")


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
