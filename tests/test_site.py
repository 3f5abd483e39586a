"""The offline course site (labcore.site), the course runner's failure handling (labcore.course) and the
static pictures widgets leave in it (labcore.widgets.base)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest
import torch

from labcore import course, site
from labcore.widgets.base import SNAPSHOT_KEY

v4 = nbformat.v4


def _widget_output(model_id: str, html: str | None = None) -> dict:
    data = {site.WIDGET_MIME: {"model_id": model_id, "version_major": 2, "version_minor": 0},
            "text/plain": "VBox(...)"}
    if html is not None:
        data["text/html"] = html
    return v4.new_output("display_data", data=data)


def _tqdm_state(model_id: str) -> dict:
    def model(name, **state):
        return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}

    return {model_id: model("HBoxModel", children=["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]),
            "a": model("HTMLModel", value="train:  65%"), "b": model("FloatProgressModel", value=20, max=20),
            "c": model("HTMLModel", value=" 20/20 [00:01&lt;00:00, 15.2it/s]")}


def test_prepare_draws_plotly_outputs_and_pictures_widgets():
    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4])).to_plotly_json()
    final = '<div class="labcore-widget">final <script>Plotly.newPlot("x", [])</script></div>'
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("fig", outputs=[v4.new_output("display_data", data={site.PLOTLY_MIME: fig})]),
        v4.new_code_cell("w", outputs=[_widget_output("w1", html="<div>first draw</div>")]),
        v4.new_code_cell("bar", outputs=[_widget_output("t1")]),
        v4.new_code_cell("snap", outputs=[v4.new_output("display_data", data={"text/html": final},
                                                        metadata={SNAPSHOT_KEY: {"model_id": "w1"}})]),
    ])
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": _tqdm_state("t1"), "version_major": 2}}
    counts = site.prepare(nb)
    assert counts == {"figures": 1, "widgets": 1, "progress": 1}
    assert len(nb.cells) == 3, "the runner's snapshot cell is not part of the page"
    assert "widgets" not in nb.metadata, "saved widget state (MBs of front-end bundle) must be dropped"
    outs = [c.outputs[0]["data"] for c in nb.cells]
    assert "Plotly.newPlot(" in outs[0]["text/html"] and site.PLOTLY_MIME not in outs[0]
    assert "final" in outs[1]["text/html"], "a widget shows its state at the end of the run, not its first draw"
    assert site.WIDGET_MIME not in outs[1]
    assert "train: 100% 20/20" in outs[2]["text/html"] and 'value="20"' in outs[2]["text/html"], outs[2]


def test_page_loads_local_assets_only():
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("$x^2$"), v4.new_code_cell("1")])
    page = site.export_page(nb, "t")
    assert site.remote_scripts(page) == [], site.remote_scripts(page)
    assert 'src="assets/plotly.min.js"' in page and 'src="assets/mathjax/MathJax.js' in page
    # the font MathJax is told to use is configured before MathJax starts, and it is the one that is shipped
    assert page.index('webFont: "STIX-Web"') < page.index('src="assets/mathjax/MathJax.js')
    import jupyter_server_mathjax

    shipped = Path(jupyter_server_mathjax.__file__).parent / "static" / "fonts" / "HTML-CSS"
    assert (shipped / "STIX-Web" / "woff").is_dir()
    assert site.remote_scripts('<script src="https://cdn.plot.ly/x.js"></script>') == ["https://cdn.plot.ly/x.js"]


def test_paper_vs_lab_shows_its_table_once():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    with capture_output() as cap:
        shell.run_cell("from labcore.report import Claim, not_judged, paper_vs_lab\n"
                       "paper_vs_lab([Claim('c', 'p', 'l', not_judged('w'), central=True)], 'smoke', 'x')")
    assert len(cap.outputs) == 1 and "text/markdown" in cap.outputs[0].data, cap.outputs
    assert "Measured with" not in cap.stdout, "the returned markdown must not be echoed a second time"


def test_widget_snapshot_follows_the_controls():
    from labcore.widgets.autodeco import SoftTopPExplorer

    ex = SoftTopPExplorer(torch.randn(30), top=10)
    first = ex.snapshot_html()
    ex.T.value = 0.3
    later = ex.snapshot_html()
    assert "T: 0.3" in later and "T: 1" in first
    assert later.count("Plotly.newPlot(") == 1 and "cdn" not in later, "plotly.js comes from the page"


def _chapter_dir(tmp_path: Path, cells: dict[str, list[str] | str]) -> Path:
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for stem, sources in cells.items():
        path = nbdir / f"{stem}.ipynb"
        if isinstance(sources, str):
            path.write_text(sources)  # raw (broken) content
            continue
        nb = v4.new_notebook(cells=[v4.new_code_cell(s) for s in sources])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, path)
    return nbdir


@pytest.mark.slow
def test_runner_always_reports(tmp_path):
    nbdir = _chapter_dir(tmp_path, {
        "a_ok": ["PROFILE = 'auto'", "from labcore.report import Claim, judge, paper_vs_lab\n"
                 "paper_vs_lab([Claim('c', 'p', 'l', judge([2, 3], [1], margin=0.5, profile=PROFILE),"
                 " central=True)], PROFILE, 'a_ok')"],
        "b_raises": ["PROFILE = 'auto'", "raise ValueError('top_p must be in (0, 1], got 7')"],
        "c_not_json": "{ this is not a notebook",
        "d_hangs": ["PROFILE = 'auto'", "import time\ntime.sleep(600)"],
    })
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_raises.html").write_text("stale page of an earlier run")
    chapters = [course.Chapter(s, s) for s in ("a_ok", "b_raises", "c_not_json", "d_hangs")]
    results = {r["chapter"]: r for r in course.run_course("smoke", out, chapters=chapters, notebook_dir=nbdir,
                                                        timeout=20)}
    assert results["a_ok"]["ok"] and results["a_ok"]["tables"]
    assert not results["b_raises"]["ok"]
    assert "ValueError: top_p must be in (0, 1], got 7" in results["b_raises"]["error"]
    assert not results["c_not_json"]["ok"] and results["c_not_json"]["error"]
    assert not results["d_hangs"]["ok"] and "timed out after 20 s" in results["d_hangs"]["error"]
    assert results["d_hangs"]["seconds"] < 60
    summary = (out / "summary.md").read_text()
    assert re.search(r"FAILED: In \[\d+\]: ValueError: top_p must be in \(0, 1\], got 7", summary), summary
    assert summary.count("FAILED") >= 3
    # the summary opens with every chapter's central claim (smoke: n/a, never a verdict)
    head = summary[:summary.index("## Runs")]
    assert "| chapter | central claim | verdict | profile |" in head
    assert "| a_ok | c | n/a | smoke |" in head and "| b_raises | _no central claim was produced_ | n/a |" in head
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == set(results) and timings["d_hangs"]["ok"] is False
    index = (out / "index.html").read_text()
    assert "a_ok.html" in index and "FAILED" in index
    assert "stale page" not in (out / "b_raises.html").read_text()
