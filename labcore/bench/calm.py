"""Generation wall-clock: CALM (one chunk of K tokens per step) vs a token transformer of the same backbone.

`python -m labcore.bench calm [--quick]`. Taught in notebooks/04_calm.ipynb, section
"Experiment: CALM vs a token transformer at matched training FLOPs" (the notebook times its trained
models with the same `time_generation`).

Both models are untrained (speed does not depend on the weights), have the same width/depth/heads and
keep a KV cache (one new position per step on each side). CALM's step also runs its energy head once and
the autoencoder's decoder once. Reported as seconds per generated token and the ratio transformer / CALM,
timed interleaved on the process clock in this one run.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import torch

from labcore.calm import CALMAutoencoder, build_models, time_generation
from labcore.calm.config import CPU, SMOKE
from labcore.runtime import resolve_profile


def run(quick: bool = False) -> dict[str, Any]:
    cfg = SMOKE if quick else CPU
    prof = resolve_profile("cpu")  # CPU timings; on a GPU machine pass through the same code path
    K = cfg.chunk_len
    ae = CALMAutoencoder(257, K, cfg.latent_dim, cfg.ae_d_model).eval()
    calm, gpt = build_models(cfg, ae, prof)
    calm.eval(), gpt.eval()
    rows = []
    max_tokens = cfg.block_chunks * K - K  # one window after a one-chunk prompt
    for n_tokens in sorted({max(K, max_tokens // 4 // K * K), max_tokens // 2 // K * K, max_tokens}):
        prompt = torch.randint(0, 257, (1, K))
        t = time_generation(calm, gpt, prompt, n_tokens, reps=3)
        rows.append({"tokens": n_tokens, "transformer_s_per_token": t["Transformer"], "calm_s_per_token": t["CALM"],
                     "speedup": t["Transformer"] / t["CALM"], "transformer_steps": n_tokens,
                     "calm_steps": n_tokens // K})
    fig = go.Figure(go.Scatter(x=[r["tokens"] for r in rows], y=[r["speedup"] for r in rows], mode="lines+markers"))
    fig.update_layout(title=f"CALM (K={K}) generation speed-up over a token transformer (same backbone, KV-cached)",
                      xaxis_title="generated tokens", yaxis_title="transformer time / CALM time")
    summary = {"K": K, "speedup_at_max_tokens": rows[-1]["speedup"], "step_ratio": K}
    return {"rows": rows, "figure": fig, "summary": summary}
