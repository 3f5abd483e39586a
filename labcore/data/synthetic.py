"""Synthetic sequence tasks that probe a mixer's memory (Zoology's MQAR; palindrome).
Used in notebooks/02_kda.ipynb, section "Experiment". Every builder is a pure function of its
torch.Generator, so `batch_fn(step, rank, world)` can rebuild any batch from (seed, step, rank).

Each returns {"input_ids": [N, T] long, "labels": [N, T] long}; labels[t] is the token the model must
predict *at* position t (already shifted), -100 where nothing is scored.
"""

from __future__ import annotations

import torch

from labcore.nn.blocks import IGNORE_INDEX  # label of unscored positions


def mqar(num_examples: int, seq_len: int, num_kv: int, vocab_size: int,
         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Multi-query associative recall: `k1 v1 ... kn vn` then `q a q a ...` with q a key seen before.

    Keys come from [1, vocab_size // 2), values from [vocab_size // 2, vocab_size); 0 pads an odd tail.
    The model is scored at every query key on predicting that key's value.
    Args:
        num_examples: N; seq_len: T >= 2 * num_kv + 2; num_kv: pairs per sequence, 1..vocab_size//2 - 1
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4, got {vocab_size}")
    n_keys = vocab_size // 2 - 1
    if not 1 <= num_kv <= n_keys:
        raise ValueError(f"num_kv must be in [1, {n_keys}] for vocab_size {vocab_size}, got {num_kv}")
    if seq_len < 2 * num_kv + 2:
        raise ValueError(f"seq_len must be >= 2 * num_kv + 2 = {2 * num_kv + 2}, got {seq_len}")
    N, n_q = num_examples, (seq_len - 2 * num_kv) // 2
    keys = torch.rand(N, n_keys, generator=generator).argsort(-1)[:, :num_kv] + 1  # distinct, [N, n]
    vals = torch.randint(vocab_size // 2, vocab_size, (N, num_kv), generator=generator)  # [N, n]
    which = torch.randint(0, num_kv, (N, n_q), generator=generator)  # [N, n_q] queried pair
    q_keys, q_vals = keys.gather(1, which), vals.gather(1, which)
    x = torch.zeros(N, seq_len, dtype=torch.long)
    y = torch.full((N, seq_len), IGNORE_INDEX, dtype=torch.long)
    x[:, 0:2 * num_kv:2], x[:, 1:2 * num_kv:2] = keys, vals
    start = 2 * num_kv
    x[:, start:start + 2 * n_q:2], x[:, start + 1:start + 2 * n_q:2] = q_keys, q_vals
    y[:, start:start + 2 * n_q:2] = q_vals
    return {"input_ids": x, "labels": y}


def palindrome(num_examples: int, seq_len: int, vocab_size: int,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """`x1 .. xL SEP xL .. x1` (token 0 = SEP, L = (seq_len - 1) // 2): reproduce the first half reversed.

    Scored from SEP on, on each next token of the reversed half.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3, got {seq_len}")
    N, L = num_examples, (seq_len - 1) // 2
    first = torch.randint(1, vocab_size, (N, L), generator=generator)
    x = torch.zeros(N, seq_len, dtype=torch.long)
    x[:, :L], x[:, L + 1:2 * L + 1] = first, first.flip(1)
    y = torch.full((N, seq_len), IGNORE_INDEX, dtype=torch.long)
    y[:, L:2 * L] = x[:, L + 1:2 * L + 1]
    return {"input_ids": x, "labels": y}


def to_dataset(batch: dict[str, torch.Tensor]):
    """The same examples as a Hugging Face `datasets.Dataset` (columns input_ids, labels)."""
    from datasets import Dataset

    return Dataset.from_dict({k: v.tolist() for k, v in batch.items()})
