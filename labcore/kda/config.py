"""Chapter 2's sizes, one dataclass, three profile instances (notebooks/02_kda.ipynb reads only these)."""

from __future__ import annotations

from dataclasses import dataclass

from labcore.runtime import Profile, pick

MIXERS = ("kda", "gdn", "attn")


@dataclass(frozen=True)
class KDAExpConfig:
    # --- check cells (recurrent vs chunkwise, written from scratch) ---
    check_B: int = 2  # batch of the random check inputs
    check_T: int = 100  # their length (not a multiple of chunk_size on purpose)
    check_H: int = 2  # heads
    check_K: int = 16  # key dim
    check_V: int = 8  # value dim
    chunk_size: int = 32  # C of the chunkwise form (check cells, experiment layers); small C keeps the
    # mild-decay fast path (see labcore/kda/chunk.py) in use on CPU
    speed_T: tuple[int, ...] = (256, 512)  # lengths of the in-notebook recurrent-vs-chunk timing
    # --- the synthetic-task experiment ---
    d_model: int = 64  # residual width
    n_layer: int = 2  # blocks (the paper's synthetic runs use 2)
    n_head: int = 2  # heads per mixer (the paper: 2)
    head_dim: int = 32  # K = V per head (the paper: 128)
    vocab_size: int = 64  # tokens of the synthetic tasks
    lengths: tuple[int, ...] = (64, 128)  # sequence lengths trained on (cycled) and scored at
    kv_per_token: float = 0.125  # MQAR pairs per token of sequence: num_kv = round(T * this)
    palindrome_vocab: int = 16  # palindrome symbols (few: the reversed half must fit in the state)
    batch_size: int = 32  # sequences per step
    steps: int = 300  # optimizer steps per model
    lr: float = 3e-3  # peak learning rate
    eval_examples: int = 128  # held-out sequences per length
    eval_every: int = 50  # steps between accuracy checks (the convergence curve)
    mixers: tuple[str, ...] = ("kda", "gdn")  # which mixers to compare
    match_params: bool = True  # widen the MLPs of the smaller models to KDA's parameter count
    seed: int = 0  # data + init seed of one run
    seeds: tuple[int, ...] = (0,)  # the experiment repeats each run once per seed: at toy scale one seed's
    # init decides a KDA-vs-GDN gap as often as the mixer does

    def __post_init__(self):
        bad = [m for m in self.mixers if m not in MIXERS]
        if bad:
            raise ValueError(f"mixers must be among {MIXERS}, got {bad}")
        if not self.lengths or min(self.lengths) < 8:
            raise ValueError(f"lengths must be non-empty and each >= 8, got {self.lengths}")
        if not 0 < self.kv_per_token <= 0.25:
            raise ValueError(f"kv_per_token must be in (0, 0.25], got {self.kv_per_token}")
        max_kv = round(max(self.lengths) * self.kv_per_token)  # MQAR pairs at the longest length
        if max_kv > self.vocab_size // 2 - 1:
            raise ValueError(f"vocab_size must be >= {2 * max_kv + 2} so MQAR at T={max(self.lengths)} has "
                             f"{max_kv} distinct keys, got {self.vocab_size}")
        if not 2 <= self.palindrome_vocab <= self.vocab_size:
            raise ValueError(f"palindrome_vocab must be in [2, vocab_size={self.vocab_size}], "
                             f"got {self.palindrome_vocab}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be non-empty and distinct, got {self.seeds}")
        if self.steps < 1 or self.eval_every < 1:
            raise ValueError(f"steps and eval_every must be >= 1, got {self.steps}, {self.eval_every}")


SMOKE = KDAExpConfig(check_T=45, chunk_size=16, speed_T=(128,), d_model=32, head_dim=16, vocab_size=32,
                     palindrome_vocab=8, lengths=(32, 64), batch_size=16, steps=30, lr=3e-3, eval_examples=32,
                     eval_every=15)
CPU = KDAExpConfig(chunk_size=16, vocab_size=128, lengths=(64, 128, 256), batch_size=16, steps=400,
                   eval_every=50, mixers=("kda", "gdn", "attn"), speed_T=(256, 512, 1024, 2048), seeds=(0, 1))
GPU = KDAExpConfig(check_T=300, chunk_size=64, d_model=128, head_dim=64, vocab_size=512,
                   palindrome_vocab=32, lengths=(128, 256, 512, 1024), batch_size=64, steps=3000, lr=2e-3,
                   eval_examples=256, eval_every=250, mixers=("kda", "gdn", "attn"),
                   speed_T=(512, 1024, 2048, 4096), seeds=(0, 1, 2))


def profile_config(prof: Profile | str) -> KDAExpConfig:
    """The chapter's config for a profile (smoke: CI seconds; cpu: a laptop's minutes; gpu: one GPU)."""
    return pick(prof, smoke=SMOKE, cpu=CPU, gpu=GPU)
