"""The energy score and the generative head it trains. CALM (Shao et al., 2025, arXiv:2510.27688).
Taught in notebooks/04_calm.ipynb, sections "The energy score" and "The energy head".

The energy score S(P, y) = E||X - y|| - 1/2 E||X - X'|| (X, X' ~ P) is strictly proper: its
expectation over y ~ Q is minimised only by P = Q, and it needs nothing but samples from P. We minimise
twice its sample estimate with N model samples and M target draws (alpha = 1, Euclidean norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.validate import check_nonempty, check_tensor


def _check(samples: torch.Tensor, targets: torch.Tensor) -> None:
    check_tensor("samples", samples, kind="float")
    check_tensor("targets", targets, kind="float")
    if samples.dim() != 3 or targets.dim() != 3:
        raise ValueError(f"samples [N, B, D] and targets [M, B, D] must be 3-D, got "
                         f"{tuple(samples.shape)} and {tuple(targets.shape)}")
    if samples.shape[0] < 2:
        raise ValueError(f"samples needs N >= 2 draws for the diversity term, got N={samples.shape[0]}")
    if targets.shape[0] < 1 or samples.shape[1:] != targets.shape[1:]:
        raise ValueError(f"targets must be [M >= 1, B, D] matching samples' [B, D] = "
                         f"{tuple(samples.shape[1:])}, got {tuple(targets.shape)}")
    check_nonempty("samples", samples.shape[1], "B")


def energy_score_loss(samples: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L = 2/(NM) sum_{n,m} ||z_m - z~_n|| - 1/(N(N-1)) sum_{n != k} ||z~_n - z~_k||, mean over B.

    Args:
        samples: [N, B, D] model draws z~ (N >= 2, independent noise each)
        targets: [M, B, D] draws z from the target distribution
    Returns:
        scalar loss (lower is better; its expectation is -2 x the energy score, up to a constant)
    """
    _check(samples, targets)
    N = samples.shape[0]
    s, t = samples.transpose(0, 1), targets.transpose(0, 1)  # [B, N, D], [B, M, D]
    # fidelity: every (sample, target) pair
    fidelity = (s[:, :, None] - t[:, None]).norm(dim=-1).mean(dim=(1, 2))  # [B]
    # diversity: distinct sample pairs n < k, each counted twice in the n != k sum
    i, j = torch.triu_indices(N, N, offset=1, device=samples.device)
    diversity = (s[:, i] - s[:, j]).norm(dim=-1).sum(-1) * 2 / (N * (N - 1))  # [B]
    return (2 * fidelity - diversity).mean()


def energy_score_loss_naive(samples: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same loss with explicit loops over b, n, m, k: the reference the fast form is tested against."""
    _check(samples, targets)
    N, B, _ = samples.shape
    M = targets.shape[0]
    total = samples.new_zeros(())
    for b in range(B):
        fid = sum((targets[m, b] - samples[n, b]).norm() for n in range(N) for m in range(M))
        div = sum((samples[n, b] - samples[k, b]).norm() for n in range(N) for k in range(N) if n != k)
        total = total + 2 * fid / (N * M) - div / (N * (N - 1))
    return total / B


class HeadBlock(nn.Module):
    """x <- x + Linear(SiLU(g) * v), (g, v) = MLP(concat(LayerNorm(x), c)): noise x refined under c."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g, v = self.mlp(torch.cat([self.norm(x), c], dim=-1)).chunk(2, dim=-1)
        return x + self.out(F.silu(g) * v)


class EnergyHead(nn.Module):
    """Maps a backbone state h and uniform noise u to one latent sample z~ ~ p(z | h).

    forward(h [..., d_model], n_samples) -> [n_samples, ..., latent_dim], fresh noise per sample.
    """

    def __init__(self, d_model: int, latent_dim: int, width: int | None = None, n_blocks: int = 4,
                 noise_dim: int = 64):
        super().__init__()
        for name, val in (("d_model", d_model), ("latent_dim", latent_dim), ("n_blocks", n_blocks),
                          ("noise_dim", noise_dim)):
            if val <= 0:
                raise ValueError(f"{name} must be > 0, got {val}")
        width = width or d_model
        self.noise_dim = noise_dim
        self.noise_in = nn.Sequential(nn.Linear(noise_dim, width), nn.LayerNorm(width))
        self.cond = nn.Sequential(nn.Linear(d_model, width), nn.LayerNorm(width))
        self.blocks = nn.ModuleList(HeadBlock(width) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, latent_dim))
        nn.init.zeros_(self.out[-1].weight)  # start at z~ = 0: the first steps only learn the mean
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, h: torch.Tensor, n_samples: int = 1, noise: torch.Tensor | None = None) -> torch.Tensor:
        """h [..., d_model] -> n_samples draws [n_samples, ..., latent_dim].

        noise: optional u [n_samples, ..., noise_dim] in [-0.5, 0.5] (default: fresh uniform noise), to
        replay a draw exactly (the notebook's from-scratch check).
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        shape = (n_samples, *h.shape[:-1], self.noise_dim)
        if noise is None:
            noise = torch.rand(shape, device=h.device, dtype=h.dtype) - 0.5
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape} (n_samples, ..., noise_dim), got {tuple(noise.shape)}")
        c = self.cond(h).expand(n_samples, *h.shape[:-1], -1)  # [N, ..., W]
        x = self.noise_in(noise)  # [N, ..., W]
        for block in self.blocks:
            x = block(x, c)
        return self.out(x)  # [N, ..., latent]
