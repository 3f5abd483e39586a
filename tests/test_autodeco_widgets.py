"""Chapter 1 widgets, headless: construct, move a control, the figure's data changes."""

import pytest
import torch

from labcore.widgets.autodeco import SoftTopPExplorer, TemperatureViewer


def test_soft_top_p_explorer_redraws():
    ex = SoftTopPExplorer(torch.randn(50) * 2, top=12)
    after = list(ex.fig.data[1].y)
    ex.P.value = 0.3
    assert list(ex.fig.data[1].y) != after
    before = list(ex.fig.data[0].y)
    ex.T.value = 0.4
    assert list(ex.fig.data[0].y) != before
    assert "text/html" in ex._repr_mimebundle_()
    with pytest.raises(ValueError, match="logits"):
        SoftTopPExplorer(torch.randn(2, 3))


def test_temperature_viewer_selects_tokens():
    n, V = 6, 30
    v = TemperatureViewer([f"t{i}" for i in range(n)], torch.rand(n) * 2, torch.rand(n), torch.randn(n, V),
                          [chr(65 + i % 26) for i in range(V)])
    assert list(v.heat.data[0].z[0]) == pytest.approx(v.temperature.tolist())
    first = (list(v.bars.data[0].x), list(v.bars.data[1].y))
    v.token.value = 4
    assert (list(v.bars.data[0].x), list(v.bars.data[1].y)) != first
    assert "token 4" in v.bars.layout.title.text
    with pytest.raises(ValueError, match="temperature"):
        TemperatureViewer(["a"], torch.rand(2), torch.rand(2), torch.randn(2, 3), ["x"] * 3)
