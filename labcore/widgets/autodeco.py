"""Chapter 1 widgets: the per-token temperature viewer and the soft top-p explorer.
Taught in notebooks/01_autodeco.ipynb, section "Widgets"."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as w
import plotly.graph_objects as go
import torch

from labcore.autodeco.soft_top_p import hard_top_p, soft_top_p
from labcore.widgets.base import FigureBox

# the three distributions each bar chart shows, in trace order
SERIES = ("softmax(l/T)", "soft top-p (trained on)", "hard top-p (sampled from)")


def _candidates(logits: torch.Tensor, T: float, P: float, alpha: float, top: int):
    """Top-`top` tokens of softmax(l / T) with their probability before truncation, after soft top-p
    (what training differentiates through) and after hard top-p (what the sampler draws from)."""
    l = logits.float()[None]
    temp, p = torch.tensor([T]), torch.tensor([P])
    before = torch.softmax(l / T, -1)[0]
    soft = soft_top_p(l, temp, p, alpha)[0]
    hard = hard_top_p(l, temp, p, convention="hf")[0]
    idx = before.argsort(descending=True)[:top]
    return idx.tolist(), [d[idx].tolist() for d in (before, soft, hard)]


def _bars(height: int) -> go.FigureWidget:
    fig = go.FigureWidget(layout=dict(barmode="group", height=height, margin=dict(t=40, b=40),
                                      yaxis_title="probability", legend=dict(orientation="h", y=-0.25)))
    for name in SERIES:
        fig.add_bar(name=name)
    return fig


def _set_bars(fig: go.FigureWidget, x: list[str], dists: list[list[float]], title: str) -> None:
    with fig.batch_update():
        for trace, y in zip(fig.data, dists, strict=True):
            trace.x, trace.y = x, y
        fig.layout.title = title


class SoftTopPExplorer(FigureBox):
    """Sliders T, P, alpha redraw a fixed distribution before truncation, after soft top-p and after hard
    top-p (the distribution a sampler draws from; alpha -> inf takes soft to it)."""

    def __init__(self, logits: torch.Tensor, labels: Sequence[str] | None = None, top: int = 20,
                 temperature: float = 1.0, top_p: float = 0.9, alpha: float = 30.0):
        if logits.dim() != 1:
            raise ValueError(f"logits must be 1-D [V], got shape {tuple(logits.shape)}")
        self.logits, self.top = logits.detach().cpu(), min(top, logits.numel())
        self.labels = list(labels) if labels is not None else [str(i) for i in range(logits.numel())]
        self.T = w.FloatSlider(value=temperature, min=0.05, max=2.0, step=0.05, description="T")
        self.P = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.01, description="top-p")
        self.alpha = w.FloatLogSlider(value=alpha, base=10, min=0, max=3, step=0.1, description="alpha")
        self.fig = _bars(340)
        self.figures = (self.fig,)
        for s in (self.T, self.P, self.alpha):
            s.observe(lambda _: self.redraw(), names="value")
        self.redraw()
        super().__init__([w.HBox([self.T, self.P, self.alpha]), self.fig])

    def redraw(self) -> None:
        idx, dists = _candidates(self.logits, self.T.value, self.P.value, self.alpha.value, self.top)
        kept = sum(a > 0 for a in dists[2])
        _set_bars(self.fig, [self.labels[i] for i in idx], dists,
                  f"T={self.T.value:.2f}  P={self.P.value:.2f}  alpha={self.alpha.value:.0f}: hard top-p keeps "
                  f"{kept} of the top {self.top}, soft top-p gives {sum(a > 1e-3 for a in dists[1])} mass > 0.001")


class TemperatureViewer(FigureBox):
    """Generated text coloured by the predicted T (row 1) and P (row 2); the token slider (or a click)
    shows that position's top candidates before truncation, after soft top-p and after the hard top-p the
    sampler actually drew from, each at that position's own (T, P)."""

    def __init__(self, tokens: Sequence[str], temperature: torch.Tensor, top_p: torch.Tensor,
                 logits: torch.Tensor, vocab: Sequence[str], alpha: float = 30.0, top: int = 10):
        n = len(tokens)
        if not (temperature.shape == top_p.shape == (n,) and logits.shape[0] == n):
            raise ValueError(f"temperature, top_p must be [{n}] and logits [{n}, V]; got "
                             f"{tuple(temperature.shape)}, {tuple(top_p.shape)}, {tuple(logits.shape)}")
        self.tokens, self.vocab, self.alpha, self.top = list(tokens), list(vocab), alpha, top
        self.temperature, self.top_p, self.logits = temperature.cpu(), top_p.cpu(), logits.detach().cpu()
        # Numeric rows 0 and 1 labelled by ticktext: two one-row heatmaps on a *category* y axis make
        # plotly.js (4.x) read a second row that does not exist, and the figure never draws.
        self.heat = go.FigureWidget(layout=dict(height=220, margin=dict(t=30, b=20),
                                                title="predicted temperature (top) and top-p (bottom)",
                                                xaxis=dict(dtick=1, title="position"),
                                                yaxis=dict(tickvals=[0, 1], ticktext=["T", "P"],
                                                           autorange="reversed")))
        self.heat.add_heatmap(z=[self.temperature.tolist()], text=[self.tokens], texttemplate="%{text}",
                              colorscale="RdBu_r", zmin=0, zmax=2, colorbar=dict(title="T", y=0.75, len=0.5),
                              y=[0], hovertemplate="%{text}: T=%{z:.2f}<extra></extra>")
        self.heat.add_heatmap(z=[self.top_p.tolist()], text=[self.tokens], texttemplate="%{text}",
                              colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="P", y=0.25, len=0.5),
                              y=[1], hovertemplate="%{text}: P=%{z:.2f}<extra></extra>")
        self.bars = _bars(300)
        self.figures = (self.heat, self.bars)
        self.token = w.IntSlider(value=0, min=0, max=max(n - 1, 0), description="token")
        self.token.observe(lambda _: self.redraw(), names="value")
        for trace in self.heat.data:
            trace.on_click(lambda _t, points, _s: points.point_inds and setattr(
                self.token, "value", int(points.point_inds[0][1])))
        self.redraw()
        super().__init__([self.heat, self.token, self.bars])

    def redraw(self) -> None:
        i = self.token.value
        T, P = float(self.temperature[i]), float(self.top_p[i])
        idx, dists = _candidates(self.logits[i], T, P, self.alpha, self.top)
        _set_bars(self.bars, [self.vocab[j] for j in idx], dists, f"token {i} {self.tokens[i]!r}: T={T:.2f}, P={P:.2f}")
