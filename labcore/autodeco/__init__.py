"""Chapter 1: AutoDeco (Wang et al., 2025, arXiv:2510.26697), learned per-token temperature and top-p.
Taught in notebooks/01_autodeco.ipynb."""

from labcore.autodeco.config import config_for
from labcore.autodeco.experiment import Comparison, compare_decoders, evaluate, grid_search, pretrain_base, train_heads
from labcore.autodeco.heads import AutoDecoHeads, distribution_stats
from labcore.autodeco.loss import autodeco_loss
from labcore.autodeco.naive import soft_top_p_naive
from labcore.autodeco.sampler import Generation, generate
from labcore.autodeco.soft_top_p import hard_top_p, soft_top_p, soft_top_p_torch, top_p_mask

__all__ = ["AutoDecoHeads", "distribution_stats", "autodeco_loss", "soft_top_p_naive", "Generation", "generate",
           "hard_top_p", "soft_top_p", "soft_top_p_torch", "top_p_mask", "config_for", "evaluate", "grid_search",
           "pretrain_base", "train_heads", "Comparison", "compare_decoders"]
