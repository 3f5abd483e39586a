"""Chapter 1's experiment, once per seed: pretrain a tiny byte GPT, freeze it, train AutoDeco's heads, then
compare greedy / default sampling / the oracle static (T, p) / AutoDeco on held-out prompts. Every decoder
is judged on accuracy (the fraction of sampled answers that are correct); coverage@k is reported beside it.
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

# generator offsets: the base LM's batches use `seed`, the heads' batches and easy-token draws these, so no
# two seeds of the experiment share a stream
HEADS_SEED, DROP_SEED = 1_000, 2_000


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
    torch.manual_seed(seed)  # the init is part of the seed
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
    torch.manual_seed(HEADS_SEED + seed)
    heads = AutoDecoHeads(cfg.d_model, cfg.head_hidden).to(prof.device)

    def batch_fn(step, rank, world):
        x, y = task.training_batch(cfg.heads_batch, cfg.problems_per_row, tok,
                                   batch_generator(HEADS_SEED + seed, step, rank))
        return x.to(prof.device), y.to(prof.device), batch_generator(DROP_SEED + seed, step, rank)

    tcfg = TrainConfig(steps=cfg.heads_steps, lr=cfg.heads_lr, warmup=cfg.heads_steps // 20,
                       progress=progress, desc="AutoDeco heads")
    res = train(heads, heads_loss_fn(base, cfg), batch_fn, tcfg, profile=prof)
    heads.eval()
    return heads, res


# held-out prompt sets (few-shot prefixes drawn from seeds no training batch uses): the oracle static (T, p)
# is picked on "tune" and every decoder, the oracle included, is scored on "test"
SPLITS = {"test": 10_000, "tune": 20_000}


@dataclass
class DecodeResult:
    name: str  # "greedy", "T=0.7,P=0.9", "AutoDeco"
    accuracy: float  # primary: the fraction of sampled answers that are correct (Pass@1 averaged over k samples)
    coverage: float  # secondary: distinct correct answers / min(k, #valid), averaged over prompts
    pass_at_k: float  # at least one of the k samples correct
    temperature: float = float("nan")  # the static T (nan for greedy and AutoDeco)
    top_p: float = float("nan")  # the static P (nan for greedy and AutoDeco)
    mean_T: list[float] = field(default_factory=list)  # AutoDeco: mean predicted T at each answer byte a + b ;
    mean_P: list[float] = field(default_factory=list)  # AutoDeco: mean predicted P at each answer byte
    answers: list[list[str]] = field(repr=False, default_factory=list)


def evaluate(base: GPT, cfg: AutoDecoConfig, prof: Profile, mode: str, heads: AutoDecoHeads | None = None,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, split: str = "test") -> DecodeResult:
    """Decode k answers per prompt of one held-out split ("test" or "tune") and score them by execution."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    tok = ByteTokenizer()
    es = task.eval_set(cfg.eval_prefix, cfg.eval_repeats, tok, seed=SPLITS[split])
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
    if mode == "static":
        return DecodeResult(f"T={temperature:g},P={top_p:g}", mean("accuracy"), mean("coverage"), mean("pass"),
                            temperature, top_p, answers=per_prompt)
    name = {"greedy": "greedy", "autodeco": "AutoDeco"}[mode]
    per_pos = lambda x: x.mean(0).tolist() if mode == "autodeco" else []
    return DecodeResult(name, mean("accuracy"), mean("coverage"), mean("pass"), mean_T=per_pos(gen.temperature),
                        mean_P=per_pos(gen.top_p), answers=per_prompt)


def grid_search(base: GPT, cfg: AutoDecoConfig, prof: Profile, seed: int = 0,
                split: str = "tune") -> list[DecodeResult]:
    """Every static (T, p) of the profile's grid, scored on one split (the tuning split by default)."""
    return [evaluate(base, cfg, prof, "static", temperature=T, top_p=P, seed=seed, split=split)
            for T in cfg.grid_T for P in cfg.grid_P]


@dataclass
class Comparison:
    """One seed's decoders on the test split, with the oracle picked on the tuning split."""
    seed: int
    greedy: DecodeResult
    default: DecodeResult  # plain sampling, T = 1, P = 1
    oracle: DecodeResult  # the static (T, p) with the best tuning-split accuracy, scored on test
    autodeco: DecodeResult
    cold: DecodeResult  # the control: the grid's coldest T at P = 1, scored on test
    grid: list[DecodeResult]  # every static (T, p) on the tuning split


def compare_decoders(base: GPT, heads: AutoDecoHeads, cfg: AutoDecoConfig, prof: Profile,
                     seed: int = 0) -> Comparison:
    """Greedy, default sampling, the oracle static (T, p) and AutoDeco for one trained (base, heads) pair.
    The oracle is chosen by accuracy on the tuning split (ties go to the first grid point), then scored on
    the test split like every other decoder, so it cannot win by having seen the test prompts."""
    grid = grid_search(base, cfg, prof, seed=seed, split="tune")
    pick = max(grid, key=lambda r: r.accuracy)
    static = lambda T, P: evaluate(base, cfg, prof, "static", temperature=T, top_p=P, seed=seed)  # noqa: E731
    return Comparison(seed, greedy=evaluate(base, cfg, prof, "greedy", seed=seed), default=static(1.0, 1.0),
                      oracle=static(pick.temperature, pick.top_p),
                      autodeco=evaluate(base, cfg, prof, "autodeco", heads=heads, seed=seed),
                      cold=static(min(cfg.grid_T), 1.0), grid=grid)
