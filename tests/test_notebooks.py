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
