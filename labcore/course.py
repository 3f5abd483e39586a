"""The course runner: execute chapter notebooks with papermill at a profile, export HTML, and collect
each chapter's "paper vs lab" table into build/summary.md.

    python -m labcore course run --profile smoke --out build/ [--only 01,02] [--timeout SECONDS]
    python -m labcore course list

Each chapter runs in its own papermill process, stopped after a timeout derived from the profile's budget.
The run always ends with summary.md, timings.json and the offline site (labcore.site: index.html, one
page per chapter, shared assets/), whatever failed on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labcore.checkpoint import REPO_ROOT
from labcore.report import MIME_KEY, central_rows, md_cell

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
    return [md for md, _ in _tagged_tables(nb)]


def extract_central(nb) -> dict | None:
    """The central claim (claim, verdict, why, profile) of the last tagged table, if any."""
    found = [meta for _, meta in _tagged_tables(nb) if "central" in meta]
    return {**found[-1]["central"], "profile": found[-1].get("profile", "")} if found else None


def _tagged_tables(nb) -> list[tuple[str, dict]]:
    tables = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if MIME_KEY in out.get("metadata", {}) and "text/markdown" in out.get("data", {}):
                tables.append((out["data"]["text/markdown"], out["metadata"][MIME_KEY]))
    return tables


SNAPSHOT_CELL = "from labcore.widgets.base import publish_snapshots\npublish_snapshots();"


def timeout_for(profile) -> float:
    """Seconds a chapter may run before it is stopped: twice the profile's budget, at least 5 minutes."""
    return max(2 * 60 * profile.minutes_budget, 300.0)


def _error_text(nb, stderr: str) -> str:
    """What went wrong: the failing cell's exception, else the runner's last lines of stderr."""
    for cell in getattr(nb, "cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                where = f"In [{cell.get('execution_count')}]"  # the prompt a reader sees next to the cell
                return f"{where}: {out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("[IPKernelApp]")]
    return " | ".join(lines[-3:]) or "no output"


def _execute(src: Path, dst: Path, profile: str, parameters: dict, timeout: float, cwd: Path) -> str | None:
    """papermill src -> dst in a child process group that is killed after `timeout` s. None when it ran
    clean, else the reason."""
    cmd = [sys.executable, "-m", "papermill", str(src), str(dst), "-k", "python3", "--cwd", str(cwd),
           "--no-progress-bar", "-y", json.dumps({"PROFILE": profile, **parameters})]
    env = dict(os.environ)
    if profile != "auto":
        env["LABCORE_PROFILE"] = profile
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"timed out after {timeout:.0f} s (override with --timeout)"
    if proc.returncode == 0:
        return None
    return stderr


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop papermill and the kernel it started (the kernel gets a session of its own: find it by parent)."""
    kids = _children(proc.pid)
    for pid in [proc.pid, *kids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _children(pid: int) -> list[int]:
    """Descendants of pid (Linux /proc), deepest last."""
    found, frontier = [], [pid]
    procs = Path("/proc")
    while frontier:
        parent = frontier.pop()
        for stat in procs.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                child = int(stat.parent.name)
                found.append(child)
                frontier.append(child)
    return found


def run_chapter(chapter: Chapter, profile: str, out: Path, html: bool = True, parameters: dict | None = None,
                timeout: float = 3600.0, notebook_dir: Path | None = None) -> dict:
    """Execute one chapter into out/<stem>.ipynb (+ its offline page). Never raises for a broken
    notebook: the result says FAILED and why."""
    import nbformat

    notebook_dir = notebook_dir or NOTEBOOK_DIR
    dst, page = out / f"{chapter.stem}.ipynb", out / f"{chapter.stem}.html"
    for stale in (dst, page):  # an earlier run's output must never pass for this one's
        stale.unlink(missing_ok=True)
    result = {"chapter": chapter.stem, "title": chapter.title, "seconds": 0.0, "ok": False, "error": None,
              "tables": [], "central": None, "page": None}
    t0 = time.perf_counter()
    try:
        nb = nbformat.read(notebook_dir / f"{chapter.stem}.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(SNAPSHOT_CELL))  # widgets' final state, for the site
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{chapter.stem}.ipynb"
            nbformat.write(nb, src)
            failure = _execute(src, dst, profile, parameters or {}, timeout, notebook_dir)
    except Exception as exc:  # unreadable notebook, unwritable output folder, ...
        failure = f"{type(exc).__name__}: {exc}"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    executed = None
    if dst.exists():
        try:
            executed = nbformat.read(dst, as_version=4)
        except Exception as exc:
            failure = failure or f"executed notebook unreadable: {exc}"
    if failure is not None:
        result["error"] = _error_text(executed, failure) if not failure.startswith("timed out") else failure
    result["ok"] = failure is None
    if executed is not None:
        result["tables"] = extract_tables(executed)
        result["central"] = extract_central(executed)
        if html:
            from labcore.site import build_page

            try:
                result["page"], result["counts"] = build_page(dst, chapter.title, out)
            except Exception as exc:
                result["ok"], result["error"] = False, result["error"] or f"HTML export failed: {exc}"
    return result


def run_course(profile: str = "auto", out: str | Path = "build", only: str | None = None, html: bool = True,
               timeout: float | None = None, chapters: list[Chapter] | None = None,
               notebook_dir: Path | None = None) -> list[dict]:
    """Run the chosen chapters; always ends with summary.md, timings.json and (html) the site index,
    whatever failed on the way."""
    from labcore.runtime import resolve_profile

    prof = resolve_profile(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebook_dir = notebook_dir or NOTEBOOK_DIR
    chosen = chapters if chapters is not None else select(only)
    limit = timeout if timeout is not None else timeout_for(prof)
    if html:
        from labcore.site import write_assets

        write_assets(out)
    results = []
    for chapter in chosen:
        if not (notebook_dir / f"{chapter.stem}.ipynb").exists():
            print(f"[course] {chapter.stem}: not written yet, skipped", flush=True)
            continue
        print(f"[course] {chapter.stem} at profile={prof.name} (stopped after {limit:.0f} s) ...", flush=True)
        res = run_chapter(chapter, prof.name, out, html=html, timeout=limit, notebook_dir=notebook_dir)
        status = "ok" if res["ok"] else f"FAILED ({res['error']})"
        over = res["seconds"] > 60 * prof.minutes_budget
        print(f"[course] {chapter.stem}: {status} in {res['seconds']:.0f}s"
              + (f" (over the {prof.minutes_budget:g} min budget)" if over else ""), flush=True)
        results.append(res)
    write_summary(results, prof.name, out)
    if html:
        from labcore.site import write_index

        write_index(results, prof.name, out)
    return results


def write_summary(results: list[dict], profile: str, out: Path) -> None:
    lines = ["# labcore course run", "", f"Profile: `{profile}`.", "", "## Central claims", ""]
    lines += central_rows(results, profile)
    lines += ["", "## Runs", "", "| chapter | status | seconds |", "|---|---|---|"]
    lines += [f"| {r['chapter']} | {'ok' if r['ok'] else 'FAILED: ' + md_cell(r['error'] or '')} | {r['seconds']} |"
              for r in results]
    for r in results:
        lines += ["", f"## {r['title']} ({r['chapter']})", ""]
        if not r["ok"]:
            lines += [f"**FAILED**: {r['error']}", ""]
        lines += r["tables"] or ["_no paper-vs-lab table was produced_"]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "timings.json").write_text(json.dumps(
        {r["chapter"]: {"seconds": r["seconds"], "ok": r["ok"], "error": r["error"]} for r in results},
        indent=2))
