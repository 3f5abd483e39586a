"""Chapter 2 Triton kernels vs the torch references, under TRITON_INTERPRET=1 on CPU (conftest sets it
when there is no GPU). Small shapes: the interpreter runs every program instance in Python."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labcore.kda import KimiDeltaAttention, chunk_kda, recurrent_kda
from labcore.testing import assert_close

pytest.importorskip("triton")
if not torch.cuda.is_available():
    from kernels import interpreting

    if not interpreting():  # pragma: no cover - conftest sets it before triton is imported
        pytest.skip("set TRITON_INTERPRET=1 before importing triton to test kernels on CPU",
                    allow_module_level=True)

from labcore.kda.chunk import chunk_kda_triton  # noqa: E402
from labcore.kda.fused import fused_recurrent_kda  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32 kernels (tl.dot in IEEE precision) vs fp32 torch: we measure ~2e-7; 1e-4 leaves room for a
# different summation order on a GPU while any indexing or masking bug (errors ~1e-1) still fails
TOL = 1e-4


def inputs(B, T, H, K, V, g_min=-3.0, h0=True):
    q = torch.randn(B, T, H, K, device=DEVICE)
    k = F.normalize(torch.randn(B, T, H, K, device=DEVICE), dim=-1)
    v = torch.randn(B, T, H, V, device=DEVICE)
    g = torch.rand(B, T, H, K, device=DEVICE) * g_min
    beta = torch.rand(B, T, H, device=DEVICE)
    S0 = torch.randn(B, H, K, V, device=DEVICE) if h0 else None
    return q, k, v, g, beta, S0


@pytest.mark.parametrize(("B", "T", "H", "K", "V", "h0"), [
    pytest.param(*c, id="B{}-T{}-H{}-K{}-V{}-h0{}".format(*c))
    for c in [(1, 16, 1, 16, 16, False), (2, 37, 2, 16, 32, True), (1, 50, 1, 8, 24, True),
              (1, 70, 3, 48, 96, True)]])  # K over two score blocks, V over two value blocks
def test_chunk_kernel(B, T, H, K, V, h0):
    q, k, v, g, beta, S0 = inputs(B, T, H, K, V, h0=h0)
    o_ref, S_ref = recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)
    o, S = chunk_kda_triton(q, k, v, g, beta, initial_state=S0, output_final_state=True)
    assert_close("o", o_ref, o, TOL)
    assert_close("final state", S_ref, S, TOL)


def test_chunk_kernel_strong_decay_and_dispatch():
    q, k, v, g, beta, S0 = inputs(1, 40, 1, 16, 16, g_min=-20.0)
    o_ref, _ = recurrent_kda(q, k, v, g, beta, initial_state=S0)
    o, none = chunk_kda(q, k, v, g, beta, initial_state=S0, backend="triton")
    assert none is None
    assert_close("o (g down to -20)", o_ref, o, TOL)
    assert torch.isfinite(chunk_kda_triton(*inputs(1, 300, 1, 16, 16, g_min=-20.0, h0=False)[:5])[0]).all()


def test_kernels_are_a_leaf():
    # labcore imports kernels, never the reverse (issue 16)
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "kernels"
    for name in ("kda_chunk.py", "kda_recurrent.py"):
        tree = ast.parse((root / name).read_text())
        mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in mods if m.split(".")[0] == "labcore"], f"kernels/{name} imports labcore: {mods}"


@pytest.mark.parametrize("all_inf", [False, True])
def test_minus_inf_gate_in_kernels(all_inf):
    # g = -inf forgets the channel: both kernels must give the recurrent result, not NaN
    q, k, v, g, beta, S0 = inputs(1, 37, 2, 16, 16)
    if all_inf:
        g = torch.full_like(g, -float("inf"))
    else:
        g[:, 3:7, :, 2] = -float("inf")
        g[:, 20, 1] = -float("inf")
    o_ref, S_ref = recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)
    for fn in (chunk_kda_triton, fused_recurrent_kda):
        o, S = fn(q, k, v, g, beta, initial_state=S0, output_final_state=True)
        assert_close(f"{fn.__name__} o", o_ref, o, TOL)
        assert_close(f"{fn.__name__} final state", S_ref, S, TOL)


def test_chunk_kernel_gradients():
    # the Triton forward's backward recomputes the torch chunk form: gradients must match recurrent's
    base = inputs(1, 21, 1, 16, 16)
    grads = []
    for fn in (recurrent_kda, chunk_kda_triton):
        leaves = [x.clone().requires_grad_() for x in base]
        o, S = fn(*leaves[:5], initial_state=leaves[5], output_final_state=True)
        torch.manual_seed(1)
        ((o * torch.randn(o.shape)).sum() + (S * torch.randn(S.shape)).sum()).backward()
        grads.append([x.grad for x in leaves])
    for name, a, b in zip(("dq", "dk", "dv", "dg", "dbeta", "dh0"), *grads, strict=True):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize(("B", "T", "H", "K", "V"), [(2, 1, 2, 16, 16), (1, 7, 1, 8, 24)])
def test_fused_recurrent(B, T, H, K, V):
    q, k, v, g, beta, S0 = inputs(B, T, H, K, V)
    o_ref, S_ref = recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)
    o, S = fused_recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)
    assert_close("o", o_ref, o, TOL)
    assert_close("final state", S_ref, S, TOL)


def test_layer_decodes_with_triton_backend():
    torch.manual_seed(0)
    layer = KimiDeltaAttention(16, 1, 16, chunk_size=16).to(DEVICE).eval()
    x = torch.randn(1, 5, 16, device=DEVICE)
    with torch.no_grad():
        y_ref, _ = layer(x)
        layer.backend = "triton"
        y_pre, cache = layer(x[:, :3], use_cache=True)  # Triton chunk kernel
        ys = [y_pre]
        for t in range(3, 5):  # Triton fused recurrent kernel
            y_t, cache = layer(x[:, t:t + 1], cache=cache, use_cache=True)
            ys.append(y_t)
    assert_close("layer output, triton backend", y_ref, torch.cat(ys, 1), TOL)


def test_exercise_checker_passes_a_solution_and_fails_a_bug(capsys):
    try:  # the exercises are moving from kernels/ to labcore/ (another change in flight)
        from labcore.exercises import KDA_DECODE_STEP, check
    except ImportError:
        from kernels.exercises import KDA_DECODE_STEP, check

    def solution(q, k, v, g, beta, S):  # the chapter's fused recurrent kernel, one token
        o, S_new = fused_recurrent_kda(q[:, None], k[:, None], v[:, None], g[:, None], beta[:, None],
                                       initial_state=S, output_final_state=True)
        return o[:, 0], S_new

    def forgets_to_decay(q, k, v, g, beta, S):
        return solution(q, k, v, torch.zeros_like(g), beta, S)

    assert check(solution, KDA_DECODE_STEP, nelem={"K": 8}, device=DEVICE)
    assert not check(forgets_to_decay, KDA_DECODE_STEP, device=DEVICE)
    assert not check(lambda *a: None, KDA_DECODE_STEP, device=DEVICE)
    out = capsys.readouterr().out
    assert "not done yet" in out and "o: Tensor" in out and "yours" in out and "FAIL" in out
    with pytest.raises(ValueError, match="nelem keys"):
        check(solution, KDA_DECODE_STEP, nelem={"T": 3})
