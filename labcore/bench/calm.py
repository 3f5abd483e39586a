"""Generation wall-clock: CALM (one chunk of K tokens per step) vs a token transformer of the same backbone.

`python -m labcore.bench calm [--quick]`. Taught in notebooks/04_calm.ipynb, section
"Experiment: CALM vs a token transformer at matched training FLOPs" (the "K x fewer generative steps"
claim, measured as time).

Both models are untrained (speed does not depend on the weights), have the same width/depth/heads and
recompute the whole context every step (no KV cache on either side, so the comparison is like for like).
CALM's step also runs its energy head once and the autoencoder's decoder once. Reported as the ratio
transformer seconds / CALM seconds for the same number of generated tokens, measured in this one run.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import torch

from labcore.bench import timeit
from labcore.calm.autoencoder import CALMAutoencoder
from labcore.calm.config import CPU, SMOKE
from labcore.calm.experiment import build_models
from labcore.nn import GPT
from labcore.runtime import resolve_profile


@torch.no_grad()
def gpt_generate(model: GPT, prompt: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Plain token-by-token sampling at temperature 1, no cache: one forward per generated token."""
    ids = prompt
    for _ in range(n_tokens):
        probs = model(ids[:, -model.cfg.block_size:])[:, -1].float().softmax(-1)  # [B, V]
        ids = torch.cat([ids, torch.multinomial(probs, 1)], dim=1)
    return ids


def run(quick: bool = False) -> dict[str, Any]:
    cfg = SMOKE if quick else CPU
    prof = resolve_profile("cpu")  # CPU timings; on a GPU machine pass through the same code path
    K = cfg.chunk_len
    ae = CALMAutoencoder(257, K, cfg.latent_dim, cfg.ae_d_model).eval()
    calm, gpt = build_models(cfg, ae, prof)
    calm.eval(), gpt.eval()
    rows = []
    for n_tokens in ([16, 32] if quick else [32, 64, 128]):
        prompt = torch.randint(0, 257, (4, 4 * K))
        t_gpt = timeit(lambda p=prompt, n=n_tokens: gpt_generate(gpt, p, n), warmup=1, reps=3)
        t_calm = timeit(lambda p=prompt, n=n_tokens: calm.generate(p, n // K), warmup=1, reps=3)
        rows.append({"tokens": n_tokens, "transformer_s": t_gpt, "calm_s": t_calm, "speedup": t_gpt / t_calm,
                     "transformer_steps": n_tokens, "calm_steps": n_tokens // K})
    fig = go.Figure(go.Scatter(x=[r["tokens"] for r in rows], y=[r["speedup"] for r in rows],
                               mode="lines+markers"))
    fig.update_layout(title=f"CALM (K={K}) generation speed-up over a token transformer (same backbone)",
                      xaxis_title="generated tokens", yaxis_title="transformer time / CALM time")
    summary = {"K": K, "speedup_at_max_tokens": rows[-1]["speedup"], "step_ratio": K}
    return {"rows": rows, "figure": fig, "summary": summary}
