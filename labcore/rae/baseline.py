"""The baseline RAE is compared against: a plain autoencoder whose latent is learned for reconstruction
only (the role SD-VAE plays in the paper), with a low-dimensional latent per token.
Taught in notebooks/05_rae.ipynb, sections "The decoder, noise-augmented" and "Convergence: the paper's metric, and a
2×2 control" (RAE latent vs baseline latent).

Same patch grid as the RAE (N tokens), same ViT decoder, but the encoder is trained jointly with it
(L1 loss) and squeezes each token to `latent_channels` numbers (4, like SD-VAE) instead of the
encoder's full token dimension. Trained for the same number of steps as the RAE decoder: equal compute.
"""

from __future__ import annotations

import torch
from torch import nn

from labcore.nn.vision import PatchEmbed, ViTBlock, sincos_pos_embed_2d
from labcore.rae.decoder import ViTDecoder


class PlainAE(nn.Module):
    """encode(x [B, C, H, W]) -> z [B, N, latent_channels]; decode(z) -> [B, C, H, W]; forward = both."""

    def __init__(self, latent_channels: int, dim: int, depth: int, n_head: int = 4, patch: int = 4,
                 channels: int = 1, img_size: int = 16):
        super().__init__()
        if latent_channels <= 0:
            raise ValueError(f"latent_channels must be > 0, got {latent_channels}")
        grid = img_size // patch
        self.num_tokens, self.token_dim = grid * grid, latent_channels
        self.patch = PatchEmbed(channels, patch, dim)
        self.register_buffer("pos", sincos_pos_embed_2d(dim, grid), persistent=False)
        self.blocks = nn.ModuleList(ViTBlock(dim, n_head) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.to_latent = nn.Linear(dim, latent_channels)
        self.decoder = ViTDecoder(latent_channels, grid * grid, dim, depth, n_head, patch, channels, img_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x) + self.pos  # [B, N, dim]
        for block in self.blocks:
            h = block(h)
        return self.to_latent(self.norm(h))  # [B, N, latent_channels]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def ae_loss(ae: PlainAE, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 reconstruction loss of the plain AE (x [B, C, H, W])."""
    l1 = (ae(x) - x).abs().mean()
    return l1, {"l1": float(l1.detach())}
