"""Notebook CI: every notebook is covered, clean, and executes at the smoke profile via papermill
(the same `labcore.course` runner `make course` uses). nbval-checked cells run via `--nbval-lax`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labcore import course, notebooks

NOTEBOOKS = notebooks.notebook_paths()
STEMS = [c.stem for c in course.written()]


def test_every_notebook_is_a_listed_chapter():
    listed = {c.stem for c in course.CHAPTERS}
    unlisted = [p.name for p in NOTEBOOKS if p.stem not in listed]
    assert not unlisted, f"add these to labcore.course.CHAPTERS so CI runs them: {unlisted}"
    assert STEMS, "no chapter notebook found in notebooks/"


def test_notebooks_are_clean_and_paired():
    problems = notebooks.check()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    out = Path(tmp_path_factory.mktemp("course"))
    results = course.run_course("smoke", out, html=True)
    return out, {r["chapter"]: r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_notebook_runs_at_smoke(smoke_run, stem):
    out, results = smoke_run
    res = results[stem]
    assert res["ok"], f"{stem} failed under papermill: {res['error']} (see {out / stem}.ipynb)"
    assert (out / f"{stem}.html").stat().st_size > 10_000, "HTML export missing or empty"
    assert res["tables"], f"{stem} printed no paper-vs-lab table (call labcore.report.paper_vs_lab)"
    assert "Measured with profile `smoke`" in res["tables"][0]


@pytest.mark.slow
def test_course_summary_collects_every_table(smoke_run):
    out, results = smoke_run
    summary = (out / "summary.md").read_text()
    timings = json.loads((out / "timings.json").read_text())
    for stem in STEMS:
        assert stem in timings
        assert results[stem]["tables"][0].splitlines()[-1] in summary
    print("smoke timings (s):", {k: v["seconds"] for k, v in timings.items()})


PAGE_LIMIT_BYTES = 3_000_000  # a chapter page at smoke; plotly.js and MathJax are shared assets, not counted


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_chapter_page_is_an_offline_page_with_every_figure(smoke_run, stem):
    from labcore import site

    out, _ = smoke_run
    page = (out / f"{stem}.html").read_text(encoding="utf-8")
    assert site.remote_scripts(page) == [], f"{stem}.html needs the network for {site.remote_scripts(page)}"
    expected = site.figure_outputs(out / f"{stem}.ipynb")
    assert site.page_figures(page) == expected, (
        f"{stem}.html draws {site.page_figures(page)} figures, the notebook displayed {expected}")
    assert "application/vnd.jupyter.widget-state+json" not in page, "saved widget state must not ship"
    size = (out / f"{stem}.html").stat().st_size
    assert size <= PAGE_LIMIT_BYTES, f"{stem}.html is {size / 1e6:.1f} MB (limit {PAGE_LIMIT_BYTES / 1e6:.0f} MB)"
    for asset in ("assets/plotly.min.js", "assets/mathjax/MathJax.js"):
        assert (out / asset).exists(), f"{asset} missing: the page would be blank offline"


@pytest.mark.slow
def test_course_index_links_every_chapter(smoke_run):
    out, results = smoke_run
    index = (out / "index.html").read_text(encoding="utf-8")
    for stem in STEMS:
        assert f'href="{stem}.html"' in index and stem in index
    assert "<table" in index and "smoke" in index


@pytest.mark.slow
def test_instructor_exercise_checks_pass(smoke_run):
    """Every exercise check in an instructor notebook (solutions in) reports PASS."""
    import nbformat

    out, _ = smoke_run
    failed = []
    for stem in STEMS:
        nb = nbformat.read(out / f"{stem}.ipynb", as_version=4)
        for cell in nb.cells:
            if "exercise-check" in cell.get("metadata", {}).get("tags", []):
                text = "".join(o.get("text", "") for o in cell.get("outputs", []))
                if "PASS" not in text or "FAIL" in text:
                    failed.append(f"{stem}: {cell.source.strip()[:60]}")
    assert not failed, f"instructor solutions failed their checks: {failed}"
