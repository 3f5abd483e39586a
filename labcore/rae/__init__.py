"""RAE (Zheng, Ma, Tong, Xie, 2025): diffusion transformers in a representation autoencoder's latent.

Chapter 5 (notebooks/05_rae.ipynb). Modules, in the order the notebook teaches them:
flow (flow matching, time shift, Euler sampler), encoder (frozen representation encoder + DINOv2
adapter, PCA squeeze), decoder (ViT decoder, noise-augmented training), dit (DiT, DiT-DH), baseline (plain
AE), fid (Fréchet distance on a classifier's features), ssl (contrastive, label-free encoder training),
build_encoder (the shipped encoders and FID networks, two datasets), experiments (the notebook's drivers:
seeds, log-spaced evaluations, steps to a FID target), config (the three profiles).
"""

from labcore.rae.baseline import PlainAE, ae_loss
from labcore.rae.build_encoder import (
                                     digits_split,
                                     load_encoder,
                                     load_fid_classifier,
                                     load_nuisance_encoder,
                                     load_nuisance_fid_classifier,
                                     nuisance_split,
)
from labcore.rae.config import ClassifierConfig, EncoderConfig, RAEConfig, rae_config
from labcore.rae.decoder import ViTDecoder, decoder_loss, noise_augment, perceptual_loss, sample_sigma
from labcore.rae.dit import DiT, DiTDH
from labcore.rae.encoder import Dinov2Adapter, LatentStats, PCAEncoder, ViTEncoder, encode_dataset, rae_latent
from labcore.rae.experiments import (
                                     convergence_runs,
                                     fid_eval_fn,
                                     fid_floor,
                                     fid_target,
                                     generate,
                                     image_grid,
                                     log_schedule,
                                     recon_l1,
                                     steps_to_reach,
                                     train_dit,
                                     train_plain_ae,
                                     train_rae_decoder,
)
from labcore.rae.fid import FeatureClassifier, FIDScorer, frechet_distance, frechet_distance_features
from labcore.rae.flow import (
                                     euler_sample,
                                     euler_sample_naive,
                                     flow_matching_loss,
                                     interpolate,
                                     sample_t,
                                     shift_factor,
                                     shift_timesteps,
                                     time_grid,
                                     velocity_target,
)
from labcore.rae.ssl import ContrastiveEncoder, contrastive_loss, info_nce, knn_accuracy, train_contrastive

__all__ = [
    # flow
    "euler_sample", "euler_sample_naive", "flow_matching_loss", "interpolate", "sample_t", "shift_factor",
    "shift_timesteps", "time_grid", "velocity_target",
    # encoder
    "Dinov2Adapter", "LatentStats", "PCAEncoder", "ViTEncoder", "encode_dataset", "rae_latent", "digits_split",
    "load_encoder", "load_fid_classifier", "nuisance_split", "load_nuisance_encoder", "load_nuisance_fid_classifier",
    # label-free encoder training
    "ContrastiveEncoder", "contrastive_loss", "info_nce", "knn_accuracy", "train_contrastive",
    # decoder
    "ViTDecoder", "decoder_loss", "noise_augment", "perceptual_loss", "sample_sigma",
    # dit, baseline, fid
    "DiT", "DiTDH", "PlainAE", "ae_loss", "FIDScorer", "FeatureClassifier", "frechet_distance",
    "frechet_distance_features",
    # config and the notebook's experiment drivers
    "ClassifierConfig", "EncoderConfig", "RAEConfig", "rae_config", "convergence_runs", "fid_eval_fn", "fid_floor",
    "fid_target", "generate", "image_grid", "log_schedule", "recon_l1", "steps_to_reach", "train_dit",
    "train_plain_ae", "train_rae_decoder",
]
