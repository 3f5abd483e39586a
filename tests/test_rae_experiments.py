"""labcore.rae.experiments end to end at a toy size: every helper the notebook calls runs and is wired
right (decoder on encoder tokens, AE, DiT with FID evals, sampling, image grid)."""

from dataclasses import replace

import torch

from labcore.rae import experiments as ex
from labcore.rae.config import SMOKE, EncoderConfig
from labcore.rae.encoder import LatentStats, ViTEncoder, encode_dataset, freeze
from labcore.rae.fid import FeatureClassifier, FIDScorer

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
