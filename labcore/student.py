"""Student edition of the course: the chapter notebooks with every exercise's solution removed.

    python -m labcore course student --out build/student      (or: make student)

Instructor notebooks (notebooks/, solutions in) tag each checked exercise as three code cells in the
section "Exercises": a stub (`exercise-stub`: the function with the right signature, body unfinished,
`# Finish me!`), its solution (`solution`: the same function, complete) and a check (`exercise-check`:
`labcore.exercises.check(my_fn, SPEC)`). Cells tagged `exercise-setup` import what the exercises use.
The student edition drops every `solution` cell, strips all outputs and adds a banner, so each check
runs the learner's stub and prints yours vs expected and a hint (it does not abort the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labcore.course import CHAPTERS, NOTEBOOK_DIR

STUB, SOLUTION, CHECK, SETUP = "exercise-stub", "solution", "exercise-check", "exercise-setup"
BANNER = ("> **Student edition.** The exercises at the end of this notebook are yours to finish: each stub "
          "cell ends in `# Finish me!`, and the cell after it runs `labcore.exercises.check`, which prints your "
          "result, the expected one, their difference and a hint until it says `PASS`. A failed check only "
          "reports; the notebook still runs to the end. The instructor edition, with solutions, is "
          "`notebooks/{stem}.ipynb`.")


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@dataclass
class Exercise:
    stub: str  # source of the stub cell
    solution: str | None  # source of the solution cell (None in a student notebook)
    check: str  # source of the check cell


def read(stem: str):
    """The instructor notebook from its jupytext source (notebooks/<stem>.py)."""
    import jupytext

    return jupytext.read(NOTEBOOK_DIR / f"{stem}.py")


def exercises(nb) -> tuple[list[str], list[Exercise]]:
    """(setup cell sources, exercises) of a notebook, in order. Raises ValueError when the tags do not
    form stub [-> solution] -> check groups (a solution without its stub would vanish from the student
    build, leaving the check cell calling an undefined function)."""
    setup, found, stub, solution = [], [], None, None
    for i, cell in enumerate(nb.cells):
        t = tags(cell)
        if cell.cell_type != "code":
            continue
        if SETUP in t:
            setup.append(cell.source)
        if STUB in t:
            if stub is not None:
                raise ValueError(f"cell {i}: a new exercise-stub before the previous one's exercise-check")
            stub, solution = cell.source, None
        elif SOLUTION in t:
            if stub is None or solution is not None:
                raise ValueError(f"cell {i}: a solution cell must directly follow its exercise-stub cell")
            solution = cell.source
        elif CHECK in t:
            if stub is None:
                raise ValueError(f"cell {i}: an exercise-check cell without an exercise-stub before it")
            found.append(Exercise(stub, solution, cell.source))
            stub = solution = None
    if stub is not None:
        raise ValueError("the last exercise-stub has no exercise-check cell after it")
    return setup, found


def student_notebook(stem: str):
    """The student edition of one chapter: solutions dropped, outputs stripped, a banner after the title."""
    from labcore.notebooks import KERNELSPEC, stable_ids

    nb = read(stem)
    exercises(nb)  # validates the tags
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata.pop("jupytext", None)
    cells = [c for c in nb.cells if SOLUTION not in tags(c)]
    for c in cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
            if "tags" in c.metadata:  # stored outputs are the instructor's: nothing to keep or check here
                c.metadata["tags"] = [t for t in tags(c) if t not in ("keep_output", "nbval-check-output")]
    import nbformat

    banner = nbformat.v4.new_markdown_cell(BANNER.format(stem=stem), metadata={"tags": ["student-banner"]})
    nb.cells = cells[:1] + [banner] + cells[1:]
    stable_ids(nb)
    return nb


def build(out: str | Path, only: str | None = None) -> list[dict]:
    """Write OUT/<stem>.ipynb for every chapter (or those `only` selects); returns one row per notebook."""
    import nbformat

    from labcore.course import select

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ch in (select(only) if only else CHAPTERS):
        if not (NOTEBOOK_DIR / f"{ch.stem}.py").exists():
            continue
        instructor = read(ch.stem)
        _, ex = exercises(instructor)
        nb = student_notebook(ch.stem)
        path = out / f"{ch.stem}.ipynb"
        nbformat.write(nb, path)
        rows.append({"stem": ch.stem, "path": path, "exercises": len(ex),
                     "solutions_removed": sum(SOLUTION in tags(c) for c in instructor.cells)})
    return rows
