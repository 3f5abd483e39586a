"""Chapter 4 (CALM): energy score, BrierLM, autoencoder, CALM model, likelihood-free temperature."""

from __future__ import annotations

import math

import pytest
import torch

from labcore.calm import (
    CALM,
    CALMAutoencoder,
    CALMConfig,
    EnergyHead,
    brier_estimate,
    brier_exact,
    brier_lm,
    cached_blocks,
    clipped_kl,
    energy_score_loss,
    energy_score_loss_naive,
    gpt_chunk_decode,
    gpt_flops_per_position,
    gpt_generate,
    gpt_sample_chunks,
    gpt_train_flops_per_step,
    inverse_temperature,
    kl_per_dim,
    lab_config,
    sample_batch_approx,
    sample_exact,
    tempered,
)
from labcore.nn import GPT, GPTConfig
from labcore.testing import assert_close
from labcore.train import TrainConfig, train

# ---- energy score -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("N", "M", "B", "D"), [
    pytest.param(*c, id="N{}-M{}-B{}-D{}".format(*c)) for c in [(2, 1, 1, 3), (5, 7, 3, 2), (8, 13, 2, 17)]])
def test_energy_score_loss(N, M, B, D):
    s = torch.randn(N, B, D, dtype=torch.float64, requires_grad=True)
    t = torch.randn(M, B, D, dtype=torch.float64)
    ref = energy_score_loss_naive(s, t)
    (g_ref,) = torch.autograd.grad(ref, s)
    out = energy_score_loss(s, t)
    (g_out,) = torch.autograd.grad(out, s)
    # float64 sums of the same terms in a different order: 1e-12 is rounding, a wrong weight is O(1)
    assert_close("loss", ref, out, 1e-12)
    assert_close("dsamples", g_ref, g_out, 1e-12)


def _mixture(n: int, shift=(0.0, 0.0), scale: float = 1.0, g: torch.Generator | None = None) -> torch.Tensor:
    """A toy 2-D distribution: two Gaussian blobs at (+-1, 0) with std 0.3, then scaled and shifted."""
    sign = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    x = torch.stack([sign, torch.zeros(n, dtype=torch.float64)], -1) + 0.3 * torch.randn(n, 2, generator=g,
                                                                                         dtype=torch.float64)
    return x * scale + torch.tensor(shift, dtype=torch.float64)


def test_energy_score_is_strictly_proper():
    """E_y~Q[loss(P, y)] is smallest at P = Q: shifted, narrower and wider P all score worse.

    Each candidate's expected loss is a Monte Carlo mean over R independent replicates; we require the
    gap to Q to exceed 4 standard errors of the difference. A loss with the wrong diversity weight
    (e.g. 1/2 instead of 1) is minimised by a narrower P and fails the scale-0.8 case.
    """
    g = torch.Generator().manual_seed(0)
    R, N, M = 64, 64, 64
    candidates = {"Q": {}, "shift": {"shift": (0.3, 0.0)}, "narrow": {"scale": 0.8}, "wide": {"scale": 1.25}}
    losses = {}
    for name, kw in candidates.items():
        g.manual_seed(1)  # common random numbers for the targets: same y's for every candidate
        targets = _mixture(M * R, g=g).reshape(M, R, 2)
        samples = _mixture(N * R, g=torch.Generator().manual_seed(2), **kw).reshape(N, R, 2)
        per_rep = torch.stack([energy_score_loss(samples[:, r:r + 1], targets[:, r:r + 1]) for r in range(R)])
        losses[name] = per_rep
    for name in ("shift", "narrow", "wide"):
        diff = losses[name] - losses["Q"]
        se = diff.std() / math.sqrt(R)
        assert diff.mean() > 4 * se, (f"energy loss of {name} P ({losses[name].mean():.4f}) is not clearly "
                                      f"above the true Q's ({losses['Q'].mean():.4f}); check the 2/(NM) and "
                                      f"1/(N(N-1)) weights")


def test_energy_loss_errors():
    with pytest.raises(ValueError, match="N >= 2"):
        energy_score_loss(torch.randn(1, 2, 3), torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="targets"):
        energy_score_loss(torch.randn(3, 2, 3), torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match="3-D"):
        energy_score_loss(torch.randn(3, 3), torch.randn(4, 3))


def test_energy_head_shapes_and_zero_init():
    head = EnergyHead(d_model=24, latent_dim=5, width=16, n_blocks=2, noise_dim=7)
    h = torch.randn(3, 11, 24)
    z = head(h, n_samples=4)
    assert z.shape == (4, 3, 11, 5)
    assert torch.all(z == 0), "last layer is zero-initialised, so every first sample is 0"
    torch.nn.init.normal_(head.out[-1].weight)
    z = head(h, n_samples=4)
    assert (z[0] - z[1]).abs().max() > 1e-3, "fresh noise per sample must give different samples"
    with pytest.raises(ValueError, match="n_samples"):
        head(h, 0)


# ---- BrierLM ------------------------------------------------------------------------------------------

def test_brier_estimate_is_unbiased():
    """Mean of 1{x1=y} + 1{x2=y} - 1{x1=x2} over x1, x2 ~ p equals 2 p(y) - sum p^2 for every y.

    With S = 200k draws the estimate's std is <= ~1.2, so its standard error is <= 0.003;
    we allow 5 standard errors (measured from the draws), a 1-in-a-million false alarm.
    """
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    S = 200_000
    x1 = torch.multinomial(p, S, replacement=True, generator=g)
    x2 = torch.multinomial(p, S, replacement=True, generator=g)
    for y in range(len(p)):
        est = brier_estimate(x1, x2, torch.full_like(x1, y)).double()
        exact = float(brier_exact(p, torch.tensor(y)))
        assert exact == pytest.approx(2 * p[y].item() - (p ** 2).sum().item())
        se = float(est.std()) / math.sqrt(S)
        mean = float(est.mean())
        assert abs(mean - exact) < 5 * se, f"y={y}: mean {mean:.4f} vs exact {exact:.4f}"


def test_brier_lm_hand_examples():
    y = torch.tensor([[1, 2, 3, 4]])
    x1 = torch.tensor([[1, 2, 7, 4]])
    x2 = torch.tensor([[1, 2, 7, 8]])
    # unigrams: t0 1+1-1, t1 1+1-1, t2 0+0-1, t3 1+0-0 -> (1 + 1 - 1 + 1) / 4
    # bigrams: (1,2) 1+1-1, (2,7) 0+0-1, (7,4|8) 0+0-0 -> 0 / 3
    out = brier_lm(x1, x2, y, max_n=2)
    assert out["brier_1"] == pytest.approx(0.5) and out["brier_2"] == pytest.approx(0.0)
    assert out["brier_lm"] == 0.0
    assert brier_lm(x1, x2, y, max_n=1)["brier_lm"] == pytest.approx(50.0)
    # perfect, deterministic model: every estimate is 1 + 1 - 1
    assert brier_lm(y, y, y, max_n=4)["brier_lm"] == pytest.approx(100.0)
    # the clamp is on the product: one negative term -> 0 (x1 = x2 = 9 agree with each other, not y)
    one_neg = brier_lm(torch.tensor([[9, 2]]), torch.tensor([[9, 2]]), torch.tensor([[1, 2]]), max_n=1)
    assert one_neg["brier_1"] == pytest.approx(0.0)  # t0 0+0-1, t1 1+1-1
    neg = brier_lm(torch.tensor([[9]]), torch.tensor([[9]]), torch.tensor([[1]]), max_n=1)
    assert neg["brier_1"] == -1.0 and neg["brier_lm"] == 0.0
    # ... but two negative terms multiply to a positive product and pass (as in the paper's code)
    two_neg = brier_lm(torch.tensor([[2, 2]]), torch.tensor([[2, 2]]), torch.tensor([[1, 1]]), max_n=2)
    assert two_neg["brier_1"] == -1.0 and two_neg["brier_2"] == -1.0
    assert two_neg["brier_lm"] == pytest.approx(100.0)
    assert two_neg["brier_lm_strict"] == 0.0, "the strict variant clamps each term first"
    mixed = brier_lm(x1, x2, y, max_n=1)
    assert mixed["brier_lm_strict"] == pytest.approx(mixed["brier_lm"])


def test_brier_lm_chunk_aligned():
    y = torch.tensor([[1, 2, 3], [4, 5, 6]])
    x1 = torch.tensor([[1, 9, 3], [4, 5, 0]])
    x2 = torch.tensor([[1, 2, 0], [0, 5, 6]])
    # aligned: only n-grams starting at t=0 of each row.
    # n=1: row0 1+1-1, row1 1+0-0 -> 1; n=2: row0 [1,9] vs [1,2]: 0+1-0, row1 [4,5]: 1+0-0 -> 1
    # n=3: row0 0+0-0, row1 0+0-0 -> 0
    out = brier_lm(x1, x2, y, max_n=3, chunk_aligned=True)
    assert (out["brier_1"], out["brier_2"], out["brier_3"]) == (1.0, 1.0, 0.0)
    # not aligned: Brier-1 over all 6 positions: r0 t1 0+1-0, t2 1+0-0; r1 t1 1+1-1, t2 0+1-0
    full = brier_lm(x1, x2, y, max_n=1)
    assert full["brier_1"] == pytest.approx(1.0)


def test_brier_errors():
    a = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="one shape"):
        brier_estimate(a, a[:, :2], a)
    with pytest.raises(ValueError, match="max_n"):
        brier_lm(a, a, a, max_n=4)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        brier_lm(a[0], a[0], a[0])


# ---- autoencoder -----------------------------------------------------------------------------------------

def test_kl_floor_stops_gradient_below_floor():
    mu = torch.tensor([[0.0, 2.0]], requires_grad=True)  # KL_0 = 0 (below floor), KL_1 = 2 (above)
    log_sigma = torch.zeros(1, 2, requires_grad=True)
    kl = clipped_kl(mu, log_sigma, floor=0.5)
    assert float(kl.detach()) == pytest.approx(0.5 + 2.0)
    kl.backward()
    assert mu.grad[0, 0] == 0 and mu.grad[0, 1] == pytest.approx(2.0)
    assert torch.allclose(kl_per_dim(mu, log_sigma), torch.tensor([[0.0, 2.0]]))


@pytest.mark.parametrize(("B", "T", "K"), [(1, 4, 4), (3, 24, 2), (2, 24, 8), (2, 5, 1)])
def test_autoencoder_shapes(B, T, K):
    ae = CALMAutoencoder(vocab_size=11, chunk_len=K, latent_dim=6, d_model=16)
    ids = torch.randint(0, 11, (B, T))
    z = ae.encode(ids)
    assert z.shape == (B, T // K, 6)
    assert ae.decode(z).shape == (B, T, 11)
    assert ae.decode_tokens(z).shape == (B, T)
    loss, metrics = ae.loss(ids)
    loss.backward()
    assert ae.emb.weight.grad is not None and torch.isfinite(ae.emb.weight.grad).all()
    assert set(metrics) == {"ce", "kl", "acc"}


def test_autoencoder_errors():
    ae = CALMAutoencoder(vocab_size=11, chunk_len=4, latent_dim=6, d_model=16)
    with pytest.raises(ValueError, match="multiple of chunk_len=4"):
        ae.encode(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        ae.encode(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"z must be"):
        ae.decode(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="dropout"):
        CALMAutoencoder(11, dropout=1.0)
    with pytest.raises(ValueError, match="chunk_len"):
        CALMAutoencoder(11, chunk_len=0)
    with pytest.raises(ValueError, match="noise_std"):
        ae.reconstruction_accuracy(torch.zeros(1, 4, dtype=torch.long), noise_std=-1.0)


@pytest.mark.parametrize("variational", [True, False])
def test_autoencoder_round_trip(variational):
    """A small AE learns to reconstruct random 4-token chunks over 8 symbols (4096 distinct chunks).

    Chance is 1/8; after 150 steps both variants are near perfect. The bar (>= 0.97) leaves room for
    seed noise yet fails if encode/decode lose position information or the tied head is wrong.
    """
    V, K = 8, 4
    ae = CALMAutoencoder(V, chunk_len=K, latent_dim=16, d_model=32, variational=variational)

    def batch_fn(step, rank=0, world=1):
        g = torch.Generator().manual_seed(step)
        return torch.randint(0, V, (32, 8), generator=g)

    train(ae, lambda m, b: m.loss(b), batch_fn, TrainConfig(steps=150, lr=5e-3, warmup=10, progress=False))
    held_out = torch.randint(0, V, (256, 8), generator=torch.Generator().manual_seed(10**6))
    acc = ae.reconstruction_accuracy(held_out)
    assert acc >= 0.97, f"reconstruction accuracy {acc:.3f} < 0.97"


# ---- CALM model -----------------------------------------------------------------------------------------

def _tiny_calm(V=13, K=4, C=6):
    ae = CALMAutoencoder(V, chunk_len=K, latent_dim=8, d_model=16)
    cfg = CALMConfig(vocab_size=V, chunk_len=K, latent_dim=8, d_model=16, n_layer=1, n_head=2, block_chunks=C,
                     head_width=16, head_blocks=2, noise_dim=5, n_samples=3, n_targets=4)
    return CALM(cfg, ae)


def test_calm_loss_trains_backbone_and_head_not_ae():
    model = _tiny_calm()
    model.train()
    assert not model.ae.training, "the frozen AE must stay in eval mode (no masking of targets)"
    ids = torch.randint(0, 13, (2, 4 * 7))
    loss, _ = model.loss(ids)
    loss.backward()
    assert model.head.out[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.ae.parameters())


def test_calm_is_causal_over_chunks():
    model = _tiny_calm().eval()
    ids = torch.randint(0, 13, (2, 4 * 5))
    h = model(ids)
    ids2 = ids.clone()
    ids2[:, 12:] = (ids2[:, 12:] + 1) % 13  # change chunks 3, 4
    h2 = model(ids2)
    torch.testing.assert_close(h[:, :3], h2[:, :3])
    assert (h[:, 3] - h2[:, 3]).abs().max() > 1e-4


def test_calm_generate_and_errors():
    model = _tiny_calm().eval()
    prompt = torch.randint(0, 13, (3, 8))
    out = model.generate(prompt, n_chunks=3)
    assert out.shape == (3, 8 + 12) and torch.equal(out[:, :8], prompt)
    with pytest.raises(ValueError, match="multiple of chunk_len"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="exceed block_chunks"):
        model(torch.zeros(1, 4 * 7, dtype=torch.long))
    with pytest.raises(ValueError, match="does not match"):
        CALM(model.cfg, CALMAutoencoder(13, chunk_len=2, latent_dim=8, d_model=16))
    with pytest.raises(ValueError, match="n_samples"):
        CALMConfig(vocab_size=13, n_samples=1)


def test_gpt_sample_chunks_sees_only_the_prefix():
    g = GPT(GPTConfig(vocab_size=13, block_size=32, n_layer=1, n_head=2, d_model=16))
    ids = torch.randint(0, 13, (2, 12))  # C = 2 chunks to predict, K = 4
    a = gpt_sample_chunks(g, ids, 4, 2, generator=torch.Generator().manual_seed(0))
    ids2 = ids.clone()
    ids2[:, 8:] = (ids2[:, 8:] + 3) % 13  # the second target chunk: invisible to both predictions
    b = gpt_sample_chunks(g, ids2, 4, 2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 4, 4)
    torch.testing.assert_close(a, b)


# ---- temperature -----------------------------------------------------------------------------------------

CHUNKS = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])  # four distinct 2-token "chunks"
P = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)


def _draw_fn(B: int, g: torch.Generator):
    def draw(k: int) -> torch.Tensor:
        idx = torch.multinomial(P, k * B, replacement=True, generator=g).reshape(k, B)
        return CHUNKS[idx]  # [k, B, 2]
    return draw


def _freqs(chunks: torch.Tensor) -> torch.Tensor:
    idx = chunks[:, 0] * 2 + chunks[:, 1]
    return torch.bincount(idx, minlength=4).double() / len(idx)


@pytest.mark.parametrize("temp", [1.0, 0.5, 1 / 3])
def test_sample_exact_matches_tempered(temp):
    """Rejection at T = 1/n samples p^n / sum p^n. With B = 20k rows each frequency has std <= 0.0036;
    0.02 is > 5 std."""
    g = torch.Generator().manual_seed(0)
    chunks, tries = sample_exact(_draw_fn(20_000, g), temp)
    assert (tries >= 1).all()
    assert (_freqs(chunks) - tempered(P, temp)).abs().max() < 0.02


def test_sample_batch_approx_sharpens():
    """The batch approximation is close to p^2 at T = 1/2 (weights C(count, 2) ~ count^2 / 2 with 200
    candidates); 0.05 allows for its bias plus sampling noise over 2000 rows."""
    g = torch.Generator().manual_seed(0)
    chunks = sample_batch_approx(_draw_fn(2000, g), 0.5, n_candidates=200, generator=g)
    f = _freqs(chunks)
    assert (f - tempered(P, 0.5)).abs().max() < 0.05
    assert f[0] > P[0] + 0.1, "T = 1/2 must favour the mode"


def test_temperature_errors():
    assert inverse_temperature(1 / 3) == 3
    for bad in (0.0, -1.0, 0.4, 2.0):
        with pytest.raises(ValueError, match="temp"):
            inverse_temperature(bad)
    with pytest.raises(RuntimeError, match="max_tries"):
        sample_exact(_draw_fn(50, torch.Generator().manual_seed(0)), 0.1, max_tries=1)


def test_lab_configs_are_valid():
    from dataclasses import replace

    from labcore.calm.config import GPU

    for cfg in (lab_config("smoke"), lab_config("cpu"), GPU):
        assert cfg.chunk_len in cfg.k_sweep
        assert cfg.ae_sweep_steps <= cfg.ae_steps
    cpu = lab_config("cpu")
    assert len(cpu.lm_seeds) >= 2 and len(GPU.lm_seeds) >= 3, "central claims need >= 2 seeds (gpu >= 3)"
    with pytest.raises(ValueError, match="gen_tokens"):
        replace(cpu, gen_tokens=cpu.chunk_len * cpu.block_chunks)
    with pytest.raises(ValueError, match="lm_seeds"):
        replace(cpu, lm_seeds=(0, 0))


# ---- KV-cached decoding, chunk-aligned baseline sampling, FLOPs ------------------------------------------

def test_cached_blocks_match_full_forward():
    """Prefill 5 tokens, then 1 at a time, then 2: the logits equal one causal pass over the whole sequence."""
    torch.manual_seed(0)
    g = GPT(GPTConfig(vocab_size=13, block_size=10, n_layer=2, n_head=2, d_model=16)).eval()
    ids = torch.randint(0, 13, (3, 9))
    x, cache = cached_blocks(g.blocks, g.tok_emb(ids[:, :5]) + g.pos_emb(torch.arange(5)), [])
    hs = [x]
    for t in range(5, 7):
        x, cache = cached_blocks(g.blocks, g.tok_emb(ids[:, t:t + 1]) + g.pos_emb(torch.tensor([t])), cache)
        hs.append(x)
    x, cache = cached_blocks(g.blocks, g.tok_emb(ids[:, 7:9]) + g.pos_emb(torch.arange(7, 9)), cache)
    hs.append(x)
    assert [c.seq_len for c in cache] == [9, 9]
    torch.testing.assert_close(g.lm_head(g.norm(torch.cat(hs, 1))), g(ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one KVCache per block"):
        cached_blocks(g.blocks, g.tok_emb(ids[:, :2]), cache[:1])


def test_gpt_generate_and_errors():
    g = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, d_model=16)).eval()
    prompt = torch.randint(0, 13, (2, 3))
    out = gpt_generate(g, prompt, 12)  # runs past block_size: restarts on the last window
    assert out.shape == (2, 15) and torch.equal(out[:, :3], prompt)
    with pytest.raises(ValueError, match="n_tokens"):
        gpt_generate(g, prompt, 0)
    with pytest.raises(ValueError, match="temp"):
        gpt_generate(g, prompt, 2, temp=0.0)


def test_calm_generate_cache_matches_forward():
    """The hidden state CALM.generate conditions each chunk on equals forward() on the whole prefix."""
    model = _tiny_calm(C=6).eval()
    prompt = torch.randint(0, 13, (2, 8))
    torch.manual_seed(0)
    out = model.generate(prompt, n_chunks=3)
    x, cache = cached_blocks(model.blocks, model._inputs(out[:, :8]), [])
    x, cache = cached_blocks(model.blocks, model._inputs(out[:, 8:12], start=2), cache)
    torch.testing.assert_close(model.norm(x[:, -1]), model(out[:, :12])[:, -1], atol=1e-5, rtol=1e-5)
    long = model.generate(prompt, n_chunks=9)  # past block_chunks = 6: restarts on the last window
    assert long.shape == (2, 8 + 36)
    with pytest.raises(ValueError, match="prompt"):
        model.generate(torch.zeros(1, 6, dtype=torch.long), 1)


@pytest.mark.parametrize(("B", "C", "K", "n"), [(3, 3, 4, 2), (1, 5, 2, 3), (2, 1, 3, 1)])
def test_gpt_chunk_decode_matches_naive(B, C, K, n):
    """Forcing the continuation tokens, every probability equals a plain forward of that prefix + tokens."""
    torch.manual_seed(0)
    g = GPT(GPTConfig(vocab_size=11, block_size=(C + 1) * K, n_layer=2, n_head=2, d_model=16)).eval()
    ids = torch.randint(0, 11, (B, (C + 1) * K))
    forced = torch.randint(0, 11, (n, B, C, K))
    tokens, probs = gpt_chunk_decode(g, ids, K, n, lambda j, p: forced[..., j])
    assert torch.equal(tokens, forced) and probs.shape == (n, B, C, K, 11)
    for s in range(n):
        for b in range(B):
            for c in range(C):
                seq = torch.cat([ids[b, :(c + 1) * K], forced[s, b, c]])[None]
                ref = g(seq[:, :-1])[0, (c + 1) * K - 1:].softmax(-1)  # [K, V]
                # float32, a different summation order (masked einsum vs SDPA): 1e-5 is rounding
                torch.testing.assert_close(probs[s, b, c], ref, atol=1e-5, rtol=1e-4)


def test_energy_head_noise_replay():
    head = EnergyHead(d_model=8, latent_dim=3, width=8, n_blocks=1, noise_dim=4)
    torch.nn.init.normal_(head.out[-1].weight)
    h, u = torch.randn(2, 8), torch.rand(5, 2, 4) - 0.5
    torch.testing.assert_close(head(h, 5, noise=u), head(h, 5, noise=u))
    assert (head(h, 5, noise=u) - head(h, 5)).abs().max() > 1e-4, "without noise= a fresh draw is used"
    with pytest.raises(ValueError, match="noise must have shape"):
        head(h, 4, noise=u)


def test_flops_split():
    """The head's N passes are counted per chunk position; the total is the sum of the parts."""
    model = _tiny_calm()
    f = model.flops_per_position(6)
    head = sum(p.numel() for p in model.head.parameters() if p.dim() == 2)
    assert f["head"] == 6.0 * model.cfg.n_samples * head
    assert model.train_flops_per_step(2, 6) == pytest.approx(sum(f.values()) * 2 * 6)
    g = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, d_model=16))
    assert gpt_train_flops_per_step(g, 2, 16) == pytest.approx(sum(gpt_flops_per_position(g, 16).values()) * 32)
    assert gpt_flops_per_position(g, 16)["output"] == 6.0 * 16 * 13


def test_calm_bench_quick(tmp_path):
    """`python -m labcore.bench calm --quick`: KV-cached generation on both sides, per-token seconds and
    their ratio written to JSON (speed is reported, not asserted: it depends on the machine)."""
    from labcore.bench import run_bench

    res = run_bench("calm", tmp_path, quick=True)
    assert (tmp_path / "calm.json").exists() and (tmp_path / "calm.html").exists()
    for row in res["rows"]:
        assert row["calm_s_per_token"] > 0 and row["transformer_s_per_token"] > 0
        assert row["calm_steps"] * res["summary"]["K"] == row["tokens"]
