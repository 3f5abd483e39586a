"""CALM's autoencoder: K tokens <-> one continuous vector. Continuous Autoregressive Language Models
(Shao et al., 2025, arXiv:2510.27688). Taught in notebooks/04_calm.ipynb, section "The autoencoder".

Encoder: embed K tokens -> one residual SwiGLU block per token -> flatten, Linear(K*d -> d) -> block ->
RMSNorm -> Linear(d -> 2*latent) = (mu, log_sigma). The decoder mirrors it and reads logits through the
encoder's (tied) embedding matrix. Three robustness tricks make the latent space smooth enough for a
generative head to target: a variational posterior with a per-dimension KL *floor*, dropout on z, and
masking of input tokens. `variational=False` turns all three off (the "no tricks" ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn import RMSNorm, SwiGLU
from labcore.validate import check_ids, check_int, check_nonempty, check_real, check_tensor


class ResidualSwiGLU(nn.Module):
    """x + SwiGLU(RMSNorm(x)): the pre-norm residual block both halves of the autoencoder use."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


def kl_per_dim(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension: 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma)."""
    return 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma)


def clipped_kl(mu: torch.Tensor, log_sigma: torch.Tensor, floor: float) -> torch.Tensor:
    """Mean over chunks of sum over dims of max(KL_i, floor) (paper's KL clipping).

    A dimension already below `floor` nats adds a constant and gets no gradient, so the KL term cannot
    push every dimension to the prior (posterior collapse). mu, log_sigma: [..., latent] -> scalar.
    """
    return kl_per_dim(mu, log_sigma).clamp_min(floor).sum(-1).mean()


class CALMAutoencoder(nn.Module):
    """Compress each chunk of `chunk_len` tokens into one `latent_dim` vector and back.

    encode(ids [B, T]) -> z [B, T/K, latent]; decode(z) -> logits [B, T, vocab]. T must be a multiple
    of K (ValueError otherwise; no padding, so the caller decides what the tail means).
    """

    def __init__(self, vocab_size: int, chunk_len: int = 4, latent_dim: int = 128, d_model: int = 512,
                 hidden: int | None = None, variational: bool = True, kl_weight: float = 1e-3,
                 kl_floor: float = 0.5, dropout: float = 0.15):
        super().__init__()
        for name, val in (("vocab_size", vocab_size), ("chunk_len", chunk_len),
                          ("latent_dim", latent_dim), ("d_model", d_model)):
            check_int(name, val, lo=1)
        check_real("dropout", dropout, 0.0, 1.0, hi_open=True)
        if kl_weight < 0 or kl_floor < 0:
            raise ValueError(f"kl_weight and kl_floor must be >= 0, got {kl_weight}, {kl_floor}")
        K, d = chunk_len, d_model
        hidden = hidden or 5 * d // 2  # paper: 1280 for d = 512
        self.vocab_size, self.chunk_len, self.latent_dim, self.d_model = vocab_size, K, latent_dim, d
        self.variational, self.kl_weight, self.kl_floor = variational, kl_weight, kl_floor
        self.dropout = dropout if variational else 0.0  # one rate for token masking and z dropout
        self.emb = nn.Embedding(vocab_size, d)
        self.enc_tok = ResidualSwiGLU(d, hidden)
        self.enc_merge = nn.Linear(K * d, d)
        self.enc_chunk = ResidualSwiGLU(d, hidden)
        self.enc_norm = RMSNorm(d)
        self.enc_out = nn.Linear(d, 2 * latent_dim)  # (mu, log_sigma)
        self.dec_in = nn.Linear(latent_dim, d)
        self.dec_chunk = ResidualSwiGLU(d, hidden)
        self.dec_split = nn.Linear(d, K * d)
        self.dec_tok = ResidualSwiGLU(d, hidden)
        self.dec_norm = RMSNorm(d)
        nn.init.normal_(self.emb.weight, 0.0, 0.02)

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_tensor("ids", ids)
        if ids.dim() != 2:
            raise ValueError(f"ids must be [B, T], got shape {tuple(ids.shape)}")
        check_ids("ids", ids, self.vocab_size)
        if ids.shape[1] == 0 or ids.shape[1] % self.chunk_len:
            raise ValueError(f"T must be a positive multiple of chunk_len={self.chunk_len}, "
                             f"got T={ids.shape[1]}")

    def posterior(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, T] -> (mu, log_sigma), each [B, T/K, latent]."""
        self._check_ids(ids)
        B, T = ids.shape
        K, d = self.chunk_len, self.d_model
        if self.training and self.dropout > 0:
            # mask inputs to id 0 (labels stay clean): the code must not hinge on any single token
            keep = torch.rand(ids.shape, device=ids.device) >= self.dropout
            ids = torch.where(keep, ids, torch.zeros_like(ids))
        x = self.enc_tok(self.emb(ids))  # [B, T, d]
        x = self.enc_merge(x.reshape(B, T // K, K * d))  # [B, C, d]
        x = self.enc_out(self.enc_norm(self.enc_chunk(x)))  # [B, C, 2L]
        mu, log_sigma = x.chunk(2, dim=-1)
        return mu, log_sigma

    def encode(self, ids: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """ids [B, T] -> z [B, T/K, latent]: the posterior mean, or one draw mu + sigma*eps when sample."""
        mu, log_sigma = self.posterior(ids)
        if sample and self.variational:
            return mu + log_sigma.exp() * torch.randn_like(mu)
        return mu

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C, latent] -> logits [B, C*K, vocab] through the tied embedding matrix."""
        check_tensor("z", z, kind="float")
        if z.dim() != 3 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must be [B, C, {self.latent_dim}], got shape {tuple(z.shape)}")
        B, C, _ = z.shape
        K, d = self.chunk_len, self.d_model
        x = self.dec_chunk(self.dec_in(z))  # [B, C, d]
        x = self.dec_split(x).reshape(B, C * K, d)  # [B, T, d]
        x = self.dec_norm(self.dec_tok(x))
        return x @ self.emb.weight.t()  # [B, T, V]

    @torch.no_grad()
    def decode_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., C, latent] -> argmax token ids [..., C*K] (how CALM turns a vector back into text)."""
        lead = z.shape[:-2]
        ids = self.decode(z.reshape(-1, *z.shape[-2:])).argmax(-1)
        return ids.reshape(*lead, -1)

    def loss(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """K * mean token CE + kl_weight * clipped KL (variational), or K * CE alone (plain AE)."""
        mu, log_sigma = self.posterior(ids)
        check_nonempty("ids", ids.shape[0], "B")  # an empty mean is NaN
        if self.variational:
            z = mu + log_sigma.exp() * torch.randn_like(mu)  # reparameterised draw
            z = F.dropout(z, self.dropout, self.training)
            kl = clipped_kl(mu, log_sigma, self.kl_floor)
        else:
            z, kl = mu, mu.new_zeros(())
        logits = self.decode(z)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())
        loss = self.chunk_len * ce + self.kl_weight * kl
        acc = (logits.detach().argmax(-1) == ids).float().mean()
        return loss, {"ce": float(ce.detach()), "kl": float(kl.detach()), "acc": float(acc)}

    @torch.no_grad()
    def reconstruction_accuracy(self, ids: torch.Tensor, noise_std: float = 0.0) -> float:
        """Token accuracy of argmax(decode(mu + noise_std * eps)) on ids [B, T]; eval mode, no masking."""
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        was = self.training
        self.eval()
        z = self.encode(ids)
        z = z + noise_std * torch.randn_like(z)
        acc = float((self.decode(z).argmax(-1) == ids).float().mean())
        self.train(was)
        return acc
