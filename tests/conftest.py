"""Test-wide setup. TRITON_INTERPRET must be set before triton is imported anywhere, so it is set
here at collection time when no GPU is present: every kernel test then runs in Triton's interpreter."""

import os

os.environ.setdefault("LABCORE_PROFILE", "smoke")
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass

import pytest  # noqa: E402
import torch  # noqa: E402

_empty = torch.empty


def _nan_empty(*args, **kwargs):
    """torch.empty filled with NaN (floats), so an output a kernel forgot to write fails loudly (fla)."""
    t = _empty(*args, **kwargs)
    if t.is_floating_point():
        t.fill_(float("nan"))
    return t


@pytest.fixture(autouse=True)
def nan_filled_empty(monkeypatch):
    monkeypatch.setattr(torch, "empty", _nan_empty)
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Test tensors are tiny: one thread is as fast, and avoids OpenMP spin-waits on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(42)
    yield
