"""The hybrid LM: layer patterns, caches (exact bytes, 25% growing part), incremental decode == full."""

from dataclasses import replace

import pytest
import torch

from labcore.hybrid import (
    HybridCache,
    HybridConfig,
    HybridLM,
    MLACache,
    filled_cache,
    generate,
    incremental_logits,
    parse_ratio,
)
from labcore.hybrid.model import count_params, match_params
from labcore.kda.layer import KDACache
from labcore.nn import KVCache
from labcore.testing import assert_close

# Cached decoding takes other fp32 code paths than the full forward (KDA: recurrent step vs chunkwise
# form; MLA: absorbed vs expanded); measured rel RMSE on logits ~1e-6, a wrong cache gives > 1e-1.
TOL = 1e-4

SMALL = HybridConfig(vocab_size=61, d_model=32, n_layer=4, n_head=2, head_dim=8, kv_lora_rank=12,
                     shared_dim=4, max_seq_len=64)


def _model(ratio="3:1", **kw):
    return HybridLM(replace(SMALL, ratio=ratio, **kw)).eval()


# ---- layer pattern ---------------------------------------------------------------------------------

def test_parse_ratio():
    K, M = "kda", "mla"
    assert parse_ratio("3:1", 8) == (K, K, K, M, K, K, K, M)
    assert parse_ratio("1:1", 4) == (K, M, K, M)
    assert parse_ratio("7:1", 8) == (K,) * 7 + (M,)
    assert parse_ratio("kda", 3) == (K, K, K)
    assert parse_ratio("mla", 2) == (M, M)
    assert parse_ratio("attn", 2) == ("attn", "attn")
    assert parse_ratio(" 3:1 ", 5, last_layer_mla=True) == (K, K, K, M, M)


def test_paper_layout():
    """Kimi Linear 48B: 27 layers, MLA at 0-based 3, 7, ..., 23 and the last layer 26 (20 KDA + 7 MLA)."""
    cfg = HybridConfig(n_layer=27, ratio="3:1", last_layer_mla=True)
    assert cfg.mla_layers == [3, 7, 11, 15, 19, 23, 26]
    assert cfg.layer_types.count("kda") == 20


@pytest.mark.parametrize("ratio", ["3", "3:0", "0:1", "3-1", "gdn", "", "1:1:1", 3])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        HybridConfig(ratio=ratio)


def test_bad_config():
    with pytest.raises(ValueError, match="n_layer"):
        HybridConfig(n_layer=0)
    with pytest.raises(ValueError, match="last_layer_mla"):
        HybridConfig(ratio="attn", last_layer_mla=True)


def test_model_builds_the_pattern():
    m = _model("3:1")
    assert [b.kind for b in m.blocks] == list(m.layer_types) == ["kda", "kda", "kda", "mla"]
    assert len(m.layers_of("kda")) == 3 and len(m.layers_of("mla")) == 1
    assert m.lm_head.weight is m.embed.weight, "the head is tied to the embedding"


# ---- decoding with caches ----------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", ["3:1", "1:1", "kda", "mla", "attn"])
@pytest.mark.parametrize(("T", "prefill", "step"), [(23, 7, 1), (19, 1, 3), (33, 20, 5)])
def test_incremental_equals_full(ratio, T, prefill, step):
    m = _model(ratio)
    ids = torch.randint(0, SMALL.vocab_size, (2, T))
    full, cache = m(ids)
    assert cache is None, "no cache unless asked for"
    inc = incremental_logits(m, ids, prefill, step)
    assert_close(f"logits {ratio}", full, inc, TOL)


def test_generate_greedy_matches_full_recompute():
    m = _model("3:1")
    prompt = torch.randint(0, SMALL.vocab_size, (2, 5))
    out = generate(m, prompt, 6)
    ids = prompt
    for _ in range(6):  # the slow way: rerun the whole prefix for every new token
        ids = torch.cat([ids, m(ids)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def test_gradients_reach_every_parameter():
    m = _model("1:1").train()
    ids = torch.randint(0, SMALL.vocab_size, (2, 17))
    logits, _ = m(ids)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.roll(-1, 1).flatten()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"


# ---- cache sizes --------------------------------------------------------------------------------------

def _expected_bytes(cfg: HybridConfig, B: int, S: int) -> int:
    H, D, c = cfg.n_head, cfg.head_dim, cfg.conv_size - 1
    per = {"mla": B * S * (cfg.kv_lora_rank + cfg.shared_dim) * 4,
           "kda": B * H * D * D * 4 + 3 * B * c * H * D * 4,  # fp32 state + q, k, v conv tails
           "attn": 2 * B * S * H * D * 4}
    return sum(per[k] for k in cfg.layer_types)


@pytest.mark.parametrize("ratio", ["3:1", "kda", "mla", "attn"])
def test_cache_nbytes_exact(ratio):
    m = _model(ratio)
    B, S = 3, 11
    _, cache = m(torch.randint(0, SMALL.vocab_size, (B, S)), use_cache=True)
    assert isinstance(cache, HybridCache) and cache.seq_len == S
    kinds = {"mla": MLACache, "kda": KDACache, "attn": KVCache}
    assert all(isinstance(c, kinds[k]) for k, c in zip(m.layer_types, cache.layers, strict=True))
    assert cache.nbytes() == _expected_bytes(m.cfg, B, S)
    # filled_cache (used by the benchmark) has exactly the shapes a real prefill gives
    assert filled_cache(m, B, S).nbytes() == cache.nbytes()


def test_growing_part_is_a_quarter():
    """3:1 keeps a growing cache in 1 layer of 4: its growth is exactly 25% of all-MLA's."""
    cfg = replace(SMALL, n_layer=8)
    growth = {}
    for ratio in ("mla", "3:1", "kda"):
        m = HybridLM(replace(cfg, ratio=ratio)).eval()
        growth[ratio] = filled_cache(m, 1, 48).nbytes() - filled_cache(m, 1, 16).nbytes()
    assert growth["3:1"] * 4 == growth["mla"]
    assert growth["kda"] == 0


# ---- bad input ------------------------------------------------------------------------------------------

def test_cache_from_another_model():
    a, b = _model("3:1"), _model("1:1")
    _, cache = a(torch.randint(0, SMALL.vocab_size, (1, 4)), use_cache=True)
    with pytest.raises(ValueError, match="different model"):
        b(torch.randint(0, SMALL.vocab_size, (1, 1)), cache=cache)


def test_context_beyond_max():
    m = _model("3:1", max_seq_len=8)
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 9, dtype=torch.long))
    _, cache = m(torch.zeros(1, 8, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_bad_ids_and_batch():
    m = _model("3:1")
    with pytest.raises(ValueError, match="input_ids must be in"):
        m(torch.full((1, 3), SMALL.vocab_size))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        m(torch.zeros(3, dtype=torch.long))
    _, cache = m(torch.zeros(2, 3, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        m(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_match_params():
    target = count_params(replace(SMALL, ratio="3:1"))
    for ratio in ("mla", "1:1", "7:1", "kda"):
        cfg = match_params(replace(SMALL, ratio=ratio), target)
        # one hidden unit is 3 * d_model * n_layer params: we land within half of that
        assert abs(count_params(cfg) - target) <= 1.5 * SMALL.d_model * SMALL.n_layer
        assert count_params(cfg) == HybridLM(cfg).num_params()


# ---- experiment, benchmark, widget ------------------------------------------------------------------------

def test_profiles_are_valid_and_equal_params():
    from labcore.hybrid.experiment import CPU, GPU, SMOKE, variant_configs

    for cfg in (SMOKE, CPU, GPU):
        counts = {r: count_params(c) for r, c in variant_configs(cfg).items()}
        spread = (max(counts.values()) - min(counts.values())) / counts["3:1"]
        assert spread < 0.01, f"variants must have equal parameters (within 1%), got {counts}"
        assert [c.layer_types.count("mla") for c in variant_configs(cfg).values()] == [8, 4, 2, 1, 0]


def test_bad_lab_config():
    from labcore.hybrid.experiment import SMOKE, HybridLabConfig

    with pytest.raises(ValueError, match="block_size"):
        HybridLabConfig(model=SMOKE.model, block_size=SMOKE.model.max_seq_len + 1)
    with pytest.raises(ValueError, match="bench_contexts"):
        HybridLabConfig(model=SMOKE.model, bench_contexts=(1 << 20,))
    for seeds in ((), (1, 1), (-1,)):
        with pytest.raises(ValueError, match="seeds must be distinct"):
            HybridLabConfig(model=SMOKE.model, seeds=seeds)
    with pytest.raises(ValueError, match="bench_trials"):
        HybridLabConfig(model=SMOKE.model, bench_trials=0)


def test_init_normal_everywhere_and_torch_control():
    # fla's rule: every Linear and Conv1d ~ N(0, 0.02), KDA's included; init="torch" keeps only KDA's default
    torch.manual_seed(0)
    cfg = replace(SMALL, d_model=64, head_dim=16, n_head=4)
    fla, ctrl = HybridLM(replace(cfg, init="normal")), HybridLM(replace(cfg, init="torch"))
    for name, p in fla.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight", "q_conv.conv.weight", "f_proj.0.weight", "kv_up.weight")):
            assert abs(p.std().item() - 0.02) < 0.006, f"{name}: std {p.std():.4f}, want 0.02 (fla's init)"
    kda_conv = dict(ctrl.named_parameters())["blocks.0.mixer.q_conv.conv.weight"]
    assert kda_conv.std() > 0.2, "init='torch' keeps PyTorch's default for KDA (std 0.29 for a 4-tap conv)"
    mla_up = dict(ctrl.named_parameters())["blocks.3.mixer.kv_up.weight"]
    assert abs(mla_up.std().item() - 0.02) < 0.006, "init='torch' changes only the KDA layers"
    for m in (fla, ctrl):  # residual outputs are scaled by 1/sqrt(2L) in both
        o = dict(m.named_parameters())["blocks.0.mixer.o_proj.weight"]
        assert o.std() < 0.02 / (2 * cfg.n_layer) ** 0.5 * 1.3
    # the decay parameters keep their ranges: A in [1, 16], dt in [1e-3, 0.1]
    A_log = fla.blocks[0].mixer.A_log
    assert A_log.exp().min() >= 1 and A_log.exp().max() <= 16
    assert fla.cfg.signature() == ctrl.cfg.signature(), "init does not change what a cache holds"
    with pytest.raises(ValueError, match="init must be one of"):
        HybridConfig(init="xavier")


def test_train_variant_lowers_loss():
    from labcore.hybrid.experiment import SMOKE, train_variant
    from labcore.runtime import resolve_profile

    cfg = replace(SMOKE, steps=6, eval_every=3, eval_batches=1, batch_size=4)
    ids = torch.randint(0, 50, (4000,))  # a tiny "corpus" over 50 token ids: easy to beat log(257)
    res = train_variant("3:1", replace(cfg.model, n_layer=4), cfg, ids, ids, resolve_profile("smoke"),
                        progress=False)
    assert [s for s, _ in res["curve"]] == [3, 6]
    assert res["curve"][-1][1] < res["curve"][0][1] < 5.6, "loss must fall from ~log(vocab) = 5.55"


def test_recall_losses_scores_the_second_copy():
    import math

    from labcore.hybrid.experiment import recall_losses

    V, h = 11, 7

    class Copier(torch.nn.Module):
        """Uniform on the first copy; from position h-1 on, predicts the token h-1 positions back."""

        def forward(self, x):
            logits = torch.zeros(*x.shape, V)
            src = x[:, :x.shape[1] - (h - 1)]  # x[t - h + 1] for t >= h - 1
            logits[:, h - 1:] = 50.0 * torch.nn.functional.one_hot(src, V).float()
            return logits, None

    spans = [torch.randint(0, V, (3, h)) for _ in range(2)]
    first, second = recall_losses(Copier(), spans)
    assert abs(first - math.log(V)) < 1e-4, "the first copy cannot be predicted: uniform loss log V"
    assert second < 1e-4, "every token of the second copy was seen h positions back: a copier scores ~0"


def test_run_ablation_seeds():
    from labcore.hybrid.experiment import SMOKE, run_ablation, train_variant, variant_configs
    from labcore.runtime import resolve_profile

    prof = resolve_profile("smoke")
    cfg = replace(SMOKE, ratios=("mla", "3:1"), seeds=(3, 5), steps=2, eval_every=2, eval_batches=1, batch_size=2,
                  model=replace(SMOKE.model, n_layer=4))
    ids = torch.randint(0, 50, (2000,))
    runs = run_ablation(cfg, ids, ids, prof, progress=False)
    assert list(runs) == ["mla", "3:1"] and all(len(rs) == 2 for rs in runs.values())
    assert runs["3:1"][0]["model"] is not None, "the first seed's 3:1 model is kept (widget, generation)"
    assert runs["3:1"][1]["model"] is None and runs["mla"][0]["model"] is None, "other models are dropped"
    assert runs["3:1"][0]["val_loss"] != runs["3:1"][1]["val_loss"], "two seeds must train two different runs"
    assert all(len(run["recall"]) == 2 for rs in runs.values() for run in rs)
    # a seed is the whole run: the same seed again gives the same loss
    again = train_variant("3:1", variant_configs(cfg)["3:1"], cfg, ids, ids, prof, seed=5, progress=False)
    assert again["val_loss"] == runs["3:1"][1]["val_loss"]


def test_bench_quick():
    from labcore.bench.hybrid import run

    res = run(quick=True)
    s = res["summary"]
    assert s["growing_ratio_3to1_vs_mla"] == 0.25
    assert 0.5 < s["cache_saving_3to1_at_max"] < 0.75, "fixed KDA states make the total saving < 75%"
    decode = [r for r in res["rows"] if r["bench"] == "decode"]
    assert {r["ratio"] for r in decode} == {"mla", "attn", "3:1", "kda"}
    assert all(r["ms"] > 0 for r in decode)
    assert len(res["figure"].data) == 8


def test_decode_times_trials():
    from labcore.bench.hybrid import QUICK, decode_times, summarize

    rows = decode_times(QUICK, ["mla", "3:1"], [16, 32], reps=1, trials=3)
    assert all(len(r["ms_trials"]) == 3 and r["ms"] == min(r["ms_trials"]) for r in rows)
    s = summarize([], rows)
    per_trial = s["speedup_3to1_vs_mla_trials_by_context"]
    assert sorted(per_trial) == [16, 32] and all(len(v) == 3 for v in per_trial.values())
    by_row = {(r["ratio"], r["context"]): r["ms_trials"] for r in rows}
    assert per_trial[32][1] == by_row["mla", 32][1] / by_row["3:1", 32][1], "one speed-up per trial, paired"
    with pytest.raises(ValueError, match="trials"):
        decode_times(QUICK, ["mla"], [16], trials=0)


def test_gate_decay_widget_on_hybrid():
    from labcore.widgets.gate_decay import GateDecayWidget, layer_inputs

    m = _model("3:1")
    layers = m.layers_of("kda")
    w = GateDecayWidget(layers, layer_inputs(m, layers, torch.randint(0, SMALL.vocab_size, (1, 12))))
    before = w.heat.data[0].z
    w.layer.value = 2
    assert w.heat.data[0].z != before, "switching layer must redraw the heatmap"


def test_decode_cache_grows_in_place_and_branches_safely():
    # a decode step writes one row into spare capacity (no O(S) copy); appending to an older cache (a
    # branch) must not overwrite what the newer one holds
    for cls, shape in ((MLACache, (2, 5, 8)), (KVCache, (2, 5, 3, 4))):
        a = cls(torch.randn(*shape), torch.randn(*shape))
        rows = [torch.randn(2, 1, *shape[2:]) for _ in range(4)]
        b = a.append(rows[0], rows[0])
        c = b.append(rows[1], rows[1])
        assert c._rows is b._rows, f"{cls.__name__}: a step with spare capacity must not reallocate"
        assert b.seq_len == 6 and c.seq_len == 7 and b.allocated_bytes() >= c.nbytes()
        d = b.append(rows[2], rows[2])  # branch from b: c's row 6 must survive
        first = (c.c_kv if cls is MLACache else c.k)
        other = (d.c_kv if cls is MLACache else d.k)
        assert torch.equal(first[:, 6], rows[1][:, 0]) and torch.equal(other[:, 6], rows[2][:, 0])
        assert torch.equal(first[:, :6], other[:, :6])


def test_hybrid_rejects_empty_batch():
    m = HybridLM(HybridConfig(n_layer=2, ratio="1:1"))
    with pytest.raises(ValueError, match="B >= 1"):
        m(torch.zeros(0, 4, dtype=torch.long))
