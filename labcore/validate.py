"""Input validation shared by every module: one helper per concern.

Each helper raises ValueError (bad value) or TypeError (bad type) with a message that names the
argument, the value it got and the allowed range, e.g. "top_p must be in (0, 1], got 1.3". Modules
call these at their public entry points, so the same mistake reads the same everywhere. Tensor
checks that need a value (finite, in range) read the tensor once; they are for entry points, not for
inner loops.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_int", "check_real", "check_choice", "check_tensor", "check_finite", "check_in_range",
           "check_ids", "check_nonempty", "as_param_tensor"]


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    a = "-inf" if lo is None else f"{lo:g}"
    b = "inf" if hi is None else f"{hi:g}"
    return f"{left}{a}, {b}{right}"


def _inside(x: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if math.isnan(x):
        return False
    if math.isinf(x) and ((x > 0 and hi is None and hi_open) or (x < 0 and lo is None and lo_open)):
        return False  # an open end at infinity excludes infinity itself
    if lo is not None and (x <= lo if lo_open else x < lo):
        return False
    if hi is not None and (x >= hi if hi_open else x > hi):
        return False
    return True


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not bool, not 2.5, not "3") in [lo, hi]; returns it as int."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if not _inside(value, lo, hi, False, False):
        raise ValueError(f"{name} must be an int in {_interval(lo, hi, False, False)}, got {value}")
    return value


def check_real(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """A real number (not bool, not a tensor of many values) in the interval; NaN is always refused.

    hi=None means no upper bound: hi_open=False lets +inf through, hi_open=True refuses it (same for lo).
    """
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not _inside(value, lo, hi, lo_open, hi_open):
        raise ValueError(f"{name} must be in {_interval(lo, hi, lo_open, hi_open)}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of a fixed set of options."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_tensor(name: str, x: Any, *, dim: int | None = None, min_dim: int | None = None,
                 kind: str | None = None, shape: Sequence[int] | None = None) -> torch.Tensor:
    """A torch.Tensor of the right rank / shape / kind ("float": floating; "int": integer, not bool)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(x.shape)}")
    if min_dim is not None and x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if kind == "float" and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if kind == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    return x


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """No NaN or inf anywhere."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf value(s) of {x.numel()}")
    return x


def check_in_range(name: str, x: torch.Tensor, lo: float | None = None, hi: float | None = None, *,
                   lo_open: bool = False, hi_open: bool = False) -> torch.Tensor:
    """Every element in the interval (NaN is outside every interval)."""
    if not x.numel():
        return x
    ok = ~torch.isnan(x)
    if lo is not None:
        ok &= (x > lo) if lo_open else (x >= lo)
    if hi is not None:
        ok &= (x < hi) if hi_open else (x <= hi)
    if not bool(ok.all()):
        xf = x.detach().double()
        nans = int(torch.isnan(xf).sum())
        finite = xf[~torch.isnan(xf)]
        got = f"[{float(finite.min()):.4g}, {float(finite.max()):.4g}]" if finite.numel() else "no number"
        extra = f" and {nans} NaN" if nans else ""
        raise ValueError(f"{name} must be in {_interval(lo, hi, lo_open, hi_open)}, got range {got}{extra}")
    return x


def check_ids(name: str, ids: Any, vocab_size: int, *, ignore: int | None = None) -> torch.Tensor:
    """An integer tensor of token ids in [0, vocab_size) (entries equal to `ignore` are allowed too)."""
    check_tensor(name, ids, kind="int")
    if not ids.numel():
        return ids
    real = ids if ignore is None else ids[ids != ignore]
    if real.numel() and (int(real.min()) < 0 or int(real.max()) >= vocab_size):
        allowed = f"[0, {vocab_size})" + (f" or {ignore}" if ignore is not None else "")
        raise ValueError(f"{name} must be token ids in {allowed}, got range "
                         f"[{int(real.min())}, {int(real.max())}]")
    return ids


def check_nonempty(name: str, size: int, what: str) -> int:
    """A size that must be >= 1, e.g. the batch: an empty mean would be NaN."""
    if size < 1:
        raise ValueError(f"{name} must have {what} >= 1, got {what}={size} (an empty batch has no mean)")
    return size


def as_param_tensor(name: str, value: Any, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """A per-position parameter: a real number (broadcast to `shape`) or a real tensor of that shape."""
    if torch.is_tensor(value):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got {value.dtype}")
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)} (logits.shape[:-1]) or be a number, "
                             f"got {tuple(value.shape)}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a tensor of shape {tuple(shape)}, "
                        f"got {type(value).__name__}")
    dt = like.dtype if like.is_floating_point() else torch.float32
    return torch.full(tuple(shape), float(value), dtype=dt, device=like.device)


def check_path(name: str, value: Any) -> os.PathLike | str:
    """A str or os.PathLike (not bytes, not a list)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(value).__name__}")
    return value
