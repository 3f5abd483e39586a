"""Soft (differentiable) top-p, AutoDeco (Wang et al., 2025, arXiv:2510.26697).
Taught in notebooks/01_autodeco.ipynb, section "Soft top-p".

    p = softmax(l / max(T, 1e-8));  sort p descending -> p_s;  c = cumsum(p_s)
    m = exp(-alpha * ReLU(c - P));  unsort m;  p~ = p * m / (sum(p * m) + 1e-9)

Hard limits (tested): alpha -> 0 gives p~ = p (plain temperature sampling); alpha -> inf keeps exactly
the tokens whose *inclusive* cumulative mass is <= P (the "inclusive" convention below), one token fewer
than the usual Hugging Face rule "smallest set whose mass >= P" (the "hf" convention).
"""

from __future__ import annotations

import torch

from kernels import resolve_backend

CONVENTIONS = ("hf", "inclusive")


def validate(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, alpha: float) -> None:
    """Raise ValueError naming the argument when an input is outside its allowed range."""
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating tensor, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    for name, x in (("temperature", temperature), ("top_p", top_p)):
        if tuple(x.shape) != tuple(logits.shape[:-1]):
            raise ValueError(f"{name} must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
                             f"got {tuple(x.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError("logits must be finite (no NaN/inf); mask with a large negative number instead")
    if not (temperature > 0).all() or not torch.isfinite(temperature).all():
        raise ValueError(f"temperature must be in (0, inf), got min {float(temperature.min()):.3g}")
    if not ((top_p > 0) & (top_p <= 1)).all():
        raise ValueError(f"top_p must be in (0, 1], got range [{float(top_p.min()):.3g}, "
                         f"{float(top_p.max()):.3g}]")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")


def soft_top_p_torch(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                     alpha: float = 30.0) -> torch.Tensor:
    """The vectorised torch form (autograd through sort/cumsum). No validation: see soft_top_p.
    Computes in float32 at least (float64 inputs stay float64, for gradcheck)."""
    dt = torch.promote_types(logits.dtype, torch.float32)
    p = torch.softmax(logits.to(dt) / temperature.to(dt).clamp_min(1e-8)[..., None], dim=-1)  # [..., V]
    p_sorted, order = torch.sort(p, dim=-1, descending=True)
    c = p_sorted.cumsum(-1)
    # m = exp(-alpha * ReLU(c - P)): 1 inside the nucleus, decaying smoothly past it
    m_sorted = torch.exp(-alpha * torch.relu(c - top_p.to(dt)[..., None]))
    m = torch.zeros_like(m_sorted).scatter(-1, order, m_sorted)  # unsort
    pm = p * m
    return pm / (pm.sum(-1, keepdim=True) + 1e-9)


def soft_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
               alpha: float = 30.0, backend: str = "auto") -> torch.Tensor:
    """Renormalised soft top-p probabilities, differentiable w.r.t. logits, temperature and top_p.

    Args:
        logits: [..., V] finite floats.
        temperature: [...] one value per position, in (0, inf) (AutoDeco's head gives (0, 2)).
        top_p: [...] one value per position, in (0, 1].
        alpha: sharpness > 0 (paper: 30).
        backend: "auto" | "torch" | "triton" (forward in Triton, backward through the torch form).
    Returns:
        p~ [..., V] in float32 (float64 for float64 logits).
    """
    validate(logits, temperature, top_p, alpha)
    if resolve_backend(backend, logits) == "triton":
        from kernels.soft_top_p import soft_top_p_triton

        return soft_top_p_triton(logits, temperature, top_p, alpha)
    return soft_top_p_torch(logits, temperature, top_p, alpha)


def top_p_mask(probs: torch.Tensor, top_p: torch.Tensor, convention: str = "hf") -> torch.Tensor:
    """Boolean mask [..., V] of the tokens hard top-p keeps.

    convention="hf": the smallest set whose mass >= P (keep a token if the mass *before* it is < P);
    the top token is always kept. convention="inclusive": keep tokens whose inclusive cumulative mass
    is <= P (the alpha -> inf limit of soft top-p; may keep nothing if P < max prob).
    Ties are broken by torch.sort's order.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    p_sorted, order = torch.sort(probs, dim=-1, descending=True)
    c = p_sorted.cumsum(-1)
    P = top_p[..., None]
    keep_sorted = (c - p_sorted) < P if convention == "hf" else c <= P
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def hard_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
               convention: str = "hf") -> torch.Tensor:
    """Temperature, then hard top-p, renormalised: the distribution decoding samples from."""
    validate(logits, temperature, top_p, 1.0)
    p = torch.softmax(logits.float() / temperature.float()[..., None], dim=-1)
    kept = p * top_p_mask(p, top_p.float(), convention)
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-30)
