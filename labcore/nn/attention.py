"""Multi-head softmax attention: the one module every chapter's attention layer is.

Used in notebooks/03_kimi_linear_hybrid.ipynb, section "Decode speed" (the cached softmax baseline); the
tiny GPT of chapters 1 and 4 (labcore.nn.gpt), chapter 2's attention baseline and ThinkMorph's model are
built on it too.

    q, k, v = split(W_qkv x)                   per head, layout [B, T, H, D] (fla)
    o_t = sum_s softmax_s(q_t . k_s / sqrt(D)) v_s   over the keys s that q_t may see
    y = W_o concat_h(o)

Which keys a query may see is the mask: by default causal (the last T of S = cached + T positions), or
any bool mask the caller builds (ThinkMorph's image blocks see each other both ways). Keys and values of
earlier tokens come from a KVCache (labcore.nn.cache), so decoding one token reads the cache instead of
recomputing the prefix. No positional encoding here: the caller adds one where it wants one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn.cache import KVCache


def causal_mask(T: int, S: int, device: torch.device | str | None = None,
                always: bool = False) -> torch.Tensor | None:
    """Bool [T, S], True where query t (the last T of S positions) may see key s.

    None when T == S (SDPA's is_causal covers it) unless always=True.
    """
    if T > S:
        raise ValueError(f"T ({T}) must be <= S ({S}): the queries are the last T of the S positions")
    if T == S and not always:
        return None
    t = torch.arange(T, device=device)[:, None] + (S - T)
    return torch.arange(S, device=device)[None, :] <= t


class Attention(nn.Module):
    """forward(x [B, T, d_model], mask=None, cache=None, use_cache=False) -> (y [B, T, d_model], cache).

    Args:
        d_model: residual width.
        n_head: H.
        head_dim: D (default d_model // n_head; then n_head must divide d_model).
        dropout: on the attention probabilities, in training only.
        bias: biases on the qkv and output projections (ViT / DiT have them, GPTs here do not).
        causal: with mask=None, attend to earlier positions only (False: every position, as in a ViT).
    """

    def __init__(self, d_model: int, n_head: int, head_dim: int | None = None, dropout: float = 0.0,
                 bias: bool = False, causal: bool = True):
        super().__init__()
        if head_dim is None and isinstance(n_head, int) and n_head > 0:
            if isinstance(d_model, int) and d_model % n_head:
                raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head}) when head_dim "
                                 "is not given")
            head_dim = d_model // n_head
        for name, val in (("d_model", d_model), ("n_head", n_head), ("head_dim", head_dim)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_head, self.head_dim, self.dropout = d_model, n_head, head_dim, dropout
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * n_head * head_dim, bias=bias)
        self.proj = nn.Linear(n_head * head_dim, d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                use_cache: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        """
        Args:
            x: [B, T, d_model].
            mask: None for causal attention over the cached and new positions (every position when the
                module was built with causal=False), else bool [T, S] or
                [B, T, S] over the S = cache.seq_len + T keys (True = may attend).
            cache: keys and values of earlier tokens; the returned cache has this chunk appended.
            use_cache: return a cache even when none was passed in (prefill).
        Returns:
            y [B, T, d_model] and the grown KVCache when use_cache or a cache was passed, else None.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [B, T, {self.d_model}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # [B, T, H, D]
        keep = use_cache or cache is not None
        if cache is not None:
            if cache.batch_size != B:
                raise ValueError(f"cache has batch size {cache.batch_size}, x has {B}")
            cache = cache.append(k, v)
            k, v = cache.k, cache.v  # [B, S, H, D]
        elif keep:
            cache = KVCache(k, v)
        S = k.shape[1]
        if mask is None:
            mask = causal_mask(T, S, x.device) if self.causal else None
            is_causal = self.causal and mask is None and T > 1
        else:
            if mask.dtype != torch.bool or mask.shape[-2:] != (T, S) or mask.dim() not in (2, 3):
                raise ValueError(f"mask must be bool [T={T}, S={S}] or [B, T, S], got {mask.dtype} "
                                 f"{tuple(mask.shape)}")
            mask, is_causal = (mask[:, None] if mask.dim() == 3 else mask), False  # heads broadcast
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # [B, H, T, D]
        y = self.proj(o.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))
        return y, (cache if keep else None)
