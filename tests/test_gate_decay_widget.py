"""The gate-decay widget, headless: construct, change a control, the figures' data must change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labcore.kda import KimiDeltaAttention, ScalarGatedDeltaNet
from labcore.widgets.gate_decay import GateDecayWidget, layer_inputs, memory_length


def test_head_selector_changes_the_heatmap():
    torch.manual_seed(0)
    layer = KimiDeltaAttention(16, 3, 4)
    wid = GateDecayWidget(layer, torch.randn(2, 9, 16), tokens=list("abcdefghi"))
    z0, mem0 = wid.heat.data[0].z, wid.mem.data[0].y
    assert len(z0) == 9 and len(z0[0]) == 4
    wid.head.value = 2
    assert wid.heat.data[0].z != z0, "changing the head must redraw the heatmap"
    assert wid.mem.data[0].y != mem0, "changing the head must redraw the memory-length plot"
    assert "text/html" in wid._repr_mimebundle_()


def test_list_of_layers_with_one_input_each():
    torch.manual_seed(0)
    layers = [KimiDeltaAttention(16, 2, 4), ScalarGatedDeltaNet(16, 2, 4)]
    model = nn.Sequential(nn.Linear(16, 16), *[Wrap(l) for l in layers])
    x = torch.randn(1, 7, 16)
    xs = layer_inputs(model, layers, x)
    assert len(xs) == 2 and xs[0].shape == (1, 7, 16)
    wid = GateDecayWidget(layers, xs, names=["kda", "gdn"])
    z0 = wid.heat.data[0].z
    wid.layer.value = 1
    assert wid.heat.data[0].z != z0
    row = wid.heat.data[0].z[0]
    assert max(row) - min(row) < 1e-6, "GDN's decay is one scalar per head: rows must be constant"
    with pytest.raises(ValueError, match="inputs"):
        GateDecayWidget(layers, [x])


def test_memory_length():
    g = torch.full((5, 3), -0.1)
    tau, tau_exp = memory_length(g)
    assert torch.allclose(tau, torch.full((3,), 10.0))
    assert torch.allclose(tau_exp, torch.full((3,), 1 / (1 - torch.exp(torch.tensor(-0.1)))), rtol=1e-5)


class Wrap(nn.Module):
    """A residual stand-in for a hybrid block: returns only y."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return x + self.layer(x)[0]
