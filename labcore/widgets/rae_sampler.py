"""RAE sampler widget: turn the sampling knobs of a trained latent DiT and watch the samples change.
Used in notebooks/05_rae.ipynb (section "Play with the sampler").

Controls: Euler steps, the time-shift base dimension n (a = sqrt(m / n); n = m means no shift) and
the classifier-free guidance scale. Shows one decoded sample per class (fixed noise, so only the knobs
change the picture) and the time grid the sampler walks from t = 1 to 0.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w
import plotly.graph_objects as go
import torch

from labcore.rae.flow import euler_sample, time_grid
from labcore.widgets.base import FigureBox


class RAESamplerWidget(FigureBox):
    """Args:
        model: a DiT (`labcore.rae.dit.DiT`): model(x_t [B, N, C], t [B], y [B]) -> v
        decode: normalised latents [B, N, C] -> images [B, 1 or 3, H, W] in [-1, 1]
        steps, base_dim, cfg_scale: initial values of the three controls
        seed: the fixed noise
    """

    def __init__(self, model, decode: Callable[[torch.Tensor], torch.Tensor], steps: int = 10,
                 base_dim: int = 64, cfg_scale: float = 1.0, seed: int = 0):
        self.model, self.decode = model, decode
        self.m = model.num_tokens * model.token_dim
        if not 1 <= base_dim <= self.m:
            raise ValueError(f"base_dim must be in [1, {self.m}], got {base_dim}")
        dev = next(model.parameters()).device
        g = torch.Generator().manual_seed(seed)
        K = model.num_classes
        self.noise = torch.randn(K, model.num_tokens, model.token_dim, generator=g).to(dev)
        self.y = torch.arange(K, device=dev)
        self.null = torch.full_like(self.y, K)
        self.steps = w.IntSlider(value=steps, min=1, max=100, description="Euler steps")
        bases = {2 ** k for k in range(self.m.bit_length()) if 2 ** k <= self.m} | {base_dim, self.m}
        self.base = w.SelectionSlider(options=sorted(bases), value=base_dim, description="base n")
        self.cfg = w.FloatSlider(value=cfg_scale, min=0.0, max=5.0, step=0.25, description="CFG scale")
        self.images = go.FigureWidget(go.Heatmap(z=[[0.0]], colorscale="gray", zmin=0, zmax=1,
                                                 showscale=False))
        self.images.update_layout(title="one sample per class", height=160, margin=dict(l=0, r=0, t=30, b=0))
        self.images.update_xaxes(visible=False).update_yaxes(visible=False, autorange="reversed")
        self.grid = go.FigureWidget(go.Scatter(x=[0], y=[0], mode="lines+markers"))
        self.grid.update_layout(title="time grid t_i", xaxis_title="step i", yaxis_title="t", height=260)
        self.figures = (self.images, self.grid)
        for c in (self.steps, self.base, self.cfg):
            c.observe(lambda _: self.redraw(), names="value")
        super().__init__([w.HBox([self.steps, self.base, self.cfg]), self.images, self.grid])
        self.redraw()

    @torch.no_grad()
    def redraw(self) -> None:
        n = self.base.value
        z = euler_sample(self.model, self.noise, self.steps.value, self.y, latent_dim=self.m, base_dim=n,
                         null_cond=self.null, cfg_scale=self.cfg.value)
        x = ((self.decode(z).float().cpu().clamp(-1, 1) + 1) / 2).mean(1)  # [K, H, W], grey
        K, H, W = x.shape
        row = torch.ones(H, K * (W + 1))
        for k in range(K):
            row[:, k * (W + 1):k * (W + 1) + W] = x[k]
        ts = time_grid(self.steps.value, self.m, n)
        with self.images.batch_update():
            self.images.data[0].z = row.tolist()
        with self.grid.batch_update():
            self.grid.data[0].x = list(range(len(ts)))
            self.grid.data[0].y = ts.tolist()
