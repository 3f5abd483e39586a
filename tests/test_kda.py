"""Chapter 2: KDA recurrent vs chunkwise (values and gradients), numerics, validation, gate, layer, cache,
synthetic data. Tolerances are relative RMSE (labcore.testing.assert_close)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labcore.data.synthetic import IGNORE_INDEX, mqar, palindrome, to_dataset
from labcore.kda import (
    KDACache,
    KimiDeltaAttention,
    ScalarGatedDeltaNet,
    chunk_kda,
    kda_gate,
    naive_chunk_kda,
    recurrent_kda,
)
from labcore.kda.gate import init_A_log, init_dt_bias
from labcore.testing import assert_close

# Both paths run in fp32 and we measure ~1e-6 on outputs/states and ~1e-6..1e-5 on gradients; the
# issue's bound (5e-3, from fla's bf16 kernels) is what we assert, so a BLAS change cannot flake it
# while a real bug (wrong decay, off-by-one mask: errors ~1e-1) still fails it.
TOL = 5e-3


def make_inputs(B, T, H, K, V, g_min=-1.0, dtype=torch.float32, h0=True):
    q = torch.randn(B, T, H, K, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, K, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, V, dtype=dtype)
    g = (torch.rand(B, T, H, K, dtype=dtype) * g_min)  # in [g_min, 0]
    beta = torch.rand(B, T, H, dtype=dtype)
    S0 = torch.randn(B, H, K, V) if h0 else None
    return [q, k, v, g, beta, S0]


def run_both(fn, inputs, **kw):
    leaves = [x.clone().requires_grad_() if x is not None else None for x in inputs]
    o, S = fn(*leaves[:5], initial_state=leaves[5], output_final_state=True, **kw)
    torch.manual_seed(1)
    loss = (o * torch.randn(o.shape)).sum() + (S * torch.randn(S.shape)).sum()
    loss.backward()
    return o.detach(), S.detach(), [x.grad for x in leaves if x is not None]


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "C"), [
    pytest.param(*c, id="B{}-T{}-H{}-K{}-V{}-C{}".format(*c))
    for c in [(1, 1, 1, 16, 16, 64), (1, 63, 1, 32, 16, 64), (2, 160, 2, 16, 32, 64), (1, 100, 2, 16, 16, 32),
              (1, 77, 1, 8, 8, 10)]])
def test_chunk(B, T, H, K, V, C):
    inputs = make_inputs(B, T, H, K, V)
    o_ref, S_ref, grads_ref = run_both(recurrent_kda, inputs)
    o, S, grads = run_both(chunk_kda, inputs, chunk_size=C)
    assert_close("o", o_ref, o, TOL)
    assert_close("final state", S_ref, S, TOL)
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), grads_ref, grads, strict=True):
        assert_close(name, a, b, TOL)


def assert_all_close(ref, out, tol=TOL):
    for name, a, b in zip(("o", "final state", "dq", "dk", "dv", "dg", "dbeta", "dh0"),
                          (ref[0], ref[1], *ref[2]), (out[0], out[1], *out[2]), strict=True):
        assert_close(name, a, b, tol)


@pytest.mark.parametrize("gate", ["layer_init", "trained", "mild"])
def test_chunk_matches_naive_chunk_and_recurrent_on_realistic_gates(gate):
    # the gates of issue 14: what KimiDeltaAttention feeds at init (some channels decay by e^-100 per
    # chunk), a trained layer's (mostly near 0), and a mild U(-1, 0)
    B, T, H, K, V = 1, 150, 2, 16, 16
    inputs = make_inputs(B, T, H, K, V)
    inputs[3] = {"layer_init": lambda: kda_gate(torch.randn(B, T, H, K), init_A_log(H), init_dt_bias(H * K)),
                 "trained": lambda: F.logsigmoid(torch.randn(B, T, H, K) + 4),
                 "mild": lambda: -torch.rand(B, T, H, K)}[gate]()
    fast = run_both(chunk_kda, inputs, chunk_size=64)
    assert_all_close(run_both(naive_chunk_kda, inputs, chunk_size=64), fast)
    assert_all_close(run_both(recurrent_kda, inputs), fast)


@pytest.mark.parametrize("C", [64, 16])
def test_chunk_mixed_strong_and_mild_channels(C):
    # one chunk holds channels on the one-matmul path (decay within e^-80) and channels on the exact
    # path, a different number per chunk and head (0 to 3): both paths and their sum are checked
    B, T, H, K, V = 1, 130, 2, 16, 16
    inputs = make_inputs(B, T, H, K, V, g_min=-0.5)
    g = inputs[3]
    g[:, :64, 0, 2] = -6.0  # first chunk(s), head 0: one channel
    g[:, 64:, 1, 5:8] = -9.0  # later chunks, head 1: three channels
    g[:, 100:, 0, 0] = -float("inf")
    fast = run_both(chunk_kda, inputs, chunk_size=C)
    assert_all_close(run_both(naive_chunk_kda, inputs, chunk_size=C), fast)
    assert_all_close(run_both(recurrent_kda, inputs), fast)


@pytest.mark.parametrize("C", [64, 16, 10])
def test_chunk_minus_inf_gate_is_the_recurrent_result(C):
    # g = -inf: the channel forgets everything (exp(-inf) = 0 in the recurrence); all -inf too
    inputs = make_inputs(1, 70, 2, 16, 16)
    inputs[3][:, 5:9, :, 3] = -float("inf")
    inputs[3][:, 40, 1] = -float("inf")  # every channel of one head at one token
    assert_all_close(run_both(recurrent_kda, inputs), run_both(chunk_kda, inputs, chunk_size=C))
    inputs[3] = torch.full_like(inputs[3], -float("inf"))
    o_ref, S_ref, _ = run_both(recurrent_kda, inputs)
    o, S, grads = run_both(chunk_kda, inputs, chunk_size=C)
    assert_close("o, g all -inf", o_ref, o, TOL)
    assert_close("final state, g all -inf", S_ref, S, TOL)
    assert all(torch.isfinite(x).all() for x in grads), "gradients must stay finite with g = -inf"


@pytest.mark.parametrize("fn", [recurrent_kda, chunk_kda, naive_chunk_kda])
def test_nan_in_g_or_beta_raises(fn):
    q, k, v, g, beta, _ = make_inputs(1, 8, 2, 4, 4)
    g[0, 3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="g contains NaN"):
        fn(q, k, v, g, beta)
    g = torch.zeros_like(g)
    beta[0, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="beta contains NaN"):
        fn(q, k, v, g, beta)


@pytest.mark.parametrize("shape", [(0, 5, 2, 4, 4), (1, 5, 0, 4, 4), (2, 5, 2, 0, 4), (2, 5, 2, 4, 0)],
                         ids=["B0", "H0", "K0", "V0"])
def test_empty_shapes(shape):
    B, T, H, K, V = shape
    q, k, v, g, beta, S0 = make_inputs(B, T, H, K, V)
    for fn in (recurrent_kda, chunk_kda, naive_chunk_kda):
        o, S = fn(q, k, v, g, beta, initial_state=S0, output_final_state=True)
        assert o.shape == (B, T, H, V) and not o.any(), f"{fn.__name__}: o must be zeros of shape {shape}"
        assert S.shape == (B, H, K, V) and torch.equal(S, S0), fn.__name__
    with pytest.raises(ValueError, match="sequence length T"):
        chunk_kda(*make_inputs(1, 0, 1, 4, 4, h0=False)[:5])


def test_chunk_strong_decay_matches_recurrent():
    # g down to -20 sends the chunk through the sub-chunk (overflow-safe) path
    inputs = make_inputs(1, 90, 2, 16, 16, g_min=-20.0)
    o_ref, S_ref, grads_ref = run_both(recurrent_kda, inputs)
    o, S, grads = run_both(chunk_kda, inputs, chunk_size=32)
    assert_close("o", o_ref, o, TOL)
    assert_close("final state", S_ref, S, TOL)
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), grads_ref, grads, strict=True):
        assert_close(name, a, b, TOL)


def test_chunk_no_nan_long_strong_decay():
    B, T, H, K, V = 1, 8192, 1, 16, 16
    inputs = make_inputs(B, T, H, K, V, g_min=-20.0, h0=False)
    o, S, grads = run_both(chunk_kda, inputs)
    for name, x in [("o", o), ("S", S)] + list(zip(("dq", "dk", "dv", "dg", "dbeta"), grads, strict=True)):
        assert torch.isfinite(x).all(), f"{name} has NaN/inf at T={T} with g down to -20: mask before exp"


def test_chunk_without_state_and_default_scale():
    q, k, v, g, beta, _ = make_inputs(2, 45, 2, 16, 8, h0=False)
    o_ref, none = recurrent_kda(q, k, v, g, beta)
    o, none2 = chunk_kda(q, k, v, g, beta, chunk_size=16)
    assert none is None and none2 is None
    assert_close("o", o_ref, o, TOL)
    o_scaled, _ = chunk_kda(q * 2, k, v, g, beta, scale=16 ** -0.5 / 2, chunk_size=16)
    assert_close("o with explicit scale", o_ref, o_scaled, TOL)


def test_recurrent_is_the_delta_rule_without_decay():
    # with g = 0 and beta = 1, writing (k, v) then reading with q = k (unit norm, scale 1) returns v
    K = 8
    k = F.normalize(torch.randn(1, 1, 1, K), dim=-1)
    v = torch.randn(1, 1, 1, 4)
    o, S = recurrent_kda(k, k, v, torch.zeros(1, 1, 1, K), torch.ones(1, 1, 1), scale=1.0,
                         initial_state=torch.randn(1, 1, K, 4), output_final_state=True)
    assert torch.allclose(o, v, atol=1e-5), "beta=1 must overwrite what the state recalls for k with v"


@pytest.mark.parametrize("fn", [recurrent_kda, chunk_kda])
def test_bad_inputs_raise(fn):
    q, k, v, g, beta, S0 = make_inputs(1, 8, 2, 4, 4)
    with pytest.raises(ValueError, match="k must"):
        fn(q, k[:, :4], v, g, beta)
    with pytest.raises(ValueError, match="v must"):
        fn(q, k, v[:, :, :1], g, beta)
    with pytest.raises(ValueError, match="beta must"):
        fn(q, k, v, g, beta[..., :1])
    with pytest.raises(ValueError, match="g is a log decay"):
        fn(q, k, v, -g + 0.1, beta)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        fn(q, k, v, g, beta + 1.5)
    with pytest.raises(ValueError, match="floating-point"):
        fn(q.long(), k, v, g, beta)
    with pytest.raises(ValueError, match="initial_state"):
        fn(q, k, v, g, beta, initial_state=S0[:, :1])


def test_chunk_bad_options_raise():
    q, k, v, g, beta, _ = make_inputs(1, 8, 1, 4, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_kda(q, k, v, g, beta, chunk_size=0)
    with pytest.raises(ValueError, match="backend"):
        chunk_kda(q, k, v, g, beta, backend="cuda")


def test_kda_gate():
    H, K = 3, 4
    raw, A_log, dt_bias = torch.randn(2, 5, H, K), torch.randn(H), torch.randn(H * K)
    g = kda_gate(raw, A_log, dt_bias)
    ref = -A_log.exp()[:, None] * torch.log1p(torch.exp(raw + dt_bias.view(H, K)))
    assert torch.allclose(g, ref, atol=1e-6) and (g <= 0).all()
    with pytest.raises(ValueError, match="A_log"):
        kda_gate(raw, torch.randn(H + 1))
    with pytest.raises(ValueError, match="dt_bias"):
        kda_gate(raw, A_log, torch.randn(5))
    # extreme parameters saturate instead of giving NaN (0 * inf): huge rate with zero step, zero rate
    # with infinite step
    raw = torch.tensor([-1e4, 0.0, 1e4, float("inf"), -float("inf")]).view(1, 5, 1, 1).expand(1, 5, H, K)
    for a in (1e3, 80.0, -float("inf"), float("inf")):
        g = kda_gate(raw, torch.full((H,), a))
        assert not g.isnan().any() and (g <= 0).all(), f"kda_gate gave NaN/positive for A_log={a}"


@pytest.mark.parametrize("cls", [KimiDeltaAttention, ScalarGatedDeltaNet])
def test_layer_decode_equals_full_forward(cls):
    layer = cls(24, 2, 8, chunk_size=4).eval()
    x = torch.randn(2, 13, 24)
    with torch.no_grad():
        y_full, cache_full = layer(x, use_cache=True)
        cache, ys = None, []
        for t in range(x.shape[1]):  # one token at a time (recurrent path)
            y_t, cache = layer(x[:, t:t + 1], cache=cache, use_cache=True)
            ys.append(y_t)
        y_pre, c_pre = layer(x[:, :6], use_cache=True)  # prefill in two pieces (chunk path)
        y_rest, c_rest = layer(x[:, 6:], cache=c_pre, use_cache=True)
    # fp32 throughout; measured ~1e-7, 1e-5 allows for different summation orders
    assert_close("token-by-token y", y_full, torch.cat(ys, 1), 1e-5)
    assert_close("two-piece prefill y", y_full, torch.cat([y_pre, y_rest], 1), 1e-5)
    assert_close("decoded state", cache_full.state, cache.state, 1e-5)
    assert cache.seen_tokens == 13 and c_rest.seen_tokens == 13
    assert layer(x)[1] is None, "use_cache=False must return None as the cache"
    with pytest.raises(ValueError, match="batch size 2"):
        layer(x[:1, :1], cache=cache, use_cache=True)


def test_cache_contract():
    B, H, K, c = 3, 2, 8, 4
    layer = KimiDeltaAttention(32, H, K, conv_size=c)
    _, cache = layer(torch.randn(B, 5, 32), use_cache=True)
    assert isinstance(cache, KDACache)
    assert cache.state.shape == (B, H, K, K) and cache.state.dtype == torch.float32
    for tail in cache.conv:
        assert tail.shape == (B, c - 1, H * K)
    assert cache.nbytes() == 4 * (B * H * K * K + 3 * B * (c - 1) * H * K)
    empty = layer.init_cache(B)
    assert empty.nbytes() == cache.nbytes() and not empty.state.any()


def test_gate_values_and_params():
    x = torch.randn(2, 7, 32)
    kda, gdn = KimiDeltaAttention(32, 2, 8), ScalarGatedDeltaNet(32, 2, 8)
    g_kda, g_gdn = kda.gate_values(x), gdn.gate_values(x)
    assert g_kda.shape == g_gdn.shape == (2, 7, 2, 8)
    assert (g_kda <= 0).all() and (g_gdn <= 0).all()
    assert (g_gdn == g_gdn[..., :1]).all(), "GDN's gate must be one scalar per head"
    assert (g_kda != g_kda[..., :1]).any(), "KDA's gate must differ across channels"
    y, _ = kda(x)
    y.square().mean().backward()
    missing = [n for n, p in kda.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters that get no gradient: {missing}"
    with pytest.raises(ValueError, match="x must be"):
        kda(torch.randn(2, 7, 31))
    with pytest.raises(ValueError, match="head_dim"):
        KimiDeltaAttention(32, 2, 0)


def test_synthetic_tasks():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = mqar(4, 40, 6, 32, gen()), mqar(4, 40, 6, 32, gen())
    assert torch.equal(a["input_ids"], b["input_ids"]), "same seed must give the same batch"
    x, y = a["input_ids"], a["labels"]
    for n in range(4):  # every scored query's label is the value paired with that key
        pairs = dict(zip(x[n, 0:12:2].tolist(), x[n, 1:12:2].tolist(), strict=True))
        assert len(pairs) == 6, "keys must be distinct"
        for t in (y[n] != IGNORE_INDEX).nonzero().flatten().tolist():
            assert pairs[int(x[n, t])] == int(y[n, t])
    p = palindrome(3, 11, 10, gen())
    x, y = p["input_ids"], p["labels"]
    assert torch.equal(x[:, 6:], x[:, :5].flip(1)) and (x[:, 5] == 0).all()
    assert torch.equal(y[:, 5:10], x[:, 6:11])
    assert len(to_dataset(p)) == 3
    with pytest.raises(ValueError, match="num_kv"):
        mqar(2, 40, 100, 32)
    with pytest.raises(ValueError, match="seq_len"):
        mqar(2, 10, 6, 32)


def test_kda_bench_is_discoverable():
    from labcore.bench import BENCHES

    assert "kda" in BENCHES, "labcore/bench/kda.py must be discoverable by `python -m labcore.bench kda`"


@pytest.mark.parametrize("profile", ["SMOKE", "CPU", "GPU"])
def test_mixers_have_equal_parameters(profile):
    from labcore.kda import config
    from labcore.kda.experiment import TinyLM

    cfg = getattr(config, profile)
    counts = {kind: TinyLM(kind, cfg).num_params() for kind in ("kda", "gdn", "attn")}
    unit = 3 * cfg.d_model * cfg.n_layer  # one MLP hidden unit in every layer
    assert all(abs(n - counts["kda"]) <= unit / 2 for n in counts.values()), counts


def test_matching_parameters_leaves_the_init_rng_alone():
    import dataclasses

    from labcore.kda.config import SMOKE
    from labcore.kda.experiment import TinyLM

    torch.manual_seed(0)
    matched = TinyLM("kda", SMOKE)
    torch.manual_seed(0)
    unmatched = dataclasses.replace(SMOKE, match_params=False)
    assert torch.equal(matched.emb.weight, TinyLM("kda", unmatched).emb.weight), \
        "matching parameter counts must not draw from the RNG that initialises the model"
    unit = 3 * SMOKE.d_model * SMOKE.n_layer
    assert TinyLM("gdn", unmatched).num_params() < TinyLM("kda", unmatched).num_params() - unit, \
        "without matching, GDN is smaller (the case matching exists for)"


def test_every_mixer_runs_and_a_task_trains():
    import dataclasses

    from labcore.kda.config import SMOKE, profile_config
    from labcore.kda.experiment import TinyLM, run_task
    from labcore.runtime import resolve_profile

    assert profile_config("smoke") is SMOKE
    cfg = dataclasses.replace(SMOKE, steps=2, eval_every=1, eval_examples=4, batch_size=2, lengths=(16,))
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    for kind in ("kda", "gdn", "attn"):
        assert TinyLM(kind, cfg)(idx).shape == (2, 16, cfg.vocab_size)
    res = run_task("mqar", "kda", cfg, resolve_profile("smoke"), progress=False)
    assert set(res["acc"]) == {16} and 0.0 <= res["acc"][16] <= 1.0 and len(res["curve"]) == 2


def test_experiment_config_refuses_bad_values():
    import dataclasses

    from labcore.kda.config import SMOKE
    from labcore.kda.experiment import TinyLM

    with pytest.raises(ValueError, match="mixers"):
        dataclasses.replace(SMOKE, mixers=("mamba",))
    with pytest.raises(ValueError, match="vocab_size must be >= 34"):  # MQAR at T=128 needs 16 keys
        dataclasses.replace(SMOKE, lengths=(128,), vocab_size=32)
    with pytest.raises(ValueError, match="kind"):
        TinyLM("mamba", SMOKE)


def test_run_seeds_averages_and_spans_the_seeds():
    import dataclasses

    from labcore.kda.config import SMOKE
    from labcore.kda.experiment import run_seeds
    from labcore.runtime import resolve_profile

    cfg = dataclasses.replace(SMOKE, steps=3, eval_every=3, eval_examples=8, batch_size=4, lengths=(16, 24),
                              seeds=(0, 1))
    res = run_seeds("palindrome", "gdn", cfg, resolve_profile("smoke"), progress=False)
    assert len(res["runs"]) == 2
    for T in cfg.lengths:
        accs = [r["acc"][T] for r in res["runs"]]
        assert res["acc_range"][T] == (min(accs), max(accs))
        assert abs(res["acc"][T] - sum(accs) / 2) < 1e-12
    first = [p for p in res["runs"][0]["model"].parameters()][0]
    second = [p for p in res["runs"][1]["model"].parameters()][0]
    assert not torch.equal(first, second), "each seed must give its own init"
    with pytest.raises(ValueError, match="seeds must be"):
        dataclasses.replace(SMOKE, seeds=(1, 1))
