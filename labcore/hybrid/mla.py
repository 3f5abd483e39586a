"""Multi-head Latent Attention (DeepSeek-V2 style) without positional encoding, as in Kimi Linear.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, sections "MLA: compress, then up-project" and
"Absorbed decode".

Every token is compressed to one latent c_kv (R values) plus one key slice k_r (Dr values) shared by
all heads; per-head keys and values are up-projections of c_kv:

    q_t = W_q x_t                         -> per head [q_nope (Dn); q_r (Dr)]
    [c_kv; k_r] = W_dkv x_t,   c_kv <- RMSNorm(c_kv)
    [k_nope; v] = W_ukv c_kv              -> per head k_nope (Dn), v (Dv)
    score(t, s) = (q_nope . k_nope_s + q_r . k_r_s) / sqrt(Dn + Dr)

NoPE: Kimi Linear rotates nothing (its KDA layers carry position), but keeps the decoupled shared key
slice k_r (qk_rope_head_dim=64 in the 48B config), so we keep it too; `shared_dim=0` drops it.

Two paths give the same output:
- expanded (training / prefill): up-project K and V for every token, then causal softmax attention;
- absorbed (decode): fold W_uk into the query and W_uv into the output, so attention runs directly on
  the cached [c_kv; k_r] (R + Dr values per token, one shared "head", like MQA). Only c_kv and k_r are
  cached (labcore.hybrid.cache.MLACache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.hybrid.cache import MLACache
from labcore.nn.attention import causal_mask
from labcore.nn.blocks import RMSNorm

PATHS = ("auto", "expanded", "absorbed")


class MultiHeadLatentAttention(nn.Module):
    """MLA with NoPE. forward(x [B, T, d_model], cache, use_cache) -> (y [B, T, d_model], MLACache | None).

    Args:
        d_model: residual width.
        n_head: H.
        kv_lora_rank: R, width of the cached latent c_kv.
        head_dim: Dn, per-head query/key width from the latent.
        shared_dim: Dr, width of the key slice shared by all heads (0 drops it).
        v_head_dim: Dv, per-head value width (default head_dim).
    """

    def __init__(self, d_model: int, n_head: int, kv_lora_rank: int, head_dim: int,
                 shared_dim: int = 0, v_head_dim: int | None = None):
        super().__init__()
        for name, val in (("d_model", d_model), ("n_head", n_head), ("kv_lora_rank", kv_lora_rank),
                          ("head_dim", head_dim)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not isinstance(shared_dim, int) or shared_dim < 0:
            raise ValueError(f"shared_dim must be an int >= 0, got {shared_dim!r}")
        v_head_dim = head_dim if v_head_dim is None else v_head_dim
        if v_head_dim <= 0:
            raise ValueError(f"v_head_dim must be > 0, got {v_head_dim}")
        self.d_model, self.n_head, self.kv_lora_rank = d_model, n_head, kv_lora_rank
        self.head_dim, self.shared_dim, self.v_head_dim = head_dim, shared_dim, v_head_dim
        self.scale = (head_dim + shared_dim) ** -0.5
        H = n_head
        # no query compression (Kimi Linear: q_lora_rank = null)
        self.q_proj = nn.Linear(d_model, H * (head_dim + shared_dim), bias=False)
        # down-projection: the only thing a decoding model has to remember per token
        self.kv_down = nn.Linear(d_model, kv_lora_rank + shared_dim, bias=False)
        self.kv_norm = RMSNorm(kv_lora_rank)
        # up-projection of the latent to per-head k_nope and v
        self.kv_up = nn.Linear(kv_lora_rank, H * (head_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(H * v_head_dim, d_model, bias=False)

    # ---- pieces ------------------------------------------------------------------------------------

    def queries(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d] -> q_nope [B, T, H, Dn], q_r [B, T, H, Dr]."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim + self.shared_dim)
        return q[..., :self.head_dim], q[..., self.head_dim:]

    def compress(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d] -> c_kv [B, T, R] (normed), k_r [B, T, Dr]: what the cache stores."""
        ckv = self.kv_down(x)  # [B, T, R + Dr]
        return self.kv_norm(ckv[..., :self.kv_lora_rank]), ckv[..., self.kv_lora_rank:]

    def up_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_uk [H, Dn, R] and W_uv [H, Dv, R], the per-head blocks of kv_up."""
        w = self.kv_up.weight.view(self.n_head, self.head_dim + self.v_head_dim, self.kv_lora_rank)
        return w[:, :self.head_dim], w[:, self.head_dim:]

    # ---- the two attention paths --------------------------------------------------------------------

    def attend_expanded(self, q_nope: torch.Tensor, q_r: torch.Tensor, c_kv: torch.Tensor,
                        k_r: torch.Tensor) -> torch.Tensor:
        """Up-project K, V for all S keys, then softmax attention; query t sees keys s <= S - T + t.

        q_nope [B, T, H, Dn], q_r [B, T, H, Dr], c_kv [B, S, R], k_r [B, S, Dr] -> o [B, T, H, Dv].
        """
        B, S, _ = c_kv.shape
        H, T = self.n_head, q_nope.shape[1]
        kv = self.kv_up(c_kv).view(B, S, H, self.head_dim + self.v_head_dim)
        k_nope, v = kv[..., :self.head_dim], kv[..., self.head_dim:]  # [B, S, H, Dn], [B, S, H, Dv]
        k = torch.cat([k_nope, k_r[:, :, None].expand(B, S, H, self.shared_dim)], -1)  # [B, S, H, Dn+Dr]
        q = torch.cat([q_nope, q_r], -1)  # [B, T, H, Dn+Dr]
        mask = causal_mask(T, S, q.device)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=mask is None and T > 1,
                                           scale=self.scale)  # [B, H, T, Dv]
        return o.transpose(1, 2)

    def attend_absorbed(self, q_nope: torch.Tensor, q_r: torch.Tensor, c_kv: torch.Tensor,
                        k_r: torch.Tensor) -> torch.Tensor:
        """Attention straight on the latents: W_uk folded into q, W_uv applied after the weighted sum.

        Same shapes and result as attend_expanded; per key it reads R + Dr values instead of H(Dn + Dv).
        """
        W_uk, W_uv = self.up_weights()  # [H, Dn, R], [H, Dv, R]
        T, S = q_nope.shape[1], c_kv.shape[1]
        # q_nope . (W_uk c) = (W_uk^T q_nope) . c
        q_lat = torch.einsum("bthd,hdr->bthr", q_nope, W_uk)  # [B, T, H, R]
        scores = torch.einsum("bthr,bsr->bhts", q_lat, c_kv)  # [B, H, T, S]
        if self.shared_dim:
            scores = scores + torch.einsum("bthd,bsd->bhts", q_r, k_r)
        scores = scores.float() * self.scale
        if T > 1:
            scores = scores.masked_fill(~causal_mask(T, S, scores.device, always=True), float("-inf"))
        p = scores.softmax(-1).to(c_kv.dtype)  # [B, H, T, S]
        o_lat = torch.einsum("bhts,bsr->bthr", p, c_kv)  # [B, T, H, R]
        return torch.einsum("bthr,hvr->bthv", o_lat, W_uv)  # [B, T, H, Dv]

    # ---- module API --------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, cache: MLACache | None = None, use_cache: bool = False,
                path: str = "auto") -> tuple[torch.Tensor, MLACache | None]:
        """x [B, T, d_model] -> y [B, T, d_model] and the grown cache (when use_cache or cache given).

        path="auto" runs the expanded form when there is no past (training, prefill) and the absorbed
        form when decoding on top of a cache; "expanded" / "absorbed" force one (tests compare them).
        """
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [B, T, {self.d_model}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        q_nope, q_r = self.queries(x)
        c_kv, k_r = self.compress(x)  # [B, T, R], [B, T, Dr]
        past = 0
        if cache is not None:
            if cache.c_kv.shape[0] != B:
                raise ValueError(f"cache has batch size {cache.c_kv.shape[0]}, x has {B}")
            past = cache.seq_len
            new_cache = cache.append(c_kv, k_r)
        else:
            new_cache = MLACache(c_kv, k_r)
        if path == "auto":
            path = "absorbed" if past else "expanded"
        attend = self.attend_absorbed if path == "absorbed" else self.attend_expanded
        o = attend(q_nope, q_r, new_cache.c_kv, new_cache.k_r)  # [B, T, H, Dv]
        y = self.o_proj(o.reshape(B, T, self.n_head * self.v_head_dim))
        return y, (new_cache if (use_cache or cache is not None) else None)

    def cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one token adds to this layer's cache: (R + Dr) * itemsize."""
        return (self.kv_lora_rank + self.shared_dim) * torch.empty((), dtype=dtype).element_size()


def naive_mla(mla: MultiHeadLatentAttention, x: torch.Tensor) -> torch.Tensor:
    """Reference for tests: per query token, per head, explicit up-projection and softmax (no SDPA).

    x [B, T, d_model] -> y [B, T, d_model]; slow, loops over t and h.
    """
    B, T, _ = x.shape
    H, Dn, Dv = mla.n_head, mla.head_dim, mla.v_head_dim
    q = mla.q_proj(x).view(B, T, H, Dn + mla.shared_dim)
    ckv = mla.kv_down(x)
    c = mla.kv_norm(ckv[..., :mla.kv_lora_rank])  # [B, T, R]
    k_r = ckv[..., mla.kv_lora_rank:]  # [B, T, Dr]
    kv = mla.kv_up(c).view(B, T, H, Dn + Dv)
    out = x.new_zeros(B, T, H, Dv)
    for t in range(T):
        for h in range(H):
            k = torch.cat([kv[:, :t + 1, h, :Dn], k_r[:, :t + 1]], -1)  # [B, t+1, Dn+Dr]
            s = (k @ q[:, t, h, :, None]).squeeze(-1) * mla.scale  # [B, t+1]
            out[:, t, h] = (s.softmax(-1)[:, :, None] * kv[:, :t + 1, h, Dn:]).sum(1)
    return mla.o_proj(out.reshape(B, T, H * Dv))
