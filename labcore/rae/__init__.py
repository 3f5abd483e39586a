"""RAE (Zheng, Ma, Tong, Xie, 2025): diffusion transformers in a representation autoencoder's latent.

Chapter 5 (notebooks/05_rae.ipynb). Modules, in the order the notebook teaches them:
flow (flow matching, time shift, Euler sampler), encoder (frozen representation encoder + DINOv2
adapter), decoder (ViT decoder, noise-augmented training), dit (DiT, DiT-DH), baseline (plain AE),
fid (Fréchet distance on a classifier's features), config (the three profiles).
"""

from labcore.rae.baseline import PlainAE, ae_loss
from labcore.rae.build_encoder import digits_split, load_encoder, load_fid_classifier
from labcore.rae.config import ClassifierConfig, EncoderConfig, RAEConfig, rae_config
from labcore.rae.decoder import ViTDecoder, decoder_loss, noise_augment, perceptual_loss, sample_sigma
from labcore.rae.dit import DiT, DiTDH
from labcore.rae.encoder import Dinov2Adapter, LatentStats, ViTEncoder, encode_dataset, rae_latent
from labcore.rae.experiments import (
                                     fid_eval_fn,
                                     generate,
                                     image_grid,
                                     recon_l1,
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

__all__ = [
    # flow
    "euler_sample", "euler_sample_naive", "flow_matching_loss", "interpolate", "sample_t", "shift_factor",
    "shift_timesteps", "time_grid", "velocity_target",
    # encoder
    "Dinov2Adapter", "LatentStats", "ViTEncoder", "encode_dataset", "rae_latent", "digits_split",
    "load_encoder", "load_fid_classifier",
    # decoder
    "ViTDecoder", "decoder_loss", "noise_augment", "perceptual_loss", "sample_sigma",
    # dit, baseline, fid
    "DiT", "DiTDH", "PlainAE", "ae_loss", "FIDScorer", "FeatureClassifier", "frechet_distance",
    "frechet_distance_features",
    # config and the notebook's experiment drivers
    "ClassifierConfig", "EncoderConfig", "RAEConfig", "rae_config", "fid_eval_fn", "generate", "image_grid",
    "recon_l1", "train_dit", "train_plain_ae", "train_rae_decoder",
]
