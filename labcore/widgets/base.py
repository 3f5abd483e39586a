"""Shared plumbing for widgets: a VBox that also renders as a static picture in the built course.

In JupyterLab a FigureBox is the live widget. Its mime bundle also carries a `text/html` snapshot (the
controls' values and every figure as a plotly div that expects a page-level plotly.js), which is what the
offline course site (labcore.site) shows. The course runner calls `publish_snapshots()` after the last
cell, so the site shows each widget as it was at the end of the run, not as it was first drawn.
"""

from __future__ import annotations

import html
import weakref

import ipywidgets as w
import plotly.graph_objects as go
import plotly.io as pio

SNAPSHOT_KEY = "labcore_widget_snapshot"  # display metadata: {"model_id": ...} of the widget it pictures

_live: weakref.WeakValueDictionary[str, FigureBox] = weakref.WeakValueDictionary()


def _controls(widget: w.Widget) -> list[str]:
    """'description: value' of every control below `widget`, in display order."""
    if isinstance(widget, w.Box):
        return [line for child in widget.children for line in _controls(child)]
    if isinstance(widget, w.ValueWidget) and getattr(widget, "description", ""):
        value = widget.label if isinstance(widget, w.Dropdown) else widget.value
        if isinstance(value, float):
            value = f"{value:.4g}"
        return [f"{widget.description}: {value}"]
    return []


class FigureBox(w.VBox):
    """A VBox of controls + plotly FigureWidgets; subclasses set `self.figures` before calling
    `super().__init__(children)`."""

    figures: tuple[go.FigureWidget, ...] = ()

    def __init__(self, children, **kwargs):
        super().__init__(children, **kwargs)
        _live[self.model_id] = self

    def snapshot_html(self) -> str:
        """The widget as static HTML: its controls' values, then each figure (plotly.js not included)."""
        controls = " &middot; ".join(html.escape(c) for c in _controls(self))
        parts = [f'<div class="labcore-controls">{controls}</div>'] if controls else []
        parts += [pio.to_html(go.Figure(f), include_plotlyjs=False, full_html=False, validate=False)
                  for f in self.figures]
        return f'<div class="labcore-widget">{"".join(parts)}</div>'

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        return {**bundle, "text/html": self.snapshot_html()}


def publish_snapshots() -> int:
    """Display the current snapshot of every live FigureBox, tagged with its model id (the course runner
    runs this after a notebook's last cell; labcore.site swaps each widget's output for its snapshot)."""
    from IPython.display import display

    boxes = list(_live.items())
    for model_id, box in boxes:
        display({"text/html": box.snapshot_html(), "text/plain": f"<{type(box).__name__} snapshot>"},
                raw=True, metadata={SNAPSHOT_KEY: {"model_id": model_id}})
    return len(boxes)
