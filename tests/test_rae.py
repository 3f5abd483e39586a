"""labcore.rae: encoder recipe + DINOv2 adapter, latent stats, decoder, noise augmentation, DiT(-DH),
Fréchet distance, baseline AE, image datasets and the shipped artifacts."""

import numpy as np
import pytest
import torch

from labcore.data.images import SHAPES, digits_images, shapes_images, split, to_tensors
from labcore.rae.baseline import PlainAE, ae_loss
from labcore.rae.config import EncoderConfig, rae_config
from labcore.rae.decoder import ViTDecoder, decoder_loss, noise_augment, sample_sigma
from labcore.rae.dit import DiT, DiTDH, drop_labels
from labcore.rae.encoder import Dinov2Adapter, LatentStats, ViTEncoder, encode_dataset, freeze, rae_latent
from labcore.rae.fid import frechet_distance, frechet_distance_features, gaussian_stats, sqrtm_psd
from labcore.rae.flow import flow_matching_loss
from labcore.testing import assert_close

TINY_ENC = EncoderConfig(dim=16, depth=2, n_head=2, n_registers=2)


# ---- encoder ---------------------------------------------------------------------------------------

def test_rae_latent_recipe():
    h = torch.randn(2, 3 + 16, 8) * 3 + 1
    z = rae_latent(h, 3)
    ref = (h - h.mean(-1, keepdim=True)) / (h.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    assert_close("latent", ref[:, 3:], z, 1e-5)  # LayerNorm without affine == standardise each token
    with pytest.raises(ValueError, match="n_prefix"):
        rae_latent(h, 19)


def test_vit_encoder_interface_and_frozen_grad():
    enc = freeze(ViTEncoder(TINY_ENC))
    x = torch.randn(3, 1, 16, 16, requires_grad=True)
    z = enc.encode(x)
    assert z.shape == (3, enc.num_tokens, enc.token_dim) == (3, 16, 16)
    assert z.mean(-1).abs().max() < 1e-5 and (z.var(-1, unbiased=False) - 1).abs().max() < 1e-3
    # drops exactly 1 CLS + 2 registers, and matches the final block's output standardised
    assert_close("z", rae_latent(enc.hidden_states(x)[-1], 3), z, 1e-6)
    assert len(enc.features(x)) == TINY_ENC.depth
    z.sum().backward()  # frozen weights, but gradients reach the input (the perceptual loss needs it)
    assert x.grad is not None and all(p.grad is None for p in enc.parameters())
    assert enc(x).shape == (3, 10)


@pytest.mark.parametrize("registers", [0, 4])
def test_dinov2_adapter_tiny_random(registers):
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              image_size=28, patch_size=14)
    model = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=registers, **kw))
             if registers else Dinov2Model(Dinov2Config(**kw))).eval()
    with torch.no_grad():  # a non-trivial final affine, so removing it is actually tested
        model.layernorm.weight.normal_(1.0, 0.5)
        model.layernorm.bias.normal_(0.0, 0.5)
    ad = Dinov2Adapter(model)
    assert ad.n_prefix == 1 + registers and ad.num_tokens == 4 and ad.token_dim == 32
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        z = ad.encode(x)
        out = model(pixel_values=ad.preprocess(x)).last_hidden_state  # [B, 1 + R + 4, 32], with affine
    assert z.shape == (2, 4, 32)
    # the model's own final norm = our latent * weight + bias on the patch tokens
    assert_close("affine", out[:, 1 + registers:], z * model.layernorm.weight + model.layernorm.bias, 1e-5)
    assert len(ad.features(x)) == 2
    with pytest.raises(ValueError, match="x must be"):
        ad.encode(torch.zeros(1, 2, 16, 16))


def test_latent_stats_roundtrip():
    z = torch.randn(50, 4, 3) * torch.arange(1, 13).view(4, 3) + 5
    st = LatentStats(4, 3).fit(z)
    n = st.normalize(z)
    assert n.mean(0).abs().max() < 1e-5 and (n.std(0) - 1).abs().max() < 1e-4
    assert_close("roundtrip", z, st.denormalize(n), 1e-6)
    with pytest.raises(ValueError, match="z must be"):
        st.fit(torch.zeros(5, 3, 3))


# ---- decoder and noise augmentation ----------------------------------------------------------------

def test_sigma_distributions():
    g = torch.Generator().manual_seed(0)
    u = sample_sigma(20000, 0.8, "uniform", g)
    h = sample_sigma(20000, 0.8, "half_normal", g)
    assert u.min() >= 0 and u.max() <= 0.8 and abs(float(u.mean()) - 0.4) < 0.01  # E = tau / 2
    assert h.min() >= 0 and abs(float(h.mean()) - 0.8 * (2 / np.pi) ** 0.5) < 0.01  # E|N(0, t^2)| = t√(2/π)
    with pytest.raises(ValueError, match="tau"):
        sample_sigma(2, -1.0)
    z = torch.randn(4, 16, 8)
    assert torch.equal(noise_augment(z, 0.0), z)
    # one sigma per sample: the noise std within each sample is constant
    d = noise_augment(torch.zeros(4, 64, 64), 0.8, generator=g)
    stds = d.flatten(1).std(1)
    assert stds.max() <= 0.8 * 1.05  # 4096 draws per sample: std within 5%


def test_decoder_shapes_and_loss_grads():
    enc = freeze(ViTEncoder(TINY_ENC))
    dec = ViTDecoder(16, 16, dim=32, depth=1, n_head=2)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    assert dec(enc.encode(x)).shape == x.shape
    g = torch.Generator().manual_seed(0)
    loss, m = decoder_loss(dec, enc, x, tau=0.8, perceptual_weight=0.5, generator=g)
    loss.backward()
    assert set(m) == {"l1", "perceptual"} and m["perceptual"] > 0
    assert all(p.grad is not None for p in dec.parameters()) and all(p.grad is None for p in enc.parameters())
    with pytest.raises(ValueError, match="num_tokens"):
        ViTDecoder(16, 15, 32, 1)


def test_baseline_ae():
    ae = PlainAE(4, dim=32, depth=1)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert ae.encode(x).shape == (2, 16, 4) and ae(x).shape == x.shape
    loss, _ = ae_loss(ae, x)
    loss.backward()
    assert ae.patch.proj.weight.grad is not None  # trained end to end, unlike the RAE encoder


# ---- DiT and DiT-DH --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [DiT, DiTDH])
def test_dit_shapes_zero_init_and_grads(cls):
    kw = dict(head_width=64, head_depth=1) if cls is DiTDH else {}
    model = cls(token_dim=12, num_tokens=9, width=32, depth=2, n_head=4, num_classes=3, **kw)
    x, t, y = torch.randn(5, 9, 12), torch.rand(5), torch.tensor([0, 1, 2, 3, 0])
    v = model(x, t, y)
    assert v.shape == x.shape and torch.equal(v, torch.zeros_like(v))  # zero-init output layer
    assert torch.equal(model(x, t, None), model(x, t, torch.full((5,), 3)))  # None = null class
    loss = flow_matching_loss(model, x, y, generator=torch.Generator().manual_seed(0))
    loss.backward()
    names = ["head_final.linear.weight"] if cls is DiTDH else ["final.linear.weight"]
    for n, p in model.named_parameters():
        if n in names:
            assert p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="x_t must be"):
        model(torch.randn(5, 9, 11), t, y)


def test_dit_dh_head_is_per_token_conditioned():
    torch.manual_seed(0)
    model = DiTDH(token_dim=4, num_tokens=4, width=16, depth=1, head_width=32, head_depth=1, n_head=2)
    for n, p in model.named_parameters():  # open every zero-init gate
        if "ada" in n or "final.linear" in n:
            torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(1, 4, 4), torch.rand(1)
    z, _ = model.trunk(x, t)
    c = model.head_z(z) + model.head_t(t)[:, None]
    assert c.shape == (1, 4, 32) and (c[0, 0] - c[0, 1]).abs().max() > 0  # different per token
    assert model(x, t).shape == x.shape


def test_drop_labels():
    g = torch.Generator().manual_seed(0)
    y = drop_labels(torch.zeros(10000, dtype=torch.long), 0.1, 10, g)
    assert set(y.unique().tolist()) == {0, 10} and abs(float((y == 10).float().mean()) - 0.1) < 0.01


# ---- Fréchet distance -------------------------------------------------------------------------------

def _scipy_fd(mu1, s1, mu2, s2):
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("D", [1, 5, 33])
def test_frechet_distance_vs_scipy(D):
    rng = np.random.default_rng(D)
    a, b = rng.normal(size=(D, D)), rng.normal(size=(D, D))
    s1, s2 = a @ a.T + 0.1 * np.eye(D), b @ b.T + 0.1 * np.eye(D)
    mu1, mu2 = rng.normal(size=D), rng.normal(size=D)
    ours = frechet_distance(*(torch.tensor(v) for v in (mu1, s1, mu2, s2)))
    assert abs(ours - _scipy_fd(mu1, s1, mu2, s2)) <= 1e-6 * max(1.0, ours)  # float64 both: round-off only


def test_frechet_distance_known_gaussians():
    # commuting (diagonal) covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    fd = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert abs(fd - (5.0 + 1.0 + 0.0 + 4.0)) < 1e-9
    assert frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) < 1e-9
    s = torch.randn(6, 6, dtype=torch.float64)
    s = s @ s.T
    r = sqrtm_psd(s)
    assert_close("sqrtm", s, r @ r, 1e-10)
    # from samples: two big draws of one Gaussian are close, a shifted one is far
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(4000, 4, generator=g), torch.randn(4000, 4, generator=g)
    assert frechet_distance_features(f1, f2) < 0.02 < 1.0 < frechet_distance_features(f1, f2 + 1)
    with pytest.raises(ValueError, match="feats"):
        gaussian_stats(torch.zeros(1, 3))


def test_fid_scorer_class_accuracy():
    from labcore.rae.fid import FeatureClassifier, FIDScorer

    torch.manual_seed(0)
    sc = FIDScorer(FeatureClassifier(1, 3, 8).eval(), torch.rand(10, 1, 16, 16) * 2 - 1)
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    pred = sc.classifier(x).argmax(-1)
    assert sc.class_accuracy(x, pred) == 1.0 and sc.class_accuracy(x, (pred + 1) % 3) == 0.0
    with pytest.raises(ValueError, match="same length"):
        sc.class_accuracy(x, pred[:5])


# ---- data and artifacts ----------------------------------------------------------------------------

def test_image_datasets():
    x, y = to_tensors(digits_images(16))
    assert x.shape == (1797, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert set(y.tolist()) == set(range(10))
    s1, s2 = shapes_images(40, seed=3), shapes_images(40, seed=3)
    xs, ys = to_tensors(s1)
    assert xs.shape == (40, 3, 16, 16) and torch.equal(xs, to_tensors(s2)[0]) and ys.max() < len(SHAPES)
    assert ((xs > -1).flatten(1).sum(1) > 4).all()  # every image has a visible shape
    xt, yt, xv, yv = split(x, y, 0.2, seed=0)
    assert len(xv) == 359 and len(xt) + len(xv) == 1797
    with pytest.raises(ValueError, match="size"):
        digits_images(4)


def test_shipped_artifacts_load():
    from labcore.rae.build_encoder import digits_split, load_encoder, load_fid_classifier
    from labcore.rae.fid import accuracy

    enc, cls = load_encoder(build_if_missing=False), load_fid_classifier(build_if_missing=False)
    _, _, xv, yv = digits_split()
    # the shipped networks recognise held-out digits (0.978 / 0.961 when built): features carry semantics
    assert accuracy(enc, xv, yv) > 0.9 and accuracy(cls, xv, yv) > 0.9
    z = encode_dataset(enc, xv[:10])
    assert z.shape == (10, 16, 32) and not z.requires_grad


def test_configs():
    from labcore.rae.config import GPU

    enc = EncoderConfig()
    for cfg in (rae_config("smoke"), rae_config("cpu"), GPU):  # GPU directly: rae_config("gpu") needs CUDA
        assert cfg.narrow_width < enc.dim <= cfg.dit_width  # the width experiment's premise
        # every model the notebook builds at this profile's sizes constructs and runs
        x, t, y = torch.randn(2, enc.num_tokens, enc.dim), torch.rand(2), torch.tensor([0, 10])
        for model in (DiT(enc.dim, enc.num_tokens, cfg.dit_width, cfg.dit_depth),
                      DiT(enc.dim, enc.num_tokens, cfg.narrow_width, 2 * cfg.dit_depth),
                      DiTDH(enc.dim, enc.num_tokens, cfg.narrow_width, cfg.dit_depth, cfg.head_width, cfg.head_depth)):
            assert model(x, t, y).shape == x.shape
        img = torch.zeros(2, 1, enc.img_size, enc.img_size)
        assert ViTDecoder(enc.dim, enc.num_tokens, cfg.dec_dim, cfg.dec_depth)(x).shape == img.shape
        assert PlainAE(cfg.ae_channels, cfg.dec_dim, cfg.dec_depth)(img).shape == img.shape
        assert cfg.n_evals <= cfg.dit_steps and cfg.n_samples >= 2 and cfg.overfit_steps >= 10
        assert cfg.ae_channels < enc.dim  # the 2x2 control's "low" and "matched" dimensions differ
    from labcore.rae.experiments import log_schedule

    cpu = rae_config("cpu")
    # the budget: central claims on >= 2 seeds at cpu, >= 3 at gpu; log-spaced evaluations
    assert cpu.seeds >= 2 and GPU.seeds >= 3
    for cfg in (cpu, GPU):
        at = log_schedule(cfg.dit_steps, cfg.n_evals)
        assert len(at) == cfg.n_evals and at[-1] == cfg.dit_steps and at[1] == 2 * at[0]
    with pytest.raises(ValueError, match="patch"):
        EncoderConfig(patch=5)
