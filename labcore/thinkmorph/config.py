"""Chapter 6 sizes: the model's ModelConfig and the run's ThinkMorphConfig, three instances
(smoke | cpu | gpu), chosen by the profile.
Taught in notebooks/06_thinkmorph.ipynb (the `cfg = profile_config(prof)` cell)."""

from __future__ import annotations

from dataclasses import dataclass

from labcore.runtime import Profile, pick
from labcore.thinkmorph.tasks import (
    CELL,
    HELDOUT_JIGSAW_SIZES,
    HELDOUT_MAZE_SIZES,
    TASKS,
    TRAIN_JIGSAW_SIZES,
    TRAIN_MAZE_SIZES,
)
from labcore.thinkmorph.traces import ARMS, VOCAB


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 128  # residual width
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    patch: int = CELL  # pixels per patch side (one maze cell / jigsaw piece)
    max_len: int = 384  # longest sequence (positions are fixed sinusoids; bounds the KV cache)
    flow_steps: int = 8  # Euler steps when drawing an image
    flow_weight: float = 1.0  # flow-matching loss weight (paper: 1:1 with text CE)
    time_shift: float = 1.0  # a in t' = a t / (1 + (a - 1) t) for training times and the sampler grid (1 = none)
    vocab_size: int = len(VOCAB)  # the trace vocabulary

    def __post_init__(self):
        for name in ("d_model", "n_layer", "n_head", "patch", "max_len", "flow_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"d_model ({self.d_model}) must split into n_head ({self.n_head}) even heads")
        if self.d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4 (2-D sin-cos positions), got {self.d_model}")
        if self.flow_weight < 0:
            raise ValueError(f"flow_weight must be >= 0, got {self.flow_weight}")
        if self.time_shift < 1:
            raise ValueError(f"time_shift must be >= 1, got {self.time_shift}")

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * 3


@dataclass(frozen=True)
class ThinkMorphConfig:
    model: ModelConfig  # the interleaved transformer
    steps: int  # optimizer steps per arm: every arm gets the same budget
    base_steps: int  # steps of the shared base stage (caption + draw) every arm starts from; 0 = none
    batch_size: int  # traces per step
    lr: float = 1e-3  # AdamW peak learning rate (cosine to 10%)
    warmup: int = 20  # linear warm-up steps
    tasks: tuple[str, ...] = ("maze", "jigsaw")  # the training mixture, equal shares
    maze_train: tuple[int, ...] = TRAIN_MAZE_SIZES  # in-distribution maze sides
    maze_heldout: tuple[int, ...] = HELDOUT_MAZE_SIZES  # never trained on
    jigsaw_train: tuple[int, ...] = TRAIN_JIGSAW_SIZES  # in-distribution jigsaw sides
    jigsaw_heldout: tuple[int, ...] = HELDOUT_JIGSAW_SIZES  # never trained on
    arms: tuple[str, ...] = ARMS  # which arms to train
    eval_per_size: int = 32  # test instances per (task, size)
    probe_per_size: int = 16  # instances per (task, size) for the blank/wrong-image probes
    best_of_n: int = 8  # samples per instance for the best-of-N curves
    bon_per_size: int = 8  # instances per (task, size) for best-of-N
    temperature: float = 1.0  # sampling temperature for best-of-N
    max_new_tokens: int = 128  # generation budget per trace (text tokens; images add no budget)
    seed: int = 0  # training data and init seed
    threads: int | None = None  # torch CPU threads; None keeps torch's default (tiny models run best on 1)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_per_size", "probe_per_size", "best_of_n", "bon_per_size",
                     "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {sorted(TASKS)}, got {self.tasks}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ValueError(f"arms must be a non-empty subset of {ARMS}, got {self.arms}")
        if self.base_steps < 0:
            raise ValueError(f"base_steps must be >= 0, got {self.base_steps}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def train_sizes(self, task: str) -> tuple[int, ...]:
        return {"maze": self.maze_train, "jigsaw": self.jigsaw_train}[task]

    def heldout_sizes(self, task: str) -> tuple[int, ...]:
        return {"maze": self.maze_heldout, "jigsaw": self.jigsaw_heldout}[task]


# smoke cuts generation at 48 words (a held-out maze's full text trace is ~80) to keep CI fast
SMOKE = ThinkMorphConfig(
    model=ModelConfig(d_model=32, n_layer=2, n_head=2, flow_steps=4, time_shift=3.0),
    steps=20, base_steps=10, batch_size=8, warmup=4, maze_train=(4, 5), maze_heldout=(8,), jigsaw_heldout=(4,),
    eval_per_size=4, probe_per_size=2, best_of_n=2, bon_per_size=2, max_new_tokens=48, threads=1)
# cpu: at this size more, smaller steps beat fewer, larger ones at equal compute; 1800 x 16 keeps the base
# and four arms inside ~15 minutes on one core; 32 test puzzles per size (not 16) cut the noise by sqrt(2)
CPU = ThinkMorphConfig(
    model=ModelConfig(d_model=64, n_layer=3, n_head=4, flow_steps=8, time_shift=3.0),
    steps=1800, base_steps=600, batch_size=16, lr=3e-3, warmup=40, eval_per_size=32, probe_per_size=16,
    best_of_n=6, bon_per_size=4, threads=1)
GPU = ThinkMorphConfig(
    model=ModelConfig(d_model=256, n_layer=6, n_head=8, flow_steps=16, time_shift=3.0),
    steps=4000, base_steps=1500, batch_size=64, lr=5e-4, warmup=200, eval_per_size=128, probe_per_size=64, best_of_n=16,
    bon_per_size=32, max_new_tokens=160)


def profile_config(prof: Profile | str) -> ThinkMorphConfig:
    """The chapter's config at this profile."""
    return pick(prof, smoke=SMOKE, cpu=CPU, gpu=GPU)
