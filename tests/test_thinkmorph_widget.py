"""Chapter 6 widget: the trace viewer, driven headlessly (construct, set .value, the figure changes)."""

from __future__ import annotations

import numpy as np
import pytest

from labcore.thinkmorph.tasks import MazeTask
from labcore.thinkmorph.traces import make_trace
from labcore.widgets.trace_viewer import TraceViewer


def test_trace_viewer_steps_and_switches():
    task = MazeTask.generate(5, 0)
    viewer = TraceViewer({"interleaved": make_trace(task, "interleaved"),
                          "direct": make_trace(task, "direct")})
    assert viewer.step.max == 3  # think, image, think, answer
    lines0 = list(viewer.fig.data[2].cells.values[1])
    assert np.all(np.asarray(viewer.fig.data[1].z) == 255), "nothing drawn before the image step"
    viewer.step.value = 1
    assert list(viewer.fig.data[2].cells.values[1]) != lines0
    assert np.array_equal(np.asarray(viewer.fig.data[1].z), task.visual_thoughts()[0]), "step 1 shows the sketch"
    viewer.step.value = viewer.step.max
    parts = [p for line in viewer.fig.data[2].cells.values[1] for p in line.split("<br>")]
    assert max(map(len, parts)) <= 34, "long lines are broken before plotly wraps them over the next row"
    viewer.which.value = "direct"
    assert viewer.step.max == 0 and viewer.step.value == 0
    assert list(viewer.fig.data[2].cells.values[1])[0].startswith("<answer>")
    assert "text/html" in viewer._repr_mimebundle_()


def test_trace_viewer_rejects_empty():
    with pytest.raises(ValueError, match="traces"):
        TraceViewer({})
