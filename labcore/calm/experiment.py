"""Chapter 4's experiments, end to end: autoencoders vs K and their noise robustness, the energy score
on a toy 2-D distribution, CALM vs a token-level transformer at matched training FLOPs scored with
BrierLM. Taught in notebooks/04_calm.ipynb, sections "Experiment" (the notebook calls these)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from labcore.calm.autoencoder import CALMAutoencoder
from labcore.calm.brier import brier_lm
from labcore.calm.config import CALMLabConfig, eval_windows, window_batches
from labcore.calm.energy import EnergyHead, energy_score_loss
from labcore.calm.model import CALM, CALMConfig, gpt_exact_brier1, gpt_sample_chunks, gpt_train_flops_per_step
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
                      progress: bool = True) -> tuple[CALMAutoencoder, TrainResult]:
    """One autoencoder with chunk length K, with (variational=True) or without the robustness tricks."""
    ae = CALMAutoencoder(257, chunk_len=K, latent_dim=cfg.latent_dim, d_model=cfg.ae_d_model,
                         variational=variational).to(prof.device)
    tcfg = TrainConfig(steps=cfg.ae_steps, lr=cfg.ae_lr, warmup=cfg.ae_steps // 20, progress=progress,
                       desc=f"AE K={K} {'tricks' if variational else 'plain'}")
    batches = window_batches(tokens, cfg.ae_batch, cfg.ae_window, cfg.seed + K, prof.device)
    res = train(ae, lambda m, b: m.loss(b), batches, tcfg, profile=prof)
    return ae.eval(), res


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

def build_models(cfg: CALMLabConfig, ae: CALMAutoencoder, prof: Profile) -> tuple[CALM, GPT]:
    """CALM on top of the frozen AE, and a token GPT of the same backbone size over the same text."""
    ccfg = CALMConfig(vocab_size=ae.vocab_size, chunk_len=cfg.chunk_len, latent_dim=cfg.latent_dim,
                      d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                      block_chunks=cfg.block_chunks,
                      head_width=cfg.head_width, head_blocks=cfg.head_blocks, n_samples=cfg.n_samples,
                      n_targets=cfg.n_targets)
    gcfg = GPTConfig(vocab_size=ae.vocab_size, block_size=(cfg.block_chunks + 1) * cfg.chunk_len,
                     n_layer=cfg.n_layer, n_head=cfg.n_head, d_model=cfg.d_model)
    return CALM(ccfg, ae).to(prof.device), GPT(gcfg).to(prof.device)


def gpt_loss(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


@dataclass
class LMRun:
    name: str  # "CALM" or "Transformer"
    steps: int  # optimizer steps taken
    flops_per_step: float  # training FLOPs per step (estimate)
    gen_steps_per_token: float  # generative forward passes per generated token (1/K for CALM)
    result: TrainResult | None = None
    curve: list[dict[str, float]] = field(default_factory=list)  # eval rows + "flops"


def brier_eval_fn(kind: str, ids: torch.Tensor, K: int, seed: int = 0):
    """eval_fn for train(): BrierLM on fixed held-out windows ids [n, (C+1)K], chunk-aligned for both
    models (two independent K-token draws per chunk; CALM decodes head samples, the GPT samples tokens)."""
    y = ids[:, K:].reshape(-1, K)  # [n*C, K]

    def fn(model) -> dict[str, float]:
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
                prof: Profile, progress: bool = True) -> tuple[CALM, GPT, dict[str, LMRun]]:
    """Train the token GPT for cfg.lm_steps and CALM for the steps that cost the same training FLOPs."""
    calm, gpt = build_models(cfg, ae, prof)
    K, W = cfg.chunk_len, (cfg.block_chunks + 1) * cfg.chunk_len
    ev = eval_windows(val_ids, cfg.eval_windows, W).to(prof.device)
    base_fps = gpt_train_flops_per_step(gpt, cfg.lm_batch, W - 1)
    calm_fps = calm.train_flops_per_step(cfg.lm_batch, cfg.block_chunks)
    calm_steps = max(cfg.n_evals, round(cfg.lm_steps * base_fps / calm_fps))  # matched training FLOPs
    runs = {"Transformer": LMRun("Transformer", cfg.lm_steps, base_fps, 1.0),
            "CALM": LMRun("CALM", calm_steps, calm_fps, 1.0 / K)}
    jobs = (("Transformer", gpt, gpt_loss, "gpt"), ("CALM", calm, lambda m, b: m.loss(b), "calm"))
    for name, model, loss_fn, kind in jobs:
        run = runs[name]
        tcfg = TrainConfig(steps=run.steps, lr=cfg.lm_lr, warmup=run.steps // 20, weight_decay=0.1,
                           eval_every=max(1, run.steps // cfg.n_evals), progress=progress, desc=name)
        batches = window_batches(train_ids, cfg.lm_batch, W, cfg.seed + 7, prof.device)
        run.result = train(model, loss_fn, batches, tcfg, eval_fn=brier_eval_fn(kind, ev, K, cfg.seed),
                           profile=prof)
        run.curve = [{**row, "flops": row["step"] * run.flops_per_step} for row in run.result.evals]
        model.eval()
    return calm, gpt, runs
