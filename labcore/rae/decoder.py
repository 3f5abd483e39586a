"""The trained half of an RAE: a ViT decoder from frozen encoder tokens back to pixels.
Taught in notebooks/05_rae.ipynb, sections "The decoder, noise-augmented" and
"Experiment: noise-augmented decoding".

MAE-style: tokens [B, N, C] -> linear to the decoder width, a learned CLS token prepended, fixed sin-cos
positions, ViT blocks, LayerNorm, linear to p*p*channels pixels per token, unpatchify.
Loss: L1 + w * perceptual, where "perceptual" is the MSE between the frozen encoder's hidden features
of the reconstruction and of the image (our stand-in for LPIPS; the paper also adds an adaptive GAN
loss, which we skip at toy scale).
Noise augmentation: the decoder is trained on z + sigma n, n ~ N(0, I), one sigma per sample, added to
the raw (un-normalised) encoder output, off at inference, so it also decodes the slightly-off latents
a diffusion model produces. We draw sigma = tau * U(0, 1) (the official code); the paper's text says
sigma ~ |N(0, tau^2)|, available as sigma_dist="half_normal".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn.vision import ViTBlock, sincos_pos_embed_2d, unpatchify


class ViTDecoder(nn.Module):
    """forward(z [B, N, token_dim]) -> image [B, channels, img_size, img_size]."""

    def __init__(self, token_dim: int, num_tokens: int, dim: int, depth: int, n_head: int = 4,
                 patch: int = 4, channels: int = 1, img_size: int = 16):
        super().__init__()
        grid = img_size // patch
        if grid * grid != num_tokens:
            raise ValueError(f"num_tokens must be (img_size/patch)^2 = {grid * grid}, got {num_tokens}")
        self.patch, self.channels, self.img_size = patch, channels, img_size
        self.embed = nn.Linear(token_dim, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos", sincos_pos_embed_2d(dim, grid), persistent=False)  # [N, dim]
        self.blocks = nn.ModuleList(ViTBlock(dim, n_head) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, patch * patch * channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.embed(z) + self.pos  # [B, N, dim]
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)  # [B, 1 + N, dim]
        for block in self.blocks:
            h = block(h)
        pix = self.out(self.norm(h)[:, 1:])  # [B, N, p*p*C]
        return unpatchify(pix, self.patch, self.channels, self.img_size, self.img_size)


def sample_sigma(batch: int, tau: float, dist: str = "uniform",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One noise scale per sample [batch].

    "uniform": tau * U(0, 1) (official code); "half_normal": |N(0, tau^2)| (the paper's text).
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if dist == "uniform":
        return tau * torch.rand(batch, generator=generator)
    if dist == "half_normal":
        return tau * torch.randn(batch, generator=generator).abs()
    raise ValueError(f"dist must be 'uniform' or 'half_normal', got {dist!r}")


def noise_augment(z: torch.Tensor, tau: float, dist: str = "uniform",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """z + sigma n with one sigma per sample (z [B, N, C] raw encoder output); tau = 0 returns z."""
    if tau == 0:
        return z
    sigma = sample_sigma(z.shape[0], tau, dist, generator).to(z.device, z.dtype)  # [B]
    n = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
    return z + sigma[:, None, None] * n


def perceptual_loss(encoder: nn.Module, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over the frozen encoder's layers of MSE(features(recon), features(x)); grads reach recon only."""
    with torch.no_grad():
        target = encoder.features(x)
    feats = encoder.features(recon)
    return torch.stack([F.mse_loss(f, t) for f, t in zip(feats, target, strict=True)]).mean()


def decoder_loss(decoder: nn.Module, encoder: nn.Module, x: torch.Tensor, *, tau: float = 0.0,
                 perceptual_weight: float = 0.0, sigma_dist: str = "uniform",
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One RAE decoder step's loss: L1(decode(encode(x) + noise), x) + w * perceptual. x [B, C, H, W]."""
    if perceptual_weight < 0:
        raise ValueError(f"perceptual_weight must be >= 0, got {perceptual_weight}")
    with torch.no_grad():
        z = encoder.encode(x)  # [B, N, C], frozen
    recon = decoder(noise_augment(z, tau, sigma_dist, generator))
    l1 = (recon - x).abs().mean()
    loss = l1
    metrics = {"l1": float(l1.detach())}
    if perceptual_weight > 0:
        perc = perceptual_loss(encoder, recon, x)
        loss = loss + perceptual_weight * perc
        metrics["perceptual"] = float(perc.detach())
    return loss, metrics
