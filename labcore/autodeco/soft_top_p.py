"""Soft (differentiable) top-p, AutoDeco (Wang et al., 2025, arXiv:2510.26697).
Taught in notebooks/01_autodeco.ipynb, section "Soft top-p".

    p = softmax(l / max(T, 1e-8));  sort p descending -> p_s;  c = cumsum(p_s)
    m = exp(-alpha * ReLU(c - P));  unsort m;  p~ = p * m / sum(p * m)
computed in log space, p~ = softmax(log p - alpha * ReLU(c - P)), so a large alpha or a small P cannot
underflow every p * m to 0 (the paper's "+ 1e-9" then returned a vector summing to ~0).

Hard limits (tested): alpha -> 0 gives p~ = p (plain temperature sampling); alpha -> inf keeps exactly
the tokens whose *inclusive* cumulative mass is <= P (the "inclusive" convention below), one token fewer
than the usual Hugging Face rule "smallest set whose mass >= P" (the "hf" convention); when even the top
token's mass exceeds P the limit is that token alone. alpha = inf is accepted and computes this limit.
"""

from __future__ import annotations

import torch

from kernels import resolve_backend
from labcore.validate import as_param_tensor, check_finite, check_in_range, check_real, check_tensor

CONVENTIONS = ("hf", "inclusive")


def validate(logits: torch.Tensor, temperature, top_p, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Check every input (ValueError/TypeError naming the argument); return (temperature, top_p, alpha)
    as tensors of shape logits.shape[:-1] (a number is broadcast) and a float."""
    check_tensor("logits", logits, min_dim=1, kind="float")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    lead = tuple(logits.shape[:-1])
    temperature = as_param_tensor("temperature", temperature, lead, logits)
    top_p = as_param_tensor("top_p", top_p, lead, logits)
    if logits.numel() and not bool(torch.isfinite(logits).all()):
        raise ValueError("logits must be finite (no NaN/inf); mask with a large negative number instead")
    check_in_range("temperature", temperature, 0.0, None, lo_open=True)
    check_finite("temperature", temperature)
    check_in_range("top_p", top_p, 0.0, 1.0, lo_open=True)
    alpha = check_real("alpha", alpha, 0.0, None, lo_open=True)  # inf allowed: the hard limit
    return temperature, top_p, alpha


def soft_top_p_torch(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                     alpha: float = 30.0) -> torch.Tensor:
    """The vectorised torch form (autograd through sort/cumsum). No validation: see soft_top_p.
    Computes in float32 at least (float64 inputs stay float64, for gradcheck)."""
    dt = torch.promote_types(logits.dtype, torch.float32)
    log_p = torch.log_softmax(logits.to(dt) / temperature.to(dt).clamp_min(1e-8)[..., None], dim=-1)  # [..., V]
    p_sorted, order = torch.sort(log_p.exp(), dim=-1, descending=True, stable=True)  # ties: lower index first
    c = p_sorted.cumsum(-1)
    P = top_p.to(dt)[..., None]
    if alpha == float("inf"):
        # the limit: keep c <= P (all of it at P = 1, despite round-off in c), else the top token alone
        keep = (c <= P) | (P >= 1)
        keep[..., 0] = True
        log_m_sorted = torch.zeros_like(c).masked_fill(~keep, float("-inf"))
    else:
        # log m = -alpha * ReLU(c - P): 0 inside the nucleus, decaying smoothly past it
        log_m_sorted = -alpha * torch.relu(c - P)
    log_m = torch.empty_like(log_m_sorted).scatter(-1, order, log_m_sorted)  # unsort
    return torch.softmax(log_p + log_m, dim=-1)


class _SoftTopPTriton(torch.autograd.Function):
    """Triton forward (kernels/soft_top_p.py); backward recomputes soft_top_p_torch and differentiates it."""

    @staticmethod
    def forward(ctx, logits, temperature, top_p, alpha):
        from kernels.soft_top_p import soft_top_p_fwd  # deferred: triton is imported only when used

        ctx.save_for_backward(logits, temperature, top_p)
        ctx.alpha = alpha
        return soft_top_p_fwd(logits, temperature, top_p, alpha)

    @staticmethod
    def backward(ctx, grad_out):
        logits, temperature, top_p = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(x.requires_grad) for x in (logits, temperature, top_p)]
            out = soft_top_p_torch(*inputs, ctx.alpha)
            wanted = [x for x in inputs if x.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad_out)) if wanted else iter(())
        return (*(next(grads) if x.requires_grad else None for x in inputs), None)


def soft_top_p_triton(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                      alpha: float = 30.0) -> torch.Tensor:
    """Soft top-p with the Triton forward (the paper's "+ 1e-9" form, not renormalised; no validation:
    see soft_top_p)."""
    return _SoftTopPTriton.apply(logits, temperature, top_p, alpha)


def soft_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
               alpha: float = 30.0, backend: str = "auto") -> torch.Tensor:
    """Renormalised soft top-p probabilities, differentiable w.r.t. logits, temperature and top_p.

    Args:
        logits: [..., V] finite floats.
        temperature: [...] one value per position, in (0, inf) (AutoDeco's head gives (0, 2)), or a number.
        top_p: [...] one value per position, in (0, 1], or a number.
        alpha: sharpness in (0, inf] (paper: 30); inf is the hard (inclusive) limit.
        backend: "auto" | "torch" | "triton" (forward in Triton, backward through the torch form).
    Returns:
        p~ [..., V] in float32 (float64 for float64 logits).
    """
    temperature, top_p, alpha = validate(logits, temperature, top_p, alpha)
    if not logits.numel():
        return torch.empty(logits.shape, dtype=torch.promote_types(logits.dtype, torch.float32),
                           device=logits.device)
    # the kernel keeps the paper's "+ 1e-9" (p * m / (sum + 1e-9)) and has no alpha = inf branch: its
    # output is renormalised here (the backward is unchanged, it already sums to 1), and rows where
    # sum(p * m) underflowed (big alpha, small P) fall back to the log-space torch form
    if alpha != float("inf") and resolve_backend(backend, logits) == "triton":
        out = soft_top_p_triton(logits, temperature, top_p, alpha)
        total = out.sum(-1, keepdim=True)
        if bool((total > 1e-3).all()):
            return out / total
    return soft_top_p_torch(logits, temperature, top_p, alpha)


def top_p_mask(probs: torch.Tensor, top_p: torch.Tensor, convention: str = "hf") -> torch.Tensor:
    """Boolean mask [..., V] of the tokens hard top-p keeps.

    convention="hf": the smallest set whose mass >= P (keep a token if the mass *before* it is < P);
    the top token is always kept. convention="inclusive": keep tokens whose inclusive cumulative mass
    is <= P (the alpha -> inf limit of soft top-p), but at least the top token (the limit when P < max
    prob) and everything at P = 1.
    Ties go to the lower index (stable sort), as in the naive reference.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    p_sorted, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    c = p_sorted.cumsum(-1)
    P = top_p[..., None]
    if convention == "hf":
        keep_sorted = (c - p_sorted) < P
    else:
        keep_sorted = (c <= P) | (P >= 1)
        keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def hard_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
               convention: str = "hf") -> torch.Tensor:
    """Temperature, then hard top-p, renormalised: the distribution decoding samples from."""
    temperature, top_p, _ = validate(logits, temperature, top_p, 1.0)
    p = torch.softmax(logits.float() / temperature.float()[..., None], dim=-1)
    kept = p * top_p_mask(p, top_p.float(), convention)
    return kept / kept.sum(-1, keepdim=True)  # never 0: both conventions keep the top token
