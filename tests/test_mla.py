"""MLA (NoPE): the absorbed decode path equals the expanded training path, the cache holds only the latent."""

import pytest
import torch

from labcore.hybrid import MLACache, MultiHeadLatentAttention, naive_mla
from labcore.testing import assert_close

# fp32 paths that differ only in summation order (einsum over R vs matmul over Dn after up-projection):
# measured rel RMSE ~1e-7; 1e-5 leaves room for other BLAS builds while any real bug gives ~1e-1.
TOL = 1e-5

CASES = [(1, 1, 1, 8, 4, 0), (2, 13, 4, 16, 8, 4), (1, 63, 2, 24, 8, 8), (3, 31, 3, 8, 16, 2)]


def _mla(H, R, D, Dr, d=32):
    return MultiHeadLatentAttention(d, H, R, D, shared_dim=Dr)


@pytest.mark.parametrize(("B", "T", "H", "R", "D", "Dr"),
                         [pytest.param(*c, id="B{}-T{}-H{}-R{}-D{}-Dr{}".format(*c)) for c in CASES])
def test_absorbed_equals_expanded(B, T, H, R, D, Dr):
    mla = _mla(H, R, D, Dr)
    x = torch.randn(B, T, 32, requires_grad=True)
    y_exp, _ = mla(x, path="expanded")
    g = torch.randn_like(y_exp)
    dx_exp, dW_exp = torch.autograd.grad(y_exp, (x, mla.kv_up.weight), g)
    y_abs, _ = mla(x, path="absorbed")
    dx_abs, dW_abs = torch.autograd.grad(y_abs, (x, mla.kv_up.weight), g)
    assert_close("y", y_exp, y_abs, TOL)
    assert_close("dx", dx_exp, dx_abs, TOL)
    assert_close("dW_ukv", dW_exp, dW_abs, TOL)


@pytest.mark.parametrize(("B", "T", "H", "R", "D", "Dr"),
                         [pytest.param(*c, id="B{}-T{}-H{}-R{}-D{}-Dr{}".format(*c)) for c in CASES[:3]])
def test_expanded_matches_naive(B, T, H, R, D, Dr):
    mla = _mla(H, R, D, Dr)
    x = torch.randn(B, T, 32)
    y, _ = mla(x)
    assert_close("y vs naive loop", naive_mla(mla, x), y, TOL)


@pytest.mark.parametrize("prefill", [1, 6, 20])
@pytest.mark.parametrize("step", [1, 3])
def test_incremental_decode(prefill, step):
    B, T = 2, 21
    mla = _mla(4, 16, 8, 4)
    x = torch.randn(B, T, 32)
    y_full, _ = mla(x)
    y, cache = mla(x[:, :prefill], use_cache=True)
    ys = [y]
    for t in range(prefill, T, step):
        y, cache = mla(x[:, t:t + step], cache=cache)
        ys.append(y)
    assert cache.seq_len == T
    assert_close("y incremental", y_full, torch.cat(ys, 1), TOL)


def test_cache_holds_only_latent():
    B, T, H, R, D, Dr = 2, 9, 4, 16, 8, 4
    mla = _mla(H, R, D, Dr)
    _, cache = mla(torch.randn(B, T, 32), use_cache=True)
    assert isinstance(cache, MLACache)
    assert tuple(cache.c_kv.shape) == (B, T, R) and tuple(cache.k_r.shape) == (B, T, Dr), \
        "the cache must hold only c_kv [B, S, R] and k_r [B, S, Dr], never per-head K/V"
    assert cache.nbytes() == B * T * (R + Dr) * 4
    assert mla.cache_bytes_per_token() == (R + Dr) * 4
    # per-head K and V would be H * 2D values per token; the latent is smaller here by design
    assert R + Dr < H * 2 * D


def test_no_cache_without_use_cache():
    mla = _mla(2, 8, 8, 0)
    _, cache = mla(torch.randn(1, 5, 32))
    assert cache is None


def test_nope_is_order_blind():
    """No positional encoding: the last token's output ignores the order of the tokens before it."""
    mla = _mla(2, 8, 8, 4)
    x = torch.randn(1, 10, 32)
    perm = torch.cat([torch.randperm(9), torch.tensor([9])])
    y, _ = mla(x)
    y_perm, _ = mla(x[:, perm])
    assert_close("last token, permuted prefix", y[:, -1], y_perm[:, -1], TOL)
    assert (y[:, 3] - y_perm[:, 3]).abs().max() > 1e-4, "earlier outputs do depend on which tokens precede"


def test_bad_input():
    with pytest.raises(ValueError, match="kv_lora_rank"):
        MultiHeadLatentAttention(32, 4, 0, 8)
    with pytest.raises(ValueError, match="shared_dim"):
        MultiHeadLatentAttention(32, 4, 8, 8, shared_dim=-1)
    mla = _mla(2, 8, 8, 4)
    with pytest.raises(ValueError, match="x must be"):
        mla(torch.randn(1, 5, 31))
    with pytest.raises(ValueError, match="path"):
        mla(torch.randn(1, 5, 32), path="fast")
    _, cache = mla(torch.randn(2, 5, 32), use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        mla(torch.randn(3, 1, 32), cache=cache)
