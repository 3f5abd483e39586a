"""The Triton soft top-p forward against the torch reference (TRITON_INTERPRET=1 on CPU)."""

import pytest
import torch

from labcore.autodeco import soft_top_p
from labcore.testing import assert_close

pytest.importorskip("triton")


@pytest.mark.parametrize(("N", "V"), [pytest.param(n, v, id=f"N{n}-V{v}") for n, v in
                                      [(1, 1), (3, 7), (5, 257), (2, 1000)]])
def test_forward(N, V):
    logits = torch.randn(N, V) * 4
    T, P = torch.rand(N) * 1.5 + 0.05, torch.rand(N) * 0.9 + 0.1
    ref = soft_top_p(logits, T, P, backend="torch")
    tri = soft_top_p(logits, T, P, backend="triton")
    assert_close("p~", ref, tri, 1e-5)  # fp32 both sides; only the cumsum order differs


def test_backward_through_reference():
    logits, T, P = torch.randn(4, 33), torch.rand(4) + 0.3, torch.rand(4) * 0.8 + 0.2
    grads = []
    for backend in ("torch", "triton"):
        xs = [t.clone().requires_grad_() for t in (logits, T, P)]
        (soft_top_p(*xs, backend=backend) * torch.arange(33.0)).sum().backward()
        grads.append([x.grad for x in xs])
    for name, a, b in zip(("dlogits", "dT", "dP"), *grads):
        assert_close(name, a, b, 1e-5)


def test_backend_dispatch_errors():
    with pytest.raises(ValueError, match="backend"):
        soft_top_p(torch.randn(2, 3), torch.ones(2), torch.ones(2), backend="cuda")
