"""Triton kernels, one file per op, each beside the torch reference it is tested against.

Launchers only: nothing here imports labcore (tests/test_imports.py); each op's dispatcher and autograd
wrapper live beside its torch reference in labcore (labcore/kda/chunk.py, labcore/autodeco/soft_top_p.py).
Every public op takes backend="auto" | "torch" | "triton": auto picks triton for CUDA tensors (when triton
is installed) and the torch reference otherwise, also under TRITON_INTERPRET=1. To run the kernels on CPU
in Triton's interpreter (how the tests check them without a GPU), set TRITON_INTERPRET=1 *before* triton
is imported and pass backend="triton".
"""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "triton")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """'auto' -> 'triton' for CUDA tensors when triton is installed, else 'torch' (also under the
    interpreter: CPU tensors run the interpreted kernels only with backend='triton', which checks it is set)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "torch"
    if backend == "triton":
        if not triton_available():
            raise RuntimeError("backend='triton' but triton is not installed (pip install triton)")
        if not x.is_cuda and not interpreting():
            raise RuntimeError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before "
                               "triton is imported")
    return backend
