"""The nuisance digits and the contrastive encoder: renderer, InfoNCE against a naive loop, k-NN accuracy,
and the shipped nuisance artifacts."""

import math

import pytest
import torch
import torch.nn.functional as F

from labcore.data.images import digits_images, nuisance_digits_images, nuisance_render, to_tensors
from labcore.rae.config import EncoderConfig
from labcore.rae.encoder import ViTEncoder, freeze
from labcore.rae.ssl import ContrastiveEncoder, contrastive_loss, info_nce, knn_accuracy, train_contrastive


def test_nuisance_render():
    x, y = to_tensors(digits_images(16))
    xs = x[:64]
    a = nuisance_render(xs, torch.Generator().manual_seed(0))
    b = nuisance_render(xs, torch.Generator().manual_seed(0))
    c = nuisance_render(xs, torch.Generator().manual_seed(1))
    assert a.shape == (64, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)  # deterministic in the generator, varies across draws
    # the nuisances dominate the pixels: two renders of one glyph differ more than two grey glyphs do
    d_render = (a - c).pow(2).mean()
    d_glyph = (xs[:32] - xs[32:]).pow(2).mean()
    assert d_render > d_glyph
    # the background is textured (not flat) and has colour (channels differ)
    corner = a[:, :, :3, :3]
    assert corner.flatten(2).std(-1).mean() > 0.02 and (a[:, 0] - a[:, 1]).abs().mean() > 0.05
    with pytest.raises(ValueError, match="x must be"):
        nuisance_render(torch.zeros(2, 3, 16, 16))
    ds = nuisance_digits_images(16, seed=3)
    xn, yn = to_tensors(ds)
    assert xn.shape == (1797, 3, 16, 16) and torch.equal(yn, y)  # same digits, same labels, same order


def _naive_info_nce(u, w, temp):
    z = F.normalize(torch.cat([u, w]), dim=-1)
    B = u.shape[0]
    total = 0.0
    for i in range(2 * B):
        j = (i + B) % (2 * B)  # the positive
        num = math.exp(float(z[i] @ z[j]) / temp)
        den = sum(math.exp(float(z[i] @ z[k]) / temp) for k in range(2 * B) if k != i)
        total += -math.log(num / den)
    return total / (2 * B)


@pytest.mark.parametrize("B", [2, 7])
def test_info_nce_vs_naive(B):
    torch.manual_seed(B)
    u, w = torch.randn(B, 5, dtype=torch.float64), torch.randn(B, 5, dtype=torch.float64)
    assert abs(float(info_nce(u, w, 0.3)) - _naive_info_nce(u, w, 0.3)) < 1e-10
    # identical, well-separated pairs -> loss near 0; the loss falls as the pairs align
    e = torch.eye(B, dtype=torch.float64) * 10
    assert float(info_nce(e, e, 0.05)) < 1e-6
    assert float(info_nce(u, u, 0.3)) < float(info_nce(u, w, 0.3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(u, w, 0.0)
    with pytest.raises(ValueError, match="u and w"):
        info_nce(u[:1], w[:1])


def test_contrastive_training_learns_invariance():
    torch.manual_seed(0)
    enc = ViTEncoder(EncoderConfig(channels=3, dim=16, depth=1, n_head=2))
    x = to_tensors(digits_images(16))[0][:64]
    enc, res = train_contrastive(enc, x, nuisance_render, steps=60, batch=32, lr=3e-3)
    first, last = res.losses[:10], res.losses[-10:]
    # fresh renders every step: the loss can only fall if renders of one glyph move together, and only
    # below chance (log of the 2B - 1 candidates) if a glyph's two renders are found among the others
    assert sum(last) / 10 < sum(first) / 10 - 0.3 and sum(last) / 10 < math.log(63) - 0.3
    assert not enc.training and 0 <= res.history[-1]["pair_acc"] <= 1
    g = torch.Generator().manual_seed(0)
    loss, m = contrastive_loss(ContrastiveEncoder(enc), (nuisance_render(x[:8], g), nuisance_render(x[:8], g)))
    assert loss.shape == () and set(m) == {"pair_acc"}


def test_knn_accuracy():
    class Ident(torch.nn.Module):  # latent = the one-hot label: perfect neighbours
        def encode(self, x):
            return x[:, None]

    y = torch.arange(20) % 4
    x = F.one_hot(y, 4).float()
    assert knn_accuracy(Ident(), x, y, x, y, k=3) == 1.0
    assert knn_accuracy(Ident(), x, y, x, (y + 1) % 4, k=3) == 0.0


def test_shipped_nuisance_artifacts():
    from labcore.rae.build_encoder import (
        load_nuisance_encoder,
        load_nuisance_fid_classifier,
        nuisance_split,
    )
    from labcore.rae.fid import accuracy

    enc, cls = load_nuisance_encoder(build_if_missing=False), load_nuisance_fid_classifier(build_if_missing=False)
    x, y, xv, yv = nuisance_split()
    assert x.shape[1:] == (3, 16, 16) and len(xv) == 359
    # trained without labels, the encoder's latent still finds the digit through the nuisances
    assert knn_accuracy(enc, x, y, xv, yv) > 0.8 and accuracy(cls, xv, yv) > 0.9
    assert isinstance(freeze(enc), ViTEncoder) and not any(p.requires_grad for p in enc.parameters())
