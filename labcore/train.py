"""One trainer for every chapter.

AdamW + warmup/cosine schedule, tqdm progress, gradient clipping, autocast on GPU, an eval hook,
safetensors checkpoints written atomically, exact resume, and DDP when launched with torchrun.

Exact resume works because batches are a pure function of the step: `batch_fn(step, rank, world)`
builds its batch from a generator seeded with (seed, step, rank), so a resumed run sees the very
batches the uninterrupted run would have seen. Model, optimizer and RNG states come from the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from labcore.checkpoint import clean_stale_tmp, load_tensors, save_tensors
from labcore.runtime import Profile
from labcore.validate import check_int, check_real

LossOut = torch.Tensor | tuple[torch.Tensor, dict[str, float]]


@dataclass
class TrainConfig:
    steps: int  # optimizer steps in total (a resumed run continues up to this)
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    warmup: int = 0  # linear warm-up steps, then cosine down to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # floor of the cosine schedule
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping
    eval_every: int = 0  # run eval_fn every N steps (and at the end); 0 = only at the end
    ckpt_every: int = 0  # save a checkpoint every N steps (and at the end); 0 = never
    ckpt_dir: str | None = None  # where `last.safetensors` goes
    resume: bool = True  # continue from ckpt_dir/last.safetensors if it exists
    stop_at: int | None = None  # stop early after this step (to simulate a killed run in tests)
    progress: bool = True  # tqdm bar (rank 0 only)
    desc: str = "train"  # progress bar label

    def __post_init__(self):
        self.steps = check_int("steps", self.steps, lo=1)
        self.lr = check_real("lr", self.lr, 0.0, None, lo_open=True, hi_open=True)
        self.weight_decay = check_real("weight_decay", self.weight_decay, 0.0, None, hi_open=True)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2) in [0, 1), got {self.betas!r}")
        self.betas = tuple(check_real(f"betas[{i}]", b, 0.0, 1.0, hi_open=True) for i, b in enumerate(self.betas))
        self.warmup = check_int("warmup", self.warmup, lo=0)
        self.min_lr_ratio = check_real("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if self.grad_clip is not None:
            self.grad_clip = check_real("grad_clip", self.grad_clip, 0.0, None, lo_open=True, hi_open=True)
        self.eval_every = check_int("eval_every", self.eval_every, lo=0)
        self.ckpt_every = check_int("ckpt_every", self.ckpt_every, lo=0)
        if self.stop_at is not None:
            self.stop_at = check_int("stop_at", self.stop_at, lo=0)
        if self.ckpt_every and not self.ckpt_dir:
            raise ValueError("ckpt_every > 0 needs ckpt_dir")


# fields that shape the optimisation: a resumed run must use the checkpoint's values (or say override=)
RESUME_FIELDS = ("steps", "lr", "weight_decay", "betas", "warmup", "min_lr_ratio", "grad_clip")


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg), default=str))


def check_resume_config(saved: dict[str, Any] | None, cfg: TrainConfig, override: Sequence[str] = ()) -> None:
    """Raise ValueError naming every RESUME_FIELDS entry where cfg differs from the checkpoint's config.

    Fields listed in `override` may differ (the new value wins). A checkpoint without a saved config
    (not written by `train`) cannot be compared and is refused unless every field is overridden.
    """
    override = (override,) if isinstance(override, str) else tuple(override)
    unknown = sorted(set(override) - set(RESUME_FIELDS))
    if unknown:
        raise ValueError(f"override must name fields of {RESUME_FIELDS}, got unknown {unknown}")
    if not isinstance(saved, dict):
        if set(override) != set(RESUME_FIELDS):
            raise ValueError("the checkpoint has no saved config to compare with; pass "
                             f"override={RESUME_FIELDS} to resume from it anyway")
        return
    now = _jsonable(cfg)
    changed = [f for f in RESUME_FIELDS if f not in override and f in saved and saved[f] != now[f]]
    if changed:
        diffs = ", ".join(f"{f}: checkpoint {saved[f]!r} vs config {now[f]!r}" for f in changed)
        raise ValueError(f"resume config differs from the checkpoint's in {changed} ({diffs}); use the "
                         f"checkpoint's values, start a fresh ckpt_dir, or pass override={tuple(changed)!r}")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per step
    evals: list[dict[str, float]] = field(default_factory=list)  # one row per eval
    seconds: float = 0.0
    start_step: int = 0  # > 0 when resumed

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.history]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr_ratio * cfg.lr at cfg.steps."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


# ---- distributed -----------------------------------------------------------------------------------

def dist_info() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed() -> tuple[int, int]:
    """Start the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist_info()


# ---- checkpoint (de)serialisation ------------------------------------------------------------------

def _state_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def _load_state(model: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                groups: list[dict[str, Any]], keep: Sequence[str] = ()) -> None:
    """Restore model, optimizer (its saved hyper-parameters, except the `keep` keys) and RNG state."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    saved_groups = opt.state_dict()["param_groups"]
    for group, hyper in zip(saved_groups, groups):
        group.update({k: (tuple(v) if isinstance(v, list) and k == "betas" else v)
                      for k, v in hyper.items() if k != "params" and k not in keep})
    opt.load_state_dict({"state": state, "param_groups": saved_groups})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def save_training_state(path: str | os.PathLike, model: nn.Module, opt: torch.optim.Optimizer,
                        step: int, extra: dict[str, Any] | None = None) -> str:
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
    meta = {"step": step, "param_groups": groups, **(extra or {})}
    return save_tensors(path, _state_tensors(model, opt), json.loads(json.dumps(meta, default=str)))


# ---- the loop --------------------------------------------------------------------------------------

def train(model: nn.Module, loss_fn: Callable[[nn.Module, Any], LossOut],
          batch_fn: Callable[[int, int, int], Any], cfg: TrainConfig, *,
          params: Iterable[nn.Parameter] | None = None,
          eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
          profile: Profile | None = None, override: Sequence[str] = ()) -> TrainResult:
    """Train `model` for cfg.steps optimizer steps.

    Args:
        loss_fn: (model, batch) -> loss, or (loss, {"metric": float}).
        batch_fn: (step, rank, world) -> batch, deterministic in its arguments.
        params: what to optimise (default: every parameter with requires_grad).
        eval_fn: model -> {"name": float}, called every cfg.eval_every steps and at the end.
        profile: sets autocast (bf16 on GPU); None = plain fp32.
        override: on resume, the RESUME_FIELDS that may differ from the checkpoint's config (the new
            values win); any other difference is a ValueError naming the fields.
    Returns:
        TrainResult with per-step loss/lr/grad_norm rows and eval rows.
    """
    rank, world = init_distributed()
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if not params:
        raise ValueError("params is empty: nothing requires grad")
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    result = TrainResult()
    ckpt = Path(cfg.ckpt_dir) / "last.safetensors" if cfg.ckpt_dir else None
    start = 0
    if ckpt is not None and rank == 0:
        clean_stale_tmp(ckpt)  # orphans of a killed save
    if cfg.resume and ckpt is not None and ckpt.exists():
        tensors, meta = load_tensors(ckpt)  # sha256-verified against the sidecar, else ValueError
        check_resume_config(meta.get("config"), cfg, override)
        keep = [k for k in ("weight_decay", "betas") if k in ((override,) if isinstance(override, str) else override)]
        _load_state(model, opt, tensors, meta["param_groups"], keep)
        start = result.start_step = int(meta["step"])
    wrapped: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        wrapped = DDP(model, find_unused_parameters=False)
    device_type = next(model.parameters()).device.type
    amp = profile.amp_dtype if profile is not None else None

    def run_eval(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            row = {"step": step, **eval_fn(model)}
        model.train()
        result.evals.append(row)

    t0 = time.perf_counter()
    end = min(cfg.steps, cfg.stop_at) if cfg.stop_at is not None else cfg.steps
    bar = tqdm(range(start, end), desc=cfg.desc, disable=not cfg.progress or rank != 0,
               initial=start, total=cfg.steps, leave=False, mininterval=1.0)
    model.train()
    for step in bar:
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = batch_fn(step, rank, world)
        with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
            out = loss_fn(wrapped, batch)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower lr or check inputs")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        else:
            grad_norm = float(torch.stack([p.grad.norm() for p in params if p.grad is not None]).norm())
        opt.step()
        row = {"step": step + 1, "loss": float(loss.detach()), "lr": lr, "grad_norm": grad_norm,
               **{k: float(v) for k, v in metrics.items()}}
        result.history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
            run_eval(done)
        if ckpt is not None and rank == 0 and cfg.ckpt_every and (done % cfg.ckpt_every == 0 or done == end):
            save_training_state(ckpt, model, opt, done, {"config": asdict(cfg)})
    bar.close()
    if end == cfg.steps:
        run_eval(cfg.steps)
    result.seconds = time.perf_counter() - t0
    return result


def batch_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator a batch_fn should draw from: distinct per (seed, step, rank), reproducible."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 101 + rank)
