"""labcore.nn.Attention, the one softmax attention module: causal, explicit mask and cached decoding agree
with a naive per-query softmax; bad masks and caches are refused by name."""

import pytest
import torch

from labcore.nn import Attention, KVCache, causal_mask
from labcore.testing import assert_close


def naive_attention(attn: Attention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loop over queries and heads; mask [B, T, T] bool (True = may attend)."""
    B, T, _ = x.shape
    H, D = attn.n_head, attn.head_dim
    q, k, v = attn.qkv(x).view(B, T, 3, H, D).unbind(2)
    o = x.new_zeros(B, T, H, D)
    for t in range(T):
        for h in range(H):
            s = (k[:, :, h] @ q[:, t, h, :, None]).squeeze(-1) / D ** 0.5  # [B, T]
            s = s.masked_fill(~mask[:, t], float("-inf"))
            o[:, t, h] = (s.softmax(-1)[..., None] * v[:, :, h]).sum(1)
    return attn.proj(o.reshape(B, T, H * D))


@pytest.mark.parametrize(("B", "T", "H", "D"), [(1, 1, 1, 4), (2, 9, 3, 8)])
def test_causal_and_masked_match_naive(B, T, H, D):
    torch.manual_seed(0)
    attn = Attention(H * D + 2, H, D)  # head_dim need not divide d_model
    x = torch.randn(B, T, H * D + 2)
    causal = causal_mask(T, T, always=True).expand(B, T, T)
    assert_close("causal", naive_attention(attn, x, causal), attn(x)[0], 1e-5)
    bidirectional_pairs = causal | causal.transpose(1, 2) & (torch.rand(B, T, T) < 0.5)
    bidirectional_pairs |= torch.eye(T, dtype=torch.bool)
    assert_close("mask", naive_attention(attn, x, bidirectional_pairs), attn(x, mask=bidirectional_pairs)[0], 1e-5)


def test_vit_attention_is_bidirectional_with_biases():
    """causal=False (the ViT/DiT blocks): mask=None lets every position see every other; bias=True adds them."""
    torch.manual_seed(0)
    attn = Attention(12, 3, bias=True, causal=False)
    assert attn.qkv.bias is not None and attn.proj.bias is not None
    x = torch.randn(2, 5, 12)
    assert_close("bidirectional", naive_attention(attn, x, torch.ones(2, 5, 5, dtype=torch.bool)), attn(x)[0], 1e-5)


def test_cached_decoding_equals_full_forward():
    torch.manual_seed(0)
    attn = Attention(16, 2)
    x = torch.randn(2, 11, 16)
    full, _ = attn(x)
    y, cache = attn(x[:, :5], use_cache=True)
    outs = [y]
    for t in range(5, 11):
        y, cache = attn(x[:, t:t + 1], cache=cache)
        outs.append(y)
    assert isinstance(cache, KVCache) and cache.seq_len == 11
    assert_close("decode", full, torch.cat(outs, 1), 1e-5)


def test_refuses_bad_input():
    attn = Attention(16, 2)
    with pytest.raises(ValueError, match="x must be"):
        attn(torch.randn(2, 3, 15))
    with pytest.raises(ValueError, match="mask must be bool"):
        attn(torch.randn(2, 3, 16), mask=torch.ones(3, 4, dtype=torch.bool))
    _, cache = attn(torch.randn(2, 3, 16), use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        attn(torch.randn(1, 1, 16), cache=cache)
    with pytest.raises(ValueError, match="n_head"):
        Attention(16, 0)
    with pytest.raises(ValueError, match="divisible by n_head"):
        Attention(16, 3)


def test_matched_hidden_picks_the_closest_width():
    from torch import nn

    from labcore.nn import SwiGLU, count_params, matched_hidden

    def build(h):
        return nn.Sequential(nn.Linear(8, 5), SwiGLU(8, h))

    target = count_params(build(37)) + 10  # 10 weights past width 37; one unit is 24
    assert matched_hidden(build, target, default=16) == 37
    with pytest.raises(ValueError, match="too small"):
        matched_hidden(build, 10, default=16)
    with pytest.raises(ValueError, match="grow"):
        matched_hidden(lambda h: nn.Linear(8, 8), 100, default=16)
