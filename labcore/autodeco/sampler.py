"""Decoding with per-token (T, P): run the frozen LM, the heads give (T, P) for this token, apply
temperature then hard top-p ("hf" convention: smallest set with mass >= P), sample.
Taught in notebooks/01_autodeco.ipynb, section "Decoding"."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from labcore.autodeco.heads import AutoDecoHeads
from labcore.autodeco.soft_top_p import hard_top_p


@dataclass
class Generation:
    tokens: torch.Tensor  # [B, n_new] sampled ids
    temperature: torch.Tensor  # [B, n_new] T used at each step (nan for greedy)
    top_p: torch.Tensor  # [B, n_new] P used at each step (nan for greedy)


@torch.no_grad()
def generate(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, *, mode: str = "autodeco",
             heads: AutoDecoHeads | None = None, temperature: float = 1.0, top_p: float = 1.0,
             generator: torch.Generator | None = None) -> Generation:
    """mode: "greedy" | "static" (fixed temperature/top_p) | "autodeco" (heads predict both per token)."""
    if mode not in ("greedy", "static", "autodeco"):
        raise ValueError(f"mode must be 'greedy', 'static' or 'autodeco', got {mode!r}")
    if mode == "autodeco" and heads is None:
        raise ValueError("mode='autodeco' needs heads")
    if mode == "static" and not (temperature > 0 and 0 < top_p <= 1):
        raise ValueError(f"static decoding needs temperature > 0 and top_p in (0, 1], got {temperature}, {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    x = prompts
    B = x.shape[0]
    toks, temps, ps = [], [], []
    for _ in range(max_new_tokens):
        # k samples of one prompt share their prefix until they diverge: run the model once per distinct row
        rows, inverse = torch.unique(x, dim=0, return_inverse=True)
        logits, h = model(rows, return_hidden=True)
        logits, h = logits[:, -1].float()[inverse], h[:, -1][inverse]  # [B, V], [B, d]
        if mode == "greedy":
            nxt = logits.argmax(-1)
            T = P = torch.full((B,), float("nan"))
        else:
            if mode == "autodeco":
                T, P = heads(h, logits)
            else:
                T, P = torch.full((B,), temperature), torch.full((B,), top_p)
            probs = hard_top_p(logits, T.to(logits.device), P.to(logits.device), convention="hf")
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(x.device)
        toks.append(nxt)
        temps.append(T.float().cpu())
        ps.append(P.float().cpu())
        x = torch.cat([x, nxt[:, None]], dim=1)
    return Generation(torch.stack(toks, 1).cpu(), torch.stack(temps, 1), torch.stack(ps, 1))
