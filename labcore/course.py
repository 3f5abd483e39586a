"""The course runner: execute chapter notebooks with papermill at a profile, export HTML, and collect
each chapter's "paper vs lab" table into build/summary.md.

    python -m labcore course run --profile smoke --out build/ [--only 01,02]
    python -m labcore course list
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from labcore.checkpoint import REPO_ROOT
from labcore.report import MIME_KEY

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Chapter:
    stem: str  # notebooks/<stem>.ipynb
    title: str  # shown in the summary


# Every notebook in notebooks/ must be listed here (tests/test_notebooks.py enforces it); a chapter
# whose notebook is not written yet is skipped by the runner and reported as such.
CHAPTERS: tuple[Chapter, ...] = (
    Chapter("01_autodeco", "AutoDeco: per-token temperature and top-p"),
    Chapter("02_kda", "Kimi Delta Attention: recurrent, chunkwise, Triton"),
    Chapter("03_kimi_linear_hybrid", "Kimi Linear hybrid: 3 KDA : 1 MLA"),
    Chapter("04_calm", "CALM: continuous next-vector language modelling"),
    Chapter("05_rae", "RAE: diffusion in a representation autoencoder's latent space"),
    Chapter("06_thinkmorph", "ThinkMorph: interleaved text + image chain of thought"),
)


def written(chapters=CHAPTERS) -> list[Chapter]:
    return [c for c in chapters if (NOTEBOOK_DIR / f"{c.stem}.ipynb").exists()]


def select(only: str | None) -> list[Chapter]:
    """Chapters whose stem starts with one of the comma-separated prefixes (all when None)."""
    if not only:
        return list(CHAPTERS)
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [c for c in CHAPTERS if any(c.stem.startswith(p) for p in prefixes)]
    if not chosen:
        raise ValueError(f"--only {only!r} matches no chapter; known: {[c.stem for c in CHAPTERS]}")
    return chosen


def extract_tables(nb) -> list[str]:
    """Markdown outputs that `labcore.report.paper_vs_lab` tagged."""
    tables = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if MIME_KEY in out.get("metadata", {}) and "text/markdown" in out.get("data", {}):
                tables.append(out["data"]["text/markdown"])
    return tables


def run_chapter(chapter: Chapter, profile: str, out: Path, html: bool = True,
                parameters: dict | None = None) -> dict:
    import nbformat
    import papermill as pm

    src = NOTEBOOK_DIR / f"{chapter.stem}.ipynb"
    dst = out / f"{chapter.stem}.ipynb"
    env_before = os.environ.get("LABCORE_PROFILE")
    os.environ["LABCORE_PROFILE"] = profile if profile != "auto" else (env_before or "")
    if not os.environ["LABCORE_PROFILE"]:
        del os.environ["LABCORE_PROFILE"]
    t0 = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(src), str(dst), parameters={"PROFILE": profile, **(parameters or {})},
                            cwd=str(NOTEBOOK_DIR), progress_bar=False, kernel_name="python3")
    except Exception as exc:  # papermill already saved the notebook up to the failing cell
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        if env_before is None:
            os.environ.pop("LABCORE_PROFILE", None)
        else:
            os.environ["LABCORE_PROFILE"] = env_before
    seconds = time.perf_counter() - t0
    nb = nbformat.read(dst, as_version=4)
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        dst.with_suffix(".html").write_text(body, encoding="utf-8")
    return {"chapter": chapter.stem, "title": chapter.title, "seconds": round(seconds, 1),
            "ok": error is None, "error": error, "tables": extract_tables(nb)}


def run_course(profile: str = "auto", out: str | Path = "build", only: str | None = None,
               html: bool = True) -> list[dict]:
    from labcore.runtime import resolve_profile

    prof = resolve_profile(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    chosen = select(only)
    for chapter in chosen:
        if chapter not in written(chosen):
            print(f"[course] {chapter.stem}: not written yet, skipped", flush=True)
            continue
        print(f"[course] {chapter.stem} at profile={prof.name} ...", flush=True)
        res = run_chapter(chapter, prof.name, out, html=html)
        status = "ok" if res["ok"] else f"FAILED ({res['error']})"
        over = res["seconds"] > 60 * prof.minutes_budget
        print(f"[course] {chapter.stem}: {status} in {res['seconds']:.0f}s"
              + (f" (over the {prof.minutes_budget:g} min budget)" if over else ""), flush=True)
        results.append(res)
    write_summary(results, prof.name, out)
    return results


def write_summary(results: list[dict], profile: str, out: Path) -> None:
    lines = ["# labcore course run", "", f"Profile: `{profile}`.", "",
             "| chapter | status | seconds |", "|---|---|---|"]
    lines += [f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']} |" for r in results]
    for r in results:
        lines += ["", f"## {r['title']} ({r['chapter']})", ""]
        lines += r["tables"] or ["_no paper-vs-lab table was produced_"]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "timings.json").write_text(json.dumps(
        {r["chapter"]: {"seconds": r["seconds"], "ok": r["ok"], "error": r["error"]} for r in results},
        indent=2))
