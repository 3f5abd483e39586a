"""Soft top-p: torch reference vs Triton forward (on a GPU), and the torch cost per vocabulary size.
`python -m labcore.bench soft_top_p` -> build/bench/soft_top_p.{json,html}."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from labcore.autodeco.soft_top_p import soft_top_p
from labcore.bench import timeit


def run(quick: bool = False) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows_n = 64 if quick else 1024  # positions per call (batch x time)
    vocab = (256, 4096) if quick else (256, 4096, 32768, 131072)
    rows = []
    for V in vocab:
        g = torch.Generator(device=device).manual_seed(0)
        logits = torch.randn(rows_n, V, device=device, generator=g)
        T = torch.rand(rows_n, device=device, generator=g) + 0.5
        P = torch.rand(rows_n, device=device, generator=g) * 0.5 + 0.5
        row = {"V": V, "rows": rows_n, "device": device,
               "torch_ms": 1e3 * timeit(lambda l=logits, t=T, p=P: soft_top_p(l, t, p, backend="torch"))}
        if device == "cuda":
            row["triton_ms"] = 1e3 * timeit(lambda l=logits, t=T, p=P: soft_top_p(l, t, p, backend="triton"))
            row["speedup"] = row["torch_ms"] / row["triton_ms"]
        rows.append(row)
    fig = go.Figure(layout=dict(title=f"soft top-p, {rows_n} positions per call ({device})",
                                xaxis=dict(title="vocabulary size", type="log"), yaxis_title="ms per call"))
    fig.add_scatter(x=[r["V"] for r in rows], y=[r["torch_ms"] for r in rows], name="torch")
    if device == "cuda":
        fig.add_scatter(x=[r["V"] for r in rows], y=[r["triton_ms"] for r in rows], name="triton")
    summary = {f"V={r['V']}": (f"triton {r['speedup']:.2f}x torch" if "speedup" in r
                               else f"torch {r['torch_ms']:.2f} ms (no GPU: triton not timed)") for r in rows}
    return {"rows": rows, "figure": fig, "summary": summary}
