"""Scoring by execution, the image probes, the partial oracle and best-of-N curves.
ThinkMorph's Table 2 (accuracy per reasoning mode), its claim that the generated image carries the
reasoning, and its best-of-N scaling. Taught in notebooks/06_thinkmorph.ipynb, sections "Table 2, lab
edition", "Does the picture matter?", "How good must the drawing be?" and "Best of N".
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
from labcore.thinkmorph.tasks import CELL, Task, make_task
from labcore.thinkmorph.traces import Image, Segment, parse_answer
from labcore.thinkmorph.training import TRAIN_SEEDS

EVAL_SEED = TRAIN_SEEDS  # evaluation instances: seeds EVAL_SEED, EVAL_SEED + 1, ... (never trained on)
PROBES = ("none", "blank", "wrong", "true")
WRONG_OFFSET = 7919  # the wrong-image probe shows the puzzle with seed + this (same task and size)


@dataclass
class Result:
    task: Task
    segments: list[Segment]  # what the model generated
    answer: object  # parsed answer (None if malformed)
    correct: bool  # executed in the simulator
    drew_image: bool  # did the model switch to image mode?
    drawn_right: bool | None = None  # every picture it read back right, cell by cell (None: it drew none)


def eval_tasks(name: str, sizes, n: int, offset: int = 0) -> list[Task]:
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


def cells_match(pic: np.ndarray, truth: np.ndarray, tol: float = 40.0) -> np.ndarray:
    """bool [n, n]: cells whose mean colour inside the grid lines is within tol of the truth on every
    channel (0..255 units; the grid lines are fixed and left out)."""
    n = truth.shape[0] // CELL
    a, b = (im.astype(float).reshape(n, CELL, n, CELL, 3)[:, 1:, :, 1:].mean((1, 3)) for im in (pic, truth))
    return np.abs(a - b).max(-1) < tol


def drawing_right(task: Task, segments: list[Segment]) -> bool | None:
    """Whether a trace drew exactly the task's visual thoughts, every cell right (None: no picture)."""
    drawn = [s.pixels for s in segments if isinstance(s, Image)]
    if not drawn:
        return None
    truth = task.visual_thoughts()
    return len(drawn) == len(truth) and all(cells_match(d, t).all() for d, t in zip(drawn, truth, strict=True))


def _thought(task: Task, k: int) -> torch.Tensor:
    """The task's k-th visual thought as patches (the last one for a trace that draws too many)."""
    thoughts = task.visual_thoughts()
    return image_to_patches(thoughts[min(int(k), len(thoughts) - 1)])


def blank_hook(tasks):
    """Probe: every generated image becomes a flat grey picture (all patches 0 in [-1, 1] units)."""
    return lambda rows, x, k=None: torch.zeros_like(x)


def wrong_hook(tasks):
    """Probe: every generated image becomes the matching sketch of a *different* instance of the same
    task and size (a plausible but wrong picture). k [m]: each row's image number (default: the first)."""
    def hook(rows, x, k=None):
        ks = [0] * len(rows) if k is None else k.tolist()
        wrong = []
        for r, j in zip(rows.tolist(), ks, strict=True):
            t = tasks[r]
            other = type(t).generate(t.size, t.seed + WRONG_OFFSET)  # another puzzle, same shape
            wrong.append(_thought(other, j))
        return torch.stack(wrong).to(x.device, x.dtype)
    return hook


def true_hook(tasks):
    """Probe: every generated image becomes the correct sketch of its own puzzle (an oracle drawer),
    which separates "cannot draw the thought" from "cannot use it"."""
    def hook(rows, x, k=None):
        ks = [0] * len(rows) if k is None else k.tolist()
        right = [_thought(tasks[r], j) for r, j in zip(rows.tolist(), ks, strict=True)]
        return torch.stack(right).to(x.device, x.dtype)
    return hook


def oracle_hook(tasks, fix: float, generator: torch.Generator):
    """The partial oracle: in every drawn image a random fraction `fix` of the cells (rounded to whole
    cells) is replaced by the true cells, the rest stays as drawn. fix = 1 is the `true` probe."""
    truth = true_hook(tasks)

    def hook(rows, x, k=None):
        right = truth(rows, x, k)
        m, N, _ = x.shape
        n_fix = int(round(fix * N))
        pick = torch.rand(m, N, generator=generator).argsort(-1)[:, :n_fix]  # cells to fix per image
        keep = torch.ones(m, N, dtype=torch.bool)
        keep[torch.arange(m)[:, None], pick] = False
        return torch.where(keep[..., None].to(x.device), x, right)
    return hook


HOOKS = {"none": None, "blank": blank_hook, "wrong": wrong_hook, "true": true_hook}


def solve(model: InterleavedTransformer, tasks, max_new_tokens: int = 128, temperature: float = 0.0,
          generator: torch.Generator | None = None, probe: str = "none", batch: int = 64,
          fix: float = 0.0) -> list[Result]:
    """Generate a trace for every task (grouped by size, in batches), parse its answer and execute it.
    probe swaps every drawn image (see HOOKS); fix in [0, 1] instead repairs that fraction of each drawn
    image's cells (the partial oracle, seeded by `generator`)."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if not 0.0 <= fix <= 1.0:
        raise ValueError(f"fix must be in [0, 1], got {fix}")
    if fix and probe != "none":
        raise ValueError(f"fix repairs the model's own drawings: use it with probe='none', got {probe!r}")
    results: list[Result | None] = [None] * len(tasks)
    for _, idx in by_size(tasks).items():
        for lo in range(0, len(idx), batch):
            chunk = [tasks[i] for i in idx[lo:lo + batch]]
            hook = HOOKS[probe](chunk) if probe != "none" else None
            if fix:
                hook = oracle_hook(chunk, fix, generator if generator is not None else torch.Generator())
            outs = generate(model, chunk, max_new_tokens, temperature, generator, image_hook=hook)
            for i, task, segs in zip(idx[lo:lo + batch], chunk, outs, strict=True):
                ans = parse_answer(task, generated_tokens(segs))
                results[i] = Result(task, segs, ans, bool(task.score(ans)), any(isinstance(s, Image) for s in segs),
                                    drawing_right(task, segs))
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
              max_new_tokens: int = 128, seed: int = 0) -> dict[str, list]:
    """Sample n traces per task; return {"k": [1..n], "acc": best-of-k accuracy, "samples": every sample's
    (drew an image, correct)}, where best-of-k counts a task solved if any of k samples executes correctly
    (an oracle verifier: the simulator)."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    hits = np.zeros(len(tasks), dtype=int)
    samples = []
    for _ in range(n):
        res = solve(model, tasks, max_new_tokens, temperature, g)
        hits += [r.correct for r in res]
        samples += [(r.drew_image, r.correct) for r in res]
    ks = list(range(1, n + 1))
    return {"k": ks, "acc": [float(np.mean([pass_at_k(n, int(c), k) for c in hits])) for k in ks],
            "samples": samples}
