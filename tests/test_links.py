"""Links that cannot drift (issue 16): every 'Taught in notebooks/NN_x.ipynb, section "Heading"' (or 'Used
in ...', 'sections "A" and "B"') in a labcore/ or kernels/ docstring names a real markdown heading of that
notebook's source, notebooks/NN_x.py. A reference matches a heading with its "N. " number dropped, either
whole or its short title (the part before a colon): "Chunkwise form" names "2. Chunkwise form: T/C ...".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF = re.compile(r"(?:Taught|Used) in notebooks/(\w+)\.ipynb")
LEAD = re.compile(r'[\s,(]*(?:\(?sections?\s+)?"')  # between the notebook and its first quoted section
MORE = re.compile(r'"(?:\s*\([^)]*\))?\s*(?:,|and|,\s*and)\s*(?:sections?\s+)?"')  # "A" (why), and "B"


# references known to be broken (none today); the test fails once one is fixed, so the entry goes with the fix
KNOWN_BROKEN: set[tuple[str, str]] = set()


def headings(notebook: str) -> set[str]:
    """Every markdown heading of notebooks/<notebook>.py (jupytext py:percent), number prefix dropped, plus
    each heading's short title before a colon."""
    out, markdown = set(), False
    for line in (ROOT / "notebooks" / f"{notebook}.py").read_text().splitlines():
        if line.startswith("# %%"):
            markdown = "[markdown]" in line
        elif markdown and (m := re.match(r"# #{1,6}\s+(?:\d+\.\s+)?(.+?)\s*$", line)):
            out |= {m[1], m[1].split(":")[0].strip()}
    return out


def references(text: str) -> list[tuple[str, list[str]]]:
    """[(notebook, [section, ...])] named in one docstring (whitespace collapsed first)."""
    text = " ".join(text.split())
    out = []
    for m in REF.finditer(text):
        rest, sections = text[m.end():], []
        lead = LEAD.match(rest)
        pos = lead.end() if lead else None
        while pos is not None:
            end = rest.index('"', pos)
            sections.append(rest[pos:end])
            more = MORE.match(rest, end)
            pos = more.end() if more else None
        out.append((m[1], sections))
    return out


def docstrings(path: Path) -> list[str]:
    nodes = [n for n in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


def all_references() -> list[tuple[str, str, list[str]]]:
    files = sorted([*(ROOT / "labcore").rglob("*.py"), *(ROOT / "kernels").rglob("*.py")])
    return [(str(f.relative_to(ROOT)), nb, secs) for f in files for d in docstrings(f) for nb, secs in references(d)]


def test_parser_reads_every_form():
    assert references('Taught in notebooks/02_kda.ipynb, section "Recurrent form".') == [("02_kda", ["Recurrent form"])]
    assert references('Taught in notebooks/05_rae.ipynb, sections "A" and\n  "B".') == [("05_rae", ["A", "B"])]
    assert references('Used in notebooks/01_x.ipynb (section "A") and more') == [("01_x", ["A"])]
    assert references('Used in notebooks/04_calm.ipynb, sections "A" (the notebook calls these), "B"') == \
        [("04_calm", ["A", "B"])]
    assert references("Taught in notebooks/04_calm.ipynb (every section reads `cfg`).") == [("04_calm", [])]


def test_headings_are_read():
    hs = headings("02_kda")
    assert {"Chunkwise form", "Chunkwise form: T/C sequential steps instead of T", "Exercises"} <= hs
    assert "Chapter 2 — Kimi Delta Attention (KDA)" in hs and "Recurrent" not in hs


def test_there_are_references():
    refs = all_references()
    assert len(refs) >= 40 and sum(len(s) for _, _, s in refs) >= 40


@pytest.mark.parametrize("notebook", sorted({nb for _, nb, _ in all_references()}))
def test_every_reference_is_a_heading(notebook):
    path = ROOT / "notebooks" / f"{notebook}.py"
    assert path.exists(), f"a docstring names notebooks/{notebook}.ipynb, which has no source {path}"
    hs = headings(notebook)
    bad = [(f, s) for f, nb, secs in all_references() if nb == notebook for s in secs if s not in hs]
    fixed = {(f, s) for f, nb, secs in all_references() if nb == notebook for s in secs if s in hs} & KNOWN_BROKEN
    assert not fixed, f"fixed: remove from KNOWN_BROKEN {fixed}"
    bad = [b for b in bad if b not in KNOWN_BROKEN]
    assert not bad, f"sections that are not headings of notebooks/{notebook}.py: {bad}"
