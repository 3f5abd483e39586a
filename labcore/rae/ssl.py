"""A representation encoder trained without labels: SimCLR-style contrastive learning on two nuisance renders
of the same glyph, so the latent keeps the glyph and drops colour, texture and jitter (what DINOv2's
augmentations teach it on photos). Taught in notebooks/05_rae.ipynb, section "A fair chance: semantics
hidden under nuisances".

InfoNCE (NT-Xent, Chen et al. 2020), for a batch of B pairs with unit-norm embeddings u_i, w_i:

    l_i = -log exp(u_i . w_i / T) / sum_{k != i} exp(s_ik / T),   s over the 2B embeddings {u, w}

averaged over both directions. The embedding is a small MLP on the encoder's whole RAE latent (all patch
tokens after the final LayerNorm without affine), so the invariance lives in the tokens the diffusion model
sees, not only in a CLS token. (A CLS token or the mean token learn far slower here: a glyph is a spatial
arrangement, which the mean of the tokens loses.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labcore.rae.encoder import ViTEncoder
from labcore.train import TrainResult


def info_nce(u: torch.Tensor, w: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent loss of B positive pairs (u_i, w_i), u and w [B, D] (normalised here); the other 2B - 2
    embeddings of the batch are the negatives. Scalar."""
    if u.shape != w.shape or u.dim() != 2 or u.shape[0] < 2:
        raise ValueError(f"u and w must both be [B >= 2, D], got {tuple(u.shape)} and {tuple(w.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B = u.shape[0]
    z = F.normalize(torch.cat([u, w]), dim=-1)  # [2B, D]
    sim = z @ z.T / temperature  # [2B, 2B]
    sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))  # k != i
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)  # i's positive
    return F.cross_entropy(sim, target)


class ContrastiveEncoder(nn.Module):
    """A ViTEncoder plus the projection MLP that only the contrastive loss uses (dropped after training)."""

    def __init__(self, encoder: ViTEncoder, proj_dim: int = 64):
        super().__init__()
        d = encoder.token_dim * encoder.num_tokens
        self.encoder = encoder
        # BatchNorm as in SimCLR's head: it removes what every image shares (at init the tokens are mostly
        # the position code), so the loss sees the differences between images from the first step
        self.proj = nn.Sequential(nn.Linear(d, 2 * proj_dim), nn.BatchNorm1d(2 * proj_dim), nn.GELU(),
                                  nn.Linear(2 * proj_dim, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> [B, proj_dim]: projection of the whole RAE latent (all patch tokens)."""
        return self.proj(self.encoder.encode(x).flatten(1))


def contrastive_loss(model: ContrastiveEncoder, views: tuple[torch.Tensor, torch.Tensor],
                     temperature: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """InfoNCE between two views [B, C, H, W] each; reports how often a view's nearest neighbour in the
    batch is its own partner (pair accuracy)."""
    u, w = model(views[0]), model(views[1])
    loss = info_nce(u, w, temperature)
    with torch.no_grad():
        s = F.normalize(u, dim=-1) @ F.normalize(w, dim=-1).T  # [B, B]
        acc = float((s.argmax(-1) == torch.arange(len(s), device=s.device)).float().mean())
    return loss, {"pair_acc": acc}


def train_contrastive(encoder: ViTEncoder, x: torch.Tensor, render: Callable[[torch.Tensor, torch.Generator],
                      torch.Tensor], steps: int, batch: int, lr: float, temperature: float = 0.2,
                      seed: int = 0, progress: bool = False) -> tuple[ViTEncoder, TrainResult]:
    """Train encoder (in place) so two renders of the same glyph x [N, 1, H, W] map to the same embedding.

    render(x_grey, generator) -> [B, C, H, W] draws the nuisances; each step draws two independent renders
    of `batch` glyphs. Returns the encoder in eval mode (its projection MLP is discarded) and the run.
    """
    from labcore.train import TrainConfig, batch_generator, train

    torch.manual_seed(seed)
    model = ContrastiveEncoder(encoder)

    def batch_fn(step: int, rank: int, world: int):
        g = batch_generator(seed, step, rank)
        xb = x[torch.randint(0, x.shape[0], (batch,), generator=g)]
        return render(xb, g), render(xb, g)

    res = train(model, lambda m, v: contrastive_loss(m, v, temperature), batch_fn,
                TrainConfig(steps=steps, lr=lr, warmup=min(30, steps // 10), weight_decay=0.05,
                            progress=progress, desc="contrastive encoder"))
    return encoder.eval(), res


@torch.no_grad()
def knn_accuracy(encoder: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                 y_val: torch.Tensor, k: int = 5) -> float:
    """k-NN (cosine on the flattened latent, majority vote) accuracy: how much label the latent carries,
    although no label was used to train it. Pass an identity-like `encode` to score raw pixels."""
    def emb(x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([encoder.encode(x[i:i + 256]).flatten(1) for i in range(0, len(x), 256)])
        return F.normalize(z - z.mean(1, keepdim=True), dim=-1)

    sim = emb(x_val) @ emb(x_train).T  # [Nv, Nt]
    nn_idx = sim.topk(k, dim=-1).indices  # [Nv, k]
    votes = F.one_hot(y_train[nn_idx], int(y_train.max()) + 1).sum(1)  # [Nv, classes]
    return float((votes.argmax(-1) == y_val).float().mean())
