"""Decode caches of the hybrid: what each layer keeps between tokens, and its exact size in bytes.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Caches".

- MLA layers keep the compressed latent c_kv [B, S, R] and the shared key slice k_r [B, S, Dr] of
  every past token: this part grows with the context S.
- KDA layers keep a fixed-size state [B, H, K, V] + conv tails (labcore.kda.layer.KDACache).
- The softmax baseline keeps full per-head keys and values [B, S, H, D] (KVCache).

`nbytes()` is the exact byte count of the tokens a cache holds (numel * element_size), not an estimate.
Growing caches keep their rows in a buffer that doubles when full, so appending a token writes one row
instead of copying the whole cache (amortised O(1)); `allocated_bytes()` counts the buffer's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    """Exact bytes held by the given tensors (None counts 0)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class _Rows:
    """Tensors [B, S, ...] that grow along S in a shared buffer with spare capacity (doubling).

    Caches are values: appending returns a new object and the old one still sees its own S rows. Only the
    newest holder of a buffer appends in place; appending to an older one (a branch) copies first."""

    def __init__(self, *tensors: torch.Tensor):
        self.bufs = list(tensors)
        self.filled = tensors[0].shape[1]  # rows written; holders with a smaller length are branches

    def append(self, length: int, new: tuple[torch.Tensor, ...]) -> tuple[_Rows, int]:
        T = new[0].shape[1]
        rows = self
        if length != self.filled or length + T > self.bufs[0].shape[1]:  # branch, or no room: reallocate
            cap = max(2 * (length + T), 16)
            rows = _Rows(*(b.new_empty(b.shape[0], cap, *b.shape[2:]) for b in self.bufs))
            for dst, src in zip(rows.bufs, self.bufs, strict=True):
                dst[:, :length] = src[:, :length]
        for dst, src in zip(rows.bufs, new, strict=True):
            dst[:, length:length + T] = src
        rows.filled = length + T
        return rows, length + T

    def allocated_bytes(self) -> int:
        return tensor_bytes(*self.bufs)


class _GrowingCache:
    """A layer cache of two tensors [B, S, ...] kept in a _Rows buffer; subclasses name the two."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, *, _rows: _Rows | None = None,
                 _length: int | None = None):
        self._rows = _rows if _rows is not None else _Rows(a, b)
        self._length = a.shape[1] if _length is None else _length

    def _view(self, i: int) -> torch.Tensor:
        return self._rows.bufs[i][:, :self._length]

    @property
    def seq_len(self) -> int:
        return self._length

    def _append(self, name: str, a: torch.Tensor, b: torch.Tensor):
        buf = self._rows.bufs[0]
        if a.shape[0] != buf.shape[0] or a.shape[2:] != buf.shape[2:]:
            raise ValueError(f"{name} must be [B={buf.shape[0]}, T, {', '.join(map(str, buf.shape[2:]))}], "
                             f"got {tuple(a.shape)}")
        rows, length = self._rows.append(self._length, (a, b))
        return type(self)(a, b, _rows=rows, _length=length)

    def nbytes(self) -> int:
        return tensor_bytes(self._view(0), self._view(1))

    def allocated_bytes(self) -> int:
        """Bytes of the buffer, spare capacity included (at most 2x nbytes after growing)."""
        return self._rows.allocated_bytes()


class MLACache(_GrowingCache):
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


class KVCache(_GrowingCache):
    """One softmax-attention layer's cache: full keys and values of every head (the baseline)."""

    @property
    def k(self) -> torch.Tensor:
        """[B, S, H, D] keys (a view of the buffer)."""
        return self._view(0)

    @property
    def v(self) -> torch.Tensor:
        """[B, S, H, D] values."""
        return self._view(1)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """A new cache with T more tokens: k, v [B, T, H, D]."""
        return self._append("k", k, v)


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
