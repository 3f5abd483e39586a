"""Benchmarks: `python -m labcore.bench NAME [--out DIR]` writes NAME.json and NAME.html (plotly).

Speed is reported as ratios measured in one run on one machine, never as absolute pass/fail timings.
Each benchmark is a module `labcore.bench.NAME` with `run(quick: bool) -> dict` returning
{"rows": [...], "figure": plotly Figure, "summary": {...}}.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import json
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# every module in this folder with a `run(quick)` is a benchmark
BENCHES = tuple(sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                       if not m.name.startswith("_")))


@functools.cache
def steady_malloc() -> bool:
    """Keep freed CPU memory in the process (glibc): otherwise every large tensor freed is handed back to
    the OS and the next call page-faults it in again, which we measured as up to half of a 20 ms KDA
    call, varying with the machine's load, not with the algorithm. Process-wide, once; False where
    there is no glibc (timings then include the OS's page faults)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 25))


def timeit(fn: Callable[[], Any], warmup: int = 2, reps: int = 5, clock: str = "wall") -> float:
    """Median seconds per call (synchronising CUDA around each call), allocator kept steady
    (`steady_malloc`).

    clock: "wall" (perf_counter) or "process" (this process's CPU time: for single-threaded CPU ops on a
    shared machine, where other jobs inflate wall time but not the work done).
    """
    clocks = {"wall": time.perf_counter, "process": time.process_time}
    if clock not in clocks:
        raise ValueError(f"clock must be one of {sorted(clocks)}, got {clock!r}")
    now = clocks[clock]
    steady_malloc()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = now()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(now() - t0)
    return statistics.median(times)


def timeit_interleaved(fns: dict[str, Callable[[], Any]], warmup: int = 1, reps: int = 5,
                       clock: str = "wall") -> dict[str, float]:
    """Median seconds per call of each fn, timed round-robin (a, b, a, b, ...) so that a change in the
    machine's load during the run hits every contender alike and their ratio stays fair."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(timeit(fn, warmup=0, reps=1, clock=clock))
    return {name: statistics.median(ts) for name, ts in times.items()}


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def run_bench(name: str, out_dir: str | Path = "build/bench", quick: bool = False) -> dict[str, Any]:
    if name not in BENCHES:
        raise ValueError(f"benchmark must be one of {BENCHES}, got {name!r}")
    mod = importlib.import_module(f"labcore.bench.{name}")
    res = mod.run(quick=quick)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "env": environment(), "quick": quick, "rows": res["rows"],
               "summary": res.get("summary", {})}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    if res.get("figure") is not None:
        # plotly.min.js once beside the pages, so a plot opens offline (a workshop room has no internet)
        res["figure"].write_html(out / f"{name}.html", include_plotlyjs="directory")
    payload["paths"] = [str(out / f"{name}.json"), str(out / f"{name}.html")]
    return payload
