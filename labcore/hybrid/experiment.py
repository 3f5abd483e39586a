"""The chapter's ratio ablation: small hybrid LMs (all-MLA, 1:1, 3:1, 7:1, all-KDA) on the course text at
equal parameters and tokens, over several training seeds, scored by validation loss. Used in
notebooks/03_kimi_linear_hybrid.ipynb, section "Experiment: the ratio ablation" (the ratio ablation of
arXiv:2510.26692, at toy scale).

A seed sets the init and the batch order; the document split, the tokenizer and the validation windows
come from `data_seed` and are the same for every run, so two runs' losses are directly comparable.

> The paper ablates a 16-layer model trained on billions of tokens; we train 8-layer models for a few
> hundred steps on Python's help text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from labcore.data import course_corpus, encode_corpus, random_windows, train_val_split
from labcore.hybrid.model import HybridConfig, HybridLM, count_params, match_params
from labcore.runtime import Profile
from labcore.tokenizer import BPETokenizer, ByteTokenizer
from labcore.train import TrainConfig, batch_generator, train


@dataclass(frozen=True)
class HybridLabConfig:
    model: HybridConfig  # base LM; each variant replaces `ratio` and re-fits mlp_hidden to equal params
    ratios: tuple[str, ...] = ("mla", "1:1", "3:1", "7:1", "kda")  # variants of the ablation
    seeds: tuple[int, ...] = (0, 1)  # training seeds (init + batch order); every variant runs every seed
    data_seed: int = 0  # document split, tokenizer and validation windows: one for every run
    bpe_vocab: int | None = None  # BPE vocabulary size; None = byte-level tokens
    max_tokens: int | None = None  # cap on encoded training tokens (None = whole corpus)
    block_size: int = 64  # training context (tokens)
    batch_size: int = 16  # sequences per step
    steps: int = 200  # optimizer steps per variant (same tokens for every variant)
    lr: float = 3e-3  # peak learning rate (warm-up 10%, cosine)
    eval_every: int = 50  # steps between validation evaluations (the loss curves)
    eval_batches: int = 4  # validation batches of batch_size x block_size per evaluation
    bench_model: HybridConfig = HybridConfig()  # width/depth of the cache and speed study
    bench_contexts: tuple[int, ...] = (64, 256)  # context lengths of the cache and speed study
    bench_reps: int = 3  # timed decode steps per (model, context) and trial; the fastest counts
    bench_trials: int = 2  # independent timing trials (fresh caches): the speed claim's samples
    threads: int | None = None  # torch CPU threads (1 is fastest for tiny models on a busy machine)

    def __post_init__(self):
        if not self.ratios:
            raise ValueError("ratios must name at least one layer pattern")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct ints >= 0, at least one, got {self.seeds!r}")
        if self.block_size < 2 or self.block_size > self.model.max_seq_len:
            raise ValueError(f"block_size must be in [2, {self.model.max_seq_len}], got {self.block_size}")
        if self.bpe_vocab is not None and self.bpe_vocab < 260:
            raise ValueError(f"bpe_vocab must be >= 260 or None, got {self.bpe_vocab}")
        if max(self.bench_contexts) >= self.bench_model.max_seq_len:
            raise ValueError(f"bench_contexts must stay below bench_model.max_seq_len="
                             f"{self.bench_model.max_seq_len}, got {max(self.bench_contexts)}")
        if self.bench_trials < 1 or self.bench_reps < 1:
            raise ValueError(f"bench_trials and bench_reps must be >= 1, got {self.bench_trials}, {self.bench_reps}")


def _model(vocab: int, **kw) -> HybridConfig:
    return HybridConfig(vocab_size=vocab, n_layer=8, **{"chunk_size": 32, **kw})


SMOKE = HybridLabConfig(
    model=_model(257, d_model=32, n_head=2, head_dim=16, kv_lora_rank=16, shared_dim=4, max_seq_len=256),
    seeds=(0,), max_tokens=200_000, block_size=32, batch_size=8, steps=16, eval_every=4, eval_batches=2,
    bench_model=_model(256, d_model=64, n_head=2, head_dim=32, kv_lora_rank=32, shared_dim=8,
                       max_seq_len=1024),
    bench_contexts=(64, 256, 512), bench_reps=2, bench_trials=1, threads=1)
# cpu: 2 seeds x (5 variants + the init control) x 120 steps of 16 x 128 tokens is most of the chapter's
# ~10 minutes; decode is timed up to 32K tokens, where attention's reads outweigh KDA's per-step overhead
CPU = HybridLabConfig(
    model=_model(512, d_model=64, n_head=2, head_dim=32, kv_lora_rank=32, shared_dim=8, max_seq_len=1024),
    seeds=(0, 1), bpe_vocab=512, block_size=128, batch_size=16, steps=120, eval_every=40, eval_batches=4,
    bench_model=_model(256, d_model=256, n_head=4, head_dim=64, kv_lora_rank=128, shared_dim=32,
                       max_seq_len=1 << 16),
    bench_contexts=(1024, 4096, 16384, 32768), bench_reps=5, bench_trials=2)
# gpu: 3 seeds x 6 runs x 600 steps of 32 x 512 tokens (sized by estimate, not yet timed on a GPU)
GPU = HybridLabConfig(
    model=_model(2048, d_model=384, n_head=6, head_dim=64, kv_lora_rank=256, shared_dim=32,
                 max_seq_len=4096),
    seeds=(0, 1, 2), bpe_vocab=2048, block_size=512, batch_size=32, steps=600, lr=1.5e-3, eval_every=150,
    eval_batches=16,
    bench_model=_model(256, d_model=1024, n_head=16, head_dim=64, kv_lora_rank=256, shared_dim=32,
                       max_seq_len=1 << 17),
    bench_contexts=(1024, 4096, 16384, 65536), bench_reps=10, bench_trials=3)


def load_text(cfg: HybridLabConfig):
    """(tokenizer, train ids [N], val ids [M]) from the course corpus, split by document."""
    ds = course_corpus("prose")
    train_ds, val_ds = train_val_split(ds, 0.1, seed=cfg.data_seed)
    tok = BPETokenizer.train(train_ds["text"], cfg.bpe_vocab) if cfg.bpe_vocab else ByteTokenizer()
    if tok.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"model.vocab_size {cfg.model.vocab_size} < tokenizer's {tok.vocab_size}")
    max_val = None if cfg.max_tokens is None else max(cfg.max_tokens // 10, 4 * cfg.block_size)
    return tok, encode_corpus(train_ds, tok, cfg.max_tokens), encode_corpus(val_ds, tok, max_val)


def variant_configs(cfg: HybridLabConfig) -> dict[str, HybridConfig]:
    """One HybridConfig per ratio, all with (nearly) the parameter count of the 3:1 model."""
    target = count_params(replace(cfg.model, ratio="3:1"))
    return {r: match_params(replace(cfg.model, ratio=r), target) for r in cfg.ratios}


def lm_loss(model: HybridLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits, _ = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


@torch.no_grad()
def recall_losses(model: HybridLM, spans: list[torch.Tensor]) -> tuple[float, float]:
    """In-context recall: (loss on a span seen for the first time, loss on the same span repeated right
    after it). A model that copies from its context, what a hybrid keeps attention layers for, predicts the
    second copy far better; one that does not scores both alike. spans: [B, h] token windows."""
    first, second = [], []
    for s in spans:
        h = s.shape[1]
        seq = torch.cat([s, s], 1)  # [B, 2h]
        logits, _ = model(seq[:, :-1])
        nll = F.cross_entropy(logits.flatten(0, 1).float(), seq[:, 1:].flatten(), reduction="none").view(len(s), -1)
        first.append(nll[:, :h - 1].mean())  # predicting tokens 1..h-1 of the first copy
        second.append(nll[:, h:].mean())  # tokens 1..h-1 of the second copy: each was seen h positions back
    return float(torch.stack(first).mean()), float(torch.stack(second).mean())


def train_variant(ratio: str, mcfg: HybridConfig, cfg: HybridLabConfig, train_ids: torch.Tensor,
                  val_ids: torch.Tensor, prof: Profile, seed: int = 0, progress: bool = True) -> dict:
    """Train one variant with one seed. Every variant of a seed sees the very same batches (batch_fn depends
    only on (seed, step)); every run is scored on the same validation windows (cfg.data_seed).

    Returns {"model", "params", "curve": [(step, val_loss)], "train_loss": [...], "val_loss", "seconds",
    "recall": (first-copy loss, second-copy loss) on repeated validation spans of block_size // 2 tokens}.
    """
    torch.manual_seed(seed)
    device = prof.torch_device
    model = HybridLM(mcfg).to(device)
    g = torch.Generator().manual_seed(10_000 + cfg.data_seed)  # held-out windows, fixed across runs
    val = [random_windows(val_ids, cfg.batch_size, cfg.block_size, g) for _ in range(cfg.eval_batches)]

    def batch_fn(step: int, rank: int, world: int):
        gen = batch_generator(seed, step, rank)
        return random_windows(train_ids, cfg.batch_size, cfg.block_size, gen)

    def loss_fn(m, batch):
        x, y = batch
        return lm_loss(m, x.to(device), y.to(device))

    def eval_fn(m) -> dict[str, float]:
        return {"val_loss": sum(float(lm_loss(m, x.to(device), y.to(device))) for x, y in val) / len(val)}

    res = train(model, loss_fn, batch_fn,
                TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=max(1, cfg.steps // 10), weight_decay=0.1,
                            eval_every=cfg.eval_every, progress=progress, desc=f"LM {ratio} seed {seed}"),
                eval_fn=eval_fn, profile=prof)
    g = torch.Generator().manual_seed(20_000 + cfg.data_seed)  # recall spans, fixed across runs
    spans = [random_windows(val_ids, cfg.batch_size, cfg.block_size // 2, g)[0].to(device)
             for _ in range(cfg.eval_batches)]
    model.eval()
    return {"model": model, "params": model.num_params(),
            "curve": [(r["step"], r["val_loss"]) for r in res.evals], "train_loss": res.losses,
            "val_loss": res.evals[-1]["val_loss"], "seconds": res.seconds, "recall": recall_losses(model, spans)}


def run_ablation(cfg: HybridLabConfig, train_ids: torch.Tensor, val_ids: torch.Tensor, prof: Profile,
                 configs: dict[str, HybridConfig] | None = None, keep_models: tuple[str, ...] = ("3:1",),
                 progress: bool = True) -> dict[str, list[dict]]:
    """{ratio: [one train_variant result per seed]} for every variant (default: variant_configs(cfg)).

    Models are dropped after scoring (memory) except the first seed's of the ratios in keep_models.
    """
    configs = variant_configs(cfg) if configs is None else configs
    runs: dict[str, list[dict]] = {r: [] for r in configs}
    for seed in cfg.seeds:  # seed-major: a cut-short run still has every variant at the first seed
        for ratio, mcfg in configs.items():
            run = train_variant(ratio, mcfg, cfg, train_ids, val_ids, prof, seed=seed, progress=progress)
            if runs[ratio] or ratio not in keep_models:
                run["model"] = None
            runs[ratio].append(run)
    return runs
