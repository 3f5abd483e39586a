"""The chapter 5 experiments as functions, so notebooks/05_rae.ipynb only teaches and plots.
Used in notebooks/05_rae.ipynb, sections "Experiment: width must reach the token dimension" to "A fair chance:
semantics hidden under nuisances".

Every run goes through `labcore.train.train` with batches that are a pure function of the step.
Images x are [N, C, H, W] in [-1, 1]; latents are [N, T, C] and, for the DiT, normalised by LatentStats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from labcore.rae.baseline import PlainAE, ae_loss
from labcore.rae.config import RAEConfig
from labcore.rae.decoder import ViTDecoder, decoder_loss
from labcore.rae.dit import DiT, DiTDH, drop_labels
from labcore.rae.fid import FIDScorer
from labcore.rae.flow import euler_sample, flow_matching_loss
from labcore.runtime import Profile
from labcore.train import TrainConfig, TrainResult, batch_generator, train

P_UNCOND = 0.1  # label dropout that trains the classifier-free-guidance branch (DiT's 10%)


def _idx(n: int, batch: int, seed: int, step: int, rank: int) -> torch.Tensor:
    return torch.randint(0, n, (batch,), generator=batch_generator(seed, step, rank))


def train_rae_decoder(encoder: nn.Module, x: torch.Tensor, cfg: RAEConfig, tau: float, seed: int = 0,
                      profile: Profile | None = None,
                      desc: str = "rae decoder") -> tuple[ViTDecoder, TrainResult]:
    """ViT decoder on the frozen encoder's tokens (L1 + perceptual), noise-augmented with tau (0 = off)."""
    torch.manual_seed(seed)
    img = x.shape[-1]
    patch = img // math.isqrt(encoder.num_tokens)  # one decoder token per encoder token, whatever the encoder
    dec = ViTDecoder(encoder.token_dim, encoder.num_tokens, cfg.dec_dim, cfg.dec_depth, 4, patch,
                     x.shape[1], img).to(x.device)

    def loss_fn(model, i):
        g = batch_generator(seed + 1, i)
        xb = x[_idx(len(x), cfg.batch, seed, i, 0).to(x.device)]
        return decoder_loss(model, encoder, xb, tau=tau, perceptual_weight=cfg.perceptual_weight, generator=g)

    res = train(dec, loss_fn, lambda step, rank, world: step,
                TrainConfig(steps=cfg.dec_steps, lr=cfg.lr, warmup=10, desc=desc), profile=profile)
    return dec.eval(), res


def train_plain_ae(x: torch.Tensor, cfg: RAEConfig, seed: int = 0, profile: Profile | None = None,
                   patch: int = 4, channels: int | None = None,
                   desc: str = "plain AE") -> tuple[PlainAE, TrainResult]:
    """The baseline autoencoder, same decoder size and steps as the RAE decoder (equal compute).

    channels: latent numbers per token (default cfg.ae_channels, the SD-VAE-like squeeze).
    """
    torch.manual_seed(seed)
    ae = PlainAE(channels or cfg.ae_channels, cfg.dec_dim, cfg.dec_depth, 4, patch, x.shape[1],
                 x.shape[-1]).to(x.device)

    def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
        return x[_idx(len(x), cfg.batch, seed, step, rank).to(x.device)]

    res = train(ae, ae_loss, batch_fn,
                TrainConfig(steps=cfg.dec_steps, lr=cfg.lr, warmup=10, desc=desc), profile=profile)
    return ae.eval(), res


@torch.no_grad()
def recon_l1(encode: Callable, decode: Callable, x: torch.Tensor, batch: int = 256) -> float:
    """Mean |decode(encode(x)) - x| over x (pixels in [-1, 1])."""
    err = sum(float((decode(encode(x[i:i + batch])) - x[i:i + batch]).abs().sum())
              for i in range(0, len(x), batch))
    return err / x.numel()


def log_schedule(steps: int, n_evals: int) -> list[int]:
    """n_evals evaluation steps spaced by factors of 2 and ending at steps: [steps / 2^(n-1), ..., steps / 2,
    steps] (rounded; duplicates from tiny runs dropped). Convergence speed is a ratio of steps, so the
    evaluations are even on a log axis."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(n_evals, int) or n_evals < 1:
        raise ValueError(f"n_evals must be an int >= 1, got {n_evals!r}")
    return sorted({max(1, round(steps / 2 ** k)) for k in range(n_evals)})


def steps_to_reach(steps: Sequence[int], values: Sequence[float], threshold: float) -> float:
    """The first training step at which a curve (values measured at steps, increasing) falls to threshold.

    Between the two evaluations that bracket the crossing, the value is interpolated linearly in log(step)
    (the evaluations are log-spaced). Already below at the first evaluation: that step (an upper bound).
    Never below: inf.
    """
    if len(steps) != len(values) or not steps:
        raise ValueError(f"steps and values must be non-empty and the same length, got {len(steps)} and "
                         f"{len(values)}")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or steps[0] < 1:
        raise ValueError(f"steps must be increasing and >= 1, got {list(steps)}")
    if values[0] <= threshold:
        return float(steps[0])
    for (s0, v0), (s1, v1) in zip(zip(steps, values, strict=True), zip(steps[1:], values[1:], strict=True),
                                  strict=False):
        if v1 <= threshold:
            frac = (v0 - threshold) / (v0 - v1)  # v0 > threshold >= v1
            return float(s0 * (s1 / s0) ** frac)  # linear in log(step)
    return math.inf


def fid_target(floor: float, final_fids: Sequence[float], factor: float = 2.0) -> float:
    """The FID two latents race to: factor x the real-vs-real floor, raised to the worst final FID among the
    compared runs when one of them does not get that far. Every run then reaches the target within its
    length (no guess for "never"), and the faster latent is the one that gets there in fewer steps: the
    paper's own kind of target (the epochs RAE needs to reach the baseline's final FID)."""
    if not floor > 0 or not factor > 0:
        raise ValueError(f"floor and factor must be > 0, got {floor} and {factor}")
    if not final_fids:
        raise ValueError("final_fids must hold at least one run's final FID")
    return max(factor * floor, max(final_fids))


def train_dit(z: torch.Tensor, y: torch.Tensor, cfg: RAEConfig, *, width: int | None = None,
              depth: int | None = None, shift: bool = True, steps: int | None = None, seed: int = 0,
              profile: Profile | None = None,
              eval_fn: Callable[[nn.Module], dict[str, float]] | None = None, eval_every: int = 0,
              eval_at: Sequence[int] | None = None, head_width: int | None = None,
              head_depth: int | None = None, desc: str = "DiT") -> tuple[DiT, TrainResult]:
    """Class-conditional DiT by flow matching on normalised latents z [N, T, C] with labels y [N].

    shift=True uses the dimension-dependent shift with m = T * C and n = cfg.base_dim; width and depth
    default to cfg.dit_width and cfg.dit_depth. head_width builds a DiT-DH instead (that trunk + a head of
    head_width, head_depth blocks, default cfg.head_depth). eval_at: the steps eval_fn runs at (e.g.
    `log_schedule`), instead of every eval_every steps; the result's evals hold exactly those rows.
    """
    torch.manual_seed(seed)
    T, C = z.shape[1:]
    n_cls = int(y.max()) + 1
    if head_width is None:
        model = DiT(C, T, width or cfg.dit_width, depth or cfg.dit_depth, 4, n_cls).to(z.device)
    else:
        model = DiTDH(C, T, width or cfg.dit_width, depth or cfg.dit_depth, head_width,
                      head_depth or cfg.head_depth, 4, n_cls).to(z.device)
    dims = dict(latent_dim=T * C, base_dim=cfg.base_dim) if shift else {}
    total = steps or cfg.dit_steps
    done = {"step": 0}  # the step the trainer just finished (its eval hook is not told)

    def loss_fn(m, i):
        done["step"] = i + 1
        g = batch_generator(seed + 1, i)
        idx = _idx(len(z), cfg.batch, seed, i, 0).to(z.device)
        yb = drop_labels(y[idx], P_UNCOND, n_cls, g)
        return flow_matching_loss(m, z[idx], yb, generator=g, **dims)

    hook = eval_fn
    if eval_at is not None and eval_fn is not None:
        at = sorted(set(eval_at))
        if at[0] < 1 or at[-1] > total:
            raise ValueError(f"eval_at must lie in [1, {total}], got {list(eval_at)}")
        eval_every = math.gcd(*at)
        hook = lambda m: eval_fn(m) if done["step"] in at else {}  # noqa: E731  (skip the steps between)
    res = train(model, loss_fn, lambda step, rank, world: step,
                TrainConfig(steps=total, lr=cfg.dit_lr, warmup=10, eval_every=eval_every, desc=desc),
                eval_fn=hook, profile=profile)
    if eval_at is not None:
        res.evals = [e for e in res.evals if len(e) > 1]
    return model.eval(), res


@torch.no_grad()
def generate(model: DiT, n: int, cfg: RAEConfig, *, shift: bool = True, seed: int = 0,
             cfg_scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n normalised latents [n, T, C] (labels cycling 0..K-1) from the Euler sampler; returns (z, y)."""
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, model.num_tokens, model.token_dim, generator=g).to(dev)
    y = (torch.arange(n) % model.num_classes).to(dev)
    null = torch.full_like(y, model.num_classes)
    dims = dict(latent_dim=model.num_tokens * model.token_dim, base_dim=cfg.base_dim) if shift else {}
    z = euler_sample(model, noise, cfg.sample_steps, y, null_cond=null,
                     cfg_scale=cfg.cfg_scale if cfg_scale is None else cfg_scale, **dims)
    return z, y


def fid_eval_fn(scorer: FIDScorer, decode: Callable[[torch.Tensor], torch.Tensor], cfg: RAEConfig,
                shift: bool, extra: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                ) -> Callable[[nn.Module], dict[str, float]]:
    """An eval hook for `train`: sample cfg.n_samples latents, decode, score against the reference.

    Returns {"fid", "acc"} (acc: the scorer's classifier agrees with the sampled label), plus
    "fid_<name>" for each decoder in `extra`, applied to the same latents (e.g. a second decoder).
    """
    def eval_fn(model: nn.Module) -> dict[str, float]:
        z, y = generate(model, cfg.n_samples, cfg, shift=shift)
        with torch.no_grad():
            x = decode(z)
            out = {"fid": scorer.score(x), "acc": scorer.class_accuracy(x, y)}
            for name, dec in (extra or {}).items():
                out[f"fid_{name}"] = scorer.score(dec(z))
        return out
    return eval_fn


def convergence_runs(z: torch.Tensor, y: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                     scorer: FIDScorer, cfg: RAEConfig, *, shift: bool = True, seeds: int | None = None,
                     profile: Profile | None = None, desc: str = "DiT",
                     extra: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                     ) -> list[tuple[DiT, TrainResult]]:
    """One latent's convergence curve per seed: a DiT per seed 0..seeds-1 (default cfg.seeds) on normalised
    latents z [N, T, C], FID-scored (`fid_eval_fn`) at `log_schedule(cfg.dit_steps, cfg.n_evals)`."""
    at = log_schedule(cfg.dit_steps, cfg.n_evals)
    runs = []
    for s in range(cfg.seeds if seeds is None else seeds):
        runs.append(train_dit(z, y, cfg, shift=shift, seed=s, profile=profile, eval_at=at,
                              eval_fn=fid_eval_fn(scorer, decode, cfg, shift, extra), desc=f"{desc}, seed {s}"))
    return runs


@torch.no_grad()
def fid_floor(scorer: FIDScorer, x: torch.Tensor, n: int, repeats: int = 3, seed: int = 0) -> float:
    """The score of real images: mean FID of `repeats` random n-image subsets of x (e.g. the training set)
    against the scorer's reference. Generated sets of n images are scored against this, since the Fréchet
    distance of n samples is biased upward by roughly 1/n even for perfect samples."""
    if not 2 <= n <= len(x):
        raise ValueError(f"n must be in [2, {len(x)}], got {n}")
    g = torch.Generator().manual_seed(seed)
    return sum(scorer.score(x[torch.randperm(len(x), generator=g)[:n].to(x.device)])
               for _ in range(repeats)) / repeats


def image_grid(x: torch.Tensor, nrow: int = 10, title: str = ""):
    """A plotly figure of images x [N, C, H, W] in [-1, 1] tiled nrow per row."""
    import plotly.express as px

    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2)
    N, C, H, W = x.shape
    rows = -(-N // nrow)
    canvas = torch.ones(C, rows * (H + 1), nrow * (W + 1))
    for i in range(N):
        r, c = divmod(i, nrow)
        canvas[:, r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = x[i]
    img = canvas[0] if C == 1 else canvas.permute(1, 2, 0)
    fig = px.imshow(img.numpy(), color_continuous_scale="gray", zmin=0, zmax=1, title=title)
    fig.update_layout(coloraxis_showscale=False, margin=dict(l=0, r=0, t=30, b=0), height=60 + 30 * rows)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    return fig
