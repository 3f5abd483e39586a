"""Flow matching with a dimension-dependent time shift, and an Euler sampler with optional CFG.
RAE (Zheng, Ma, Tong, Xie, 2025), section on diffusion in the RAE latent.
Taught in notebooks/05_rae.ipynb, section "Flow matching and the dimension-dependent shift".

Conventions (the brief's, used by chapters 5 and 6):
    t = 0 is data, t = 1 is noise;  x_t = (1 - t) x + t eps;  the model predicts v = dx_t/dt = eps - x.
A model is any callable `model(x_t, t, cond) -> v` with x_t [B, ...], t [B] in [0, 1], cond whatever the
model takes (class labels [B], a tensor, or None); v has x_t's shape. Stable API: signatures only grow
arguments with defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from labcore.validate import check_choice, check_finite, check_in_range, check_int, check_real

Model = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]

__all__ = ["interpolate", "velocity_target", "shift_factor", "shift_timesteps", "sample_t",
           "flow_matching_loss", "time_grid", "euler_sample", "euler_sample_naive"]


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t [B] -> [B, 1, ..., 1] to broadcast against x [B, ...]."""
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def interpolate(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x + t eps. x, eps [B, ...]; t [B] in [0, 1]."""
    if x.shape != eps.shape:
        raise ValueError(f"x and eps must have the same shape, got {tuple(x.shape)} and {tuple(eps.shape)}")
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be [B] with B={x.shape[0]}, got shape {tuple(t.shape)}")
    check_finite("t", t)  # t outside [0, 1] extrapolates the line (finite differences use it)
    tb = _bcast(t, x)
    return (1 - tb) * x + tb * eps


def velocity_target(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """d x_t / dt = eps - x: the regression target of flow matching."""
    return eps - x


def shift_factor(latent_dim: int, base_dim: int) -> float:
    """a = sqrt(m / n): m = tokens x channels of the latent, n = the base dimension of the schedule."""
    # reals, not only ints: callers pass (a^2, 1) to ask for a shift factor a directly
    latent_dim = check_real("latent_dim", latent_dim, 0.0, None, lo_open=True, hi_open=True)
    base_dim = check_real("base_dim", base_dim, 0.0, None, lo_open=True, hi_open=True)
    return math.sqrt(latent_dim / base_dim)


def shift_timesteps(t: torch.Tensor, latent_dim: int, base_dim: int) -> torch.Tensor:
    """t' = a t / (1 + (a - 1) t), a = sqrt(latent_dim / base_dim) (paper's eq. for the shift).

    a > 1 pushes t toward 1 (more noise): a high-dimensional latent keeps more signal at equal t, so it
    needs more noise to be destroyed as much. Monotone, t' (0) = 0, t' (1) = 1; a = 1 is the identity.
    """
    if torch.is_tensor(t):
        check_in_range("t", t, 0.0, 1.0)  # NaN is outside [0, 1] too
    else:
        t = check_real("t", t, 0.0, 1.0)
    a = shift_factor(latent_dim, base_dim)
    return a * t / (1 + (a - 1) * t)


def sample_t(batch: int, generator: torch.Generator | None = None, dist: str = "uniform",
             device: str | torch.device = "cpu") -> torch.Tensor:
    """Training times [batch]: "uniform" U(0, 1) (paper) or "logit_normal" sigmoid(N(0, 1)) (later code)."""
    batch = check_int("batch", batch, lo=0)
    check_choice("dist", dist, ("uniform", "logit_normal"))
    if dist == "uniform":
        t = torch.rand(batch, generator=generator)
    elif dist == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        raise ValueError(f"dist must be 'uniform' or 'logit_normal', got {dist!r}")
    return t.to(device)


def flow_matching_loss(model: Model, x: torch.Tensor, cond: Any = None, *,
                       generator: torch.Generator | None = None, t: torch.Tensor | None = None,
                       eps: torch.Tensor | None = None, latent_dim: int | None = None,
                       base_dim: int | None = None, t_dist: str = "uniform") -> torch.Tensor:
    """MSE between model(x_t, t, cond) and eps - x, averaged over every element.

    t (default: drawn from t_dist) is shifted when both latent_dim and base_dim are given; eps defaults
    to N(0, I) from `generator`. x [B, ...] -> scalar loss.
    """
    B = x.shape[0]
    if t is None:
        t = sample_t(B, generator, t_dist, x.device)
    if latent_dim is not None and base_dim is not None:
        t = shift_timesteps(t, latent_dim, base_dim)
    if eps is None:
        eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    x_t = interpolate(x, eps, t)
    v = model(x_t, t, cond)
    return (v.float() - velocity_target(x, eps).float()).pow(2).mean()


def time_grid(steps: int, latent_dim: int | None = None, base_dim: int | None = None,
              t_end: float = 0.0) -> torch.Tensor:
    """steps + 1 times from 1 down to t_end (uniform), shifted when latent_dim and base_dim are given."""
    steps = check_int("steps", steps, lo=1)
    t_end = check_real("t_end", t_end, 0.0, 1.0, hi_open=True)
    grid = torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64)
    if latent_dim is not None and base_dim is not None:
        grid = shift_timesteps(grid, latent_dim, base_dim)
    return grid.float()


def _guided(model: Model, x: torch.Tensor, t: torch.Tensor, cond: Any, null_cond: Any,
            cfg_scale: float) -> torch.Tensor:
    v = model(x, t, cond)
    if cfg_scale == 1.0 or null_cond is None:
        return v
    # classifier-free guidance: v_null + w (v_cond - v_null)
    v_null = model(x, t, null_cond)
    return v_null + cfg_scale * (v - v_null)


@torch.no_grad()
def euler_sample(model: Model, noise: torch.Tensor, steps: int = 50, cond: Any = None, *,
                 latent_dim: int | None = None, base_dim: int | None = None, null_cond: Any = None,
                 cfg_scale: float = 1.0, t_end: float = 0.0,
                 return_trajectory: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate dx/dt = v from t = 1 (noise [B, ...]) to t_end with Euler steps on `time_grid`.

    x_{t_next} = x_t + (t_next - t) v(x_t, t). With null_cond and cfg_scale != 1, v is guided.
    Returns the sample (and the list of intermediate x when return_trajectory).
    """
    cfg_scale = check_real("cfg_scale", cfg_scale, 0.0, None, hi_open=True)
    grid = time_grid(steps, latent_dim, base_dim, t_end).to(noise.device)
    x = noise
    traj = [x]
    B = x.shape[0]
    for i in range(steps):
        t, t_next = grid[i], grid[i + 1]
        v = _guided(model, x, t.expand(B), cond, null_cond, cfg_scale)
        x = x + (t_next - t).to(x.dtype) * v
        if return_trajectory:
            traj.append(x)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def euler_sample_naive(model: Model, noise: torch.Tensor, steps: int, cond: Any = None,
                       a: float = 1.0) -> torch.Tensor:
    """Reference sampler, one sample at a time, plain python floats for the grid (tests compare to it)."""
    outs = []
    for b in range(noise.shape[0]):
        x = noise[b:b + 1]
        c = None if cond is None else cond[b:b + 1]
        ts = [1.0 - i / steps for i in range(steps + 1)]
        ts = [a * s / (1 + (a - 1) * s) for s in ts]
        for i in range(steps):
            v = model(x, torch.full((1,), ts[i]), c)
            x = x + (ts[i + 1] - ts[i]) * v
        outs.append(x)
    return torch.cat(outs)
