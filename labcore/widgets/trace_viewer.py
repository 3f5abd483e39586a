"""Step through a reasoning trace: the problem, the image the model drew, and its words, side by side.
Used in notebooks/06_thinkmorph.ipynb, section "Reading the traces" (ThinkMorph, Gu et al., 2025)."""

from __future__ import annotations

import textwrap

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labcore.thinkmorph.traces import Image, Segment
from labcore.widgets.base import FigureBox


def _frames(trace: list[Segment]) -> list[tuple[np.ndarray, np.ndarray | None, list[str]]]:
    """One frame per segment after the context (`<bos> task size <image_start> [problem] <image_end>`):
    (problem image, newest drawn image or None, text lines so far)."""
    first = next((i for i, s in enumerate(trace) if isinstance(s, Image)), None)
    if first is None:
        raise ValueError("a trace must start with its context, which holds the problem image")
    problem = trace[first].pixels
    frames, lines, drawn = [], [], None
    for seg in trace[first + 2:]:
        if isinstance(seg, Image):
            drawn = seg.pixels
            lines = lines + ["[draws an image]"]
        else:
            lines = lines + [" ".join(seg.tokens)]
        frames.append((problem, drawn, lines))
    return frames or [(problem, None, lines)]


def _wrapped(line: str, width: int = 34) -> str:
    """Plotly's table sizes a row from its explicit line breaks; text it wraps itself overlaps the next row
    (34 characters fit the text column of a notebook-wide figure)."""
    return "<br>".join(textwrap.wrap(line, width)) or " "


class TraceViewer(FigureBox):
    """traces: {label: segments}, e.g. one generated trace per arm. A dropdown picks the trace, a slider
    steps through it; the figure shows the problem, the latest image the model drew, and the text so far."""

    def __init__(self, traces: dict[str, list[Segment]], title: str = "reasoning trace"):
        if not traces:
            raise ValueError("traces must be a non-empty {label: segments} dict")
        self.traces = {k: _frames(v) for k, v in traces.items()}
        self.which = w.Dropdown(options=list(self.traces), description="trace")
        self.step = w.IntSlider(min=0, max=len(self.traces[self.which.value]) - 1, description="step")
        fig = make_subplots(rows=1, cols=3, column_widths=[0.25, 0.25, 0.5],
                            specs=[[{"type": "xy"}, {"type": "xy"}, {"type": "domain"}]],
                            subplot_titles=("problem", "latest drawn image", "text so far"))
        blank = np.full((4, 4, 3), 255, dtype=np.uint8)
        fig.add_trace(go.Image(z=blank), 1, 1)
        fig.add_trace(go.Image(z=blank), 1, 2)
        fig.add_trace(go.Table(header=dict(values=["#", "generated"]),
                               # at plotly's default 20 px a one-line row after a two-line one is clipped
                               cells=dict(values=[[], []], align=["center", "left"], height=28),
                               columnwidth=[0.1, 0.9]), 1, 3)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=60, b=10))
        self.fig = go.FigureWidget(fig)
        self.figures = (self.fig,)
        self.which.observe(self._on_trace, names="value")
        self.step.observe(lambda _: self._draw(), names="value")
        self._draw()
        super().__init__([w.HBox([self.which, self.step]), self.fig])

    def _on_trace(self, _change) -> None:
        self.step.max = len(self.traces[self.which.value]) - 1
        self.step.value = min(self.step.value, self.step.max)
        self._draw()

    def _draw(self) -> None:
        problem, drawn, lines = self.traces[self.which.value][self.step.value]
        with self.fig.batch_update():
            self.fig.data[0].z = problem
            self.fig.data[1].z = drawn if drawn is not None else np.full_like(problem, 255)
            self.fig.data[2].cells.values = [list(range(1, len(lines) + 1)), [_wrapped(x) for x in lines]]
