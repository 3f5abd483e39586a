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

from labcore.validate import check_choice, check_path


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


def _check_text_file(path: Path) -> None:
    """A readable, non-empty UTF-8 text file, else ValueError naming the file and the cause."""
    import codecs

    if path.stat().st_size == 0:
        raise ValueError(f"text file {path} is empty (0 bytes); remove it from paths")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            nul = chunk.find(b"\0")
            if nul >= 0:
                raise ValueError(f"text file {path} looks binary: a NUL byte at offset {offset + nul}")
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise ValueError(f"text file {path} is not UTF-8: {e.reason} at byte {offset + e.start}") from None
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise ValueError(f"text file {path} is not UTF-8: it ends inside a character ({e.reason})") from None


def from_text_files(paths: str | os.PathLike | Sequence[str | os.PathLike], by: str = "document") -> Dataset:
    """Local UTF-8 text files through datasets' "text" loader: by="document" (one row per file) or "line".

    `paths` is one path or a list of them; a str is one path (never split into characters). A folder
    stands for the *.txt files under it (sorted, recursive; ValueError if none). Every file is checked
    first: missing -> FileNotFoundError, empty or binary / not UTF-8 -> ValueError naming the file.
    """
    check_choice("by", by, ("document", "line"))
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, Sequence) or isinstance(paths, bytes):
        raise TypeError(f"paths must be a path or a list of paths, got {type(paths).__name__}")
    if not paths:
        raise ValueError("paths is empty: give at least one text file or folder")
    files: list[Path] = []
    for p in paths:
        p = Path(check_path("paths[i]", p))
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.txt") if q.is_file() and not q.name.startswith("."))
            if not found:
                raise ValueError(f"folder {p} holds no *.txt files (from_text_files reads *.txt under a folder)")
            files.extend(found)
        else:
            files.append(p)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"text files not found: {missing}")
    for p in files:
        _check_text_file(p)
    return load_dataset("text", data_files=[str(p) for p in files], split="train", sample_by=by)


OFFLINE_HINT = ("offline, use the builders that need no network: labcore.data.stdlib_prose(), "
                "stdlib_code() or from_text_files([...])")


def _is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One short HTTPS request to the Hub endpoint (honours proxy settings); any HTTP answer counts."""
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def from_hub(path: str, split: str = "train", text_column: str = "text", name: str | None = None,
             **kwargs) -> Dataset:
    """A Hub dataset (needs internet), reduced to the one "text" column every builder returns.

    Args mirror `datasets.load_dataset`: `path` is the dataset ("wikitext", or a local folder), `name`
    its configuration ("wikitext-2-raw-v1"). Without network (HF_HUB_OFFLINE=1, or the Hub not
    answering within 3 s) a Hub name fails at once with ConnectionError pointing to the offline builders.
    """
    if not isinstance(path, str) or not path:
        raise TypeError(f"path must be a dataset name or local folder (str), got {path!r}")
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    local = Path(path).exists() or path in _PACKAGED_DATASETS_MODULES
    if not local:
        if _is_offline():
            raise ConnectionError(f"from_hub({path!r}): HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, so the Hub "
                                  f"cannot be reached; {OFFLINE_HINT}")
        if not _hub_reachable():
            raise ConnectionError(f"from_hub({path!r}): the Hub did not answer within 3 s; {OFFLINE_HINT}")
    if name is not None:
        kwargs["name"] = name
    ds = load_dataset(path, split=split, **kwargs)
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
