"""Profiles, device/dtype choice and seeding: one code path at every scale.

A *profile* says how big a run is: `smoke` (CI, seconds), `cpu` (a laptop, minutes), `gpu` (one modern
GPU, real runs). `auto` resolves from the LABCORE_PROFILE environment variable, else `gpu` when CUDA is
available, else `cpu`. Each chapter keeps its own sizes as three instances of its config dataclass and
picks one with `pick(profile, smoke=..., cpu=..., gpu=...)`; nothing else branches on the profile name.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")
ENV_VAR = "LABCORE_PROFILE"
T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    name: str  # smoke | cpu | gpu
    device: str  # where tensors live: "cpu" or "cuda"
    amp_dtype: torch.dtype | None  # autocast dtype on GPU (bf16), None on CPU: fp32 everywhere
    minutes_budget: float  # wall-clock budget per chapter notebook, checked by the course runner

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def __str__(self) -> str:
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"
        return f"profile={self.name} device={self.device} precision={amp}"


def _cuda() -> bool:
    return torch.cuda.is_available()


def resolve_profile(name: str = "auto") -> Profile:
    """Turn a profile name (or "auto") into a Profile.

    `auto` reads LABCORE_PROFILE, else picks gpu when CUDA is available, else cpu. Asking for `gpu`
    without CUDA raises: a GPU-sized run on a CPU would take hours.
    """
    if not isinstance(name, str):
        raise TypeError(f"profile must be a string, got {type(name).__name__}")
    name = name.strip().lower()
    if name == "auto":
        name = os.environ.get(ENV_VAR, "").strip().lower() or ("gpu" if _cuda() else "cpu")
        if name == "auto":
            raise ValueError(f"{ENV_VAR} must be one of {PROFILES}, not 'auto'")
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES + ('auto',)}, got {name!r}")
    if name == "gpu":
        if not _cuda():
            raise ValueError("profile 'gpu' needs CUDA, but torch.cuda.is_available() is False; "
                             "use 'cpu' or 'smoke'")
        return Profile("gpu", "cuda", torch.bfloat16, 30.0)
    return Profile(name, "cpu", None, 2.0 if name == "smoke" else 15.0)


def pick(profile: Profile | str, *, smoke: T, cpu: T, gpu: T) -> T:
    """Choose one of three per-profile values (usually config dataclass instances)."""
    name = profile.name if isinstance(profile, Profile) else resolve_profile(profile).name
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[name]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def setup(profile: str = "auto", seed: int = 0, threads: int | None = None) -> Profile:
    """What every notebook calls first: resolve the profile, seed, print what will run."""
    prof = resolve_profile(profile)
    seed_everything(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    print(f"labcore: {prof} seed={seed} torch={torch.__version__} threads={torch.get_num_threads()}")
    return prof
