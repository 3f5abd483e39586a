"""Chapter 5 configs: the shipped encoder and FID classifier (one size for every profile), and the
chapter's experiment sizes as three instances picked by the profile.
Taught in notebooks/05_rae.ipynb (the `cfg = rae_config(prof)` cell)."""

from __future__ import annotations

from dataclasses import dataclass

from labcore.runtime import Profile, pick


@dataclass(frozen=True)
class EncoderConfig:
    img_size: int = 16  # digits upsampled 8 -> 16 pixels
    channels: int = 1  # grayscale
    patch: int = 4  # 16 / 4 -> a 4 x 4 grid of 16 patch tokens
    dim: int = 32  # token dimension C of the latent (DINOv2-B: 768)
    depth: int = 3  # ViT blocks
    n_head: int = 4  # attention heads
    n_registers: int = 2  # register tokens after CLS, dropped from the latent like DINOv2's 4
    num_classes: int = 10  # supervised pre-training head (our stand-in for self-supervision)
    steps: int = 600  # training steps of build_encoder
    batch: int = 128  # images per step
    lr: float = 2e-3  # AdamW peak lr

    def __post_init__(self):
        if self.img_size % self.patch:
            raise ValueError(f"patch ({self.patch}) must divide img_size ({self.img_size})")
        if self.dim % self.n_head or self.dim % 4:
            raise ValueError(f"dim must be divisible by n_head ({self.n_head}) and 4, got {self.dim}")

    @property
    def num_tokens(self) -> int:
        return (self.img_size // self.patch) ** 2


@dataclass(frozen=True)
class ClassifierConfig:
    feat_dim: int = 32  # width of the feature layer the Fréchet distance is computed on
    steps: int = 400  # training steps of build_encoder
    batch: int = 128  # images per step
    lr: float = 3e-3  # AdamW peak lr


# the nuisance-digits artifacts: an RGB encoder trained contrastively (no labels; its `num_classes` head is
# unused) and an RGB FID CNN, both on fresh nuisance renders every step
NUISANCE_ENCODER = EncoderConfig(channels=3, steps=3000, batch=128, lr=2e-3)
NUISANCE_CLASSIFIER = ClassifierConfig(steps=1500)


@dataclass(frozen=True)
class RAEConfig:
    # decoders (RAE decoder and the baseline autoencoder get the same steps: equal compute)
    dec_dim: int  # ViT decoder width
    dec_depth: int  # ViT decoder blocks
    dec_steps: int  # decoder / autoencoder training steps
    ae_channels: int  # low latent channels per token (SD-VAE-like AE; RAE squeezed by PCA to the same)
    tau: float  # noise-augmentation scale: sigma = tau * U(0, 1) per sample
    perceptual_weight: float  # weight of the frozen-encoder feature loss next to L1
    # diffusion transformer
    dit_width: int  # DiT hidden width (>= token dim, the paper's width rule)
    dit_depth: int  # DiT blocks
    head_width: int  # DiT-DH head width (wide)
    head_depth: int  # DiT-DH head blocks (shallow)
    dit_steps: int  # DiT training steps per convergence run
    base_dim: int  # n in the shift a = sqrt(m / n); m = 16 tokens x channels
    # width experiment (single-image overfit)
    narrow_width: int  # < token dim
    overfit_steps: int  # steps of each single-image run
    # shared
    batch: int  # images (or latents) per step, decoders and DiTs
    lr: float  # AdamW peak lr for the decoders and autoencoders
    dit_lr: float  # AdamW peak lr for the DiTs
    sample_steps: int  # Euler steps when sampling
    n_samples: int  # generated images per FID evaluation (the real-vs-real floor uses as many)
    n_evals: int  # FID evaluations along a DiT run, log-spaced: dit_steps / 2^(n_evals - 1), ..., dit_steps
    cfg_scale: float  # classifier-free guidance scale used for samples (1 = off)
    seeds: int  # seeds of every judged DiT comparison (central claim: >= 2 on cpu, >= 3 on gpu)


SMOKE = RAEConfig(dec_dim=32, dec_depth=1, dec_steps=12, ae_channels=4, tau=0.8, perceptual_weight=0.5,
                  dit_width=32, dit_depth=1, head_width=64, head_depth=1, dit_steps=8, base_dim=64,
                  narrow_width=8, overfit_steps=12, batch=16, lr=2e-3, dit_lr=2e-3, sample_steps=2,
                  n_samples=40, n_evals=2, cfg_scale=1.5, seeds=1)
CPU = RAEConfig(dec_dim=64, dec_depth=2, dec_steps=500, ae_channels=4, tau=0.8, perceptual_weight=0.5,
                dit_width=64, dit_depth=3, head_width=128, head_depth=2, dit_steps=800, base_dim=64,
                narrow_width=8, overfit_steps=300, batch=32, lr=1e-3, dit_lr=2e-3, sample_steps=10,
                n_samples=250, n_evals=6, cfg_scale=1.5, seeds=2)
GPU = RAEConfig(dec_dim=128, dec_depth=4, dec_steps=6000, ae_channels=4, tau=0.8, perceptual_weight=0.5,
                dit_width=256, dit_depth=6, head_width=512, head_depth=2, dit_steps=8000, base_dim=64,
                narrow_width=8, overfit_steps=1500, batch=256, lr=5e-4, dit_lr=5e-4, sample_steps=50,
                n_samples=1000, n_evals=7, cfg_scale=1.5, seeds=3)


def rae_config(profile: Profile | str) -> RAEConfig:
    """The chapter's sizes for a profile (smoke: < 1 min, cpu: ~10 min on 2 cores, gpu: bigger, same code)."""
    return pick(profile, smoke=SMOKE, cpu=CPU, gpu=GPU)
