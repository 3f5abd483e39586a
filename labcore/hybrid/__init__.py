"""Chapter 3: the Kimi Linear hybrid (3 KDA : 1 MLA with NoPE), its caches and decoding.

Taught in notebooks/03_kimi_linear_hybrid.ipynb. Files, read in this order: mla.py (MLA, expanded and
absorbed paths), cache.py, model.py (config + LM), decode.py. The softmax baseline is labcore.nn.Attention
with its KVCache (labcore.nn.cache).
"""

from labcore.hybrid.cache import HybridCache, MLACache
from labcore.hybrid.decode import decode_step, filled_cache, generate, incremental_logits, prefill
from labcore.hybrid.experiment import load_text, run_ablation, train_variant, variant_configs
from labcore.hybrid.mla import MultiHeadLatentAttention, naive_mla
from labcore.hybrid.model import HybridConfig, HybridLM, parse_ratio

__all__ = ["HybridCache", "MLACache", "decode_step", "filled_cache", "generate",
           "incremental_logits", "prefill", "MultiHeadLatentAttention", "naive_mla", "HybridConfig", "HybridLM",
           "parse_ratio", "load_text", "run_ablation", "train_variant", "variant_configs"]
