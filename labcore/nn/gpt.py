"""A tiny GPT (nanoGPT-shaped, pre-norm, RMSNorm, SwiGLU, learned positions, tied head).

Used as the frozen base LM in chapter 1 and as the softmax-attention baseline in later chapters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from labcore.nn.attention import Attention
from labcore.nn.blocks import RMSNorm, SwiGLU


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256  # byte-level by default
    block_size: int = 128  # longest context the position table covers
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads
    d_model: int = 128  # residual width
    dropout: float = 0.0  # on attention probs and residual adds

    def __post_init__(self):
        for field in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_head, dropout=cfg.dropout)
        self.mlp = SwiGLU(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x))[0])
        return x + self.drop(self.mlp(self.norm2(x)))


def normal_init(module: nn.Module, std: float = 0.02,
                kinds: tuple[type[nn.Module], ...] = (nn.Linear, nn.Embedding)) -> None:
    """Every submodule of `kinds` gets weight ~ N(0, std) and a zero bias (nanoGPT's and fla's init)."""
    def init(m: nn.Module) -> None:
        if isinstance(m, kinds):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    module.apply(init)  # post-order, as nanoGPT: keeps the RNG stream (and so the numbers) it always had


def scale_residual_init(model: nn.Module, suffixes: tuple[str, ...], n_layer: int, std: float = 0.02,
                        within: str = "") -> None:
    """GPT-2: the projections that write into the residual stream (parameter names ending in `suffixes`,
    containing `within`) get std / sqrt(2 n_layer), so the stream's variance starts independent of depth."""
    for name, p in model.named_parameters():
        if name.endswith(suffixes) and within in name:
            nn.init.normal_(p, 0.0, std / (2 * n_layer) ** 0.5)


def init_gpt_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2 init: N(0, 0.02) for Linear/Embedding weights, zero biases, and the residual projections
    inside `blocks` (attention `proj`, MLP `down`) scaled by 1/sqrt(2 n_layer)."""
    normal_init(model)
    scale_residual_init(model, ("proj.weight", "down.weight"), n_layer, within="blocks")


class GPT(nn.Module):
    """forward(idx [B, T]) -> logits [B, T, vocab]; with return_hidden=True also the final-norm
    hidden states [B, T, d_model] (what lm_head sees, which AutoDeco's heads read)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied
        init_gpt_weights(self, cfg.n_layer)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, return_hidden: bool = False):
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T], got shape {tuple(idx.shape)}")
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # [B, T, C]
        for block in self.blocks:
            x = block(x)
        h = self.norm(x)
        logits = self.lm_head(h)
        return (logits, h) if return_hidden else logits
