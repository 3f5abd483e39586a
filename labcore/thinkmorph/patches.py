"""Images <-> patch tokens: one image cell is one token of p*p*3 numbers in [-1, 1].
Taught in notebooks/06_thinkmorph.ipynb, section "One sequence, two kinds of token".
"""

from __future__ import annotations

import numpy as np
import torch

from labcore.nn.vision import patchify, unpatchify
from labcore.thinkmorph.tasks import CELL


def image_to_patches(pixels: np.ndarray, patch: int = CELL) -> torch.Tensor:
    """uint8 [H, W, 3] -> [N, p*p*3] in [-1, 1], row-major cells (labcore.nn.vision.patchify)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return patchify(x, patch)[0]


def patches_to_image(patches: torch.Tensor, side: int, patch: int = CELL) -> np.ndarray:
    """[N, p*p*3] in [-1, 1] -> uint8 [side*p, side*p, 3] (values outside [-1, 1] are clamped for display)."""
    x = unpatchify(patches[None].float().cpu(), patch, 3, side * patch, side * patch)[0]
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def neighbourhood(x: torch.Tensor, side: int, window: int = 1) -> torch.Tensor:
    """x [..., N, pd] patches of a side x side grid -> [..., N, window^2 * pd]: each cell's window x window
    neighbourhood (zeros outside the grid), rows then columns, the cell itself in the middle. window = 1 is
    x itself; 3 is what a 3x3 convolution over the grid reads."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 1, got {window}")
    if x.shape[-2] != side * side:
        raise ValueError(f"x must hold side^2 = {side * side} patches, got {x.shape[-2]}")
    if window == 1:
        return x
    h = window // 2
    grid = x.reshape(*x.shape[:-2], side, side, x.shape[-1])
    padded = torch.nn.functional.pad(grid, (0, 0, h, h, h, h))  # zeros around the grid
    parts = [padded[..., i:i + side, j:j + side, :] for i in range(window) for j in range(window)]
    return torch.cat(parts, -1).reshape(*x.shape[:-1], window * window * x.shape[-1])


def edit_source(latest: torch.Tensor | None, n: int, patch_dim: int) -> torch.Tensor:
    """What a drawn image of n patches is conditioned on, patch by patch: the latest image before it
    [N, pd] when that has the same shape (a drawn image is an edit of the picture before it, as in
    image-editing models: the problem for a first sketch, the previous sketch for the next one), else
    zeros (a picture drawn from words alone)."""
    if latest is None or latest.shape[0] != n:
        return torch.zeros(n, patch_dim)
    return latest
