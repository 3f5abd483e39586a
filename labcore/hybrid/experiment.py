"""The chapter's ratio ablation: small hybrid LMs (all-MLA, 1:1, 3:1, 7:1, all-KDA) on the course text at
equal parameters and tokens, scored by validation loss. Used in notebooks/03_kimi_linear_hybrid.ipynb,
section "Experiment: the ratio ablation" (the ratio ablation of arXiv:2510.26692, at toy scale).

> The paper ablates a 16-layer model trained on billions of tokens; we train 8-layer models for a few
> hundred steps on Python's help text, so differences of a few hundredths in loss are within noise.
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
    bench_reps: int = 3  # timed decode steps per (model, context); the fastest counts
    threads: int | None = None  # torch CPU threads (1 is fastest for tiny models on a busy machine)
    seed: int = 0  # data + init seed

    def __post_init__(self):
        if not self.ratios:
            raise ValueError("ratios must name at least one layer pattern")
        if self.block_size < 2 or self.block_size > self.model.max_seq_len:
            raise ValueError(f"block_size must be in [2, {self.model.max_seq_len}], got {self.block_size}")
        if self.bpe_vocab is not None and self.bpe_vocab < 260:
            raise ValueError(f"bpe_vocab must be >= 260 or None, got {self.bpe_vocab}")
        if max(self.bench_contexts) >= self.bench_model.max_seq_len:
            raise ValueError(f"bench_contexts must stay below bench_model.max_seq_len="
                             f"{self.bench_model.max_seq_len}, got {max(self.bench_contexts)}")


def _model(vocab: int, **kw) -> HybridConfig:
    return HybridConfig(vocab_size=vocab, n_layer=8, **{"chunk_size": 32, **kw})


SMOKE = HybridLabConfig(
    model=_model(257, d_model=32, n_head=2, head_dim=16, kv_lora_rank=16, shared_dim=4, max_seq_len=256),
    max_tokens=200_000, block_size=32, batch_size=8, steps=16, eval_every=4, eval_batches=2,
    bench_model=_model(256, d_model=64, n_head=2, head_dim=32, kv_lora_rank=32, shared_dim=8,
                       max_seq_len=1024),
    bench_contexts=(64, 256, 512), bench_reps=2, threads=1)
CPU = HybridLabConfig(
    model=_model(512, d_model=64, n_head=2, head_dim=32, kv_lora_rank=32, shared_dim=8, max_seq_len=1024),
    bpe_vocab=512, block_size=128, batch_size=16, steps=200, eval_every=40, eval_batches=8,
    bench_model=_model(256, d_model=256, n_head=4, head_dim=64, kv_lora_rank=128, shared_dim=32,
                       max_seq_len=16384),
    bench_contexts=(256, 1024, 4096, 8192), bench_reps=5)
GPU = HybridLabConfig(
    model=_model(2048, d_model=384, n_head=6, head_dim=64, kv_lora_rank=256, shared_dim=32,
                 max_seq_len=4096),
    bpe_vocab=2048, block_size=512, batch_size=32, steps=1500, lr=1.5e-3, eval_every=150, eval_batches=16,
    bench_model=_model(256, d_model=1024, n_head=16, head_dim=64, kv_lora_rank=256, shared_dim=32,
                       max_seq_len=1 << 17),
    bench_contexts=(1024, 4096, 16384, 65536), bench_reps=10)


def load_text(cfg: HybridLabConfig):
    """(tokenizer, train ids [N], val ids [M]) from the course corpus, split by document."""
    ds = course_corpus("prose")
    train_ds, val_ds = train_val_split(ds, 0.1, seed=cfg.seed)
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


def train_variant(ratio: str, mcfg: HybridConfig, cfg: HybridLabConfig, train_ids: torch.Tensor,
                  val_ids: torch.Tensor, prof: Profile, progress: bool = True) -> dict:
    """Train one variant; every variant sees the very same batches (batch_fn depends only on the step).

    Returns {"model", "params", "curve": [(step, val_loss)], "train_loss": [...], "val_loss", "seconds"}.
    """
    torch.manual_seed(cfg.seed)
    device = prof.torch_device
    model = HybridLM(mcfg).to(device)
    g = torch.Generator().manual_seed(10_000 + cfg.seed)  # held-out windows, fixed across variants
    val = [random_windows(val_ids, cfg.batch_size, cfg.block_size, g) for _ in range(cfg.eval_batches)]

    def batch_fn(step: int, rank: int, world: int):
        gen = batch_generator(cfg.seed, step, rank)
        return random_windows(train_ids, cfg.batch_size, cfg.block_size, gen)

    def loss_fn(m, batch):
        x, y = batch
        return lm_loss(m, x.to(device), y.to(device))

    def eval_fn(m) -> dict[str, float]:
        return {"val_loss": sum(float(lm_loss(m, x.to(device), y.to(device))) for x, y in val) / len(val)}

    res = train(model, loss_fn, batch_fn,
                TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=max(1, cfg.steps // 10), weight_decay=0.1,
                            eval_every=cfg.eval_every, progress=progress, desc=f"LM {ratio}"),
                eval_fn=eval_fn, profile=prof)
    return {"model": model.eval(), "params": model.num_params(),
            "curve": [(r["step"], r["val_loss"]) for r in res.evals], "train_loss": res.losses,
            "val_loss": res.evals[-1]["val_loss"], "seconds": res.seconds}
