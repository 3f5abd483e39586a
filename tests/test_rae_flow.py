"""labcore.rae.flow: interpolation, velocity target, time shift, loss and the Euler sampler."""

import math

import pytest
import torch

from labcore.rae.flow import (
    euler_sample,
    euler_sample_naive,
    flow_matching_loss,
    interpolate,
    sample_t,
    shift_factor,
    shift_timesteps,
    time_grid,
    velocity_target,
)
from labcore.testing import assert_close


def test_interpolation_conventions():
    x, eps = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    t = torch.tensor([0.0, 1.0, 0.25, 0.7])
    xt = interpolate(x, eps, t)
    assert torch.equal(xt[0], x[0]) and torch.equal(xt[1], eps[1])  # t=0 data, t=1 noise
    # the velocity target is d x_t / dt: check by finite differences
    h = 1e-3
    fd = (interpolate(x, eps, t + h) - interpolate(x, eps, t - h)) / (2 * h)
    assert_close("v", velocity_target(x, eps), fd, 1e-3)  # linear in t: fd exact up to fp32 round-off
    with pytest.raises(ValueError, match="t must be"):
        interpolate(x, eps, torch.zeros(3))


def test_shift_timesteps():
    # paper's numbers: m = 256 tokens x 768 channels, n = 4096 -> a ~ 6.9
    assert math.isclose(shift_factor(196608, 4096), 6.928, rel_tol=1e-3)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    s = shift_timesteps(t, 512, 64)
    a = math.sqrt(8)
    ref = torch.tensor([a * v / (1 + (a - 1) * v) for v in t.tolist()], dtype=torch.float64)
    assert_close("shift", ref, s, 1e-12)
    assert s[0] == 0 and s[-1] == 1 and torch.all(s[1:] > s[:-1]) and torch.all(s >= t)
    assert torch.equal(shift_timesteps(t, 64, 64), t)  # a = 1: identity
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
        shift_timesteps(torch.tensor([1.5]), 4, 1)
    with pytest.raises(ValueError, match="base_dim"):
        shift_factor(4, 0)


def test_sample_t_and_grid():
    g = torch.Generator().manual_seed(0)
    for dist in ("uniform", "logit_normal"):
        t = sample_t(1000, g, dist)
        assert t.min() >= 0 and t.max() <= 1 and abs(float(t.mean()) - 0.5) < 0.05  # both symmetric about 1/2
    with pytest.raises(ValueError, match="dist"):
        sample_t(2, g, "beta")
    grid = time_grid(5)
    assert torch.allclose(grid, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.0]))
    assert torch.all(time_grid(5, 512, 64)[1:-1] > grid[1:-1])  # shift spends more steps at high noise


def test_flow_loss_zero_for_oracle():
    # for a single data point x0, the exact velocity is (x_t - x0) / t; its loss must be ~0
    x0 = torch.randn(1, 4, 3)
    x = x0.expand(64, -1, -1)

    def oracle(xt, t, cond):
        return (xt - x0) / t[:, None, None]

    g = torch.Generator().manual_seed(1)
    t = sample_t(64, g) * 0.98 + 0.01
    assert flow_matching_loss(oracle, x, t=t, generator=g) < 1e-10
    assert flow_matching_loss(lambda xt, t, c: torch.zeros_like(xt), x, generator=g) > 0.5


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_euler_matches_naive_and_solves_linear_ode(steps):
    torch.manual_seed(0)
    W = torch.randn(6, 6) * 0.3
    model = lambda x, t, c: x @ W + t[:, None] * 0.5 + (0 if c is None else c[:, None].float())  # noqa: E731
    noise, cond = torch.randn(5, 6), torch.arange(5)
    a = shift_factor(32, 8)
    ours = euler_sample(model, noise, steps, cond, latent_dim=32, base_dim=8)
    ref = euler_sample_naive(model, noise, steps, cond, a=a)
    assert_close("euler", ref, ours, 1e-5)  # same update, float32 vs python-float grid
    # the sampler transports the exact ODE solution: for v = const the result is noise - v
    v = torch.randn(5, 6)
    assert_close("const", noise - v, euler_sample(lambda x, t, c: v, noise, steps), 1e-6)


def test_cfg_combines_branches():
    model = lambda x, t, c: torch.full_like(x, 1.0) * (c[:, None].float() == 0)  # noqa: E731
    noise = torch.zeros(2, 3)
    y, null = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    # v_cond = 1, v_null = 0 -> guided v = w; one Euler step over dt = -1
    out = euler_sample(model, noise, 1, y, null_cond=null, cfg_scale=3.0)
    assert torch.allclose(out, torch.full((2, 3), -3.0))
    with pytest.raises(ValueError, match="cfg_scale"):
        euler_sample(model, noise, 1, y, null_cond=null, cfg_scale=-1.0)
