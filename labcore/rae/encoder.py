"""The frozen representation encoder of an RAE, and the latent it hands the diffusion model.
Taught in notebooks/05_rae.ipynb, section "The representation encoder and the RAE latent".

RAE takes DINOv2-B (with registers) as is. The latent is the patch tokens after the encoder's final
LayerNorm *with its affine removed* (so every token has zero mean, unit variance over channels), with
the CLS and register tokens dropped: [B, N, C]. We cannot download DINOv2 here, so `ViTEncoder` is a
small ViT pre-trained once by `python -m labcore.rae.build_encoder` (as a digit classifier, our stand-in
for self-supervision). `Dinov2Adapter` wraps a `transformers` Dinov2Model behind the same interface, so
the real encoder drops in where internet and a GPU allow.

Interface of a representation encoder (both classes): `encode(x [B, C, H, W] in [-1, 1]) -> [B, N, C]`,
`features(x) -> list of [B, N, C]` (hidden states, for the perceptual loss), `num_tokens`, `token_dim`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn.vision import PatchEmbed, ViTBlock, sincos_pos_embed_2d
from labcore.rae.config import EncoderConfig


def rae_latent(last_hidden: torch.Tensor, n_prefix: int, eps: float = 1e-6) -> torch.Tensor:
    """The RAE feature recipe: LayerNorm without affine over channels, leading n_prefix tokens dropped.

    last_hidden: [B, n_prefix + N, C], the final block's output *before* the encoder's final norm.
    Returns [B, N, C].
    """
    if n_prefix < 0 or n_prefix >= last_hidden.shape[1]:
        raise ValueError(f"n_prefix must be in [0, {last_hidden.shape[1] - 1}], got {n_prefix}")
    return F.layer_norm(last_hidden, last_hidden.shape[-1:], eps=eps)[:, n_prefix:]


class ViTEncoder(nn.Module):
    """A small ViT: patch tokens + [CLS, registers], fixed sin-cos positions, final LayerNorm, class head.

    forward(x [B, C, H, W]) -> logits [B, num_classes] (how it is pre-trained); encode(x) -> [B, N, dim].
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.n_prefix = 1 + cfg.n_registers
        self.patch = PatchEmbed(cfg.channels, cfg.patch, cfg.dim)
        self.prefix = nn.Parameter(torch.randn(1, self.n_prefix, cfg.dim) * 0.02)  # CLS, registers
        grid = cfg.img_size // cfg.patch
        self.register_buffer("pos", sincos_pos_embed_2d(cfg.dim, grid), persistent=False)  # [N, dim]
        self.blocks = nn.ModuleList(ViTBlock(cfg.dim, cfg.n_head) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens

    @property
    def token_dim(self) -> int:
        return self.cfg.dim

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every block, prefix tokens included: depth x [B, n_prefix + N, dim]."""
        h = self.patch(x) + self.pos  # [B, N, dim]
        h = torch.cat([self.prefix.expand(h.shape[0], -1, -1), h], dim=1)
        out = []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.hidden_states(x)[-1])[:, 0])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return rae_latent(self.hidden_states(x)[-1], self.n_prefix, self.norm.eps)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens of every block, LayerNorm'd without affine (what the perceptual loss compares)."""
        return [rae_latent(h, self.n_prefix, self.norm.eps) for h in self.hidden_states(x)]


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients into its weights (gradients still flow through it to its input)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Dinov2Adapter(nn.Module):
    """A `transformers` Dinov2Model (or Dinov2WithRegistersModel) behind the ViTEncoder interface.

    Input [B, C, H, W] in [-1, 1] is mapped to [0, 1], grey repeated to RGB, resized to the model's
    image_size and ImageNet-normalised; the latent follows `rae_latent` with 1 + num_register_tokens
    leading tokens dropped. The real RAE uses facebook/dinov2-with-registers-base at 224 px.
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        cfg = model.config
        self.n_prefix = 1 + int(getattr(cfg, "num_register_tokens", 0))
        self.image_size = int(cfg.image_size)
        self.eps = float(cfg.layer_norm_eps)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.model.config.patch_size) ** 2

    @property
    def token_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"x must be [B, 1 or 3, H, W], got shape {tuple(x.shape)}")
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    def hidden_states(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # hidden_states[0] is the embedding output; [-1] is the last layer *before* model.layernorm
        return self.model(pixel_values=self.preprocess(x), output_hidden_states=True).hidden_states[1:]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return rae_latent(self.hidden_states(x)[-1], self.n_prefix, self.eps)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [rae_latent(h, self.n_prefix, self.eps) for h in self.hidden_states(x)]


class PCAEncoder(nn.Module):
    """A frozen encoder's latent squeezed to its top-k principal directions over channels (one projection
    shared by every position): `encode(x) = (encoder.encode(x) - mean) @ V_k` -> [B, N, k].

    Still frozen and never trained to reconstruct, so it keeps the representation's structure at a
    VAE-like dimension: the "RAE, low dimension" cell of the chapter's 2x2 control. `features` is the
    wrapped encoder's (the perceptual loss is unchanged). Call `fit` on latents first.
    """

    def __init__(self, encoder: nn.Module, k: int):
        super().__init__()
        if not 1 <= k <= encoder.token_dim:
            raise ValueError(f"k must be in [1, {encoder.token_dim}], got {k}")
        self.encoder, self.k = encoder, k
        self.register_buffer("mean", torch.zeros(encoder.token_dim))
        self.register_buffer("basis", torch.eye(encoder.token_dim)[:, :k])  # [C, k]
        self.register_buffer("explained", torch.zeros(()))  # fraction of the channel variance kept

    @property
    def num_tokens(self) -> int:
        return self.encoder.num_tokens

    @property
    def token_dim(self) -> int:
        return self.k

    @torch.no_grad()
    def fit(self, z: torch.Tensor) -> PCAEncoder:
        """z [N, T, C] latents of the wrapped encoder."""
        if z.dim() != 3 or z.shape[-1] != self.encoder.token_dim:
            raise ValueError(f"z must be [N, T, {self.encoder.token_dim}], got {tuple(z.shape)}")
        flat = z.reshape(-1, z.shape[-1]).double()
        self.mean.copy_(flat.mean(0))
        w, v = torch.linalg.eigh(torch.cov(flat.T))  # ascending
        self.basis.copy_(v[:, -self.k:].flip(-1))  # [C, k], largest variance first
        self.explained.copy_(w[-self.k:].sum() / w.sum())
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (self.encoder.encode(x) - self.mean) @ self.basis  # [B, N, k]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.features(x)


class LatentStats(nn.Module):
    """Per-(position, channel) mean and std of the latent over a dataset; the DiT sees (z - mean) / std.

    fit(z [N, T, C]); normalize / denormalize keep z's shape. Undo before decoding.
    """

    def __init__(self, num_tokens: int, token_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(num_tokens, token_dim))
        self.register_buffer("std", torch.ones(num_tokens, token_dim))

    @torch.no_grad()
    def fit(self, z: torch.Tensor) -> LatentStats:
        if z.dim() != 3 or z.shape[1:] != self.mean.shape:
            T, C = self.mean.shape
            raise ValueError(f"z must be [N, {T}, {C}], got {tuple(z.shape)}")
        if z.shape[0] < 2:
            raise ValueError(f"need at least 2 latents to fit statistics, got {z.shape[0]}")
        self.mean.copy_(z.mean(0))
        self.std.copy_(z.std(0))
        return self

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / (self.std + self.eps)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * (self.std + self.eps) + self.mean


@torch.no_grad()
def encode_dataset(encoder: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """encoder.encode over x [N, C, H, W] in batches -> [N, T, C]."""
    return torch.cat([encoder.encode(x[i:i + batch]) for i in range(0, x.shape[0], batch)])
