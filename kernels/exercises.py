"""Kernel exercises in the Triton-Puzzles style: a *spec* (the torch reference, shapes in its signature),
a stub in the chapter notebook that ends in `# Finish me!`, and `check`, which runs yours and the spec on
the same random inputs and prints both and their difference.

Used in notebooks/02_kda.ipynb, section "Exercises" (the decode step of KDA as a Triton kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from labcore.kda.naive import recurrent_kda
from labcore.testing import compare


@dataclass(frozen=True)
class Spec:
    name: str  # what the kernel computes, in a few words
    reference: Callable[..., tuple[torch.Tensor, ...]]  # the torch spec
    make_inputs: Callable[[dict[str, int], torch.Generator], tuple[torch.Tensor, ...]]  # sizes -> inputs
    dims: dict[str, int] = field(default_factory=dict)  # default sizes (override with check(nelem=...))
    outputs: tuple[str, ...] = ("out",)  # names of the outputs, for the printout


def kda_decode_step_spec(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                         beta: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of KDA. q, k, g: [B, H, K]; v: [B, H, V]; beta: [B, H]; S: [B, H, K, V] (fp32).
    Returns o [B, H, V] (q scaled by K^-0.5 inside) and the new state [B, H, K, V]."""
    o, S_new = recurrent_kda(q[:, None], k[:, None], v[:, None], g[:, None], beta[:, None],
                             initial_state=S, output_final_state=True)
    return o[:, 0], S_new


def _kda_step_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, H, K, V = n["B"], n["H"], n["K"], n["V"]
    return (torch.randn(B, H, K, generator=gen), F.normalize(torch.randn(B, H, K, generator=gen), dim=-1),
            torch.randn(B, H, V, generator=gen), -torch.rand(B, H, K, generator=gen) * 3,
            torch.rand(B, H, generator=gen), torch.randn(B, H, K, V, generator=gen))


KDA_DECODE_STEP = Spec("KDA decode step: decay, delta-rule write, read", kda_decode_step_spec, _kda_step_inputs,
                       dims={"B": 2, "H": 2, "K": 16, "V": 24}, outputs=("o", "S"))


def check(fn: Callable[..., tuple[torch.Tensor, ...] | None], spec: Spec, nelem: dict[str, int] | None = None,
          device: str | None = None, atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Run `fn` and the spec on the same inputs (sizes: spec.dims updated by nelem), print yours, the
    spec's and the difference per output, and return whether every output matches.

    fp32 kernels vs the fp32 spec agree to ~1e-7; atol/rtol leave room for another summation order.
    `fn` returning None means "not written yet".
    """
    unknown = set(nelem or {}) - set(spec.dims)
    if unknown:
        raise ValueError(f"nelem keys must be among {sorted(spec.dims)}, got {sorted(unknown)}")
    sizes = {**spec.dims, **(nelem or {})}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    inputs = [x.to(device) for x in spec.make_inputs(sizes, torch.Generator().manual_seed(seed))]
    want = spec.reference(*[x.clone() for x in inputs])
    got = fn(*[x.clone() for x in inputs])
    print(f"{spec.name} at {sizes}")
    if got is None:
        print("not done yet: your function returned None")
        return False
    got = got if isinstance(got, tuple) else (got,)
    if len(got) != len(want):
        print(f"FAIL: expected {len(want)} outputs {spec.outputs}, got {len(got)}")
        return False
    ok = True
    for name, a, b in zip(spec.outputs, got, want, strict=True):
        head = [[f"{x:+.4f}" for x in t.flatten()[:4].tolist()] for t in (a, b)]
        print(f"  yours {name}: {' '.join(head[0])} ...\n  spec  {name}: {' '.join(head[1])} ...")
        ok &= compare(f"  {name}", a, b, atol=atol, rtol=rtol)
    return ok
