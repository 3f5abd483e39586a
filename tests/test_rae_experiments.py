"""labcore.rae.experiments end to end at a toy size: every helper the notebook calls runs and is wired
right (decoder on encoder tokens, AE, DiT with FID evals, sampling, image grid)."""

import math
from dataclasses import replace

import pytest
import torch

from labcore.rae import experiments as ex
from labcore.rae.config import SMOKE, EncoderConfig
from labcore.rae.dit import DiTDH
from labcore.rae.encoder import LatentStats, PCAEncoder, ViTEncoder, encode_dataset, freeze
from labcore.rae.fid import FeatureClassifier, FIDScorer
from labcore.testing import assert_close

CFG = replace(SMOKE, dec_steps=3, dit_steps=4, batch=8, n_samples=12, n_evals=2, sample_steps=2,
              cfg_scale=1.5)


def test_pipeline_tiny():
    torch.manual_seed(0)
    x = torch.rand(24, 1, 16, 16) * 2 - 1
    y = torch.arange(24) % 3
    enc = freeze(ViTEncoder(EncoderConfig(dim=16, depth=1, n_head=2)))
    dec, res = ex.train_rae_decoder(enc, x, CFG, tau=0.8)
    assert len(res.losses) == CFG.dec_steps and {"l1", "perceptual"} <= set(res.history[0])
    ae, _ = ex.train_plain_ae(x, CFG)
    assert 0 < ex.recon_l1(enc.encode, dec, x) < 2 and 0 < ex.recon_l1(ae.encode, ae.decode, x) < 2
    z = encode_dataset(enc, x)
    stats = LatentStats(*z.shape[1:]).fit(z)
    scorer = FIDScorer(FeatureClassifier(1, 3, 8).eval(), x)
    decode = lambda zz: dec(stats.denormalize(zz))  # noqa: E731
    eval_fn = ex.fid_eval_fn(scorer, decode, CFG, True, extra={"twice": decode})
    model, r = ex.train_dit(stats.normalize(z), y, CFG, depth=2, eval_fn=eval_fn, eval_every=2)
    assert len(model.blocks) == 2
    assert [e["step"] for e in r.evals] == [2, 4] and all(e["fid"] >= 0 for e in r.evals)
    # the extra decoder sees the very same latents, so the same decoder gives the same score
    assert all(e["fid_twice"] == e["fid"] and 0 <= e["acc"] <= 1 for e in r.evals)
    zs, ys = ex.generate(model, 6, CFG, shift=False)
    assert zs.shape == (6, 16, 16) and ys.tolist() == [0, 1, 2, 0, 1, 2] and torch.isfinite(zs).all()
    fig = ex.image_grid(decode(zs), nrow=3)
    assert fig.data[0].z.shape == (2 * 17, 3 * 17)  # 2 rows x 3 cols of 16 px + 1 px gaps


def test_log_schedule():
    assert ex.log_schedule(400, 5) == [25, 50, 100, 200, 400]
    assert ex.log_schedule(8, 2) == [4, 8] and ex.log_schedule(3, 4) == [1, 2, 3]  # rounding, no duplicates
    with pytest.raises(ValueError, match="n_evals"):
        ex.log_schedule(10, 0)


def test_steps_to_reach():
    at = [25, 50, 100, 200]
    assert ex.steps_to_reach(at, [3.0, 2.0, 1.0, 0.5], 1.0) == 100.0  # exactly on an evaluation
    # halfway between 2.0 (step 50) and 1.0 (step 100) in value -> halfway in log(step): 50 * sqrt(2)
    assert abs(ex.steps_to_reach(at, [3.0, 2.0, 1.0, 0.5], 1.5) - 50 * 2 ** 0.5) < 1e-9
    assert ex.steps_to_reach(at, [0.4, 0.3, 0.2, 0.1], 1.0) == 25.0  # below from the start: first eval
    assert ex.steps_to_reach(at, [3.0, 2.0, 1.5, 1.2], 1.0) == math.inf
    # the first crossing counts, even if the curve goes back up
    assert ex.steps_to_reach(at, [3.0, 0.9, 1.4, 0.8], 1.0) < 50
    with pytest.raises(ValueError, match="increasing"):
        ex.steps_to_reach([50, 25], [1.0, 0.5], 1.0)


def test_fid_target():
    assert ex.fid_target(0.5, [0.9, 0.8, 0.7]) == 1.0  # every run ends below 2 x floor: the target is 2 x floor
    assert ex.fid_target(0.5, [3.0, 0.8, 2.0]) == 3.0  # one does not: the worst final, which every run reaches
    with pytest.raises(ValueError, match="floor"):
        ex.fid_target(0.0, [1.0])


def test_train_dit_eval_at_and_dit_dh():
    torch.manual_seed(0)
    z, y = torch.randn(10, 4, 8), torch.arange(10) % 2
    calls = []

    def eval_fn(model):
        calls.append(1)
        return {"fid": float(len(calls))}

    cfg = replace(CFG, batch=4, base_dim=8)
    model, r = ex.train_dit(z, y, cfg, width=16, depth=1, steps=8, eval_fn=eval_fn, eval_at=[2, 4, 8])
    assert [e["step"] for e in r.evals] == [2, 4, 8] and len(calls) == 3  # gcd 2: step 6 is skipped unseen
    dh, _ = ex.train_dit(z, y, cfg, width=8, depth=1, steps=2, head_width=32, head_depth=1)
    assert isinstance(dh, DiTDH) and dh.head_final.linear.out_features == 8
    with pytest.raises(ValueError, match="eval_at"):
        ex.train_dit(z, y, cfg, width=16, depth=1, steps=4, eval_fn=eval_fn, eval_at=[2, 5])


def test_pca_encoder_and_plain_ae_channels():
    torch.manual_seed(0)
    enc = freeze(ViTEncoder(EncoderConfig(dim=16, depth=1, n_head=2)))
    x = torch.rand(30, 1, 16, 16) * 2 - 1
    z = encode_dataset(enc, x)
    pca = PCAEncoder(enc, 4).fit(z)
    p = pca.encode(x)
    assert p.shape == (30, 16, 4) and pca.token_dim == 4 and pca.num_tokens == 16
    # the projection keeps the top variance: components uncorrelated, variances descending, fraction in (0, 1]
    flat = p.reshape(-1, 4).double()
    cov = torch.cov(flat.T)
    assert (cov - torch.diag(cov.diag())).abs().max() < 1e-4 * cov.diag().max()
    assert (cov.diag()[:-1] >= cov.diag()[1:]).all() and 0 < float(pca.explained) <= 1
    full = PCAEncoder(enc, 16).fit(z)  # k = C: a rotation, so distances between tokens are kept
    assert abs(float(full.explained) - 1) < 1e-6
    assert_close("rotation", torch.cdist(z[0], z[1]), torch.cdist(full.encode(x[:1])[0], full.encode(x[1:2])[0]), 1e-4)
    with pytest.raises(ValueError, match="k must be"):
        PCAEncoder(enc, 17)
    ae, _ = ex.train_plain_ae(x, CFG, channels=16)
    assert ae.encode(x[:2]).shape == (2, 16, 16)
