"""Cache bytes and decode step time vs context: all-MLA, softmax attention, 3:1 hybrid, all-KDA.

`python -m labcore.bench hybrid [--quick]`. Taught in notebooks/03_kimi_linear_hybrid.ipynb, sections
"Caches" and "Decode speed".

All models have the same width and depth; only the layer pattern differs. Caches of a given length are
built by labcore.hybrid.decode.filled_cache (exact shapes of a real prefill, random contents), so long
contexts cost no prefill. Bytes come from the cache objects' nbytes(); a time is the fastest of a few
decode steps (batch 1, models interleaved), reported as ratios measured in this one run.

> The growing caches keep spare capacity (the buffer doubles when full), so a decode step writes one row
> and its cost is what attention reads; before, each step copied the whole cache (torch.cat).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from labcore.hybrid.decode import decode_step, filled_cache
from labcore.hybrid.model import HybridConfig, HybridLM

NAMES = {"mla": "all-MLA", "attn": "softmax attention", "3:1": "3:1 hybrid", "kda": "all-KDA"}

# equal width/depth for every pattern; 8 layers so that 3:1 has exactly 2 MLA layers
FULL = HybridConfig(vocab_size=256, d_model=256, n_layer=8, n_head=4, head_dim=64, kv_lora_rank=128,
                    shared_dim=32, max_seq_len=16384)
QUICK = HybridConfig(vocab_size=256, d_model=64, n_layer=4, n_head=2, head_dim=16, kv_lora_rank=32,
                     shared_dim=8, max_seq_len=1024)
CONTEXTS_FULL = [256, 512, 1024, 2048, 4096, 8192]
CONTEXTS_QUICK = [64, 128, 256]


def cache_bytes(base: HybridConfig, ratios: list[str], contexts: list[int], batch: int = 1) -> list[dict]:
    """Rows {ratio, context, bytes, growing_bytes}: exact nbytes() of each model's cache after S tokens."""
    rows = []
    for ratio in ratios:
        model = HybridLM(replace(base, ratio=ratio)).eval()
        for S in contexts:
            cache = filled_cache(model, batch, S, random=False)  # bytes only: contents never read
            by_type = cache.nbytes_by_type(model.layer_types)
            growing = by_type.get("mla", 0) + by_type.get("attn", 0)
            rows.append({"bench": "cache", "ratio": ratio, "context": S, "bytes": cache.nbytes(),
                         "growing_bytes": growing})
    return rows


def decode_times(base: HybridConfig, ratios: list[str], contexts: list[int], batch: int = 1,
                 device: str = "cpu", reps: int = 5, trials: int = 1) -> list[dict]:
    """Rows {ratio, context, ms, ms_trials}: time of one decode step on top of a cache of S tokens.

    The models take turns step by step (round robin) and each keeps its fastest of `reps` steps: on a
    shared machine, load then slows every model alike and the minimum is the least disturbed sample.
    Each of `trials` starts from fresh caches; `ms_trials` holds every trial's fastest step (the samples a
    speed claim is judged on), `ms` the fastest of all.
    """
    if reps < 1 or trials < 1:
        raise ValueError(f"reps and trials must be >= 1, got reps={reps}, trials={trials}")
    models = {r: HybridLM(replace(base, ratio=r)).to(device).eval() for r in ratios}
    tok = torch.zeros(batch, dtype=torch.long, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for S in contexts:
        per_trial = {r: [] for r in ratios}
        for _ in range(trials):
            caches = {r: filled_cache(m, batch, S) for r, m in models.items()}
            best = dict.fromkeys(ratios, float("inf"))
            for rep in range(reps + 1):  # the first round warms up
                for r, m in models.items():
                    sync()
                    t0 = time.perf_counter()
                    _, caches[r] = decode_step(m, tok, caches[r])  # advance: in-place growth, as in generate
                    sync()
                    if rep:
                        best[r] = min(best[r], time.perf_counter() - t0)
            for r in ratios:
                per_trial[r].append(1e3 * best[r])
            del caches
        rows += [{"bench": "decode", "ratio": r, "context": S, "ms": min(per_trial[r]), "ms_trials": per_trial[r],
                  "device": device} for r in ratios]
    return rows


def summarize(cache_rows: list[dict], time_rows: list[dict]) -> dict[str, Any]:
    """The headline ratios: growing-cache share of 3:1 vs all-MLA, cache saving and speed-ups at max S."""
    def at(rows, ratio, S, key):
        return next(r[key] for r in rows if r["ratio"] == ratio and r["context"] == S)

    out: dict[str, Any] = {}
    if cache_rows:
        cs = sorted({r["context"] for r in cache_rows})
        lo, hi = cs[0], cs[-1]
        grow = {r: at(cache_rows, r, hi, "bytes") - at(cache_rows, r, lo, "bytes")
                for r in {r["ratio"] for r in cache_rows}}
        if "mla" in grow and "3:1" in grow:
            out["growing_ratio_3to1_vs_mla"] = grow["3:1"] / grow["mla"]
            out["cache_saving_3to1_at_max"] = 1 - (at(cache_rows, "3:1", hi, "bytes")
                                                   / at(cache_rows, "mla", hi, "bytes"))
        out["max_context"] = hi
    if time_rows:
        hi = max(r["context"] for r in time_rows)
        ratios = {r["ratio"] for r in time_rows}
        for other in ("mla", "attn"):
            if other in ratios and "3:1" in ratios:
                out[f"speedup_3to1_vs_{other}_at_max"] = (at(time_rows, other, hi, "ms")
                                                          / at(time_rows, "3:1", hi, "ms"))
                out[f"speedup_3to1_vs_{other}_by_context"] = {
                    S: at(time_rows, other, S, "ms") / at(time_rows, "3:1", S, "ms")
                    for S in sorted({r["context"] for r in time_rows})}
                if "ms_trials" in time_rows[0]:  # one speed-up per timing trial: a claim's samples
                    out[f"speedup_3to1_vs_{other}_trials_by_context"] = {
                        S: [a / b for a, b in zip(at(time_rows, other, S, "ms_trials"),
                                                  at(time_rows, "3:1", S, "ms_trials"), strict=True)]
                        for S in sorted({r["context"] for r in time_rows})}
        out["decode_device"] = time_rows[0]["device"]
    return out


def figure(cache_rows: list[dict], time_rows: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("cache size (batch 1)", "decode step time (batch 1)"))
    for ratio in dict.fromkeys(r["ratio"] for r in cache_rows + time_rows):
        c = [r for r in cache_rows if r["ratio"] == ratio]
        t = [r for r in time_rows if r["ratio"] == ratio]
        name = NAMES.get(ratio, ratio)
        if c:
            fig.add_trace(go.Scatter(x=[r["context"] for r in c], y=[r["bytes"] / 2**20 for r in c],
                                     name=name, legendgroup=ratio, mode="lines+markers"), 1, 1)
        if t:
            fig.add_trace(go.Scatter(x=[r["context"] for r in t], y=[r["ms"] for r in t], name=name,
                                     legendgroup=ratio, showlegend=not c, mode="lines+markers"), 1, 2)
    fig.update_xaxes(type="log", title_text="context length (tokens)")
    fig.update_yaxes(title_text="MiB", row=1, col=1)
    fig.update_yaxes(title_text="ms per token", row=1, col=2)
    fig.update_layout(height=380, width=900)
    return fig


def run(quick: bool = False) -> dict[str, Any]:
    base, contexts = (QUICK, CONTEXTS_QUICK) if quick else (FULL, CONTEXTS_FULL)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    cache_rows = cache_bytes(base, ["mla", "attn", "3:1", "kda"], contexts)
    time_rows = decode_times(base, ["mla", "attn", "3:1", "kda"], contexts, device=device,
                             reps=3 if quick else 7)
    return {"rows": cache_rows + time_rows, "figure": figure(cache_rows, time_rows),
            "summary": summarize(cache_rows, time_rows)}
