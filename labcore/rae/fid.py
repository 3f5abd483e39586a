"""An FID-like score: the Fréchet distance between Gaussians fitted to classifier features of real and
generated images. FID uses Inception-v3 on ImageNet; we use a small CNN trained here on digits.
Taught in notebooks/05_rae.ipynb, section "Convergence: the paper's metric, and a 2×2 control" (the FID-like
score).

    FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2})

The matrix square roots use symmetric eigendecompositions in float64 (S_1^{1/2} S_2 S_1^{1/2} is
symmetric PSD, and has the same trace of square root as scipy's sqrtm(S_1 S_2)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from labcore.rae.config import ClassifierConfig


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"feats must be [N >= 2, D], got shape {tuple(feats.shape)}")
    f = feats.double()
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (f.shape[0] - 1)


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix via eigh; tiny negative eigenvalues (round-off) count as 0."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). mu [D], sigma [D, D]."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"need mu [D] and sigma [D, D] for both, got {tuple(mu1.shape)}, "
                         f"{tuple(sigma1.shape)}, "
                         f"{tuple(mu2.shape)}, {tuple(sigma2.shape)}")
    mu1, mu2, sigma1, sigma2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    s1 = sqrtm_psd(sigma1)
    cross = sqrtm_psd(s1 @ sigma2 @ s1)  # (S1^1/2 S2 S1^1/2)^1/2
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(cross)
    return float(fd.clamp_min(0))


def frechet_distance_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N1, D], [N2, D]."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


class FeatureClassifier(nn.Module):
    """Small CNN: two conv blocks -> pool -> feat_dim features -> logits. [B, C, H, W] -> [B, classes]."""

    def __init__(self, channels: int = 1, num_classes: int = 10, feat_dim: int = 32):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(2))
        self.feat = nn.Linear(64 * 4, feat_dim)
        self.head = nn.Linear(feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, feat_dim] (what the Fréchet distance compares)."""
        return torch.tanh(self.feat(self.convs(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def classifier_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on (x, y); also reports batch accuracy."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), {"acc": float((logits.argmax(-1) == y).float().mean())}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of a classifier on (x [N, C, H, W], y [N]), in batches."""
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / len(x)


def train_classifier(x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig | None = None,
                     seed: int = 0, progress: bool = False,
                     augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                     channels: int | None = None) -> FeatureClassifier:
    """Train the FID feature network on (x [N, C, H, W], y [N]).

    augment(x_batch, generator) -> images draws each step's augmentation (default: random 1-pixel shifts);
    channels: the images augment returns (default x's).
    """
    from labcore.train import TrainConfig, batch_generator, train

    cfg = cfg or ClassifierConfig()
    torch.manual_seed(seed)
    model = FeatureClassifier(channels or x.shape[1], int(y.max()) + 1, cfg.feat_dim)

    def shift(xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
        return torch.roll(xb, shifts=(dy, dx), dims=(2, 3))

    def batch_fn(step: int, rank: int, world: int):
        g = batch_generator(seed, step, rank)
        idx = torch.randint(0, x.shape[0], (cfg.batch,), generator=g)
        return (augment or shift)(x[idx], g), y[idx]

    train(model, classifier_loss, batch_fn,
          TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=20, progress=progress, desc="fid classifier"))
    return model.eval()


class FIDScorer:
    """Reference statistics of real images under a frozen classifier; score(x_gen) -> Fréchet distance."""

    def __init__(self, classifier: FeatureClassifier, x_ref: torch.Tensor, batch: int = 512):
        self.classifier, self.batch = classifier.eval(), batch
        self.mu, self.sigma = gaussian_stats(self.features(x_ref))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.classifier.parameters()).device
        return torch.cat([self.classifier.features(x[i:i + self.batch].to(dev)).cpu()
                          for i in range(0, x.shape[0], self.batch)])

    @torch.no_grad()
    def class_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of images x [N, C, H, W] the classifier assigns to their intended label y [N]."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        dev = next(self.classifier.parameters()).device
        return accuracy(self.classifier, x.clamp(-1, 1).to(dev), y.to(dev), self.batch)

    def score(self, x_gen: torch.Tensor) -> float:
        """Fréchet distance of x_gen [N, C, H, W] in [-1, 1] to the reference images' features."""
        return frechet_distance(*gaussian_stats(self.features(x_gen.clamp(-1, 1))), self.mu, self.sigma)
