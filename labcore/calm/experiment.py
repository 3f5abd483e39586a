"""Chapter 4's experiments, end to end: autoencoders vs K and their noise robustness, the energy score
on a toy 2-D distribution, CALM vs a token-level transformer at matched training FLOPs scored with
BrierLM (over seeds), wall-clock per generated token, and likelihood-free temperature on the trained
model. Used in notebooks/04_calm.ipynb, sections "The autoencoder", "Experiment: CALM vs a token transformer at
matched training FLOPs" and "Temperature without likelihoods" (the notebook calls these)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from labcore.bench import timeit_interleaved
from labcore.calm.autoencoder import CALMAutoencoder
from labcore.calm.brier import brier_lm
from labcore.calm.config import CALMLabConfig, eval_windows, window_batches
from labcore.calm.energy import EnergyHead, energy_score_loss
from labcore.calm.model import (
    CALM,
    CALMConfig,
    gpt_exact_brier1,
    gpt_generate,
    gpt_sample_chunks,
    gpt_train_flops_per_step,
)
from labcore.data import course_corpus, encode_corpus, train_val_split
from labcore.nn import GPT, GPTConfig
from labcore.runtime import Profile
from labcore.tokenizer import ByteTokenizer
from labcore.train import TrainConfig, TrainResult, train


def load_text(cfg: CALMLabConfig) -> tuple[torch.Tensor, torch.Tensor, ByteTokenizer]:
    """Byte-level course corpus, split by document: (train ids [N], val ids [N'], tokenizer)."""
    tok = ByteTokenizer()
    tr, va = train_val_split(course_corpus(cfg.corpus), val_fraction=0.1, seed=cfg.seed)
    n_val = max(cfg.max_tokens // 10, 4096)
    train_ids, val_ids = encode_corpus(tr, tok, cfg.max_tokens - n_val), encode_corpus(va, tok, n_val)
    return train_ids, val_ids, tok


# ---- autoencoders ------------------------------------------------------------------------------------

def train_autoencoder(cfg: CALMLabConfig, K: int, variational: bool, tokens: torch.Tensor, prof: Profile,
                      steps: int | None = None, eval_ids: torch.Tensor | None = None, n_evals: int = 0,
                      progress: bool = True) -> tuple[CALMAutoencoder, TrainResult]:
    """One autoencoder with chunk length K, with (variational=True) or without the robustness tricks.

    steps defaults to cfg.ae_steps; with eval_ids [n, T] the held-out reconstruction accuracy is logged
    n_evals times along training (res.evals rows {"step", "acc"}) and at the end.
    """
    steps = steps or cfg.ae_steps
    ae = CALMAutoencoder(257, chunk_len=K, latent_dim=cfg.latent_dim, d_model=cfg.ae_d_model,
                         variational=variational).to(prof.device)
    tcfg = TrainConfig(steps=steps, lr=cfg.ae_lr, warmup=steps // 20, progress=progress,
                       eval_every=steps // n_evals if n_evals else 0,
                       desc=f"AE K={K} {'tricks' if variational else 'plain'} ({steps} steps)")
    batches = window_batches(tokens, cfg.ae_batch, cfg.ae_window, cfg.seed + K, prof.device)
    eval_fn = None if eval_ids is None else (lambda m: {"acc": m.reconstruction_accuracy(eval_ids)})
    res = train(ae, lambda m, b: m.loss(b), batches, tcfg, eval_fn=eval_fn, profile=prof)
    return ae.eval(), res


@torch.no_grad()
def reconstruction_errors(ae: CALMAutoencoder, ids: torch.Tensor, tok) -> dict[str, object]:
    """Where the autoencoder still fails on held-out ids [n, T]: the error rate, the share of errors on
    bytes outside printable ASCII, and the most frequent (true -> decoded) confusions."""
    pred = ae.decode(ae.encode(ids)).argmax(-1)
    wrong = pred != ids
    y, p = ids[wrong].tolist(), pred[wrong].tolist()
    rare = sum(1 for t in y if not 32 <= t < 127)
    pairs: dict[tuple[int, int], int] = {}
    for a, b in zip(y, p):
        pairs[a, b] = pairs.get((a, b), 0) + 1
    show = lambda t: tok.decode([t]) if 32 <= t < 127 else f"<{t}>"  # noqa: E731
    top = sorted(pairs.items(), key=lambda kv: -kv[1])[:5]
    return {"error_rate": float(wrong.float().mean()), "n_errors": len(y),
            "non_ascii_share": rare / max(1, len(y)),
            "non_ascii_rate": float((~((ids >= 32) & (ids < 127))).float().mean()),
            "top": [(f"{show(a)!r}->{show(b)!r}", n) for (a, b), n in top]}


@torch.no_grad()
def noise_robustness(ae: CALMAutoencoder, ids: torch.Tensor, levels: tuple[float, ...],
                     seed: int = 0) -> list[float]:
    """Reconstruction accuracy when z = mu + level * rms(mu) * eps, for each level.

    Noise is relative to the latent's own RMS so a plain AE cannot look robust just by having large z.
    """
    torch.manual_seed(seed)
    rms = float(ae.encode(ids).pow(2).mean().sqrt())
    return [ae.reconstruction_accuracy(ids, noise_std=lv * rms) for lv in levels]


# ---- energy score on a toy 2-D distribution --------------------------------------------------------

def toy_mixture(n: int, g: torch.Generator, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """[n, 2] draws from two Gaussian blobs at (+-1, 0) with std 0.3, then scaled and shifted along x."""
    sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    x = torch.stack([sign, torch.zeros(n)], -1) + 0.3 * torch.randn(n, 2, generator=g)
    return x * scale + torch.tensor([shift, 0.0])


def expected_energy_loss(shift: float, scale: float, n: int = 256, reps: int = 16, seed: int = 0) -> float:
    """E_{y~Q}[energy loss of P], P = Q scaled/shifted; the same random numbers for every (shift, scale)."""
    g = torch.Generator().manual_seed(seed)
    targets = toy_mixture(n * reps, g).reshape(n, reps, 2)
    samples = toy_mixture(n * reps, torch.Generator().manual_seed(seed + 1), shift, scale).reshape(n, reps, 2)
    return float(energy_score_loss(samples, targets))


def fit_toy_head(steps: int, width: int, prof: Profile, n_samples: int = 8, n_targets: int = 64,
                 progress: bool = True) -> tuple[EnergyHead, TrainResult]:
    """Train an EnergyHead (one constant condition) to sample the toy mixture, from samples alone."""
    head = EnergyHead(d_model=4, latent_dim=2, width=width, n_blocks=2, noise_dim=8).to(prof.device)
    h = torch.zeros(1, 4, device=prof.device)

    def batch_fn(step, rank=0, world=1):
        g = torch.Generator().manual_seed(step)
        return toy_mixture(n_targets, g)[:, None].to(prof.device)  # [M, 1, 2]

    def loss_fn(m, targets):
        return energy_score_loss(m(h, n_samples), targets)

    res = train(head, loss_fn, batch_fn, TrainConfig(steps=steps, lr=3e-3, warmup=steps // 10,
                                                      progress=progress, desc="toy head"), profile=prof)
    return head.eval(), res


# ---- CALM vs token transformer -----------------------------------------------------------------------

def build_calm(cfg: CALMLabConfig, ae: CALMAutoencoder, prof: Profile, block_chunks: int | None = None) -> CALM:
    """CALM with the profile's backbone and head on top of the frozen AE (K = ae.chunk_len)."""
    ccfg = CALMConfig(vocab_size=ae.vocab_size, chunk_len=ae.chunk_len, latent_dim=cfg.latent_dim,
                      d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                      block_chunks=block_chunks or cfg.block_chunks,
                      head_width=cfg.head_width, head_blocks=cfg.head_blocks, n_samples=cfg.n_samples,
                      n_targets=cfg.n_targets)
    return CALM(ccfg, ae).to(prof.device)


def build_models(cfg: CALMLabConfig, ae: CALMAutoencoder, prof: Profile) -> tuple[CALM, GPT]:
    """CALM on top of the frozen AE, and a token GPT of the same backbone size over the same text."""
    gcfg = GPTConfig(vocab_size=ae.vocab_size, block_size=(cfg.block_chunks + 1) * cfg.chunk_len,
                     n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model)
    return build_calm(cfg, ae, prof), GPT(gcfg).to(prof.device)


def gpt_loss(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


@dataclass
class LMRun:
    name: str  # "CALM" or "Transformer"
    seed: int  # init, data order and eval draws
    steps: int  # optimizer steps taken
    flops_per_step: float  # training FLOPs per step (estimate)
    gen_steps_per_token: float  # generative forward passes per generated token (1/K for CALM)
    result: TrainResult | None = None
    curve: list[dict[str, float]] = field(default_factory=list)  # eval rows + "flops"

    @property
    def final(self) -> dict[str, float]:
        return self.curve[-1]


def brier_eval_fn(kind: str, ids: torch.Tensor, K: int, seed: int = 0):
    """eval_fn for train(): BrierLM on fixed held-out windows ids [n, (C+1)K], chunk-aligned for both
    models (two independent K-token draws per chunk; CALM decodes head samples, the GPT samples tokens)."""
    y = ids[:, K:].reshape(-1, K)  # [n*C, K]

    def fn(model) -> dict[str, float]:
        # the same draws at every evaluation, without resetting the training's random stream
        with torch.random.fork_rng(devices=[ids.device] if ids.device.type == "cuda" else []):
            torch.manual_seed(seed)
            if kind == "calm":
                x = model.sample_chunks(ids, 2)
            else:
                x = gpt_sample_chunks(model, ids, K, 2, generator=torch.Generator(ids.device).manual_seed(seed))
        out = brier_lm(x[0].cpu(), x[1].cpu(), y.cpu(), max_n=K, chunk_aligned=True)
        if kind != "calm":
            out["brier_1_exact"] = gpt_exact_brier1(model, ids, K)
        return out

    return fn


def run_lm_pair(cfg: CALMLabConfig, ae: CALMAutoencoder, train_ids: torch.Tensor, val_ids: torch.Tensor,
                prof: Profile, seed: int = 0, progress: bool = True) -> tuple[CALM, GPT, dict[str, LMRun]]:
    """Train the token GPT for cfg.lm_steps and CALM for the steps that cost the same training FLOPs.

    seed sets both models' init, their (shared) stream of training windows and the eval draws.
    """
    torch.manual_seed(seed)
    calm, gpt = build_models(cfg, ae, prof)
    K, W = cfg.chunk_len, (cfg.block_chunks + 1) * cfg.chunk_len
    ev = eval_windows(val_ids, cfg.eval_windows, W).to(prof.device)
    base_fps = gpt_train_flops_per_step(gpt, cfg.lm_batch, W - 1)
    calm_fps = calm.train_flops_per_step(cfg.lm_batch, cfg.block_chunks)
    calm_steps = max(cfg.n_evals, round(cfg.lm_steps * base_fps / calm_fps))  # matched training FLOPs
    runs = {"Transformer": LMRun("Transformer", seed, cfg.lm_steps, base_fps, 1.0),
            "CALM": LMRun("CALM", seed, calm_steps, calm_fps, 1.0 / K)}
    jobs = (("Transformer", gpt, gpt_loss, "gpt", cfg.lm_lr),
            ("CALM", calm, lambda m, b: m.loss(b), "calm", cfg.calm_lr))
    for name, model, loss_fn, kind, lr in jobs:
        run = runs[name]
        tcfg = TrainConfig(steps=run.steps, lr=lr, warmup=run.steps // 20, weight_decay=0.1,
                           eval_every=max(1, run.steps // cfg.n_evals), progress=progress,
                           desc=f"{name} seed {seed}")
        batches = window_batches(train_ids, cfg.lm_batch, W, cfg.seed + 7 + 1009 * seed, prof.device)
        run.result = train(model, loss_fn, batches, tcfg, eval_fn=brier_eval_fn(kind, ev, K, cfg.seed + seed),
                           profile=prof)
        run.curve = [{**row, "flops": row["step"] * run.flops_per_step} for row in run.result.evals]
        model.eval()
    return calm, gpt, runs


def run_calm_k1(cfg: CALMLabConfig, ae1: CALMAutoencoder, train_ids: torch.Tensor, val_ids: torch.Tensor,
                prof: Profile, flops: float, seed: int = 0, progress: bool = True) -> LMRun:
    """Control: CALM without compression (K = 1, ae1 a one-token autoencoder) trained for `flops` training
    FLOPs on the same windows, seeds and learning rate as run_lm_pair's CALM.

    Its chunk-aligned BrierLM has only Brier-1, over every position of the held-out windows.
    """
    if ae1.chunk_len != 1:
        raise ValueError(f"ae1 must be a K = 1 autoencoder, got chunk_len={ae1.chunk_len}")
    W = (cfg.block_chunks + 1) * cfg.chunk_len
    torch.manual_seed(seed)
    calm1 = build_calm(cfg, ae1, prof, block_chunks=W - 1)
    fps = calm1.train_flops_per_step(cfg.lm_batch, W - 1)
    run = LMRun("CALM K=1", seed, max(cfg.n_evals, round(flops / fps)), fps, 1.0)
    tcfg = TrainConfig(steps=run.steps, lr=cfg.calm_lr, warmup=run.steps // 20, weight_decay=0.1,
                       eval_every=max(1, run.steps // cfg.n_evals), progress=progress, desc=f"CALM K=1 seed {seed}")
    ev = eval_windows(val_ids, cfg.eval_windows, W).to(prof.device)
    batches = window_batches(train_ids, cfg.lm_batch, W, cfg.seed + 7 + 1009 * seed, prof.device)
    run.result = train(calm1, lambda m, b: m.loss(b), batches, tcfg,
                       eval_fn=brier_eval_fn("calm", ev, 1, cfg.seed + seed), profile=prof)
    run.curve = [{**row, "flops": row["step"] * fps} for row in run.result.evals]
    return run


def time_generation(calm: CALM, gpt: GPT, prompt: torch.Tensor, n_tokens: int,
                    reps: int = 5) -> dict[str, float]:
    """Seconds per generated token (median of reps, timed interleaved on this process's CPU clock so other
    jobs on the machine do not bias the ratio), both KV-cached, CALM at T = 1 (one head draw per step).

    prompt [B, T0] with T0 a multiple of K; n_tokens a multiple of K (CALM emits whole chunks).
    """
    K = calm.cfg.chunk_len
    if n_tokens % K:
        raise ValueError(f"n_tokens must be a multiple of chunk_len={K}, got {n_tokens}")
    clock = "process" if prompt.device.type == "cpu" else "wall"
    with torch.no_grad():
        t = timeit_interleaved({"Transformer": lambda: gpt_generate(gpt, prompt, n_tokens),
                                "CALM": lambda: calm.generate(prompt, n_tokens // K)}, reps=reps, clock=clock)
    return {name: sec / n_tokens for name, sec in t.items()}


@torch.no_grad()
def temperature_study(calm: CALM, ids: torch.Tensor, temps: tuple[float, ...], n_candidates: int = 200,
                      seed: int = 0) -> dict[float, dict[str, float]]:
    """What T = 1/n does to CALM's next chunk on held-out windows ids [n, (C+1)K] (the last chunk of each
    window is predicted from the ones before).

    n_candidates head samples per context estimate p(chunk) by counting; the batch approximation (and the
    exact sampler's target p^n) then weights each distinct chunk by C(count, n), an unbiased estimate of
    p(chunk)^n up to a constant. Per T: "acc", the probability that the tempered draw is the true chunk,
    and "distinct", the effective number of chunks it draws from (1 / sum q^2), both averaged over contexts.
    """
    from labcore.calm.sampling import inverse_temperature

    K = calm.cfg.chunk_len
    torch.manual_seed(seed)
    h = calm(ids[:, :-K])[:, -1]  # [n, d]
    cands = calm.ae.decode_tokens(calm.head(h, n_candidates)[:, :, None])  # [S, n, K]
    truth = ids[:, -K:]
    out = {t: {"acc": 0.0, "distinct": 0.0} for t in temps}
    for b in range(ids.shape[0]):
        uniq, counts = torch.unique(cands[:, b], dim=0, return_counts=True)  # [U, K], [U]
        hit = (uniq == truth[b]).all(-1).double()  # [U]
        for t in temps:
            m = inverse_temperature(t)
            while m > 1 and int(counts.max()) < m:  # the approximation's fallback: fewer repeats
                m -= 1
            w = torch.tensor([math.comb(int(c), m) for c in counts], dtype=torch.float64)
            q = w / w.sum()
            out[t]["acc"] += float((q * hit).sum()) / ids.shape[0]
            out[t]["distinct"] += float(1.0 / q.pow(2).sum()) / ids.shape[0]
    return out
