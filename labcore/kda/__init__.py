"""Chapter 2: Kimi Delta Attention (notebooks/02_kda.ipynb).

naive.py (recurrent + readable chunk references) -> chunk.py (chunkwise WY/UT form) -> gate.py -> layer.py.
"""

from labcore.kda.chunk import chunk_kda
from labcore.kda.config import profile_config
from labcore.kda.experiment import TinyLM, make_batch, run_seeds
from labcore.kda.gate import init_A_log, init_dt_bias, kda_gate
from labcore.kda.layer import KDACache, KimiDeltaAttention, ScalarGatedDeltaNet, l2norm
from labcore.kda.naive import naive_chunk_kda, recurrent_kda

__all__ = ["recurrent_kda", "naive_chunk_kda", "chunk_kda", "kda_gate", "KimiDeltaAttention", "ScalarGatedDeltaNet",
           "KDACache", "l2norm", "profile_config", "TinyLM", "make_batch", "run_seeds", "init_A_log", "init_dt_bias"]
