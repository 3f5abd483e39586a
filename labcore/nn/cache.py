"""Decode caches that grow along the sequence without copying the whole cache per token.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Caches".

A cache keeps tensors [B, S, ...] of every past token. Appending with `torch.cat` copies all S rows per
token, which makes a decode step cost O(S) memory traffic on top of what attention reads. Here the rows
live in a buffer that doubles when full, so appending writes only the new rows (amortised O(1)).
`nbytes()` is the exact byte count of the tokens a cache holds (numel * element_size), not an estimate;
`allocated_bytes()` counts the buffer's capacity.
"""

from __future__ import annotations

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


class GrowingCache:
    """A layer cache of two tensors [B, S, ...] kept in one growing buffer; subclasses name the two."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, *, _rows: _Rows | None = None,
                 _length: int | None = None):
        self._rows = _rows if _rows is not None else _Rows(a, b)
        self._length = a.shape[1] if _length is None else _length

    def _view(self, i: int) -> torch.Tensor:
        return self._rows.bufs[i][:, :self._length]

    @property
    def seq_len(self) -> int:
        return self._length

    @property
    def batch_size(self) -> int:
        return self._rows.bufs[0].shape[0]

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


class KVCache(GrowingCache):
    """One softmax-attention layer's cache: full keys and values of every head."""

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
