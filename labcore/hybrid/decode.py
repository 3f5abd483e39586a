"""Prefill, then token-by-token decoding with the hybrid's caches.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, sections "Assembling the hybrid" (the decode loop) and
"Decode speed".

Prefill runs the whole prompt once (MLA: expanded path; KDA: its parallel form) and returns the cache;
each decode step then feeds one token: MLA layers attend over their growing latent cache with the
absorbed projections, KDA layers update their fixed-size state. `incremental_logits` is the test that
the two agree: prefill + steps must reproduce the full forward's logits.
"""

from __future__ import annotations

import torch

from labcore.hybrid.cache import HybridCache, MLACache
from labcore.hybrid.model import HybridLM
from labcore.nn.cache import KVCache


@torch.no_grad()
def prefill(model: HybridLM, input_ids: torch.Tensor) -> tuple[torch.Tensor, HybridCache]:
    """input_ids [B, T] -> (logits of the last position [B, vocab], cache after T tokens)."""
    logits, cache = model(input_ids, use_cache=True)
    return logits[:, -1], cache


@torch.no_grad()
def decode_step(model: HybridLM, token: torch.Tensor, cache: HybridCache) -> tuple[torch.Tensor, HybridCache]:
    """One new token per sequence: token [B] -> (logits [B, vocab], cache one token longer)."""
    if token.dim() != 1:
        raise ValueError(f"token must be [B], got shape {tuple(token.shape)}")
    logits, cache = model(token[:, None], cache=cache, use_cache=True)
    return logits[:, -1], cache


@torch.no_grad()
def incremental_logits(model: HybridLM, input_ids: torch.Tensor, prefill_len: int,
                       step: int = 1) -> torch.Tensor:
    """Logits [B, T, vocab] computed as: prefill the first prefill_len tokens, then `step` at a time.

    Equal to model(input_ids)[0] within float tolerance when the caches are right.
    """
    B, T = input_ids.shape
    if not 1 <= prefill_len <= T:
        raise ValueError(f"prefill_len must be in [1, {T}], got {prefill_len}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    logits, cache = model(input_ids[:, :prefill_len], use_cache=True)
    out = [logits]
    for t in range(prefill_len, T, step):
        logits, cache = model(input_ids[:, t:t + step], cache=cache)
        out.append(logits)
    return torch.cat(out, 1)


@torch.no_grad()
def generate(model: HybridLM, input_ids: torch.Tensor, max_new_tokens: int, temp: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Prefill the prompt [B, T], then sample max_new_tokens (temp=0: greedy) -> ids [B, T + new]."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temp < 0:
        raise ValueError(f"temp must be >= 0, got {temp}")
    if max_new_tokens == 0:
        return input_ids
    logits, cache = prefill(model, input_ids)
    out = [input_ids]
    for i in range(max_new_tokens):
        if temp == 0:
            tok = logits.argmax(-1)  # [B]
        else:
            probs = (logits.float() / temp).softmax(-1)
            tok = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        out.append(tok[:, None])
        if i + 1 < max_new_tokens:
            logits, cache = decode_step(model, tok, cache)
    return torch.cat(out, 1)


@torch.no_grad()
def filled_cache(model: HybridLM, batch_size: int, seq_len: int,
                 generator: torch.Generator | None = None, random: bool = True) -> HybridCache:
    """A cache as if seq_len tokens had been seen, with random contents (for timing and byte counts).

    Growing caches (MLA latents, softmax K/V) get seq_len random rows; KDA layers get the fixed-size
    state of a one-token prefill (its size does not depend on seq_len). Shapes and dtypes are exactly
    those a real prefill of seq_len tokens would produce; the values are not. random=False leaves the
    rows uninitialised (torch.empty): enough for counting bytes, and free even at GBs.
    """
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if seq_len > model.cfg.max_seq_len:
        raise ValueError(f"seq_len {seq_len} exceeds max_seq_len={model.cfg.max_seq_len}")
    p = next(model.parameters())
    tok = torch.zeros(batch_size, 1, dtype=torch.long, device=p.device)
    _, one = model(tok, use_cache=True)

    def rnd(*shape):
        if not random:
            return torch.empty(*shape, device=p.device, dtype=p.dtype)
        if generator is None:  # straight on the model's device: long GPU caches are GBs
            return torch.randn(*shape, device=p.device, dtype=p.dtype)
        return torch.randn(*shape, generator=generator).to(device=p.device, dtype=p.dtype)

    layers = []
    for c in one.layers:
        if isinstance(c, MLACache):
            c = MLACache(rnd(batch_size, seq_len, c.c_kv.shape[-1]),
                         rnd(batch_size, seq_len, c.k_r.shape[-1]))
        elif isinstance(c, KVCache):
            c = KVCache(rnd(batch_size, seq_len, *c.k.shape[2:]), rnd(batch_size, seq_len, *c.v.shape[2:]))
        layers.append(c)
    return HybridCache(one.signature, layers, seq_len, batch_size)
