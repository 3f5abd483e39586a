"""The chapter 5 experiments as functions, so notebooks/05_rae.ipynb only teaches and plots.

Every run goes through `labcore.train.train` with batches that are a pure function of the step.
Images x are [N, C, H, W] in [-1, 1]; latents are [N, T, C] and, for the DiT, normalised by LatentStats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from labcore.rae.baseline import PlainAE, ae_loss
from labcore.rae.config import RAEConfig
from labcore.rae.decoder import ViTDecoder, decoder_loss
from labcore.rae.dit import DiT, drop_labels
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
                   patch: int = 4) -> tuple[PlainAE, TrainResult]:
    """The baseline autoencoder, same decoder size and steps as the RAE decoder (equal compute)."""
    torch.manual_seed(seed)
    ae = PlainAE(cfg.ae_channels, cfg.dec_dim, cfg.dec_depth, 4, patch, x.shape[1], x.shape[-1]).to(x.device)
    def batch_fn(step: int, rank: int, world: int) -> torch.Tensor:
        return x[_idx(len(x), cfg.batch, seed, step, rank).to(x.device)]

    res = train(ae, ae_loss, batch_fn,
                TrainConfig(steps=cfg.dec_steps, lr=cfg.lr, warmup=10, desc="plain AE"), profile=profile)
    return ae.eval(), res


@torch.no_grad()
def recon_l1(encode: Callable, decode: Callable, x: torch.Tensor, batch: int = 256) -> float:
    """Mean |decode(encode(x)) - x| over x (pixels in [-1, 1])."""
    err = sum(float((decode(encode(x[i:i + batch])) - x[i:i + batch]).abs().sum())
              for i in range(0, len(x), batch))
    return err / x.numel()


def train_dit(z: torch.Tensor, y: torch.Tensor, cfg: RAEConfig, *, width: int | None = None,
              depth: int | None = None, shift: bool = True, steps: int | None = None, seed: int = 0,
              profile: Profile | None = None,
              eval_fn: Callable[[nn.Module], dict[str, float]] | None = None, eval_every: int = 0,
              desc: str = "DiT") -> tuple[DiT, TrainResult]:
    """Class-conditional DiT by flow matching on normalised latents z [N, T, C] with labels y [N].

    shift=True uses the dimension-dependent shift with m = T * C and n = cfg.base_dim; width and depth
    default to cfg.dit_width and cfg.dit_depth.
    """
    torch.manual_seed(seed)
    T, C = z.shape[1:]
    model = DiT(C, T, width or cfg.dit_width, depth or cfg.dit_depth, 4, int(y.max()) + 1).to(z.device)
    dims = dict(latent_dim=T * C, base_dim=cfg.base_dim) if shift else {}
    n_cls = model.num_classes

    def loss_fn(m, i):
        g = batch_generator(seed + 1, i)
        idx = _idx(len(z), cfg.batch, seed, i, 0).to(z.device)
        yb = drop_labels(y[idx], P_UNCOND, n_cls, g)
        return flow_matching_loss(m, z[idx], yb, generator=g, **dims)

    res = train(model, loss_fn, lambda step, rank, world: step,
                TrainConfig(steps=steps or cfg.dit_steps, lr=cfg.lr, warmup=10, eval_every=eval_every,
                            desc=desc),
                eval_fn=eval_fn, profile=profile)
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
