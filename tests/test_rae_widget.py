"""The RAE sampler widget, headless: construct, move a control, the figures' data must change."""

import pytest
import torch

from labcore.rae.decoder import ViTDecoder
from labcore.rae.dit import DiT
from labcore.widgets.rae_sampler import RAESamplerWidget


def _parts():
    torch.manual_seed(0)
    model = DiT(8, 16, 16, 1, 4, num_classes=3).eval()
    for n, p in model.named_parameters():  # open the zero-init output so samples depend on the knobs
        if "ada" in n or "final.linear" in n:
            torch.nn.init.normal_(p, std=0.3)
    return model, ViTDecoder(8, 16, 16, 1, 4).eval()


def test_controls_redraw():
    model, dec = _parts()
    wid = RAESamplerWidget(model, dec, steps=3, base_dim=8)
    img0, grid0 = wid.images.data[0].z, wid.grid.data[0].y
    assert len(img0) == 16 and len(img0[0]) == 3 * 17 and len(grid0) == 4
    wid.steps.value = 5
    assert len(wid.grid.data[0].y) == 6 and wid.images.data[0].z != img0, "steps must resample"
    img1, grid1 = wid.images.data[0].z, wid.grid.data[0].y
    wid.base.value = 128  # n = m: no shift
    assert wid.grid.data[0].y != grid1 and wid.images.data[0].z != img1, "the shift must move the grid"
    img2 = wid.images.data[0].z
    wid.cfg.value = 3.0
    assert wid.images.data[0].z != img2, "guidance must change the samples"
    assert "text/html" in wid._repr_mimebundle_()


def test_bad_base_dim():
    model, dec = _parts()
    with pytest.raises(ValueError, match="base_dim"):
        RAESamplerWidget(model, dec, base_dim=1000)
