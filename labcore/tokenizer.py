"""Tokenizers: a byte-level one (no training, vocab 256 + specials) and a small BPE trained with the
`tokenizers` package and cached on disk. Both expose encode / decode / vocab_size / eos_id."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; special tokens get ids 256, 257, ... in the order given."""

    def __init__(self, specials: Sequence[str] = ("<eos>",)):
        if "<eos>" not in specials:
            raise ValueError("specials must contain '<eos>'")
        self.specials = list(specials)
        self.special_ids = {s: 256 + i for i, s in enumerate(self.specials)}
        self.vocab_size = 256 + len(self.specials)
        self.eos_id = self.special_ids["<eos>"]

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        inv = {v: k for k, v in self.special_ids.items()}
        out, buf = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                buf.append(i)
            else:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(inv.get(i, f"<{i}>"))
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_str(self, i: int) -> str:
        """A printable form of one token (for widgets)."""
        if i >= 256:
            return {v: k for k, v in self.special_ids.items()}.get(i, f"<{i}>")
        ch = bytes([i]).decode("latin-1")
        return {"\n": "\\n", "\t": "\\t", " ": "␣"}.get(ch, ch if ch.isprintable() else f"\\x{i:02x}")


class BPETokenizer:
    """Byte-level BPE from the `tokenizers` package, trained once on the given texts and cached."""

    def __init__(self, tok):
        self._tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.eos_id = tok.token_to_id("<eos>")

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 1024,
              cache_dir: str | os.PathLike | None = None) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 260:
            raise ValueError(f"vocab_size must be >= 260 (256 bytes + specials), got {vocab_size}")
        key = hashlib.sha256(("\x00".join(texts) + f"|{vocab_size}").encode()).hexdigest()[:16]
        cache = Path(cache_dir or os.environ.get("LABCORE_CACHE", Path.home() / ".cache" / "labcore"))
        path = cache / f"bpe-{vocab_size}-{key}.json"
        if path.exists():
            return cls(Tokenizer.from_file(str(path)))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tok.save(str(tmp))
        os.replace(tmp, path)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids])

    def token_str(self, i: int) -> str:
        return self.decode([i]).replace("\n", "\\n").replace(" ", "␣")
