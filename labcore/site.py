"""The built course as an offline site: build/index.html plus one HTML page per executed chapter.

Every figure renders with no network:
- plotly.js is written once to assets/plotly.min.js and every page loads it from there; each plotly
  output (`application/vnd.plotly.v1+json`, which nbconvert cannot draw) becomes a div + Plotly.newPlot;
- a widget becomes a static picture of its state at the end of the run (labcore.widgets.base snapshots),
  a tqdm bar its final line, any other widget the values of its controls;
- MathJax comes from the jupyter-server-mathjax package, copied to assets/mathjax/;
- the notebook's saved widget state (megabytes of front-end bundle per FigureWidget) is dropped.

    python -m labcore course run --profile smoke --out build/   # runs the chapters, then builds the site
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from labcore.report import central_rows
from labcore.widgets.base import SNAPSHOT_KEY

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ASSETS = "assets"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
# jupyter-server-mathjax ships only the STIX-Web fonts; MathJax's HTML-CSS output otherwise looks for its
# TeX web fonts, finds none and sets bars and roots out of place
MATHJAX_FONTS = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}});
</script>"""
STYLE = """<style>
.labcore-controls { font: 13px monospace; color: #444; margin: 4px 0; }
.labcore-tqdm { font: 13px monospace; display: flex; gap: 8px; align-items: center; }
.labcore-nav { font: 14px sans-serif; padding: 8px 0; }
</style>"""


def write_assets(out: Path) -> None:
    """plotly.js and MathJax, once for every page (each page links them, none embeds them)."""
    import jupyter_server_mathjax
    from plotly.offline import get_plotlyjs

    assets = out / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (assets / "mathjax" / "MathJax.js").exists():
        shutil.copytree(mathjax, assets / "mathjax", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("localization"))  # English only: 2 MB less


def _plotly_div(figure: dict) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False)


def _text(value: str) -> str:
    """Visible text of a small HTML fragment (tqdm puts '&nbsp;' and tags in its labels)."""
    return html.unescape(re.sub(r"<[^>]+>", "", value or "")).strip()


def _widget_html(model_id: str, state: dict) -> str | None:
    """A static rendering of a widget from the notebook's saved widget state, or None if unknown."""
    model = state.get(model_id)
    if model is None:
        return None
    s = model.get("state", {})
    children = [c.removeprefix("IPY_MODEL_") for c in s.get("children", [])]
    kinds = [state.get(c, {}).get("model_name") for c in children]
    if model.get("model_name") == "HBoxModel" and kinds == ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        left, bar, _ = (state[c]["state"] for c in children)  # tqdm: "desc: pct%", bar, counts and rate
        # The saved labels can lag the bar (the last label refresh is not always in the saved state), so
        # the final line is rebuilt from the bar itself: description, percentage, count.
        done, total = float(bar.get("value", 0)), float(bar.get("max", 1)) or 1.0
        desc = re.sub(r"\s*\d+%\s*$", "", _text(left.get("value", ""))).rstrip(":").strip()
        line = f"{desc + ': ' if desc else ''}{100 * done / total:.0f}% {done:g}/{total:g}"
        return (f'<div class="labcore-tqdm"><progress value="{done:g}" max="{total:g}"></progress>'
                f'<span>{html.escape(line)}</span></div>')
    if children:
        inner = [_widget_html(c, state) for c in children]
        return "<div>" + "".join(x for x in inner if x) + "</div>"
    if "value" in s and s.get("description"):
        label = html.escape(f"{s['description']}: {s['value']}")
        return f'<div class="labcore-controls">{label}</div>'
    return None


def prepare(nb) -> dict[str, int]:
    """Rewrite an executed notebook's outputs in place into what an offline page can show.
    Returns counts: plotly figures, widgets pictured, tqdm bars."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    snapshots: dict[str, str] = {}
    keep = []
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        snaps = [o for o in outputs if SNAPSHOT_KEY in o.get("metadata", {})]
        for o in snaps:
            snapshots[o["metadata"][SNAPSHOT_KEY]["model_id"]] = o["data"]["text/html"]
        if snaps and len(snaps) == len(outputs):  # the runner's snapshot cell: not part of the chapter
            continue
        keep.append(cell)
    nb.cells = keep
    counts = {"figures": 0, "widgets": 0, "progress": 0}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                data["text/html"] = _plotly_div(data.pop(PLOTLY_MIME))
                counts["figures"] += 1
            elif WIDGET_MIME in data:
                model_id = data.pop(WIDGET_MIME)["model_id"]
                picture = snapshots.get(model_id) or data.get("text/html") or _widget_html(model_id, state)
                if picture is not None:
                    counts["progress" if "labcore-tqdm" in picture else "widgets"] += 1
                    data["text/html"] = picture
                    data.pop("text/plain", None)  # the repr ("HBox(children=...)") says nothing to a reader
    nb.metadata.pop("widgets", None)
    return counts


def export_page(nb, title: str, nav: str = "") -> str:
    """One chapter page (HTML) that loads plotly.js and MathJax from ../assets-relative paths."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(mathjax_url=f"{ASSETS}/mathjax/MathJax.js?config={MATHJAX_CONFIG}")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # require.js is only for nbconvert's live-widget renderer, which a static page does not use
    body = re.sub(r'<script[^>]*src="https?://[^"]*require[^"]*"[^>]*>\s*</script>', "", body)
    # MathJax reads its config blocks when it starts, which can be before the parser reaches </head>
    mathjax_tag = f'<script src="{ASSETS}/mathjax/MathJax.js'
    body = body.replace(mathjax_tag, f"{MATHJAX_FONTS}\n{mathjax_tag}", 1)
    head = f'<script src="{ASSETS}/plotly.min.js"></script>\n{STYLE}'
    body = body.replace("</head>", head + "\n</head>", 1)
    if nav:
        body = re.sub(r"(<body[^>]*>)", r"\1" + nav.replace("\\", r"\\"), body, count=1)
    return body


def remote_scripts(page: str) -> list[str]:
    """`<script src=...>` that would need the network."""
    return re.findall(r'<script[^>]*\ssrc="((?:https?:)?//[^"]*)"', page)


def page_figures(page: str) -> int:
    """Figures a page draws: one Plotly.newPlot call per figure div."""
    return len(re.findall(r"Plotly\.newPlot\(", page))


def _markdown(md: str) -> str:
    import mistune

    return mistune.create_markdown(plugins=["table"])(md)


def write_index(results: list[dict], profile: str, out: Path) -> Path:
    """build/index.html: every chapter with its status, profile, run time, links and paper-vs-lab table."""
    rows = []
    for r in results:
        status = "ok" if r["ok"] else f"FAILED: {html.escape(r['error'] or '')}"
        page = f'<a href="{r["chapter"]}.html">page</a>' if r.get("page") else "no page"
        nb = f'<a href="{r["chapter"]}.ipynb">notebook</a>' if (out / f"{r['chapter']}.ipynb").exists() else ""
        rows.append(f"<tr><td>{html.escape(r['chapter'])}</td><td>{html.escape(r['title'])}</td><td>{status}</td>"
                    f"<td>{html.escape(profile)}</td><td>{r['seconds']}</td><td>{page} {nb}</td></tr>")
    tables = ["<h2>Central claims</h2>", _markdown("\n".join(central_rows(results, profile)))]
    for r in results:
        tables.append(f'<h2 id="{r["chapter"]}">{html.escape(r["title"])} ({r["chapter"]})</h2>')
        tables += [_markdown(t) for t in r["tables"]] or ["<p><em>no paper-vs-lab table was produced</em></p>"]
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>labcore course ({html.escape(profile)})</title>
<style>body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}</style>
</head><body>
<h1>labcore: six October-2025 LLM papers, rebuilt from scratch</h1>
<p>Built at profile <code>{html.escape(profile)}</code>. Every page works offline.</p>
<table><tr><th>chapter</th><th>title</th><th>status</th><th>profile</th><th>seconds</th><th>open</th></tr>
{"".join(rows)}
</table>
<h1>Paper vs lab</h1>
{"".join(tables)}
</body></html>
"""
    path = out / "index.html"
    path.write_text(doc, encoding="utf-8")
    return path


def build_page(executed: Path, title: str, out: Path) -> tuple[Path, dict[str, int]]:
    """Executed notebook -> out/<stem>.html (offline). Returns the page and its counts."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    counts = prepare(nb)
    nav = '<div class="labcore-nav"><a href="index.html">&larr; all chapters</a></div>'
    page = out / f"{executed.stem}.html"
    page.write_text(export_page(nb, title, nav), encoding="utf-8")
    return page, counts


def figure_outputs(executed: Path) -> int:
    """Figures a page should draw: plotly outputs plus every figure inside each pictured widget."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    n = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if SNAPSHOT_KEY in out.get("metadata", {}):
                continue
            if PLOTLY_MIME in data:
                n += 1
            elif WIDGET_MIME in data and "text/html" in data:
                text = data["text/html"]
                n += ("".join(text) if isinstance(text, list) else text).count("Plotly.newPlot(")  # ipynb JSON: lines
    return n
