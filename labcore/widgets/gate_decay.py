"""Gate-decay widget: which key channels of a KDA layer remember, and for how long.
Used in notebooks/02_kda.ipynb (section "Which channels remember? The gate-decay widget") and reused by
chapter 3 on the hybrid's KDA layers.

For a layer's per-token log decay g [T, K] (one head) on a real input it shows a heatmap of exp(g)
(1 = keep everything, 0 = forget at once) and each channel's effective memory length in tokens:
-1 / mean_t g (the e-folding time of the average decay) and 1 / (1 - mean_t exp g).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as w
import plotly.graph_objects as go
import torch
from torch import nn

from labcore.widgets.base import FigureBox


def memory_length(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g [T, K] log decay -> (-1/mean g, 1/(1 - mean exp g)), each [K], in tokens."""
    if g.dim() != 2:
        raise ValueError(f"g must be [T, K], got shape {tuple(g.shape)}")
    g = g.double()  # 1 - mean exp g is a difference of numbers close to 1
    tau = -1.0 / g.mean(0).clamp(max=-1e-12)
    tau_exp = 1.0 / (1.0 - g.exp().mean(0)).clamp(min=1e-12)
    return tau.float(), tau_exp.float()


def layer_inputs(model: nn.Module, layers: Sequence[nn.Module], *args, **kwargs) -> list[torch.Tensor]:
    """Run model(*args, **kwargs) once and return the hidden state each of `layers` received."""
    seen: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_pre_hook(lambda m, a, kw=None, i=i: seen.__setitem__(i, a[0].detach()))
             for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    missing = [i for i in range(len(layers)) if i not in seen]
    if missing:
        raise ValueError(f"layers {missing} were not called by the model's forward")
    return [seen[i] for i in range(len(layers))]


class GateDecayWidget(FigureBox):
    """Heatmap of exp(g) per (token, channel) for one head of one KDA layer, plus memory length per channel.

    Args:
        layers: a layer with `gate_values(x) -> [B, T, H, K]` and `n_head`, or a list of them
        inputs: x [B, T, d_model] fed to every layer, or a list with one x per layer (see `layer_inputs`)
        names: a label per layer (default "layer 0", ...)
        tokens: optional text per position, shown on the heatmap's token axis
        sample: which batch row to show
    """

    def __init__(self, layers, inputs, names: Sequence[str] | None = None,
                 tokens: Sequence[str] | None = None, sample: int = 0):
        layers = list(layers) if isinstance(layers, (list, tuple, nn.ModuleList)) else [layers]
        if not layers:
            raise ValueError("layers must hold at least one layer")
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs] * len(layers)
        if len(xs) != len(layers):
            raise ValueError(f"inputs must be one tensor or one per layer ({len(layers)}), got {len(xs)}")
        names = list(names) if names is not None else [f"layer {i}" for i in range(len(layers))]
        if len(names) != len(layers):
            raise ValueError(f"names must have one entry per layer ({len(layers)}), got {len(names)}")
        if not 0 <= sample < xs[0].shape[0]:
            raise ValueError(f"sample must be in [0, {xs[0].shape[0] - 1}], got {sample}")
        with torch.no_grad():
            # one [T, H, K] log-decay tensor per layer
            self.g = [layer.gate_values(x)[sample].float().cpu() for layer, x in zip(layers, xs, strict=True)]
        T = self.g[0].shape[0]
        self.tokens = list(tokens) if tokens is not None else [str(t) for t in range(T)]

        self.layer = w.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="layer")
        self.head = w.Dropdown(options=[(f"head {h}", h) for h in range(self.g[0].shape[1])], value=0,
                               description="head")
        self.heat = go.FigureWidget(go.Heatmap(z=[[0.0]], zmin=0, zmax=1, colorscale="Viridis",
                                               colorbar={"title": "exp(g)"}))
        self.heat.update_layout(title="per-token decay exp(g) (1 = keep, 0 = forget)", height=380,
                                xaxis_title="key channel", yaxis_title="token", yaxis_autorange="reversed",
                                margin={"t": 40, "b": 40})
        self.mem = go.FigureWidget([go.Bar(name="-1 / mean g"), go.Scatter(name="1 / (1 - mean exp g)",
                                                                           mode="markers")])
        self.mem.update_layout(title="effective memory length per channel", height=300, yaxis_type="log",
                               xaxis_title="key channel", yaxis_title="tokens", margin={"t": 40, "b": 40})
        self.figures = (self.heat, self.mem)
        self.layer.observe(self._redraw, names="value")
        self.head.observe(self._redraw, names="value")
        self._redraw()
        super().__init__([w.HBox([self.layer, self.head]), self.heat, self.mem])

    def current(self) -> torch.Tensor:
        """g [T, K] of the selected layer and head."""
        g = self.g[self.layer.value]
        return g[:, min(self.head.value, g.shape[1] - 1)]

    def _redraw(self, *_):
        g = self.current()
        tau, tau_exp = memory_length(g)
        channels = list(range(g.shape[1]))
        with self.heat.batch_update():
            self.heat.data[0].z = g.exp().tolist()
            self.heat.data[0].x = channels
            self.heat.data[0].y = list(range(g.shape[0]))
            self.heat.data[0].customdata = [[tok] * len(channels) for tok in self.tokens]
            self.heat.data[0].hovertemplate = "token %{y} (%{customdata})<br>channel %{x}<br>exp(g) %{z:.3f}"
        with self.mem.batch_update():
            self.mem.data[0].x, self.mem.data[0].y = channels, tau.tolist()
            self.mem.data[1].x, self.mem.data[1].y = channels, tau_exp.tolist()
