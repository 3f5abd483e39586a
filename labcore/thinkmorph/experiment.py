"""The chapter's experiment as jobs: per seed a base stage, then every reasoning arm fine-tuned from it,
once on the paper's tasks and once on the positive control, and scored (test sets, image probes, the
partial oracle, best-of-N); the coordinate ablation repeats the base and some arms, on the tasks of
cfg.ablation_mix, with `coord_words` flipped. Used in notebooks/06_thinkmorph.ipynb, section "Training
the four arms on equal budgets"; the sections after it read the returned results.

A job is a pure function of its config (seed included), so the results do not depend on how the jobs are
scheduled: `cfg.workers` > 1 runs them in that many processes (one torch thread each: tiny models run
best on one core, and two processes use two cores fully), 1 runs them here, one after the other.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

import numpy as np
import torch
from tqdm.auto import tqdm

from labcore.runtime import Profile
from labcore.thinkmorph.config import ThinkMorphConfig
from labcore.thinkmorph.evaluate import PROBES, best_of_n, cells_match, eval_tasks, solve
from labcore.thinkmorph.generation import generate, generated_tokens
from labcore.thinkmorph.model import InterleavedTransformer
from labcore.thinkmorph.traces import BASE_TASKS, Image, base_trace, describe
from labcore.thinkmorph.training import train_arm, train_base

VARIANTS = ("main", "ablation")  # ablation: the main config with model.coord_words flipped
DRAWING_ARMS = ("visual", "interleaved")
Key = tuple[str, int, str, str]  # (variant, seed, mix, arm); the base stage's arm is "base"


@dataclasses.dataclass(frozen=True)
class Job:
    variant: str  # "main" or "ablation"
    seed: int
    mix: str  # "base", "paper" or "control"
    arm: str  # an arm, or "base"
    cfg: ThinkMorphConfig  # the config this job trains and scores with (variant_config)
    profile: Profile | None = None  # device and autocast (None: cpu, fp32)

    @property
    def key(self) -> Key:
        return self.variant, self.seed, self.mix, self.arm


def variant_config(cfg: ThinkMorphConfig, variant: str, seed: int, mix: str) -> ThinkMorphConfig:
    """The config of one job: the seed set; the ablation flips model.coord_words; the control trains on
    control_tasks for control_steps and tests on control_eval_per_size puzzles per size; the base sees
    every task (its captions and drawings)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    tasks = cfg.mix_tasks(mix)  # also refuses an unknown mix
    model = cfg.model if variant == "main" else dataclasses.replace(cfg.model, coord_words=not cfg.model.coord_words)
    out = dataclasses.replace(cfg, seed=seed, model=model)
    # one job's config has no control of its own, so it plans no ablation on one either
    if mix == "control":
        return dataclasses.replace(out, tasks=tasks, control_tasks=(), steps=cfg.control_steps,
                                   eval_per_size=cfg.control_eval_per_size or cfg.eval_per_size,
                                   control_eval_per_size=None, ablation_mix="paper")
    if mix == "base":
        return dataclasses.replace(out, tasks=tasks, control_tasks=(), ablation_mix="paper")
    return out


def plan(cfg: ThinkMorphConfig) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(variant, seed, mix, arms) for every group of arm runs that share a base: per seed the paper's
    tasks and the control, then the ablation (on cfg.ablation_mix)."""
    chains = []
    for s in cfg.seeds:
        chains.append(("main", s, "paper", cfg.arms))
        if cfg.control_tasks:
            chains.append(("main", s, "control", cfg.arms))
    chains += [("ablation", s, cfg.ablation_mix, cfg.ablation_arms) for s in cfg.ablation_seeds if cfg.ablation_arms]
    return chains


def test_sets(cfg: ThinkMorphConfig) -> dict[tuple[str, str], list]:
    """{(task, "in-dist" | "held-out"): puzzles}: eval_per_size held-aside puzzles per size, the same for
    every seed and arm."""
    sets = {}
    for name in cfg.tasks:
        sets[(name, "in-dist")] = eval_tasks(name, cfg.train_sizes(name), cfg.eval_per_size)
        if cfg.heldout_sizes(name):
            sets[(name, "held-out")] = eval_tasks(name, cfg.heldout_sizes(name), cfg.eval_per_size)
    return sets


def probe_sets(cfg: ThinkMorphConfig) -> dict[str, list]:
    """{task: puzzles} for the image probes and the partial oracle (in-distribution sizes)."""
    return {name: eval_tasks(name, cfg.train_sizes(name), cfg.probe_per_size) for name in cfg.tasks}


def bon_tasks(cfg: ThinkMorphConfig) -> list:
    """The best-of-N puzzles (in-distribution, seeds apart from the test sets)."""
    return [t for name in cfg.tasks for t in eval_tasks(name, cfg.train_sizes(name), cfg.bon_per_size, offset=50_000)]


def base_check(model: InterleavedTransformer, cfg: ThinkMorphConfig) -> dict:
    """What the base can do on pictures it never saw, per base task at its smallest training size: the
    start/goal (maze) or first-block (gravity) coordinates read right, whole captions right, and cells
    drawn right when it paints the picture back from the true words."""
    out = {}
    for name in [n for n in cfg.tasks if n in BASE_TASKS] or ["maze"]:
        tasks = eval_tasks(name, cfg.train_sizes(name)[:1], cfg.probe_per_size)
        caps = [generated_tokens(c) for c in generate(model, tasks, max_new_tokens=64)]
        said = [w[:-1] if w[-1:] == ["<eos>"] else w for w in caps]
        first = (1, 2, 4, 5) if name == "maze" else (1, 2)  # the coordinates after `start`/`goal`, `blocks`
        coords = np.mean([w[i:i + 1] == describe(t)[i:i + 1] for w, t in zip(said, tasks, strict=True) for i in first])
        exact = np.mean([w == describe(t) for w, t in zip(said, tasks, strict=True)])
        drawn = generate(model, tasks, max_new_tokens=4, prompts=[base_trace(t, "draw")[:1] for t in tasks])
        pics = [next((s.pixels for s in d if isinstance(s, Image)), None) for d in drawn]
        cells = np.mean([cells_match(p, t.render()).mean() if p is not None else 0.0
                         for p, t in zip(pics, tasks, strict=True)])
        out[name] = {"size": tasks[0].size, "n": len(tasks), "coords": float(coords), "exact": float(exact),
                     "cells": float(cells), "example": (tasks[0].render(), pics[0])}
    return out


def evaluate_arm(model: InterleavedTransformer, arm: str, cfg: ThinkMorphConfig, full: bool = True) -> dict:
    """Score one trained arm: greedy answers on the test sets; with full=True also, for the drawing arms,
    the blank / wrong / true image probes and the partial oracle, and best-of-N sampling for every arm."""
    out = {"tests": {key: solve(model, tasks, cfg.max_new_tokens) for key, tasks in test_sets(cfg).items()}}
    if not full:
        return out
    if arm in DRAWING_ARMS:
        g = torch.Generator().manual_seed(cfg.seed)
        out["probes"] = {(p, name): solve(model, tasks, cfg.max_new_tokens, probe=p)
                         for name, tasks in probe_sets(cfg).items() for p in PROBES}
        out["oracle"] = {(f, name): solve(model, tasks, cfg.max_new_tokens, generator=g, fix=f)
                         for name, tasks in probe_sets(cfg).items() for f in cfg.oracle_fixes}
    out["bon"] = best_of_n(model, bon_tasks(cfg), cfg.best_of_n, cfg.temperature, cfg.max_new_tokens, seed=cfg.seed)
    return out


def run_job(job: Job, base: dict[str, torch.Tensor] | None = None) -> dict:
    """Train one stage (and score it): returns {"history" (every 10th step), "state", "cpu_s", and either
    "check" (base) or evaluate_arm's keys}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job.cfg.threads or threads)
    t0 = time.process_time()
    try:
        if job.arm == "base":
            model, res = train_base(job.cfg, job.profile, progress=False)
            out = {"check": base_check(model, job.cfg)}
        else:
            model, res = train_arm(job.arm, job.cfg, job.profile, progress=False, base=base)
            out = evaluate_arm(model, job.arm, job.cfg, full=job.variant == "main")
    finally:
        torch.set_num_threads(threads)
    history = [row for row in res.history if row["step"] % 10 == 0 or row["step"] == len(res.history)]
    return {**out, "history": history, "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "cpu_s": time.process_time() - t0}


def run_experiment(cfg: ThinkMorphConfig, profile: Profile | None = None,
                   progress: bool = True) -> dict[Key, dict]:
    """Every job of `plan(cfg)`: {(variant, seed, mix, arm): run_job's result}. Each (variant, seed)'s base
    runs first (when cfg.base_steps > 0) and its arms start from its weights; cfg.workers processes share
    the jobs."""
    chains = plan(cfg)
    arms_of: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for v, s, mix, arms in chains:
        arms_of.setdefault((v, s), []).extend((mix, a) for a in arms)

    def arm_jobs(v: str, s: int) -> list[Job]:
        order = sorted(arms_of[(v, s)], key=lambda ma: ma[1] not in DRAWING_ARMS)  # the longest jobs first
        return [Job(v, s, mix, a, variant_config(cfg, v, s, mix), profile) for mix, a in order]

    if cfg.base_steps:
        queue = [(Job(v, s, "base", "base", variant_config(cfg, v, s, "base"), profile), None) for v, s in arms_of]
    else:
        queue = [(j, None) for v, s in arms_of for j in arm_jobs(v, s)]
    total = sum(len(a) for a in arms_of.values()) + (len(arms_of) if cfg.base_steps else 0)
    results: dict[Key, dict] = {}
    bar = tqdm(total=total, desc="thinkmorph jobs", disable=not progress)

    def followers(job: Job, out: dict) -> list[tuple[Job, dict | None]]:
        return [(j, out["state"]) for j in arm_jobs(job.variant, job.seed)] if job.arm == "base" else []

    if cfg.workers == 1:
        while queue:
            job, base = queue.pop(0)
            results[job.key] = out = run_job(job, base)
            queue += followers(job, out)
            bar.update()
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
            running = {pool.submit(run_job, j, b): j for j, b in queue}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = running.pop(fut)
                    results[job.key] = out = fut.result()
                    running |= {pool.submit(run_job, j, b): j for j, b in followers(job, out)}
                    bar.update()
    bar.close()
    return results
