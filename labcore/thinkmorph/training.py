"""The loss (text cross-entropy + flow matching, one forward pass), the batches, and the training stages:
a shared base stage, then one fine-tune per reasoning arm on the very same puzzles.
Taught in notebooks/06_thinkmorph.ipynb, sections "One sequence, two kinds of token", "A base model that
starts to see and draw" and "Training the four arms on equal budgets".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labcore.nn import IGNORE_INDEX
from labcore.rae.flow import flow_matching_loss
from labcore.runtime import Profile
from labcore.thinkmorph.config import ThinkMorphConfig
from labcore.thinkmorph.model import InterleavedTransformer
from labcore.thinkmorph.packing import NOISY, collate, pack
from labcore.thinkmorph.tasks import make_task
from labcore.thinkmorph.traces import ARMS, BASE_KINDS, BASE_TASKS, base_trace, make_trace
from labcore.train import TrainConfig, TrainResult, batch_generator, train

TRAIN_SEEDS = 10**9  # training instances use seeds below this; evaluation seeds start here
BASE_STREAM = 10**6  # the base stage draws its mazes from its own seed stream, not the arms' puzzles


def thinkmorph_loss(model: InterleavedTransformer, batch: dict[str, torch.Tensor]):
    """Text cross-entropy + flow_weight * flow-matching MSE on the generated images' patches, in one
    forward pass. The flow term goes through labcore.rae.flow.flow_matching_loss: the "model" it sees
    maps noisy patches x_t [P, pd] and times t [P] to velocities via the whole transformer."""
    core = model.module if hasattr(model, "module") else model  # DDP wrapper
    noisy = batch["kind"] == NOISY
    out = {}

    def velocity(x_t, t, cond):
        logits, h = model(batch, x_t, t)
        out["logits"] = logits
        return core.velocity(h[noisy], x_t, t)  # [P, pd]

    if noisy.any():
        flow = flow_matching_loss(velocity, batch["patches"][noisy], t=batch["t"], eps=batch["eps"])
        logits = out["logits"]
    else:
        logits, _ = model(batch)
        flow = logits.new_zeros(())
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["target"].reshape(-1),
                         ignore_index=IGNORE_INDEX)
    loss = ce + core.cfg.flow_weight * flow
    return loss, {"ce": float(ce.detach()), "flow": float(flow.detach())}


def make_batch_fn(arm: str, cfg: ThinkMorphConfig, device: str | torch.device = "cpu"):
    """batch_fn(step, rank, world) for labcore.train: cfg.batch_size traces of one arm, tasks and sizes
    drawn evenly from the training mixture. The instances depend on (seed, step, rank) only, so every
    arm trains on the very same puzzles, only the reasoning written out differs. The interleaved arm writes
    a cfg.text_mix share of them as text-only traces (the paper's model can skip the picture).
    arm may also be "base": the base stage's caption / draw traces of the mixture's mazes and gravity grids
    (maze when it has neither) at the training sizes."""
    if arm not in (*ARMS, "base"):
        raise ValueError(f"arm must be one of {(*ARMS, 'base')}, got {arm!r}")
    base_tasks = [n for n in cfg.tasks if n in BASE_TASKS] or ["maze"]

    def batch_fn(step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        g = batch_generator(cfg.seed + (BASE_STREAM if arm == "base" else 0), step, rank)
        traces = []
        for _ in range(max(1, cfg.batch_size // world)):
            if arm == "base":  # only mazes and gravity grids have words to caption or draw from
                kind = BASE_KINDS[int(torch.randint(len(BASE_KINDS), (1,), generator=g))]
                name = base_tasks[int(torch.randint(len(base_tasks), (1,), generator=g))]
            else:
                name = cfg.tasks[int(torch.randint(len(cfg.tasks), (1,), generator=g))]
            sizes = cfg.train_sizes(name)
            size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
            seed = int(torch.randint(TRAIN_SEEDS, (1,), generator=g))
            # drawn by every arm so the puzzles stay the same: a text_mix share of the interleaved arm's
            # traces are the text arm's, so skipping the picture is something it has seen
            text_only = float(torch.rand((), generator=g)) < cfg.text_mix
            task = make_task(name, size, seed)
            if arm == "base":
                trace = base_trace(task, kind)
            else:
                trace = make_trace(task, "text" if arm == "interleaved" and text_only else arm)
            traces.append(pack(trace, cfg.model.patch, window=cfg.model.edit_window))
        return collate(traces, g, device, cfg.model.time_shift)
    return batch_fn


def _train_stage(stage: str, steps: int, cfg: ThinkMorphConfig, profile: Profile | None, progress: bool,
                 base: dict[str, torch.Tensor] | None = None) -> tuple[InterleavedTransformer, TrainResult]:
    """A model (seeded init, or `base` weights) trained `steps` steps on one stage's batches."""
    device = profile.torch_device if profile is not None else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = InterleavedTransformer(cfg.model).to(device)
    if base is not None:
        model.load_state_dict(base)
    tcfg = TrainConfig(steps=steps, lr=cfg.lr, warmup=cfg.warmup, weight_decay=0.01, progress=progress,
                       desc=f"train {stage}")
    result = train(model, thinkmorph_loss, make_batch_fn(stage, cfg, device), tcfg, profile=profile)
    return model, result


def train_base(cfg: ThinkMorphConfig, profile: Profile | None = None,
               progress: bool = True) -> tuple[InterleavedTransformer, TrainResult]:
    """The shared base stage: cfg.base_steps steps of caption + draw traces from a fresh model (the
    stand-in for the pretrained unified model the paper fine-tunes)."""
    return _train_stage("base", cfg.base_steps, cfg, profile, progress)


def train_arm(arm: str, cfg: ThinkMorphConfig, profile: Profile | None = None, progress: bool = True,
              base: dict[str, torch.Tensor] | None = None) -> tuple[InterleavedTransformer, TrainResult]:
    """A model trained on one arm's traces for cfg.steps steps, starting from the base stage's weights
    `base` (a state_dict, the same for every arm) or, when None, from a fresh init (same for every arm)."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    return _train_stage(arm, cfg.steps, cfg, profile, progress, base)
