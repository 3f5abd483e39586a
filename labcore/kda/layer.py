"""The KDA layer (KimiDeltaAttention) and its scalar-gated baseline (ScalarGatedDeltaNet).
Kimi Linear (Moonshot AI, 2025, arXiv:2510.26692). Taught in notebooks/02_kda.ipynb,
section "The gate and the layer".

x [B, T, d] -> q, k, v (Linear -> short causal depthwise conv -> SiLU; q, k L2-normalised per head),
beta = sigmoid(Linear(x)), g = the gate (per channel for KDA, per head for GDN) -> KDA core ->
RMSNorm per head * sigmoid(low-rank output gate) -> o_proj.
Decoding: `KDACache` carries the recurrent state and the conv tails, so feeding tokens one at a time
gives the same output as the full-sequence forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from labcore.kda.chunk import chunk_kda
from labcore.kda.gate import init_A_log, init_dt_bias, kda_gate
from labcore.kda.naive import recurrent_kda
from labcore.nn.blocks import CausalConv1d, RMSNorm


@dataclass
class KDACache:
    """What one layer needs to continue a sequence: O(1) in its length."""

    state: torch.Tensor  # [B, H, K, V] fp32 recurrent state S
    conv_q: torch.Tensor  # [B, conv_size - 1, H * K] last inputs of the q conv
    conv_k: torch.Tensor  # [B, conv_size - 1, H * K] last inputs of the k conv
    conv_v: torch.Tensor  # [B, conv_size - 1, H * V] last inputs of the v conv
    seen_tokens: int = 0  # tokens consumed so far

    @property
    def conv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.conv_q, self.conv_k, self.conv_v

    def nbytes(self) -> int:
        """Exact bytes held by the cache's tensors."""
        return sum(t.numel() * t.element_size() for t in (self.state, *self.conv))


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim (fla's l2norm)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


class _GatedDeltaAttention(nn.Module):
    """Everything KDA and GDN share; subclasses define the gate: `_raw_gate(x) -> [B, T, H, K or 1]`."""

    gate_channels: int  # K for a per-channel gate, 1 for a scalar gate

    def __init__(self, d_model: int, n_head: int, head_dim: int, conv_size: int = 4,
                 gate_rank: int | None = None, chunk_size: int = 64, backend: str = "auto",
                 norm_eps: float = 1e-5):
        super().__init__()
        for name, val in (("d_model", d_model), ("n_head", n_head), ("head_dim", head_dim),
                          ("conv_size", conv_size), ("chunk_size", chunk_size)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        self.d_model, self.n_head, self.head_dim = d_model, n_head, head_dim
        self.conv_size, self.chunk_size, self.backend = conv_size, chunk_size, backend
        self.gate_rank = gate_rank or head_dim  # the release uses rank = head dim
        H, K = n_head, head_dim
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * K, bias=False)  # V = K, as in the release
        self.q_conv = CausalConv1d(H * K, conv_size)
        self.k_conv = CausalConv1d(H * K, conv_size)
        self.v_conv = CausalConv1d(H * K, conv_size)
        self.b_proj = nn.Linear(d_model, H, bias=False)
        self.A_log = nn.Parameter(init_A_log(H))
        self.dt_bias = nn.Parameter(init_dt_bias(H * self.gate_channels))
        # output gate: low rank, no biases (the released checkpoint), applied after the norm
        self.g_out = nn.Sequential(nn.Linear(d_model, self.gate_rank, bias=False),
                                   nn.Linear(self.gate_rank, H * K, bias=False))
        self.o_norm = RMSNorm(K, eps=norm_eps)  # per head over V, weight shared by heads
        self.o_proj = nn.Linear(H * K, d_model, bias=False)

    # ---- the gate ------------------------------------------------------------------------------
    def _raw_gate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gate_values(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token log decay g [B, T, H, K] (<= 0) this layer applies to its state, for input x."""
        B, T, _ = x.shape
        g = kda_gate(self._raw_gate(x).view(B, T, self.n_head, self.gate_channels),
                     self.A_log, self.dt_bias)  # [B, T, H, K or 1]
        return g.expand(B, T, self.n_head, self.head_dim)

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, cache: KDACache | None = None, use_cache: bool = False
                ) -> tuple[torch.Tensor, KDACache | None]:
        """x [B, T, d_model] -> (y [B, T, d_model], updated cache if use_cache else None)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be [B, T, {self.d_model}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        H, K = self.n_head, self.head_dim
        if cache is not None and cache.state.shape[0] != B:
            raise ValueError(f"cache holds batch size {cache.state.shape[0]}, x has batch size {B}; "
                             f"start a new cache (layer.init_cache({B}) or cache=None)")
        tails = cache.conv if cache is not None else (None, None, None)
        q, cq = self.q_conv(self.q_proj(x), tails[0])
        k, ck = self.k_conv(self.k_proj(x), tails[1])
        v, cv = self.v_conv(self.v_proj(x), tails[2])
        q = l2norm(F.silu(q).view(B, T, H, K))  # [B, T, H, K]
        k = l2norm(F.silu(k).view(B, T, H, K))  # [B, T, H, K]
        v = F.silu(v).view(B, T, H, K)  # [B, T, H, V]
        beta = torch.sigmoid(self.b_proj(x).float())  # [B, T, H]
        g = self.gate_values(x)  # [B, T, H, K]
        S0 = cache.state if cache is not None else None
        if T == 1 and not self.training:  # decode step: the recurrence is the cheap form here
            o, S = self._step(q, k, v, g, beta, S0)
        else:
            o, S = chunk_kda(q, k, v, g, beta, initial_state=S0, output_final_state=use_cache,
                             chunk_size=self.chunk_size, backend=self.backend)
        o = self.o_norm(o) * torch.sigmoid(self.g_out(x)).view(B, T, H, K)
        y = self.o_proj(o.reshape(B, T, H * K).to(x.dtype))
        if not use_cache:
            return y, None
        seen = (cache.seen_tokens if cache is not None else 0) + T
        return y, KDACache(S, cq, ck, cv, seen)

    def _step(self, q, k, v, g, beta, S0):
        from kernels import resolve_backend

        if resolve_backend(self.backend, q) == "triton":
            from labcore.kda.fused import fused_recurrent_kda

            return fused_recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)
        return recurrent_kda(q, k, v, g, beta, initial_state=S0, output_final_state=True)

    def init_cache(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> KDACache:
        """An empty cache (zero state, zero conv tails) for `batch_size` sequences."""
        H, K, c = self.n_head, self.head_dim, self.conv_size - 1
        z = lambda *s, dt=dtype: torch.zeros(*s, device=device, dtype=dt)  # noqa: E731
        return KDACache(z(batch_size, H, K, K, dt=torch.float32), z(batch_size, c, H * K),
                        z(batch_size, c, H * K), z(batch_size, c, H * K))


class KimiDeltaAttention(_GatedDeltaAttention):
    """KDA: the forget gate is a vector per head (one decay per key channel), from a low-rank
    projection f = Linear(d -> rank) -> Linear(rank -> H*K), no biases.

    Args:
        d_model: residual width; n_head: H; head_dim: K = V
        conv_size: short causal conv kernel (4); gate_rank: rank of the gate and output-gate
            projections (default head_dim); chunk_size: C for the chunkwise form
        backend: "auto" | "torch" | "triton" (see kernels/)
    """

    gate_channels = -1  # set per instance (= head_dim)

    def __init__(self, d_model: int, n_head: int, head_dim: int, conv_size: int = 4, **kwargs):
        self.gate_channels = head_dim
        super().__init__(d_model, n_head, head_dim, conv_size, **kwargs)
        self.f_proj = nn.Sequential(nn.Linear(d_model, self.gate_rank, bias=False),
                                    nn.Linear(self.gate_rank, n_head * head_dim, bias=False))

    def _raw_gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.f_proj(x)  # [B, T, H*K]


class ScalarGatedDeltaNet(_GatedDeltaAttention):
    """Gated DeltaNet (Yang et al., 2024) as KDA's baseline: one scalar decay per head and token
    (g broadcast over the K channels), everything else shared with KimiDeltaAttention."""

    gate_channels = 1

    def __init__(self, d_model: int, n_head: int, head_dim: int, conv_size: int = 4, **kwargs):
        super().__init__(d_model, n_head, head_dim, conv_size, **kwargs)
        self.f_proj = nn.Linear(d_model, n_head, bias=False)

    def _raw_gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.f_proj(x)  # [B, T, H]
