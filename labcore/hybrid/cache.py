"""Decode caches of the hybrid: what each layer keeps between tokens, and its exact size in bytes.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Caches".

- MLA layers keep the compressed latent c_kv [B, S, R] and the shared key slice k_r [B, S, Dr] of
  every past token: this part grows with the context S.
- KDA layers keep a fixed-size state [B, H, K, V] + conv tails (labcore.kda.layer.KDACache).
- The softmax baseline keeps full per-head keys and values [B, S, H, D] (labcore.nn.KVCache).

Growing caches (labcore.nn.cache) keep their rows in a buffer that doubles when full, so appending a token
writes one row instead of copying the whole cache; `nbytes()` is the exact byte count of the tokens held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from labcore.nn.cache import GrowingCache


class MLACache(GrowingCache):
    """One MLA layer's cache: only the compressed latent and the shared key slice (NoPE, unrotated)."""

    @property
    def c_kv(self) -> torch.Tensor:
        """[B, S, R] RMS-normed latent, R = kv_lora_rank (a view of the buffer)."""
        return self._view(0)

    @property
    def k_r(self) -> torch.Tensor:
        """[B, S, Dr] key slice shared by all heads (Dr may be 0)."""
        return self._view(1)

    def append(self, c_kv: torch.Tensor, k_r: torch.Tensor) -> MLACache:
        """A new cache with T more tokens: c_kv [B, T, R], k_r [B, T, Dr]."""
        return self._append("c_kv", c_kv, k_r)


@dataclass
class HybridCache:
    """The whole model's cache: one entry per layer (None until the layer has seen a token).

    `signature` identifies the model that made it (layer types and widths), so a cache cannot be fed to
    a different model by mistake.
    """

    signature: tuple  # HybridConfig.signature() of the model that built this cache
    layers: list[Any] = field(default_factory=list)  # MLACache | KDACache | KVCache | None per layer
    seq_len: int = 0  # tokens seen so far
    batch_size: int | None = None  # B, fixed by the first forward

    def nbytes(self) -> int:
        """Exact bytes of every tensor held, all layers together."""
        return sum(c.nbytes() for c in self.layers if c is not None)

    def nbytes_by_type(self, layer_types: tuple[str, ...]) -> dict[str, int]:
        """Bytes per layer type, e.g. {"kda": ..., "mla": ...}: the fixed and the growing part."""
        if len(layer_types) != len(self.layers):
            raise ValueError(f"layer_types has {len(layer_types)} entries, "
                             f"cache has {len(self.layers)} layers")
        out: dict[str, int] = {}
        for kind, c in zip(layer_types, self.layers, strict=True):
            out[kind] = out.get(kind, 0) + (c.nbytes() if c is not None else 0)
        return out
