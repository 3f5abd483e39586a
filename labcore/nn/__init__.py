"""Shared blocks every chapter builds on (taught where first used, defined once here)."""

from labcore.nn.blocks import CausalConv1d, RMSNorm, SwiGLU
from labcore.nn.gpt import GPT, Block, CausalSelfAttention, GPTConfig

__all__ = ["RMSNorm", "SwiGLU", "CausalConv1d", "GPT", "GPTConfig", "Block", "CausalSelfAttention"]
