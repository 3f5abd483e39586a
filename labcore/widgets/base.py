"""Shared plumbing for widgets: a VBox that also renders as a static plotly picture in HTML builds."""

from __future__ import annotations

import ipywidgets as w
import plotly.graph_objects as go


class FigureBox(w.VBox):
    """A VBox of controls + plotly FigureWidgets whose repr also carries a static text/html snapshot.

    Jupyter shows the live widget; nbconvert's HTML export (no kernel) falls back to the snapshot of
    every figure as it was when the cell ran.
    """

    figures: tuple[go.FigureWidget, ...] = ()

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        html = "".join(go.Figure(f).to_html(full_html=False, include_plotlyjs="cdn") for f in self.figures)
        return {**bundle, "text/html": html}
