"""Shared blocks every chapter builds on (taught where first used, defined once here)."""

from labcore.nn.blocks import RMSNorm, SwiGLU, CausalConv1d
from labcore.nn.gpt import GPT, GPTConfig, Block, CausalSelfAttention

__all__ = ["RMSNorm", "SwiGLU", "CausalConv1d", "GPT", "GPTConfig", "Block", "CausalSelfAttention"]
