"""Shared blocks every chapter builds on (taught where first used, defined once here)."""

from labcore.nn.attention import Attention, causal_mask
from labcore.nn.blocks import (
    IGNORE_INDEX,
    CausalConv1d,
    RMSNorm,
    SwiGLU,
    count_params,
    matched_hidden,
    swiglu_hidden,
)
from labcore.nn.cache import GrowingCache, KVCache, tensor_bytes
from labcore.nn.gpt import GPT, Block, GPTConfig, init_gpt_weights, normal_init, scale_residual_init

__all__ = ["Attention", "causal_mask", "KVCache", "GrowingCache", "tensor_bytes", "RMSNorm", "SwiGLU",
           "swiglu_hidden", "matched_hidden", "count_params", "IGNORE_INDEX", "CausalConv1d", "GPT", "GPTConfig",
           "Block", "init_gpt_weights", "normal_init", "scale_residual_init"]
