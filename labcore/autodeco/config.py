"""Chapter 1 sizes: one dataclass, three profiles, one code path."""

from __future__ import annotations

from dataclasses import dataclass

from labcore.autodeco import task
from labcore.runtime import Profile, pick


@dataclass(frozen=True)
class AutoDecoConfig:
    d_model: int  # base GPT width
    n_layer: int  # base GPT depth
    n_head: int  # base GPT heads
    block_size: int  # base GPT context (bytes)
    pretrain_steps: int  # base LM steps on prose + task stream
    pretrain_batch: int  # rows per base LM step
    pretrain_lr: float  # base LM peak lr
    prose_fraction: float  # share of base-LM rows drawn from stdlib prose (rest: task stream)
    head_hidden: int  # heads' hidden width (paper: 256)
    heads_steps: int  # heads-only training steps, base frozen
    heads_batch: int  # rows per heads step
    heads_lr: float  # paper: 5e-6 on a 7B model; a toy needs far more
    problems_per_row: int  # task problems per training row
    eval_prefix: int  # solved problems shown before each eval prompt
    eval_repeats: int  # eval prompts = 19 targets x repeats
    k: int  # samples per prompt for coverage@k
    grid_T: tuple[float, ...]  # static temperatures searched
    grid_P: tuple[float, ...]  # static top-p values searched
    alpha: float = 30.0  # soft top-p sharpness (paper)
    seeds: tuple[int, ...] = (0,)  # the whole experiment (base LM, heads, sampling) runs once per seed

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be non-empty, distinct and >= 0, got {self.seeds}")
        # a heads row, and an eval prompt with its answer (its last byte is never fed back), fit the context
        L, fed = task.PROBLEM_LEN, task.PROMPT_LEN + task.ANSWER_LEN - 1
        if self.problems_per_row * L > self.block_size:
            raise ValueError(f"problems_per_row must be <= block_size // {L} = {self.block_size // L}, "
                             f"got {self.problems_per_row}")
        if self.eval_prefix * L + fed > self.block_size:
            raise ValueError(f"eval_prefix must be <= (block_size - {fed}) // {L} = {(self.block_size - fed) // L}, "
                             f"got {self.eval_prefix}")


SMOKE = AutoDecoConfig(d_model=64, n_layer=2, n_head=4, block_size=64, pretrain_steps=120, pretrain_batch=16,
                       pretrain_lr=3e-3, prose_fraction=0.5, head_hidden=64, heads_steps=40, heads_batch=16,
                       heads_lr=3e-3, problems_per_row=6, eval_prefix=3, eval_repeats=1, k=4,
                       grid_T=(0.5, 1.0), grid_P=(0.9, 1.0))
CPU = AutoDecoConfig(d_model=128, n_layer=4, n_head=4, block_size=32, pretrain_steps=1000, pretrain_batch=16,
                     pretrain_lr=2e-3, prose_fraction=0.25, head_hidden=256, heads_steps=600, heads_batch=64,
                     heads_lr=1e-3, problems_per_row=4, eval_prefix=3, eval_repeats=4, k=16,
                     grid_T=(0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5), grid_P=(0.6, 0.8, 0.9, 0.95, 1.0), seeds=(0, 1))
GPU = AutoDecoConfig(d_model=384, n_layer=6, n_head=6, block_size=128, pretrain_steps=6000, pretrain_batch=128,
                     pretrain_lr=1e-3, prose_fraction=0.5, head_hidden=256, heads_steps=2000, heads_batch=128,
                     heads_lr=5e-4, problems_per_row=16, eval_prefix=3, eval_repeats=16, k=32,
                     grid_T=(0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0),
                     grid_P=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0), seeds=(0, 1, 2))


def config_for(profile: Profile | str) -> AutoDecoConfig:
    return pick(profile, smoke=SMOKE, cpu=CPU, gpu=GPU)
