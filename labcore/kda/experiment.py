"""The chapter's synthetic-task experiment: a 2-layer LM whose mixer is KDA, scalar-gated GDN or
softmax attention, trained on MQAR / palindrome and scored per sequence length.
Used in notebooks/02_kda.ipynb, section "Experiment" (mirrors the paper's Fig. 4 at toy scale).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from labcore.data.synthetic import IGNORE_INDEX, mqar, palindrome
from labcore.kda.config import MIXERS, KDAExpConfig
from labcore.kda.layer import KimiDeltaAttention, ScalarGatedDeltaNet
from labcore.nn.attention import Attention
from labcore.nn.blocks import RMSNorm, SwiGLU, count_params, matched_hidden, swiglu_hidden
from labcore.runtime import Profile
from labcore.train import TrainConfig, batch_generator, train

TASKS = ("mqar", "palindrome")


class Mixer(nn.Module):
    """Wraps KDA / GDN (which return (y, cache)) and softmax attention behind one forward(x) -> y."""

    def __init__(self, kind: str, cfg: KDAExpConfig):
        super().__init__()
        self.kind = kind
        if kind == "attn":
            self.inner = Attention(cfg.d_model, cfg.n_head)
        else:
            cls = KimiDeltaAttention if kind == "kda" else ScalarGatedDeltaNet
            self.inner = cls(cfg.d_model, cfg.n_head, cfg.head_dim, chunk_size=cfg.chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]  # every mixer returns (y, cache)


class TinyLM(nn.Module):
    """Embedding -> n_layer x (x + mixer(norm x); x + mlp(norm x)) -> norm -> head.
    Softmax attention gets learned positions (it has no other sense of order); KDA/GDN need none.
    With cfg.match_params every kind gets KDA's parameter count (to within one MLP unit per layer):
    the mixers differ in gate size, so the smaller ones get a wider MLP."""

    def __init__(self, kind: str, cfg: KDAExpConfig, mlp_hidden: int | None = None):
        super().__init__()
        if kind not in MIXERS:
            raise ValueError(f"kind must be one of {MIXERS}, got {kind!r}")
        if mlp_hidden is None and cfg.match_params:
            mlp_hidden = matched_mlp_hidden(kind, cfg)
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(max(cfg.lengths), cfg.d_model) if kind == "attn" else None
        self.norms = nn.ModuleList(RMSNorm(cfg.d_model) for _ in range(2 * cfg.n_layer))
        self.mixers = nn.ModuleList(Mixer(kind, cfg) for _ in range(cfg.n_layer))
        self.mlps = nn.ModuleList(SwiGLU(cfg.d_model, mlp_hidden) for _ in range(cfg.n_layer))
        self.norm, self.head = RMSNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)  # [B, T, d]
        if self.pos is not None:
            x = x + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for i, (mix, mlp) in enumerate(zip(self.mixers, self.mlps, strict=True)):
            x = x + mix(self.norms[2 * i](x))
            x = x + mlp(self.norms[2 * i + 1](x))
        return self.head(self.norm(x))  # [B, T, vocab]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def matched_mlp_hidden(kind: str, cfg: KDAExpConfig) -> int:
    """SwiGLU width for `kind` that brings its TinyLM closest to KDA's parameter count."""
    default = swiglu_hidden(cfg.d_model)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        target = count_params(TinyLM("kda", cfg, default))
    return matched_hidden(lambda h: TinyLM(kind, cfg, h), target, default)


def make_batch(task: str, cfg: KDAExpConfig, seq_len: int, n: int, gen: torch.Generator):
    if task == "mqar":
        return mqar(n, seq_len, max(1, round(seq_len * cfg.kv_per_token)), cfg.vocab_size, gen)
    if task == "palindrome":
        return palindrome(n, seq_len, cfg.palindrome_vocab, gen)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


@torch.no_grad()
def accuracy(model: nn.Module, batch: dict[str, torch.Tensor], device) -> float:
    """Fraction of scored positions where the argmax prediction is the label."""
    x, y = batch["input_ids"].to(device), batch["labels"].to(device)
    pred = model(x).argmax(-1)
    mask = y != IGNORE_INDEX
    return float((pred[mask] == y[mask]).float().mean())


def run_task(task: str, kind: str, cfg: KDAExpConfig, prof: Profile, progress: bool = True) -> dict:
    """Train one model on `task` with sequence lengths cycling through cfg.lengths; score each length.

    Returns {"acc": {T: accuracy}, "curve": [(step, mean accuracy)], "params": n, "seconds": s,
    "loss": [per-step loss], "model": the trained model}.
    """
    torch.manual_seed(cfg.seed)
    device = prof.torch_device
    model = TinyLM(kind, cfg).to(device)
    evals = {T: make_batch(task, cfg, T, cfg.eval_examples, torch.Generator().manual_seed(10_000 + T))
             for T in cfg.lengths}  # held out: seeds no training step uses

    def batch_fn(step: int, rank: int, world: int):
        T = cfg.lengths[step % len(cfg.lengths)]
        return make_batch(task, cfg, T, cfg.batch_size, batch_generator(cfg.seed, step, rank))

    def loss_fn(m: nn.Module, batch):
        x, y = batch["input_ids"].to(device), batch["labels"].to(device)
        logits = m(x)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX)

    def eval_fn(m: nn.Module) -> dict[str, float]:
        accs = {f"acc@{T}": accuracy(m, b, device) for T, b in evals.items()}
        return {**accs, "acc": sum(accs.values()) / len(accs)}

    res = train(model, loss_fn, batch_fn,
                TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.steps // 10, eval_every=cfg.eval_every,
                            weight_decay=0.1, progress=progress, desc=f"{task}/{kind}"),
                eval_fn=eval_fn, profile=prof)
    final = res.evals[-1]
    return {"acc": {T: final[f"acc@{T}"] for T in cfg.lengths},
            "curve": [(r["step"], r["acc"]) for r in res.evals],
            "params": model.num_params(), "seconds": res.seconds, "loss": res.losses,
            "model": model.eval()}


def run_seeds(task: str, kind: str, cfg: KDAExpConfig, prof: Profile, progress: bool = True) -> dict:
    """`run_task` once per seed in cfg.seeds (each seed sets the init and the training batches; the held-out
    sets stay the same). Returns run_task's keys averaged over seeds ("acc", "curve"), plus
    "acc_range": {T: (min, max) over seeds}, "runs": each seed's result; "model" is the first seed's."""
    runs = [run_task(task, kind, dataclasses.replace(cfg, seed=s), prof, progress) for s in cfg.seeds]
    accs = {T: [r["acc"][T] for r in runs] for T in cfg.lengths}
    curve = [(step, sum(r["curve"][i][1] for r in runs) / len(runs)) for i, (step, _) in enumerate(runs[0]["curve"])]
    return {"acc": {T: sum(a) / len(a) for T, a in accs.items()},
            "acc_range": {T: (min(a), max(a)) for T, a in accs.items()},
            "curve": curve, "params": runs[0]["params"], "seconds": sum(r["seconds"] for r in runs),
            "model": runs[0]["model"], "runs": runs}
