"""Text datasets: stdlib prose and code offline; local files or the Hub with the same interface.

Every builder returns a `datasets.Dataset` with one column, "text" (one document per row).
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset, load_dataset


def stdlib_prose(max_docs: int | None = None) -> Dataset:
    """Python's interactive-help topics (pydoc_data.topics): ~1 MB of English technical prose."""
    from pydoc_data.topics import topics

    docs = [topics[k].strip() for k in sorted(topics)]
    docs = [d for d in docs if d][:max_docs]
    return Dataset.from_dict({"text": docs})


def stdlib_code(max_files: int | None = 200, min_chars: int = 2000) -> Dataset:
    """Source files of the standard library (sorted, deterministic), one file per row."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size >= min_chars)[:max_files]
    return Dataset.from_dict({"text": [p.read_text(encoding="utf-8", errors="replace") for p in files]})


def from_text_files(paths: Sequence[str | os.PathLike], by: str = "document") -> Dataset:
    """Local .txt files through datasets' "text" loader: by="document" (one row per file) or "line"."""
    if by not in ("document", "line"):
        raise ValueError(f"by must be 'document' or 'line', got {by!r}")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"text files not found: {missing}")
    sample_by = "document" if by == "document" else "line"
    return load_dataset("text", data_files=[str(p) for p in paths], split="train", sample_by=sample_by)


def from_hub(name: str, split: str = "train", text_column: str = "text", **kwargs) -> Dataset:
    """A Hub dataset (needs internet), reduced to the one "text" column every builder returns."""
    ds = load_dataset(name, split=split, **kwargs)
    if text_column not in ds.column_names:
        raise ValueError(f"text_column {text_column!r} not in {ds.column_names}")
    ds = ds.select_columns([text_column])
    return ds.rename_column(text_column, "text") if text_column != "text" else ds


def course_corpus(source: str = "prose", paths: Sequence[str] | None = None) -> Dataset:
    """The course's text: "prose" (default), "code", "both", or "files" (with paths)."""
    if source == "prose":
        return stdlib_prose()
    if source == "code":
        return stdlib_code()
    if source == "both":
        from datasets import concatenate_datasets

        return concatenate_datasets([stdlib_prose(), stdlib_code()])
    if source == "files":
        if not paths:
            raise ValueError("source='files' needs paths")
        return from_text_files(paths)
    raise ValueError(f"source must be 'prose', 'code', 'both' or 'files', got {source!r}")


def train_val_split(ds: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split by document, so validation text is never seen in training."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    parts = ds.train_test_split(test_size=val_fraction, seed=seed)
    return parts["train"], parts["test"]


def encode_corpus(ds: Dataset, tokenizer, max_tokens: int | None = None) -> torch.Tensor:
    """Concatenate all documents' token ids (separated by the tokenizer's eos id) into one 1-D LongTensor."""
    ids: list[int] = []
    for text in ds["text"]:
        ids.extend(tokenizer.encode(text))
        ids.append(tokenizer.eos_id)
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    return torch.tensor(ids[:max_tokens] if max_tokens else ids, dtype=torch.long)


def random_windows(tokens: torch.Tensor, batch_size: int, block_size: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (x, y) windows [batch_size, block_size] with y = x shifted by one token."""
    if tokens.numel() <= block_size + 1:
        raise ValueError(f"corpus has {tokens.numel()} tokens, need more than block_size+1 = {block_size + 1}")
    start = torch.randint(0, tokens.numel() - block_size - 1, (batch_size,), generator=generator)
    offs = start[:, None] + torch.arange(block_size + 1)
    win = tokens[offs]
    return win[:, :-1], win[:, 1:]
