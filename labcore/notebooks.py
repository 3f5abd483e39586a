"""Notebook upkeep. Each chapter is authored as a jupytext py:percent file (notebooks/NN_name.py, clean
diffs) paired with the .ipynb learners open. `sync` rebuilds the .ipynb from the .py, re-executes it
at the smoke profile only to refresh the outputs of cells tagged `nbval-check-output` (kept, and
checked in CI by `pytest --nbval-lax`), and strips every other output (nbstripout's `keep_output` tag).
`check` is what CI runs: stripped, in sync with the .py, has a `parameters` cell.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from labcore.course import NOTEBOOK_DIR

CHECK_TAG = "nbval-check-output"
KEEP_TAG = "keep_output"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _stems(stems: list[str] | None) -> list[str]:
    return stems or sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py"))


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def strip(nb) -> None:
    """Drop outputs and counts, except cells tagged keep_output; drop run-specific metadata."""
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if KEEP_TAG not in _tags(cell):
            cell.execution_count = None
            cell.outputs = []
        else:  # nbval treats a kept output without a count as "unrun": give it a fixed one
            cell.execution_count = 1
            for out in cell.outputs:
                out.pop("execution_count", None)
                if "metadata" in out:
                    out["metadata"].clear()


def stable_ids(nb) -> None:
    """Cell ids from the cell's content (jupytext makes random ones), so a sync changes the ids of the
    cells that changed and no others."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        key = f"{cell.cell_type}\n{cell.source}"
        seen[key] = seen.get(key, 0) + 1
        cell.id = hashlib.sha1(f"{key}\n{seen[key]}".encode()).hexdigest()[:8]


def sync(stems: list[str] | None = None) -> None:
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    for stem in _stems(stems):
        nb = jupytext.read(NOTEBOOK_DIR / f"{stem}.py")
        nb.metadata["kernelspec"] = KERNELSPEC
        nb.metadata.pop("jupytext", None)
        for cell in nb.cells:
            tags = _tags(cell)
            if CHECK_TAG in tags and KEEP_TAG not in tags:
                cell.metadata["tags"] = tags + [KEEP_TAG]
        if any(CHECK_TAG in _tags(c) for c in nb.cells):
            env = os.environ.get("LABCORE_PROFILE")
            os.environ["LABCORE_PROFILE"] = "smoke"
            try:
                NotebookClient(nb, timeout=900, kernel_name="python3",
                               resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
            finally:
                if env is None:
                    os.environ.pop("LABCORE_PROFILE")
                else:
                    os.environ["LABCORE_PROFILE"] = env
        strip(nb)
        stable_ids(nb)
        nbformat.write(nb, NOTEBOOK_DIR / f"{stem}.ipynb")
        print(f"synced notebooks/{stem}.ipynb")


def _one_line(e: BaseException, width: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def check() -> list[str]:
    """Problems with the committed notebooks (empty list = clean)."""
    import jupytext
    import nbformat

    problems = []
    for ipynb in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        name = f"notebooks/{ipynb.name}"
        try:
            nb = nbformat.read(ipynb, as_version=4)
        except Exception as e:  # invalid JSON / not a notebook: one line, not a traceback
            problems.append(f"{name}: cannot be read ({type(e).__name__}: {_one_line(e)}); "
                            f"rebuild it with `python -m labcore nb sync {ipynb.stem}`")
            continue
        if not any("parameters" in _tags(c) for c in nb.cells):
            problems.append(f"{name}: no cell tagged 'parameters' (papermill needs one)")
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and KEEP_TAG not in _tags(cell) and (
                    cell.outputs or cell.execution_count is not None):
                problems.append(f"{name}: cell {i} carries outputs; run `python -m labcore nb sync`")
            if CHECK_TAG in _tags(cell) and not cell.outputs:
                problems.append(f"{name}: cell {i} is tagged {CHECK_TAG} but has no stored output")
        py = ipynb.with_suffix(".py")
        if not py.exists():
            problems.append(f"{name}: no paired {py.name} (jupytext py:percent)")
            continue
        try:
            paired = jupytext.read(py)
        except Exception as e:
            problems.append(f"{name}: its {py.name} cannot be read ({type(e).__name__}: {_one_line(e)})")
            continue
        ours = [(c.cell_type, c.source.strip()) for c in nb.cells]
        theirs = [(c.cell_type, c.source.strip()) for c in paired.cells]
        if ours != theirs:
            problems.append(f"{name}: out of sync with {py.name}; run `python -m labcore nb sync {ipynb.stem}`")
    return problems


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))
