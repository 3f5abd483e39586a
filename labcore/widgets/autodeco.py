"""Chapter 1 widgets: the per-token temperature viewer and the soft top-p explorer.
Taught in notebooks/01_autodeco.ipynb, section "Widgets"."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as w
import plotly.graph_objects as go
import torch

from labcore.autodeco.soft_top_p import soft_top_p
from labcore.widgets.base import FigureBox


def _candidates(logits: torch.Tensor, T: float, P: float, alpha: float, top: int):
    """Top-`top` tokens of softmax(l / T), with their probability before and after soft top-p."""
    l = logits.float()[None]
    before = torch.softmax(l / T, -1)[0]
    after = soft_top_p(l, torch.tensor([T]), torch.tensor([P]), alpha)[0]
    idx = before.argsort(descending=True)[:top]
    return idx.tolist(), before[idx].tolist(), after[idx].tolist()


class SoftTopPExplorer(FigureBox):
    """Sliders T, P, alpha redraw a fixed distribution before and after soft top-p."""

    def __init__(self, logits: torch.Tensor, labels: Sequence[str] | None = None, top: int = 20,
                 temperature: float = 1.0, top_p: float = 0.9, alpha: float = 30.0):
        if logits.dim() != 1:
            raise ValueError(f"logits must be 1-D [V], got shape {tuple(logits.shape)}")
        self.logits, self.top = logits.detach().cpu(), min(top, logits.numel())
        self.labels = list(labels) if labels is not None else [str(i) for i in range(logits.numel())]
        self.T = w.FloatSlider(value=temperature, min=0.05, max=2.0, step=0.05, description="T")
        self.P = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.01, description="top-p")
        self.alpha = w.FloatLogSlider(value=alpha, base=10, min=0, max=3, step=0.1, description="alpha")
        self.fig = go.FigureWidget(layout=dict(barmode="group", height=320, margin=dict(t=40, b=40),
                                               yaxis_title="probability"))
        self.fig.add_bar(name="softmax(l/T)")
        self.fig.add_bar(name="soft top-p")
        self.figures = (self.fig,)
        for s in (self.T, self.P, self.alpha):
            s.observe(lambda _: self.redraw(), names="value")
        self.redraw()
        super().__init__([w.HBox([self.T, self.P, self.alpha]), self.fig])

    def redraw(self) -> None:
        idx, before, after = _candidates(self.logits, self.T.value, self.P.value, self.alpha.value, self.top)
        x = [self.labels[i] for i in idx]
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = x, before
            self.fig.data[1].x, self.fig.data[1].y = x, after
            self.fig.layout.title = (f"T={self.T.value:.2f}  P={self.P.value:.2f}  alpha={self.alpha.value:.0f}:"
                                     f" {sum(a > 1e-3 for a in after)} of top {self.top} keep mass > 0.001")


class TemperatureViewer(FigureBox):
    """Generated text coloured by the predicted T (row 1) and P (row 2); the token slider (or a click)
    shows that position's top candidates before and after soft top-p at its own (T, P)."""

    def __init__(self, tokens: Sequence[str], temperature: torch.Tensor, top_p: torch.Tensor,
                 logits: torch.Tensor, vocab: Sequence[str], alpha: float = 30.0, top: int = 10):
        n = len(tokens)
        if not (temperature.shape == top_p.shape == (n,) and logits.shape[0] == n):
            raise ValueError(f"temperature, top_p must be [{n}] and logits [{n}, V]; got "
                             f"{tuple(temperature.shape)}, {tuple(top_p.shape)}, {tuple(logits.shape)}")
        self.tokens, self.vocab, self.alpha, self.top = list(tokens), list(vocab), alpha, top
        self.temperature, self.top_p, self.logits = temperature.cpu(), top_p.cpu(), logits.detach().cpu()
        self.heat = go.FigureWidget(layout=dict(height=220, margin=dict(t=30, b=20),
                                                title="predicted temperature (top) and top-p (bottom)"))
        self.heat.add_heatmap(z=[self.temperature.tolist()], text=[self.tokens], texttemplate="%{text}",
                              colorscale="RdBu_r", zmin=0, zmax=2, colorbar=dict(title="T", y=0.75, len=0.5),
                              y=["T"], hovertemplate="%{text}: T=%{z:.2f}<extra></extra>")
        self.heat.add_heatmap(z=[self.top_p.tolist()], text=[self.tokens], texttemplate="%{text}",
                              colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(title="P", y=0.25, len=0.5),
                              y=["P"], hovertemplate="%{text}: P=%{z:.2f}<extra></extra>")
        self.heat.update_layout(yaxis=dict(autorange="reversed"))
        self.bars = go.FigureWidget(layout=dict(barmode="group", height=280, margin=dict(t=40, b=40)))
        self.bars.add_bar(name="before (softmax l/T)")
        self.bars.add_bar(name="after soft top-p")
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
        idx, before, after = _candidates(self.logits[i], T, P, self.alpha, self.top)
        x = [self.vocab[j] for j in idx]
        with self.bars.batch_update():
            self.bars.data[0].x, self.bars.data[0].y = x, before
            self.bars.data[1].x, self.bars.data[1].y = x, after
            self.bars.layout.title = f"token {i} {self.tokens[i]!r}: T={T:.2f}, P={P:.2f}"
