"""Temperature without likelihoods. CALM (Shao et al., 2025, arXiv:2510.27688).
Taught in notebooks/04_calm.ipynb, section "Temperature without likelihoods".

CALM's head gives samples, never probabilities, so logits / T is not available. For T = 1/n there is
an exact trick: draw n independent samples and accept only if all n are identical; an outcome x then
comes out with probability proportional to p(x)^n = p(x)^(1/T). (The paper extends this to non-integer
1/T; we implement the integer case, as the official code does.) Rejection can need many tries when p is
flat, so the code also has a batch approximation: draw many candidates once and pick among repeated ones.

Both samplers take `draw(k) -> LongTensor [k, B, K]`: k independent decoded chunks for each of B rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Draw = Callable[[int], torch.Tensor]


def inverse_temperature(temp: float) -> int:
    """n = 1/temp, which must be a positive integer (T in {1, 1/2, 1/3, ...})."""
    if not temp > 0:
        raise ValueError(f"temp must be > 0 with 1/temp an integer, got {temp}")
    n = round(1.0 / temp)
    if n < 1 or abs(1.0 / temp - n) > 1e-6:
        raise ValueError(f"temp must be 1/n for an integer n >= 1 (1, 0.5, 0.333...), got {temp}")
    return n


def tempered(probs: torch.Tensor, temp: float) -> torch.Tensor:
    """The target of both samplers: p^(1/temp) renormalised over the last dim (for checks and plots)."""
    q = probs.double().pow(1.0 / temp)
    return (q / q.sum(-1, keepdim=True)).to(probs.dtype)


def sample_exact(draw: Draw, temp: float, max_tries: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact rejection sampling at temp = 1/n.

    Returns:
        chunks [B, K] and tries [B] (rounds of n draws each row needed).
    Raises:
        RuntimeError if some row is still unaccepted after max_tries rounds.
    """
    n = inverse_temperature(temp)
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    first = draw(n)  # [n, B, K]
    B = first.shape[1]
    result = first[0].clone()
    done = torch.zeros(B, dtype=torch.bool, device=first.device)
    tries = torch.zeros(B, dtype=torch.long, device=first.device)
    cand = first
    for _ in range(max_tries):
        # accept a row when all n draws decoded to the same chunk
        same = (cand == cand[:1]).all(-1).all(0)  # [B]
        tries += (~done).long()
        new = same & ~done
        result[new] = cand[0][new]
        done |= same
        if bool(done.all()):
            return result, tries
        cand = draw(n)
    raise RuntimeError(f"{int((~done).sum())} rows not accepted after max_tries={max_tries} rounds; "
                       f"raise max_tries or use sample_batch_approx")


def sample_batch_approx(draw: Draw, temp: float, n_candidates: int = 200,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The official code's approximation: one batch of candidates, then favour repeated chunks.

    For m = n, n-1, ..., 1: among distinct chunks seen at least m times, pick one with weight
    C(count, m) (the number of ways to draw m identical copies of it); stop at the first m that has any.
    Returns chunks [B, K].
    """
    n = inverse_temperature(temp)
    if n_candidates < n:
        raise ValueError(f"n_candidates must be >= 1/temp = {n}, got {n_candidates}")
    if n == 1:
        return draw(1)[0]
    cand = draw(n_candidates)  # [C, B, K]
    out = []
    for b in range(cand.shape[1]):
        uniq, counts = torch.unique(cand[:, b], dim=0, return_counts=True)  # [U, K], [U]
        for m in range(n, 0, -1):
            w = torch.tensor([math.comb(int(c), m) for c in counts], dtype=torch.float64)
            if w.sum() > 0:
                idx = torch.multinomial(w, 1, generator=generator)
                out.append(uniq[idx[0]])
                break
    return torch.stack(out)
