"""Chapter 6 sizes: the model's ModelConfig and the run's ThinkMorphConfig, three instances
(smoke | cpu | gpu), chosen by the profile.
Taught in notebooks/06_thinkmorph.ipynb (the `cfg = profile_config(prof)` cell)."""

from __future__ import annotations

from dataclasses import dataclass

from labcore.runtime import Profile, pick
from labcore.thinkmorph.tasks import (
    CELL,
    HELDOUT_GRAVITY_SIZES,
    HELDOUT_JIGSAW_SIZES,
    HELDOUT_MAZE_SIZES,
    TASKS,
    TRAIN_GRAVITY_SIZES,
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
    coord_words: bool = True  # a patch also embeds the number words of its row and column (coordinates for free)
    edit_window: int = 3  # a drawn patch reads this window x window of cells of the picture it edits (odd)

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
        if self.edit_window < 1 or self.edit_window % 2 == 0:
            raise ValueError(f"edit_window must be an odd int >= 1, got {self.edit_window}")

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * 3

    @property
    def cond_dim(self) -> int:
        """What a noisy slot reads of the picture it edits: its cell's edit_window^2 neighbourhood."""
        return self.edit_window ** 2 * self.patch_dim


@dataclass(frozen=True)
class ThinkMorphConfig:
    model: ModelConfig  # the interleaved transformer
    steps: int  # optimizer steps per arm on the paper's tasks: every arm gets the same budget
    base_steps: int  # steps of the shared base stage (caption + draw) every arm starts from; 0 = none
    control_steps: int  # optimizer steps per arm on the positive control (its own models)
    batch_size: int  # traces per step
    lr: float = 1e-3  # AdamW peak learning rate (cosine to 10%)
    warmup: int = 20  # linear warm-up steps
    tasks: tuple[str, ...] = ("maze", "jigsaw")  # the paper's tasks: one model per arm on this mixture
    control_tasks: tuple[str, ...] = ("gravity",)  # the positive control: one more model per arm; () = none
    maze_train: tuple[int, ...] = TRAIN_MAZE_SIZES  # in-distribution maze sides
    maze_heldout: tuple[int, ...] = HELDOUT_MAZE_SIZES  # never trained on
    jigsaw_train: tuple[int, ...] = TRAIN_JIGSAW_SIZES  # in-distribution jigsaw sides
    jigsaw_heldout: tuple[int, ...] = HELDOUT_JIGSAW_SIZES  # never trained on
    gravity_train: tuple[int, ...] = TRAIN_GRAVITY_SIZES  # in-distribution gravity grid sides
    gravity_heldout: tuple[int, ...] = HELDOUT_GRAVITY_SIZES  # never trained on
    arms: tuple[str, ...] = ARMS  # which arms to train
    eval_per_size: int = 32  # test instances per (task, size)
    control_eval_per_size: int | None = None  # the same on the positive control (None: eval_per_size); its
    # answers are short and its pictures small, so a large test set is cheap and shrinks the puzzle noise
    probe_per_size: int = 16  # instances per (task, size) for the blank/wrong-image probes
    best_of_n: int = 8  # samples per instance for the best-of-N curves
    bon_per_size: int = 8  # instances per (task, size) for best-of-N
    temperature: float = 1.0  # sampling temperature for best-of-N
    max_new_tokens: int = 128  # generation budget per trace (text tokens; images add no budget)
    seed: int = 0  # training data and init seed (run_experiment sets it from seeds)
    seeds: tuple[int, ...] = (0,)  # the main runs repeat per seed (init and batches): a trend counts only
    # when it clears the spread between seeds (as in chapter 2)
    ablation_arms: tuple[str, ...] = ("text", "interleaved")  # rerun with model.coord_words flipped; () = none
    ablation_mix: str = "control"  # the ablation reruns "paper" (tasks) or "control" (control_tasks)
    ablation_seeds: tuple[int, ...] = (0,)  # seeds of the ablation runs
    text_mix: float = 0.2  # share of the interleaved arm's training traces that are text-only (mode switching)
    oracle_fixes: tuple[float, ...] = (0.25, 0.5, 0.75)  # partial oracle: fractions of drawn cells repaired
    workers: int = 1  # processes that run the jobs (1 = in this process)
    threads: int | None = None  # torch CPU threads per job; None keeps torch's default (tiny models run best on 1)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_per_size", "probe_per_size", "best_of_n", "bon_per_size",
                     "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {sorted(TASKS)}, got {self.tasks}")
        bad = [t for t in self.control_tasks if t not in TASKS or t in self.tasks]
        if bad:
            raise ValueError(f"control_tasks must be tasks of {sorted(TASKS)} outside tasks {self.tasks}, "
                             f"got {self.control_tasks}")
        if self.control_eval_per_size is not None and self.control_eval_per_size <= 0:
            raise ValueError(f"control_eval_per_size must be > 0 or None, got {self.control_eval_per_size}")
        if self.control_steps < 0 or (self.control_tasks and not self.control_steps):
            raise ValueError(f"control_steps must be > 0 when control_tasks are set, got {self.control_steps}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ValueError(f"arms must be a non-empty subset of {ARMS}, got {self.arms}")
        if self.base_steps < 0:
            raise ValueError(f"base_steps must be >= 0, got {self.base_steps}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("seeds", "ablation_seeds"):
            seeds = getattr(self, name)
            if len(set(seeds)) != len(seeds) or any(not isinstance(x, int) or x < 0 for x in seeds):
                raise ValueError(f"{name} must be distinct non-negative ints, got {seeds}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        bad = [a for a in self.ablation_arms if a not in self.arms]
        if bad:
            raise ValueError(f"ablation_arms must be a subset of arms {self.arms}, got {self.ablation_arms}")
        if self.ablation_mix not in ("paper", "control") or (self.ablation_mix == "control" and not self.control_tasks):
            raise ValueError(f"ablation_mix must be 'paper' or 'control' (needs control_tasks), "
                             f"got {self.ablation_mix!r}")
        if not 0.0 <= self.text_mix < 1.0:
            raise ValueError(f"text_mix must be in [0, 1), got {self.text_mix}")
        if any(not 0.0 < f < 1.0 for f in self.oracle_fixes):
            raise ValueError(f"oracle_fixes must lie in (0, 1), got {self.oracle_fixes}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {self.workers!r}")

    def mix_tasks(self, mix: str) -> tuple[str, ...]:
        """The tasks a stage trains on: "paper" the paper's tasks, "control" the positive control, "base"
        both (the base stage captions and draws every task)."""
        mixes = {"paper": self.tasks, "control": self.control_tasks, "base": self.tasks + self.control_tasks}
        if mix not in mixes:
            raise ValueError(f"mix must be one of {tuple(mixes)}, got {mix!r}")
        return mixes[mix]

    def train_sizes(self, task: str) -> tuple[int, ...]:
        return {"maze": self.maze_train, "jigsaw": self.jigsaw_train, "gravity": self.gravity_train}[task]

    def heldout_sizes(self, task: str) -> tuple[int, ...]:
        return {"maze": self.maze_heldout, "jigsaw": self.jigsaw_heldout, "gravity": self.gravity_heldout}[task]


# smoke cuts generation at 48 words (a maze's full text trace is ~50) to keep CI fast
SMOKE = ThinkMorphConfig(
    model=ModelConfig(d_model=32, n_layer=2, n_head=2, flow_steps=4, time_shift=3.0),
    steps=20, base_steps=10, control_steps=10, batch_size=8, warmup=4, maze_train=(4,), maze_heldout=(5,),
    gravity_train=(4,), eval_per_size=4, control_eval_per_size=8, probe_per_size=2, best_of_n=2, bon_per_size=2,
    max_new_tokens=48, ablation_arms=("text",), oracle_fixes=(0.5,), threads=1)
# cpu: two seeds of a 300-step base, four arms x 800 steps on the paper's tasks and four arms x 700 on the
# control (4x4 grids: three drawn pictures per trace), plus the text / interleaved ablation on the control
# for one seed; two one-thread workers share the jobs: 22.7 min of process time, 13.5 min wall for the whole
# notebook on a quiet 2-core machine (900/800 steps took 16 min: over the chapter budget)
CPU = ThinkMorphConfig(
    model=ModelConfig(d_model=64, n_layer=3, n_head=4, flow_steps=8, time_shift=3.0),
    steps=800, base_steps=300, control_steps=700, batch_size=16, lr=3e-3, warmup=40, gravity_train=(4,),
    eval_per_size=32, control_eval_per_size=256, probe_per_size=16, best_of_n=6, bon_per_size=4, seeds=(0, 1),
    workers=2, threads=1)
GPU = ThinkMorphConfig(
    model=ModelConfig(d_model=256, n_layer=6, n_head=8, flow_steps=16, time_shift=3.0),
    steps=4000, base_steps=1500, control_steps=2000, batch_size=64, lr=5e-4, warmup=200, eval_per_size=128,
    control_eval_per_size=512,
    probe_per_size=64, best_of_n=16, bon_per_size=32, max_new_tokens=160, seeds=(0, 1, 2), ablation_seeds=(0, 1, 2))


def profile_config(prof: Profile | str) -> ThinkMorphConfig:
    """The chapter's config at this profile."""
    return pick(prof, smoke=SMOKE, cpu=CPU, gpu=GPU)
