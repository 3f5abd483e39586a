"""Offline image datasets as HF `datasets.Dataset`: scikit-learn digits (upsampled) and procedural shapes.

Every builder returns columns "image" (a [C, H, W] nested list of floats in [-1, 1]) and "label" (int).
`to_tensors` turns one into (X [N, C, H, W] float32, y [N] long). Used by chapters 5 and 6.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset

SHAPES = ("circle", "square", "triangle", "cross")  # label i of shapes_images is SHAPES[i]


def digits_images(size: int = 16) -> Dataset:
    """The 1797 8x8 handwritten digits of scikit-learn, bilinearly upsampled to size x size, 1 channel."""
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).numpy()
    return Dataset.from_dict({"image": list(x), "label": [int(v) for v in d.target]})


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if kind == "circle":
        return (dx ** 2 + dy ** 2 <= r ** 2).astype(np.float32)
    if kind == "square":
        return ((np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)).astype(np.float32)
    if kind == "triangle":  # apex up: inside when below the two slanted edges and above the base
        return ((dy <= r * 0.8) & (dy >= -r + 2 * np.abs(dx))).astype(np.float32)
    if kind == "cross":
        w = max(r / 3, 0.75)
        bar_v = (np.abs(dx) <= w) & (np.abs(dy) <= r)
        bar_h = (np.abs(dy) <= w) & (np.abs(dx) <= r)
        return (bar_v | bar_h).astype(np.float32)
    raise ValueError(f"kind must be one of {SHAPES}, got {kind!r}")


def shapes_images(n: int = 2000, size: int = 16, seed: int = 0, channels: int = 3) -> Dataset:
    """n procedural images: one shape (label = index in SHAPES) of random colour, size and position
    on a dark background. Deterministic in seed."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        label = int(rng.integers(len(SHAPES)))
        r = rng.uniform(0.2, 0.35) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = _shape_mask(SHAPES[label], size, cx, cy, r)  # [H, W]
        colour = rng.uniform(0.4, 1.0, size=(channels, 1, 1)).astype(np.float32)
        img = mask[None] * colour  # [C, H, W] in [0, 1]
        images.append(img * 2 - 1)
        labels.append(label)
    return Dataset.from_dict({"image": images, "label": labels})


def to_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [N, C, H, W] float32 in [-1, 1], y [N] long) from an image dataset."""
    ds = ds.with_format("numpy")
    x = torch.from_numpy(np.asarray(ds["image"], dtype=np.float32))
    y = torch.from_numpy(np.asarray(ds["label"], dtype=np.int64))
    return x, y


def split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.2,
          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random split into (x_train, y_train, x_val, y_val), deterministic in seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_val = max(1, math.floor(x.shape[0] * val_fraction))
    val, tr = perm[:n_val], perm[n_val:]
    return x[tr], y[tr], x[val], y[val]


def nuisance_render(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hide the semantics of grey glyphs under nuisances: affine jitter, random colours, a textured background.

    x: [N, 1, H, W] in [-1, 1] (ink = high). Each image gets its own draw of: rotation +-20 degrees, scale
    0.85-1.15, shift +-1.5 px; an ink colour and two background colours on opposite sides of mid-grey
    (polarity random, so the glyph stays visible); a background of oriented stripes (1.5-4 cycles per image)
    blended with a smooth random blob texture. Returns [N, 3, H, W] in [-1, 1], deterministic in generator.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be [N, 1, H, W] grey images, got shape {tuple(x.shape)}")
    N, _, H, W = x.shape
    g = generator

    def u(*shape: int) -> torch.Tensor:  # U(0, 1) on the CPU generator, then to x's device
        return torch.rand(*shape, generator=g).to(x.device)

    ink = ((x + 1) / 2).clamp(0, 1)  # [N, 1, H, W]
    ang, scale = (u(N) * 2 - 1) * math.radians(20), 0.85 + 0.3 * u(N)
    shift = (u(N, 2) * 2 - 1) * 1.5 * 2 / torch.tensor([W, H], device=x.device)  # px -> [-1, 1] coords
    cos, sin = ang.cos() / scale, ang.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)
    ink = F.grid_sample(ink, F.affine_grid(theta, [N, 1, H, W], align_corners=False), align_corners=False)
    # colours: ink on one side of mid-grey, both background colours on the other
    bright = (u(N) < 0.5).float()[:, None, None, None]  # [N, 1, 1, 1]
    level_ink = bright * (0.7 + 0.3 * u(N, 1, 1, 1)) + (1 - bright) * 0.3 * u(N, 1, 1, 1)
    level_bg = (1 - bright) * (0.6 + 0.25 * u(N, 1, 1, 1)) + bright * 0.4 * u(N, 1, 1, 1)
    fg = (level_ink + (u(N, 3, 1, 1) - 0.5) * 0.5).clamp(0, 1)  # [N, 3, 1, 1]
    c1 = (level_bg + (u(N, 3, 1, 1) - 0.5) * 0.5).clamp(0, 1)
    c2 = (level_bg + (u(N, 3, 1, 1) - 0.5) * 0.5).clamp(0, 1)
    # texture in [0, 1]: stripes sin(2 pi f (x cos phi + y sin phi) + psi) mixed with upsampled 4x4 noise
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H, device=x.device), torch.linspace(0, 1, W, device=x.device),
                            indexing="ij")
    f, phi, psi = 1.5 + 2.5 * u(N, 1, 1), math.pi * u(N, 1, 1), 2 * math.pi * u(N, 1, 1)
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * f * (xx * phi.cos() + yy * phi.sin()) + psi)  # [N, H, W]
    blobs = F.interpolate(u(N, 1, 4, 4), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    mix = u(N, 1, 1)
    tex = (mix * stripes + (1 - mix) * blobs)[:, None]  # [N, 1, H, W]
    bg = c1 * tex + c2 * (1 - tex)  # [N, 3, H, W]
    return (ink * fg + (1 - ink) * bg) * 2 - 1


def nuisance_digits_images(size: int = 16, seed: int = 0) -> Dataset:
    """The 1797 digits of `digits_images(size)`, each rendered once by `nuisance_render` (draws from seed):
    3 channels, the label (the digit) no longer readable from raw pixel statistics. Deterministic in seed."""
    x, y = to_tensors(digits_images(size))
    xr = nuisance_render(x, torch.Generator().manual_seed(seed)).numpy()
    return Dataset.from_dict({"image": list(xr), "label": y.tolist()})
