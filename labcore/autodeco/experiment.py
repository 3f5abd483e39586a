"""Chapter 1's experiment, end to end: pretrain a tiny byte GPT, freeze it, train AutoDeco's heads,
then compare greedy / static (T, p) grid / oracle static / AutoDeco on held-out prompts.
Taught in notebooks/01_autodeco.ipynb, sections "The task" and "Decoding"."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from labcore.autodeco import task
from labcore.autodeco.config import AutoDecoConfig
from labcore.autodeco.heads import AutoDecoHeads
from labcore.autodeco.loss import autodeco_loss
from labcore.autodeco.sampler import generate
from labcore.data import encode_corpus, random_windows, stdlib_prose
from labcore.nn import GPT, GPTConfig
from labcore.runtime import Profile
from labcore.tokenizer import ByteTokenizer
from labcore.train import TrainConfig, TrainResult, batch_generator, train


def base_batches(cfg: AutoDecoConfig, tok: ByteTokenizer, device: str, seed: int = 0):
    """batch_fn for the base LM: prose windows and task-stream windows, mixed per row."""
    prose = encode_corpus(stdlib_prose(), tok)
    n_prose = round(cfg.pretrain_batch * cfg.prose_fraction)
    problems = cfg.block_size // task.PROBLEM_LEN + 2

    def batch_fn(step: int, rank: int, world: int):
        g = batch_generator(seed, step, rank)
        xs, ys = [], []
        if n_prose:
            x, y = random_windows(prose, n_prose, cfg.block_size, g)
            xs.append(x), ys.append(y)
        rows = []
        for _ in range(cfg.pretrain_batch - n_prose):
            text = "".join(task.random_problems(problems, g))
            off = int(torch.randint(0, task.PROBLEM_LEN, (1,), generator=g))
            rows.append(torch.tensor(tok.encode(text[off: off + cfg.block_size + 1])))
        if rows:
            win = torch.stack(rows)
            xs.append(win[:, :-1]), ys.append(win[:, 1:])
        return torch.cat(xs).to(device), torch.cat(ys).to(device)

    return batch_fn


def lm_loss(model, batch):
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def pretrain_base(cfg: AutoDecoConfig, prof: Profile, seed: int = 0, ckpt_dir: str | None = None,
                  progress: bool = True) -> tuple[GPT, TrainResult]:
    tok = ByteTokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, d_model=cfg.d_model)).to(prof.device)
    tcfg = TrainConfig(steps=cfg.pretrain_steps, lr=cfg.pretrain_lr, warmup=cfg.pretrain_steps // 20,
                       weight_decay=0.1, ckpt_dir=ckpt_dir, ckpt_every=cfg.pretrain_steps if ckpt_dir else 0,
                       progress=progress, desc="base LM")
    res = train(model, lm_loss, base_batches(cfg, tok, prof.device, seed), tcfg, profile=prof)
    model.eval().requires_grad_(False)
    return model, res


def heads_loss_fn(base: GPT, cfg: AutoDecoConfig):
    """loss_fn for train(): base frozen (no grad), heads trained on the AutoDeco loss. The batch carries
    the generator for the easy-token drop, so the mask too is a function of the step (exact resume)."""
    def loss_fn(heads, batch):
        x, labels, drop_generator = batch
        with torch.no_grad():
            logits, h = base(x, return_hidden=True)
        T, P = heads(h, logits)
        return autodeco_loss(logits.float(), T, P, labels, alpha=cfg.alpha, generator=drop_generator)
    return loss_fn


def train_heads(base: GPT, cfg: AutoDecoConfig, prof: Profile, seed: int = 0,
                progress: bool = True) -> tuple[AutoDecoHeads, TrainResult]:
    tok = ByteTokenizer()
    heads = AutoDecoHeads(cfg.d_model, cfg.head_hidden).to(prof.device)

    def batch_fn(step, rank, world):
        x, y = task.training_batch(cfg.heads_batch, cfg.problems_per_row, tok,
                                   batch_generator(seed + 1, step, rank))
        return x.to(prof.device), y.to(prof.device), batch_generator(seed + 2, step, rank)

    tcfg = TrainConfig(steps=cfg.heads_steps, lr=cfg.heads_lr, warmup=cfg.heads_steps // 20,
                       progress=progress, desc="AutoDeco heads")
    res = train(heads, heads_loss_fn(base, cfg), batch_fn, tcfg, profile=prof)
    heads.eval()
    return heads, res


@dataclass
class DecodeResult:
    name: str  # "greedy", "T=0.7,P=0.9", "AutoDeco"
    accuracy: float
    coverage: float
    pass_at_k: float
    answers: list[list[str]] = field(repr=False, default_factory=list)


def evaluate(base: GPT, cfg: AutoDecoConfig, prof: Profile, mode: str, heads: AutoDecoHeads | None = None,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> DecodeResult:
    """Decode k answers per held-out prompt and score them by execution."""
    tok = ByteTokenizer()
    es = task.eval_set(cfg.eval_prefix, cfg.eval_repeats, tok)
    k = 1 if mode == "greedy" else cfg.k
    prompts = es.prompts.repeat_interleave(k, 0).to(prof.device)
    gen = generate(base, prompts, task.ANSWER_LEN, mode=mode, heads=heads, temperature=temperature,
                   top_p=top_p, generator=torch.Generator().manual_seed(seed))
    texts = [tok.decode(row) for row in gen.tokens.tolist()]
    per_prompt = [texts[i * k:(i + 1) * k] for i in range(len(es.targets))]
    if mode == "greedy":  # greedy's k samples are k copies of one answer
        per_prompt = [a * cfg.k for a in per_prompt]
    scores = [task.score(n, a) for n, a in zip(es.targets, per_prompt)]
    mean = lambda key: sum(s[key] for s in scores) / len(scores)
    name = {"greedy": "greedy", "autodeco": "AutoDeco"}.get(mode, f"T={temperature:g},P={top_p:g}")
    return DecodeResult(name, mean("accuracy"), mean("coverage"), mean("pass"), per_prompt)


def grid_search(base: GPT, cfg: AutoDecoConfig, prof: Profile, seed: int = 0) -> list[DecodeResult]:
    return [evaluate(base, cfg, prof, "static", temperature=T, top_p=P, seed=seed)
            for T in cfg.grid_T for P in cfg.grid_P]
