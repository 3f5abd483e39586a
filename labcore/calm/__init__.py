"""Chapter 4, CALM: continuous next-vector language modelling (Shao et al., 2025, arXiv:2510.27688).
Taught in notebooks/04_calm.ipynb: autoencoder -> energy score -> energy head -> CALM -> BrierLM -> temperature."""

from labcore.calm.autoencoder import CALMAutoencoder, clipped_kl, kl_per_dim
from labcore.calm.brier import brier_estimate, brier_exact, brier_lm
from labcore.calm.config import CALMLabConfig, lab_config
from labcore.calm.energy import EnergyHead, energy_score_loss, energy_score_loss_naive
from labcore.calm.experiment import (
           build_calm,
           build_models,
           expected_energy_loss,
           fit_toy_head,
           load_text,
           noise_robustness,
           reconstruction_errors,
           run_calm_k1,
           run_lm_pair,
           temperature_study,
           time_generation,
           toy_mixture,
           train_autoencoder,
)
from labcore.calm.model import (
           CALM,
           CALMConfig,
           cached_blocks,
           gpt_chunk_decode,
           gpt_exact_brier1,
           gpt_flops_per_position,
           gpt_generate,
           gpt_sample_chunks,
           gpt_train_flops_per_step,
)
from labcore.calm.sampling import inverse_temperature, sample_batch_approx, sample_exact, tempered

__all__ = ["CALMAutoencoder", "clipped_kl", "kl_per_dim", "brier_estimate", "brier_exact", "brier_lm",
           "CALMLabConfig", "lab_config", "EnergyHead", "energy_score_loss", "energy_score_loss_naive", "CALM",
           "CALMConfig", "cached_blocks", "gpt_chunk_decode", "gpt_exact_brier1", "gpt_flops_per_position",
           "gpt_generate", "gpt_sample_chunks", "gpt_train_flops_per_step", "inverse_temperature",
           "sample_batch_approx", "sample_exact", "tempered", "build_calm", "build_models", "expected_energy_loss",
           "fit_toy_head", "load_text", "noise_robustness", "reconstruction_errors", "run_calm_k1", "run_lm_pair",
           "temperature_study", "time_generation", "toy_mixture", "train_autoencoder"]
