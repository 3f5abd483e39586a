"""Scoring by execution, the image probes and best-of-N curves.
ThinkMorph's Table 2 (accuracy per reasoning mode), its claim that the generated image carries the
reasoning, and its best-of-N scaling. Taught in notebooks/06_thinkmorph.ipynb, sections "Table 2, lab
edition", "Does the picture matter?" and "Best of N".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from math import comb

import numpy as np
import torch

from labcore.thinkmorph.generation import generate, generated_tokens
from labcore.thinkmorph.model import InterleavedTransformer
from labcore.thinkmorph.patches import image_to_patches
from labcore.thinkmorph.tasks import JigsawTask, MazeTask, make_task
from labcore.thinkmorph.traces import Image, Segment, parse_answer
from labcore.thinkmorph.training import TRAIN_SEEDS

EVAL_SEED = TRAIN_SEEDS  # evaluation instances: seeds EVAL_SEED, EVAL_SEED + 1, ... (never trained on)
PROBES = ("none", "blank", "wrong", "true")


@dataclass
class Result:
    task: MazeTask | JigsawTask
    segments: list[Segment]  # what the model generated
    answer: object  # parsed answer (None if malformed)
    correct: bool  # executed in the simulator
    drew_image: bool  # did the model switch to image mode?


def eval_tasks(name: str, sizes, n: int, offset: int = 0) -> list[MazeTask | JigsawTask]:
    """n held-aside instances per size (seeds EVAL_SEED + offset + i)."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    return [make_task(name, s, EVAL_SEED + offset + i) for s in sizes for i in range(n)]


def by_size(tasks) -> dict[tuple[str, int], list[int]]:
    """Indices of tasks grouped by (name, size): one image shape per generation batch."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        groups[(t.name, t.size)].append(i)
    return dict(groups)


def blank_hook(tasks):
    """Probe: every generated image becomes a flat grey picture (all patches 0 in [-1, 1] units)."""
    return lambda rows, x: torch.zeros_like(x)


def wrong_hook(tasks):
    """Probe: every generated image becomes the correct sketch of a *different* instance of the same
    task and size (a plausible but wrong picture)."""
    def hook(rows, x):
        wrong = []
        for r in rows.tolist():
            t = tasks[r]
            other = type(t).generate(t.size, t.seed + 7919)  # another puzzle, same shape
            wrong.append(image_to_patches(other.visual_thought()))
        return torch.stack(wrong).to(x.device, x.dtype)
    return hook


def true_hook(tasks):
    """Probe: every generated image becomes the correct sketch of its own puzzle (an oracle drawer),
    which separates "cannot draw the thought" from "cannot use it"."""
    def hook(rows, x):
        right = [image_to_patches(tasks[r].visual_thought()) for r in rows.tolist()]
        return torch.stack(right).to(x.device, x.dtype)
    return hook


HOOKS = {"none": None, "blank": blank_hook, "wrong": wrong_hook, "true": true_hook}


def solve(model: InterleavedTransformer, tasks, max_new_tokens: int = 128, temperature: float = 0.0,
          generator: torch.Generator | None = None, probe: str = "none", batch: int = 64) -> list[Result]:
    """Generate a trace for every task (grouped by size, in batches), parse its answer and execute it."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    results: list[Result | None] = [None] * len(tasks)
    for _, idx in by_size(tasks).items():
        for lo in range(0, len(idx), batch):
            chunk = [tasks[i] for i in idx[lo:lo + batch]]
            hook = HOOKS[probe](chunk) if probe != "none" else None
            outs = generate(model, chunk, max_new_tokens, temperature, generator, image_hook=hook)
            for i, task, segs in zip(idx[lo:lo + batch], chunk, outs, strict=True):
                ans = parse_answer(task, generated_tokens(segs))
                results[i] = Result(task, segs, ans, bool(task.score(ans)),
                                    any(isinstance(s, Image) for s in segs))
    return results  # type: ignore[return-value]


def accuracy(results: list[Result]) -> float:
    return float(np.mean([r.correct for r in results])) if results else float("nan")


def accuracy_by_size(results: list[Result]) -> dict[tuple[str, int], float]:
    groups: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for r in results:
        groups[(r.task.name, r.task.size)].append(r.correct)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased P(at least one of k draws is correct) from n samples with c correct (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k_naive(correct: list[bool], k: int) -> float:
    """Reference: average over every k-subset of the samples whether any is correct."""
    from itertools import combinations

    subsets = list(combinations(correct, k))
    return float(np.mean([any(s) for s in subsets]))


def best_of_n(model: InterleavedTransformer, tasks, n: int, temperature: float = 1.0,
              max_new_tokens: int = 128, seed: int = 0) -> dict[str, list[float]]:
    """Sample n traces per task; return {"k": [1..n], "acc": best-of-k accuracy} where best-of-k counts a
    task solved if any of k samples executes correctly (an oracle verifier: the simulator)."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    hits = np.zeros(len(tasks), dtype=int)
    for _ in range(n):
        hits += [r.correct for r in solve(model, tasks, max_new_tokens, temperature, g)]
    ks = list(range(1, n + 1))
    return {"k": ks, "acc": [float(np.mean([pass_at_k(n, int(c), k) for c in hits])) for k in ks]}
