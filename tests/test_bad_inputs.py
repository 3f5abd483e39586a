"""Property tests (hypothesis) over the public functions of checkpoint/train/autodeco/rae flow/calm:
random shapes (0-sized and T=1 included), dtypes, NaN/inf, out-of-range values. Each call either
matches an independent reference or raises ValueError/TypeError whose message names the argument;
never a silent wrong result, never an internal error. Small, derandomized example counts keep CI fast
and deterministic."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labcore import checkpoint
from labcore.autodeco import hard_top_p, soft_top_p, soft_top_p_naive
from labcore.calm.autoencoder import CALMAutoencoder
from labcore.calm.brier import brier_lm
from labcore.calm.energy import energy_score_loss, energy_score_loss_naive
from labcore.rae.flow import shift_timesteps
from labcore.train import TrainConfig

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ODD = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1.5]


def must_name(err: BaseException, *names: str) -> None:
    """A clear error: ValueError/TypeError that names one of the arguments."""
    assert isinstance(err, (ValueError, TypeError)), f"internal error {type(err).__name__}: {err}"
    assert any(n in str(err) for n in names), f"message names none of {names}: {err}"


def values(draw, shape, good, odd_p=0.2):
    """A tensor of `shape` with good values, some replaced by odd ones (NaN, inf, 0, -1, 1.5)."""
    n = math.prod(shape)
    vals = [draw(st.sampled_from(ODD)) if draw(st.booleans()) and draw(st.floats(0, 1)) < odd_p
            else draw(good) for _ in range(n)]
    return torch.tensor(vals, dtype=torch.float64).reshape(shape)


@st.composite
def soft_inputs(draw):
    clean = draw(st.booleans())  # half the examples are valid, so the reference comparison is exercised
    lead = tuple(draw(st.lists(st.integers(0 if not clean else 1, 3), max_size=2)))
    V = draw(st.integers(1 if clean else 0, 6))
    odd = 0.0 if clean else 0.2
    logits = values(draw, lead + (V,), st.floats(-5, 5), odd_p=odd / 4)
    dtypes = [torch.float32, torch.float64] if clean else [torch.float16, torch.int64, torch.float32]
    logits = logits.to(draw(st.sampled_from(dtypes)))
    temp = values(draw, lead, st.floats(0.05, 3), odd_p=odd)
    top_p = values(draw, lead, st.floats(0.01, 1), odd_p=odd)
    if draw(st.booleans()):
        temp = draw(st.sampled_from([0.7, 1.0, 2] if clean else [-1.0, math.nan, "hot"]))
    if draw(st.booleans()):
        top_p = draw(st.sampled_from([0.9, 1, 0.01] if clean else [0.0, 1.5, None]))
    good_alpha = [1e-3, 1.0, 30.0, 1e6, math.inf]
    alpha = draw(st.sampled_from(good_alpha if clean else good_alpha + [0.0, -1.0, math.nan, "30"]))
    return logits, temp, top_p, alpha


@settings(SETTINGS, max_examples=80)
@given(soft_inputs())
def test_soft_top_p_is_reference_or_clear_error(args):
    logits, temp, top_p, alpha = args
    try:
        out = soft_top_p(logits, temp, top_p, alpha, backend="torch")  # the kernel: test_soft_top_p_kernel
    except Exception as e:  # noqa: BLE001
        return must_name(e, "logits", "temperature", "top_p", "alpha")
    assert out.shape == logits.shape and torch.isfinite(out).all() and (out >= 0).all()
    if out.numel():
        torch.testing.assert_close(out.double().sum(-1), torch.ones(out.shape[:-1], dtype=torch.float64),
                                   atol=1e-5, rtol=0)
    lead = logits.shape[:-1]
    t = torch.full(lead, float(temp)) if not torch.is_tensor(temp) else temp
    p = torch.full(lead, float(top_p)) if not torch.is_tensor(top_p) else top_p
    if alpha == math.inf:  # the hard limit is the inclusive hard top-p, computed the same way
        torch.testing.assert_close(out.float(), hard_top_p(logits, t, p, "inclusive"), atol=1e-6, rtol=0)
    elif alpha <= 30.0:  # at 1e6 one ulp of cumulative mass moves the mask; sum and support checked above
        ref = soft_top_p_naive(logits, t, p, alpha)
        torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


@SETTINGS
@given(st.lists(st.one_of(st.floats(0, 1), st.sampled_from(ODD)), max_size=5),
       st.integers(-1, 64), st.integers(-1, 16), st.booleans())
def test_shift_timesteps_is_formula_or_clear_error(ts, latent_dim, base_dim, as_float):
    t = (ts[0] if ts else 0.5) if as_float else torch.tensor(ts, dtype=torch.float64)
    try:
        out = shift_timesteps(t, latent_dim, base_dim)
    except Exception as e:  # noqa: BLE001
        return must_name(e, "t", "latent_dim", "base_dim")
    a = math.sqrt(latent_dim / base_dim)
    ref = [a * x / (1 + (a - 1) * x) for x in ([t] if as_float else ts)]
    got = [float(out)] if as_float else out.tolist()
    assert got == pytest.approx(ref, abs=1e-12) and all(0 <= x <= 1 for x in got)


def brier_reference(x1, x2, y, max_n):
    out, prod = {}, 1.0
    B, T = y.shape
    for n in range(1, max_n + 1):
        tot, cnt = 0.0, 0
        for b in range(B):
            for s in range(T - n + 1):
                a, c, r = x1[b, s:s + n].tolist(), x2[b, s:s + n].tolist(), y[b, s:s + n].tolist()
                tot += (a == r) + (c == r) - (a == c)
                cnt += 1
        out[n] = tot / cnt
        prod *= out[n]
    return out, 100.0 * max(prod, 0.0) ** (1.0 / max_n)


@SETTINGS
@given(st.integers(0, 3), st.integers(0, 6), st.integers(-1, 5), st.integers(0, 10**6))
def test_brier_lm_is_reference_or_clear_error(B, T, max_n, seed):
    g = torch.Generator().manual_seed(seed)
    x1, x2, y = (torch.randint(0, 3, (B, T), generator=g) for _ in range(3))
    try:
        out = brier_lm(x1, x2, y, max_n=max_n)
    except Exception as e:  # noqa: BLE001
        return must_name(e, "max_n", "x1", "B")
    ref, lm = brier_reference(x1, x2, y, max_n)
    for n in range(1, max_n + 1):
        assert out[f"brier_{n}"] == pytest.approx(ref[n], abs=1e-6)
    assert out["brier_lm"] == pytest.approx(lm, abs=1e-4)


@SETTINGS
@given(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2),
       st.sampled_from([torch.float32, torch.float64, torch.int64]))
def test_energy_score_is_reference_or_clear_error(N, B, D, M, dtype):
    g = torch.Generator().manual_seed(N * 64 + B * 16 + D * 4 + M)
    samples = torch.randn(N, B, D, generator=g).to(dtype)
    targets = torch.randn(M, B, D, generator=g).to(dtype)
    try:
        out = energy_score_loss(samples, targets)
    except Exception as e:  # noqa: BLE001
        return must_name(e, "samples", "targets")
    assert torch.isfinite(out)
    torch.testing.assert_close(out, energy_score_loss_naive(samples, targets), atol=1e-5, rtol=1e-5)


AE = CALMAutoencoder(vocab_size=7, chunk_len=2, latent_dim=3, d_model=8).eval()


@SETTINGS
@given(st.integers(0, 2), st.integers(0, 5), st.integers(-2, 9), st.booleans())
def test_autoencoder_encode_is_shape_or_clear_error(B, T, top, as_float):
    ids = torch.full((B, T), top, dtype=torch.float32 if as_float else torch.long)
    try:
        z = AE.encode(ids)
    except Exception as e:  # noqa: BLE001
        return must_name(e, "ids", "T")
    assert 0 <= top < 7 and T % 2 == 0 and T > 0 and not as_float
    assert z.shape == (B, T // 2, 3) and torch.isfinite(z).all()


@SETTINGS
@given(st.sampled_from([1, 3, 0, -2, 2.5, "3", True, 10**3]),
       st.sampled_from([3e-4, 1, 0.0, -1e-3, math.nan, math.inf, "0.1"]),
       st.sampled_from([0.0, 0.1, -0.1, math.nan]),
       st.sampled_from([(0.9, 0.95), (0.0, 0.5), (1.0, 0.9), (0.9,), 0.9, (math.nan, 0.9)]))
def test_train_config_is_valid_or_clear_error(steps, lr, weight_decay, betas):
    try:
        cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, betas=betas)
    except Exception as e:  # noqa: BLE001
        return must_name(e, "steps", "lr", "weight_decay", "betas")
    assert isinstance(cfg.steps, int) and cfg.steps >= 1 and not isinstance(steps, (bool, float, str))
    assert 0 < cfg.lr < math.inf and 0 <= cfg.weight_decay < math.inf
    assert all(0 <= b < 1 for b in cfg.betas) and len(cfg.betas) == 2


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(["flip", "truncate", "sidecar-empty", "sidecar-gone", "none"]))
def test_checkpoint_loads_exactly_or_refuses(tmp_path, seed, fault):
    path = tmp_path / f"c{seed}.safetensors"
    g = torch.Generator().manual_seed(seed)
    saved = {"a": torch.randn(3, 5, generator=g), "b": torch.randint(0, 9, (4,), generator=g)}
    checkpoint.save_tensors(path, saved, {"seed": seed})
    data = bytearray(path.read_bytes())
    side = tmp_path / f"c{seed}.safetensors.sha256"
    if fault == "flip":
        i = seed % len(data)
        data[i] ^= 1 + seed % 255
        path.write_bytes(bytes(data))
    elif fault == "truncate":
        path.write_bytes(bytes(data[:seed % len(data)]))
    elif fault == "sidecar-empty":
        side.write_text("")
    elif fault == "sidecar-gone":
        side.unlink()
    try:
        tensors, meta = checkpoint.load_tensors(path)
    except Exception as e:  # noqa: BLE001
        assert fault != "none", f"an intact checkpoint was refused: {e}"
        return must_name(e, "sha256")
    assert fault == "none", f"a {fault} checkpoint loaded"
    assert meta == {"seed": seed} and all(torch.equal(tensors[k], v) for k, v in saved.items())
