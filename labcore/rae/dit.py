"""Diffusion transformers on latent tokens: DiT and DiT-DH (a DiT trunk + a shallow, wide head).
Taught in notebooks/05_rae.ipynb, section "The DiT block: adaLN-Zero" (which also
names DiT-DH).

Both map (x_t [B, N, C], t [B], y [B] or None) -> v [B, N, C], the flow-matching velocity. Each latent
token is one DiT token (the RAE latent is already a token grid; no extra patchify). y = None, or the
label `num_classes`, is the unconditional "null" class used by classifier-free guidance.
Width rule (paper, Theorem 1): the DiT's width must be >= the token dimension C, or even fitting one
image leaves a loss floor; DiT-DH gets that width cheaply from its head.
"""

from __future__ import annotations

import torch
from torch import nn

from labcore.nn.vision import DiTBlock, FinalLayer, LabelEmbedder, TimestepEmbedder, sincos_pos_embed_2d


def drop_labels(y: torch.Tensor, p: float, num_classes: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null label num_classes with probability p (trains the CFG branch)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    drop = torch.rand(y.shape, generator=generator).to(y.device) < p
    return torch.where(drop, torch.full_like(y, num_classes), y)


class DiT(nn.Module):
    """x_t -> linear to width + sin-cos positions; c = emb(t) + emb(y); adaLN-Zero blocks; final layer."""

    def __init__(self, token_dim: int, num_tokens: int, width: int, depth: int, n_head: int = 4,
                 num_classes: int = 10, mlp_ratio: float = 4.0):
        super().__init__()
        grid = int(num_tokens ** 0.5)
        if grid * grid != num_tokens:
            raise ValueError(f"num_tokens must be a square, got {num_tokens}")
        if width % n_head or width % 4:
            raise ValueError(f"width must be divisible by n_head ({n_head}) and 4, got {width}")
        self.token_dim, self.num_tokens = token_dim, num_tokens
        self.width, self.num_classes = width, num_classes
        self.x_embed = nn.Linear(token_dim, width)
        self.register_buffer("pos", sincos_pos_embed_2d(width, grid), persistent=False)  # [N, width]
        self.t_embed = TimestepEmbedder(width)
        self.y_embed = LabelEmbedder(num_classes, width)
        self.blocks = nn.ModuleList(DiTBlock(width, n_head, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, token_dim)

    def _check(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1:] != (self.num_tokens, self.token_dim):
            raise ValueError(f"x_t must be [B, {self.num_tokens}, {self.token_dim}], got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be [B] = [{x.shape[0]}], got {tuple(t.shape)}")

    def cond(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
        return self.t_embed(t) + self.y_embed(y)  # [B, width]

    def trunk(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        """Hidden tokens after the blocks [B, N, width] and the conditioning vector c [B, width]."""
        self._check(x, t)
        c = self.cond(t, y, x.shape[0])
        h = self.x_embed(x) + self.pos
        for block in self.blocks:
            h = block(h, c)
        return h, c

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h, c = self.trunk(x, t, y)
        return self.final(h, c)  # [B, N, token_dim]


class DiTDH(DiT):
    """DiT-DH: z = trunk(x_t | t, y), then a shallow wide head v = H(x_t | z, t).

    The head re-embeds x_t at head_width and is conditioned *per token* on the trunk output:
    c_head = proj(z) + emb(t) [B, N, head_width], fed to adaLN-Zero blocks and the final layer.
    """

    def __init__(self, token_dim: int, num_tokens: int, width: int, depth: int, head_width: int,
                 head_depth: int = 2, n_head: int = 4, num_classes: int = 10, mlp_ratio: float = 4.0):
        super().__init__(token_dim, num_tokens, width, depth, n_head, num_classes, mlp_ratio)
        if head_width % n_head or head_width % 4:
            raise ValueError(f"head_width must be divisible by n_head ({n_head}) and 4, got {head_width}")
        del self.final  # the head replaces the trunk's output layer
        grid = int(num_tokens ** 0.5)
        self.head_x = nn.Linear(token_dim, head_width)
        self.register_buffer("head_pos", sincos_pos_embed_2d(head_width, grid), persistent=False)
        self.head_z = nn.Linear(width, head_width)
        self.head_t = TimestepEmbedder(head_width)
        self.head_blocks = nn.ModuleList(DiTBlock(head_width, n_head, mlp_ratio) for _ in range(head_depth))
        self.head_final = FinalLayer(head_width, token_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z, _ = self.trunk(x, t, y)  # [B, N, width]
        c = self.head_z(z) + self.head_t(t)[:, None]  # [B, N, head_width], per token
        h = self.head_x(x) + self.head_pos
        for block in self.head_blocks:
            h = block(h, c)
        return self.head_final(h, c)  # [B, N, token_dim]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
