"""labcore.nn.vision: patches, positions, timestep embedding, ViT and adaLN-Zero DiT blocks."""

import math

import pytest
import torch

from labcore.nn.vision import (
    DiTBlock,
    FinalLayer,
    LabelEmbedder,
    ViTBlock,
    modulate,
    patchify,
    sincos_pos_embed_2d,
    timestep_embedding,
    unpatchify,
)
from labcore.testing import assert_close


@pytest.mark.parametrize(("B", "C", "H", "W", "p"), [
    pytest.param(*c, id="B{}-C{}-H{}-W{}-p{}".format(*c))
    for c in [(1, 1, 16, 16, 4), (3, 3, 12, 20, 4), (2, 2, 7, 14, 7)]])
def test_patchify_roundtrip(B, C, H, W, p):
    x = torch.randn(B, C, H, W)
    t = patchify(x, p)
    assert t.shape == (B, (H // p) * (W // p), p * p * C)
    # token (i, j) holds exactly the pixels of patch (i, j): compare with direct slicing
    i, j = (H // p) - 1, 1 % (W // p)
    ref = x[0, :, i * p:(i + 1) * p, j * p:(j + 1) * p].permute(1, 2, 0).reshape(-1)
    assert torch.equal(t[0, i * (W // p) + j], ref)
    assert torch.equal(unpatchify(t, p, C, H, W), x)


def test_patchify_rejects_bad_patch():
    with pytest.raises(ValueError, match="patch"):
        patchify(torch.zeros(1, 1, 10, 10), 3)
    with pytest.raises(ValueError, match="square"):
        unpatchify(torch.zeros(1, 6, 16), 4, 1)


def test_sincos_pos_embed_2d():
    pe = sincos_pos_embed_2d(16, 3, 5)
    assert pe.shape == (15, 16)
    # naive: row r, col c -> [sin(r w), cos(r w), sin(c w), cos(c w)] with w_i = 10000^(-i / 4)
    for n in (0, 7, 14):
        r, c = divmod(n, 5)
        w = [10000 ** (-i / 4) for i in range(4)]
        ref = [math.sin(r * v) for v in w] + [math.cos(r * v) for v in w] + \
              [math.sin(c * v) for v in w] + [math.cos(c * v) for v in w]
        assert_close("pos", torch.tensor(ref), pe[n], 1e-6)  # float32 rounding only
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_pos_embed_2d(10, 2)


def test_timestep_embedding():
    t = torch.tensor([0.0, 0.5, 3.0])
    e = timestep_embedding(t, 8)
    freqs = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    ref = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], -1)
    assert_close("temb", ref, e, 1e-6)
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(t, 7)


def test_vit_block_is_permutation_equivariant():
    blk = ViTBlock(32, 4)
    x = torch.randn(2, 9, 32)
    perm = torch.randperm(9)
    assert_close("perm", blk(x)[:, perm], blk(x[:, perm]), 1e-5)  # no positions inside: equivariant


def test_ditblock_zero_init_is_identity_and_learns():
    blk, final = DiTBlock(32, 4), FinalLayer(32, 6)
    x, c = torch.randn(2, 5, 32), torch.randn(2, 32)
    assert torch.equal(blk(x, c), x)  # adaLN-Zero: gates start at 0
    assert torch.equal(final(x, c), torch.zeros(2, 5, 6))
    # gradients still reach the modulation weights (so training can open the gates)
    (blk(x, c) * torch.randn_like(x)).sum().backward()
    assert blk.ada[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("per_token", [False, True])
def test_ditblock_matches_naive(per_token):
    torch.manual_seed(0)
    blk = DiTBlock(16, 2, mlp_ratio=2.0)
    for p in blk.ada.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 7, 16)
    c = torch.randn(3, 7, 16) if per_token else torch.randn(3, 16)
    # naive: token by token, the six modulation vectors computed by hand
    out = torch.zeros_like(x)
    mods = blk.ada(c)
    h = x.clone()
    s1, sc1, g1, s2, sc2, g2 = (mods if per_token else mods[:, None].expand(-1, 7, -1)).chunk(6, -1)
    ln = torch.nn.functional.layer_norm
    h = h + g1 * blk.attn(ln(h, (16,), eps=1e-6) * (1 + sc1) + s1)[0]
    out = h + g2 * blk.mlp(ln(h, (16,), eps=1e-6) * (1 + sc2) + s2)
    assert_close("dit", out, blk(x, c), 1e-5)  # same ops in the same order: fp32 round-off only
    assert torch.equal(modulate(x, c[..., :16] if per_token else c, c if per_token else c),
                       x * (1 + (c if per_token else c[:, None])) + (c if per_token else c[:, None]))


def test_label_embedder_null_and_range():
    emb = LabelEmbedder(10, 8)
    assert emb(torch.tensor([0, 10])).shape == (2, 8)
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        emb(torch.tensor([11]))
