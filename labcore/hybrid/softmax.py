"""The decode-speed baseline: plain multi-head softmax attention with a full K/V cache (NoPE).

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Decode speed".

labcore.nn.gpt.CausalSelfAttention has no cache, so this is its cached twin: the same math, plus
per-head keys and values of every past token kept in a KVCache [B, S, H, D]. No positional encoding,
so a stack of these differs from all-MLA only in what is cached (H * 2D values per token instead of
R + Dr) and how attention reads it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.hybrid.cache import KVCache
from labcore.hybrid.mla import _causal_mask


class CachedSelfAttention(nn.Module):
    """forward(x [B, T, d_model], cache, use_cache) -> (y [B, T, d_model], KVCache | None)."""

    def __init__(self, d_model: int, n_head: int, head_dim: int):
        super().__init__()
        for name, val in (("d_model", d_model), ("n_head", n_head), ("head_dim", head_dim)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        self.d_model, self.n_head, self.head_dim = d_model, n_head, head_dim
        self.qkv = nn.Linear(d_model, 3 * n_head * head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * head_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                use_cache: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [B, T, {self.d_model}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # [B, T, H, D]
        keep = use_cache or cache is not None
        if cache is not None:
            if cache.k.shape[0] != B:
                raise ValueError(f"cache has batch size {cache.k.shape[0]}, x has {B}")
            cache = cache.append(k, v)
        else:
            cache = KVCache(k, v)
        S = cache.seq_len
        mask = _causal_mask(T, S, x.device)
        k, v = cache.k.transpose(1, 2), cache.v.transpose(1, 2)  # [B, H, S, D]
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask,
                                           is_causal=mask is None and T > 1)  # [B, H, T, D]
        y = self.o_proj(o.transpose(1, 2).reshape(B, T, -1))
        return y, (cache if keep else None)
