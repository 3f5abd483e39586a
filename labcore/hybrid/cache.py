"""Decode caches of the hybrid: what each layer keeps between tokens, and its exact size in bytes.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Caches".

- MLA layers keep the compressed latent c_kv [B, S, R] and the shared key slice k_r [B, S, Dr] of
  every past token: this part grows with the context S.
- KDA layers keep a fixed-size state [B, H, K, V] + conv tails (labcore.kda.layer.KDACache).
- The softmax baseline keeps full per-head keys and values [B, S, H, D] (KVCache).

`nbytes()` is the exact byte count of the tensors a cache holds (numel * element_size), not an estimate.
Caches grow by concatenation, so there is no spare capacity to count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    """Exact bytes held by the given tensors (None counts 0)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class MLACache:
    """One MLA layer's cache: only the compressed latent and the shared key slice (NoPE, unrotated)."""

    c_kv: torch.Tensor  # [B, S, R] RMS-normed latent, R = kv_lora_rank
    k_r: torch.Tensor  # [B, S, Dr] key slice shared by all heads (Dr may be 0)

    @property
    def seq_len(self) -> int:
        return self.c_kv.shape[1]

    def append(self, c_kv: torch.Tensor, k_r: torch.Tensor) -> MLACache:
        """A new cache with T more tokens: c_kv [B, T, R], k_r [B, T, Dr]."""
        if c_kv.shape[0] != self.c_kv.shape[0] or c_kv.shape[2] != self.c_kv.shape[2]:
            raise ValueError(f"c_kv must be [B={self.c_kv.shape[0]}, T, R={self.c_kv.shape[2]}], "
                             f"got {tuple(c_kv.shape)}")
        return MLACache(torch.cat([self.c_kv, c_kv], 1), torch.cat([self.k_r, k_r], 1))

    def nbytes(self) -> int:
        return tensor_bytes(self.c_kv, self.k_r)


@dataclass
class KVCache:
    """One softmax-attention layer's cache: full keys and values of every head (the baseline)."""

    k: torch.Tensor  # [B, S, H, D]
    v: torch.Tensor  # [B, S, H, D]

    @property
    def seq_len(self) -> int:
        return self.k.shape[1]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        if k.shape[0] != self.k.shape[0] or k.shape[2:] != self.k.shape[2:]:
            raise ValueError(f"k must be [B={self.k.shape[0]}, T, {tuple(self.k.shape[2:])}], "
                             f"got {tuple(k.shape)}")
        return KVCache(torch.cat([self.k, k], 1), torch.cat([self.v, v], 1))

    def nbytes(self) -> int:
        return tensor_bytes(self.k, self.v)


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
