"""BrierLM: a likelihood-free language-model metric. CALM (Shao et al., 2025, arXiv:2510.27688).
Taught in notebooks/04_calm.ipynb, section "BrierLM".

The Brier score of a predictive distribution p for an outcome y is 2 p(y) - sum_x p(x)^2 (higher is
better, at most 1). With two independent model samples x1, x2 it has the unbiased estimate
1{x1 = y} + 1{x2 = y} - 1{x1 = x2}, so a model we can only sample from can still be scored.
Brier-n applies it to n-grams (equal only if all n tokens are equal); BrierLM is 100 x the geometric
mean of Brier-1..Brier-4.

Non-positive Brier-n: a single estimate is in {-1, 0, 1, 2} and even an average can be <= 0 for a weak
model. As in the paper's code, the clamp is on the *product*: BrierLM = 100 * max(prod_n Brier-n, 0)^(1/n).
There is no per-term clamp, so an even number of negative terms gives a positive product and passes (a
collapsed model whose two samples always agree and are always wrong scores Brier-n = -1 for every n,
hence BrierLM = 100); one negative term gives BrierLM = 0. `brier_lm` therefore also returns
`brier_lm_strict`, which clamps every Brier-n at 0 first (our addition, not the paper's), and the
individual Brier-n values so such a case is visible.
"""

from __future__ import annotations

import torch

from labcore.validate import check_ids, check_int, check_nonempty, check_tensor


def brier_estimate(x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise 1{x1 = y} + 1{x2 = y} - 1{x1 = x2} as float (same shapes in, same shape out)."""
    if not (x1.shape == x2.shape == y.shape):
        raise ValueError(f"x1, x2, y must have one shape, got {tuple(x1.shape)}, {tuple(x2.shape)}, "
                         f"{tuple(y.shape)}")
    return (x1 == y).float() + (x2 == y).float() - (x1 == x2).float()


def brier_exact(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed form 2 p(y) - sum_x p(x)^2 for probs [..., V] and targets y [...] (the estimate's mean)."""
    check_tensor("probs", probs, min_dim=1, kind="float")
    if probs.shape[:-1] != y.shape:
        raise ValueError(f"probs [..., V] and y [...] disagree: {tuple(probs.shape)} vs {tuple(y.shape)}")
    check_ids("y", y, probs.shape[-1])
    return 2 * probs.gather(-1, y[..., None]).squeeze(-1) - probs.pow(2).sum(-1)


def _ngram_match(a: torch.Tensor, b: torch.Tensor, n: int, chunk_aligned: bool) -> torch.Tensor:
    """1{a[t:t+n] == b[t:t+n]} for every n-gram start t ([B, T-n+1]), or only t = 0 ([B, 1])."""
    eq = (a == b)  # [B, T]
    if chunk_aligned:
        return eq[:, :n].all(-1, keepdim=True)
    return eq.unfold(1, n, 1).all(-1)  # [B, T-n+1]


def brier_lm(x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, max_n: int = 4,
             chunk_aligned: bool = False) -> dict[str, float]:
    """Brier-1..Brier-max_n and BrierLM from two sample sequences and the reference.

    Args:
        x1, x2, y: LongTensor [B, T]; x1 and x2 are two independent model samples for the positions of y.
        max_n: largest n-gram order (the paper uses 4); needs T >= max_n.
        chunk_aligned: if False, every n-gram (t = 0..T-n) counts; if True, only the first n tokens of
            each row count (CALM's evaluation: one row per K-token chunk sampled jointly).
    Returns:
        {"brier_1": ..., ..., "brier_lm": 100 * max(prod_n brier_n, 0) ** (1 / max_n) (the paper's),
         "brier_lm_strict": 100 * prod_n max(brier_n, 0) ** (1 / max_n) (each term clamped)}
    """
    if x1.dim() != 2 or not (x1.shape == x2.shape == y.shape):
        raise ValueError(f"x1, x2, y must all be [B, T], got {tuple(x1.shape)}, {tuple(x2.shape)}, "
                         f"{tuple(y.shape)}")
    check_nonempty("x1, x2, y", y.shape[0], "B")  # an empty mean is NaN
    max_n = check_int("max_n", max_n, lo=1, hi=max(1, y.shape[1]))
    if max_n > y.shape[1]:
        raise ValueError(f"max_n must be in [1, T={y.shape[1]}], got {max_n}")
    out: dict[str, float] = {}
    prod, strict = 1.0, 1.0
    for n in range(1, max_n + 1):
        m1 = _ngram_match(x1, y, n, chunk_aligned).float()
        m2 = _ngram_match(x2, y, n, chunk_aligned).float()
        m12 = _ngram_match(x1, x2, n, chunk_aligned).float()
        score = float((m1 + m2 - m12).mean())
        out[f"brier_{n}"] = score
        prod *= score
        strict *= max(score, 0.0)
    # clamp the product, not each term (see the module docstring)
    out["brier_lm"] = 100.0 * max(prod, 0.0) ** (1.0 / max_n)
    out["brier_lm_strict"] = 100.0 * strict ** (1.0 / max_n)
    return out
