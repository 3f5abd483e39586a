"""Interactive widgets (ipywidgets + plotly FigureWidget), one module per widget.

Every widget is testable headlessly: construct it, set a control's `.value`, and assert the figure's
data changed. Each also carries a static plotly HTML fallback so HTML builds show a picture.
"""
