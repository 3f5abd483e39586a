"""Comparison helpers shared by notebooks' check cells and the test suite.

`compare` prints one line and returns whether it passed (notebooks print, then assert);
`assert_close` is fla's relative-RMSE check; `check_shape` is d2l's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _as_tensor(x) -> torch.Tensor:
    return x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)


def rel_rmse(ref: torch.Tensor, x: torch.Tensor) -> float:
    """RMS(x - ref) / RMS(ref): scale-free error used for kernels (fla's `get_err_ratio`)."""
    ref, x = _as_tensor(ref), _as_tensor(x)
    err = (x - ref).pow(2).mean().sqrt()
    base = ref.pow(2).mean().sqrt()
    return float(err / base.clamp_min(1e-12))


def compare(name: str, ours, ref, atol: float = 1e-5, rtol: float = 1e-5, quiet: bool = False) -> bool:
    """Print `name | max|Δ| 3.0e-07 | tol ... | ok` and return True when |ours - ref| <= atol + rtol*|ref|."""
    ours, ref = _as_tensor(ours), _as_tensor(ref)
    if ours.shape != ref.shape:
        if not quiet:
            print(f"{name} | shape {tuple(ours.shape)} != {tuple(ref.shape)} | FAIL")
        return False
    diff = (ours - ref).abs()
    ok = bool(torch.all(diff <= atol + rtol * ref.abs())) and bool(torch.isfinite(ours).all())
    if not quiet:
        max_diff = float(diff.max()) if diff.numel() else 0.0
        print(f"{name} | max|Δ| {max_diff:.1e} | tol {atol:.0e}+{rtol:.0e}·|ref| | {'ok' if ok else 'FAIL'}")
    return ok


def assert_close(name: str, ref, x, ratio: float) -> None:
    """Assert rel_rmse(ref, x) <= ratio (and x finite), with a message that says what to look at."""
    x_t = _as_tensor(x)
    if not torch.isfinite(x_t).all():
        raise AssertionError(f"{name}: output has NaN/inf (did a masked exp overflow before the mask?)")
    err = rel_rmse(ref, x_t)
    if err > ratio:
        raise AssertionError(f"{name}: relative RMSE {err:.2e} > {ratio:.0e}; compare the two paths "
                             f"chunk by chunk to find where they diverge")


def check_shape(x: torch.Tensor, shape: Sequence[int]) -> None:
    """Raise if x.shape != shape (d2l's check_shape)."""
    if tuple(x.shape) != tuple(shape):
        raise AssertionError(f"shape {tuple(x.shape)} != expected {tuple(shape)}")
