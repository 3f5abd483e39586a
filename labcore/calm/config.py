"""Chapter 4's sizes (three profiles, one code path) and its data: byte-level course corpus windows.
Taught in notebooks/04_calm.ipynb (every section reads `cfg = lab_config(prof)`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from labcore.runtime import Profile, pick
from labcore.train import batch_generator


@dataclass(frozen=True)
class CALMLabConfig:
    max_tokens: int  # bytes of the course corpus used (train + val)
    corpus: str  # labcore.data.course_corpus source: "prose" (~0.47 MB) or "both" (+ stdlib code, ~5 MB)
    # --- autoencoder
    chunk_len: int  # K tokens per vector for the language model (paper: 4)
    k_sweep: tuple[int, ...]  # K values in the reconstruction-vs-K sweep
    latent_dim: int  # vector size (paper: 128)
    ae_d_model: int  # autoencoder width (paper: 512)
    ae_steps: int  # optimizer steps of the K = chunk_len autoencoder CALM is built on
    ae_sweep_steps: int  # steps of every autoencoder in the K sweep and of the plain one (equal budgets)
    ae_batch: int  # windows per autoencoder step
    ae_window: int  # tokens per autoencoder window (a multiple of every K in k_sweep)
    ae_lr: float  # autoencoder peak learning rate
    noise_levels: tuple[float, ...]  # std of Gaussian noise added to z in the robustness test
    # --- CALM and the token baseline share the backbone sizes
    d_model: int  # backbone width
    n_layer: int  # backbone blocks
    n_head: int  # attention heads
    block_chunks: int  # CALM context in chunks; the baseline sees the same (block_chunks+1)*K tokens
    head_width: int  # energy head width (narrower than d_model so the backbone dominates the FLOPs)
    head_blocks: int  # energy head residual blocks (paper: 4)
    n_samples: int  # N head samples per position (paper: 8)
    n_targets: int  # M posterior draws per target (paper: 100)
    lm_steps: int  # baseline optimizer steps; CALM gets the steps that match its training FLOPs
    lm_batch: int  # windows per language-model step
    lm_lr: float  # transformer peak learning rate (best of 1e-3, 2e-3, 4e-3 at the cpu profile)
    calm_lr: float  # CALM peak learning rate (best of 5e-4, 1e-3, 2e-3, 4e-3 at the cpu profile)
    lm_seeds: tuple[int, ...]  # one CALM + one transformer per seed (init, data order, eval draws)
    n_evals: int  # BrierLM evaluations along training (for the FLOPs curve)
    eval_windows: int  # held-out windows per BrierLM evaluation
    gen_tokens: int  # tokens generated per timed run (wall-clock per generated token)
    temp_contexts: int  # held-out contexts in the temperature study
    toy_steps: int = 200  # steps for the 2-D energy-score toy head
    threads: int | None = None  # torch CPU threads (1 is fastest for tiny models); None = default
    seed: int = 0  # data/batch seed

    def __post_init__(self):
        for K in self.k_sweep + (self.chunk_len,):
            if K <= 0 or self.ae_window % K:
                raise ValueError(f"ae_window ({self.ae_window}) must be a multiple of every K, got K={K}")
        if self.chunk_len not in self.k_sweep:
            raise ValueError(f"chunk_len ({self.chunk_len}) must be one of k_sweep {self.k_sweep}")
        if not self.lm_seeds or len(set(self.lm_seeds)) != len(self.lm_seeds):
            raise ValueError(f"lm_seeds must be distinct and at least one, got {self.lm_seeds}")
        most = (self.block_chunks - 1) * self.chunk_len  # one window after a one-chunk prompt
        if not 0 < self.gen_tokens <= most or self.gen_tokens % self.chunk_len:
            raise ValueError(f"gen_tokens must be a multiple of chunk_len={self.chunk_len} in [1, {most}], "
                             f"got {self.gen_tokens}")


SMOKE = CALMLabConfig(max_tokens=150_000, corpus="prose", chunk_len=4, k_sweep=(1, 2, 4, 8),
                      latent_dim=16, ae_d_model=32, ae_steps=40, ae_sweep_steps=20, ae_batch=16, ae_window=32,
                      ae_lr=3e-3, noise_levels=(0.0, 0.5, 1.0),
                      d_model=32, n_layer=1, n_head=2, block_chunks=8, head_width=16, head_blocks=2,
                      n_samples=4, n_targets=8, lm_steps=30, lm_batch=8, lm_lr=2e-3, calm_lr=1e-3,
                      lm_seeds=(0, 1), n_evals=2, eval_windows=8, gen_tokens=16, temp_contexts=8,
                      toy_steps=60, threads=1)
CPU = CALMLabConfig(max_tokens=1_000_000, corpus="prose", chunk_len=4, k_sweep=(1, 2, 4, 8),
                    latent_dim=32, ae_d_model=96, ae_steps=2000, ae_sweep_steps=400, ae_batch=32, ae_window=32,
                    ae_lr=3e-3, noise_levels=(0.0, 0.25, 0.5, 1.0, 2.0),
                    d_model=96, n_layer=3, n_head=4, block_chunks=16, head_width=48, head_blocks=2,
                    n_samples=8, n_targets=64, lm_steps=400, lm_batch=16, lm_lr=2e-3, calm_lr=1e-3,
                    lm_seeds=(0, 1), n_evals=4, eval_windows=128, gen_tokens=48, temp_contexts=128,
                    toy_steps=300, threads=1)
GPU = CALMLabConfig(max_tokens=10_000_000, corpus="both", chunk_len=4, k_sweep=(1, 2, 4, 8),
                    latent_dim=128, ae_d_model=512, ae_steps=4000, ae_sweep_steps=2000, ae_batch=128,
                    ae_window=128, ae_lr=1e-3, noise_levels=(0.0, 0.25, 0.5, 1.0, 2.0),
                    d_model=512, n_layer=8, n_head=8, block_chunks=64, head_width=256, head_blocks=4,
                    n_samples=8, n_targets=100, lm_steps=4000, lm_batch=64, lm_lr=6e-4, calm_lr=3e-4,
                    lm_seeds=(0, 1, 2), n_evals=8, eval_windows=256, gen_tokens=192, temp_contexts=256,
                    toy_steps=1000)


def lab_config(prof: Profile | str) -> CALMLabConfig:
    """The chapter's config for a profile (smoke | cpu | gpu)."""
    return pick(prof, smoke=SMOKE, cpu=CPU, gpu=GPU)


def window_batches(tokens: torch.Tensor, batch: int, window: int, seed: int,
                   device: str | torch.device = "cpu") -> Callable[[int, int, int], torch.Tensor]:
    """batch_fn(step, rank, world) -> ids [batch, window], a pure function of (seed, step, rank)."""
    if tokens.numel() <= window:
        raise ValueError(f"corpus has {tokens.numel()} tokens, need more than window={window}")

    def batch_fn(step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        g = batch_generator(seed, step, rank)
        start = torch.randint(0, tokens.numel() - window, (batch,), generator=g)
        return tokens[start[:, None] + torch.arange(window)].to(device)  # [batch, window]

    return batch_fn


def eval_windows(tokens: torch.Tensor, n: int, window: int) -> torch.Tensor:
    """n evenly spaced, fixed held-out windows [n, window] (deterministic; overlapping if text is short)."""
    if tokens.numel() < window or n < 1:
        raise ValueError(f"need n >= 1 and >= window={window} held-out tokens, got n={n}, "
                         f"{tokens.numel()} tokens")
    starts = torch.linspace(0, tokens.numel() - window, n).long()
    return tokens[starts[:, None] + torch.arange(window)]
