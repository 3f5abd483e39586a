"""RAE (Zheng, Ma, Tong, Xie, 2025): diffusion transformers in a representation autoencoder's latent.

Chapter 5 (notebooks/05_rae.ipynb). Modules, in the order the notebook teaches them:
flow (flow matching, time shift, Euler sampler), encoder (frozen representation encoder + DINOv2
adapter), decoder (ViT decoder, noise-augmented training), dit (DiT, DiT-DH), baseline (plain AE),
fid (Fréchet distance on a classifier's features), config (the three profiles).
"""
