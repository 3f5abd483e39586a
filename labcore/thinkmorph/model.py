"""One tiny multimodal transformer that thinks in words and in pictures.
ThinkMorph (Gu et al., 2025) fine-tunes Bagel: text tokens and image tokens share one sequence, text is
trained with cross-entropy and generated images with flow matching, weights 1:1.
Taught in notebooks/06_thinkmorph.ipynb, sections "One sequence, two kinds of token" and
"Training the four arms on equal budgets".

Sequence layout of a packed trace (see traces.py). Every image is a block of patch tokens (one per cell,
attending to each other both ways). A *generated* image appears twice during training, as in Bagel:

    ... <image_start> [noisy x_t block] [clean block] <image_end> ...

The noisy block carries the flow-matching loss (it sees the prefix and itself); the clean block and
everything after it see the clean copy only, which is exactly what they see at inference, where the
sampled image is written back as context. Both copies share sequence positions.

Generation (`generate`) switches modes at the special tokens: after `<image_start>` it integrates the
velocity field over the image block with Euler steps (labcore.rae.flow), writes the clean image into
the KV cache, appends `<image_end>` and goes back to text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labcore.nn import RMSNorm, SwiGLU
from labcore.nn.gpt import init_gpt_weights
from labcore.nn.vision import TimestepEmbedder, patchify, sincos_pos_embed_2d, timestep_embedding, unpatchify
from labcore.rae.flow import euler_sample, flow_matching_loss, sample_t, shift_timesteps
from labcore.runtime import Profile
from labcore.thinkmorph.config import ModelConfig, ThinkMorphConfig
from labcore.thinkmorph.tasks import CELL, make_task
from labcore.thinkmorph.traces import (
    ARMS,
    BASE_KINDS,
    END_ANSWER,
    EOS,
    IMAGE_END,
    IMAGE_START,
    PAD,
    TOKEN_ID,
    VOCAB,
    Image,
    Segment,
    Text,
    base_trace,
    context,
    decode,
    encode,
    make_trace,
)
from labcore.train import TrainConfig, TrainResult, batch_generator, train

TEXT, CLEAN, NOISY = 0, 1, 2  # token kinds
MAX_GRID = 16  # largest image side in patches the 2-D position table covers
IGNORE = -100  # cross-entropy ignore index
T_MIN = 0.05  # v = (x_t - x_hat) / t is cut off below this time (the 1/t would amplify errors)
NUMBER0 = TOKEN_ID["0"]  # the number words "0", "1", ... have consecutive ids


# ---- images <-> patch tokens -------------------------------------------------------------------------

def image_to_patches(pixels: np.ndarray, patch: int = CELL) -> torch.Tensor:
    """uint8 [H, W, 3] -> [N, p*p*3] in [-1, 1], row-major cells (labcore.nn.vision.patchify)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return patchify(x, patch)[0]


def patches_to_image(patches: torch.Tensor, side: int, patch: int = CELL) -> np.ndarray:
    """[N, p*p*3] in [-1, 1] -> uint8 [side*p, side*p, 3] (values outside [-1, 1] are clamped for display)."""
    x = unpatchify(patches[None].float().cpu(), patch, 3, side * patch, side * patch)[0]
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def _shift_dims(a: float) -> tuple[float, float]:
    """labcore.rae.flow's shift is a = sqrt(latent_dim / base_dim): pass (a^2, 1)."""
    return a * a, 1.0


def edit_source(problem: torch.Tensor | None, n: int, patch_dim: int) -> torch.Tensor:
    """What a drawn image of n patches is conditioned on, patch by patch: the problem image [N, pd] when
    there is one of the same shape (the visual thought is an edit of it, as in image-editing models),
    else zeros (a picture drawn from words alone)."""
    if problem is None or problem.shape[0] != n:
        return torch.zeros(n, patch_dim)
    return problem


# ---- packing traces into one sequence --------------------------------------------------------------

@dataclass
class Packed:
    """One trace as flat per-position arrays (length T)."""

    tokens: list[int] = field(default_factory=list)  # token id (PAD at image slots)
    kind: list[int] = field(default_factory=list)  # TEXT / CLEAN / NOISY
    pos: list[int] = field(default_factory=list)  # sequence position (noisy and clean copies share)
    row: list[int] = field(default_factory=list)  # patch row (0 for text)
    col: list[int] = field(default_factory=list)  # patch column
    group: list[int] = field(default_factory=list)  # attention group: positions of one image see each other
    target: list[int] = field(default_factory=list)  # next-token target or IGNORE
    patches: list[torch.Tensor] = field(default_factory=list)  # [N, pd] per image block, in order
    image_of: list[int] = field(default_factory=list)  # index of the generated image (-1 otherwise)
    cond: list[torch.Tensor] = field(default_factory=list)  # [N, pd] per noisy block: the problem image


def pack(trace: list[Segment], patch: int = CELL, train: bool = True) -> Packed:
    """Flatten a trace. Text targets: the next token, when it is a text token with loss, except the
    forced `<image_end>`; image slots have no text target. With train=True, generated images get the
    noisy block before the clean one."""
    p = Packed()
    trained: list[bool] = []  # per position: a text token that carries loss
    n_gen = 0
    problem = None  # the trace's first context image, what drawn images edit

    def put(tok, kind, pos, row, col, group, image_of, flag):
        for name, v in zip(("tokens", "kind", "pos", "row", "col", "group", "image_of"),
                           (tok, kind, pos, row, col, group, image_of), strict=True):
            getattr(p, name).append(v)
        trained.append(flag)

    for seg in trace:
        if isinstance(seg, Text):
            for tok in encode(seg.tokens):
                # each text token is an attention group of its own (negative ids never collide with images)
                put(tok, TEXT, p.pos[-1] + 1 if p.pos else 0, 0, 0, -len(p.group) - 1, -1, seg.loss)
            continue
        x = image_to_patches(seg.pixels, patch)  # [N, pd]
        side = seg.pixels.shape[1] // patch
        if problem is None and not seg.generated:
            problem = x
        start = p.pos[-1] + 1 if p.pos else 0
        for kind in ([NOISY, CLEAN] if (train and seg.generated) else [CLEAN]):
            gid = len(p.group) + 1  # positive and unique per block
            for i in range(x.shape[0]):
                put(PAD, kind, start + i, i // side, i % side, gid, n_gen if kind == NOISY else -1, False)
            p.patches.append(x)
            if kind == NOISY:
                p.cond.append(edit_source(problem, x.shape[0], x.shape[1]))
        n_gen += int(train and seg.generated)
    # position q predicts token q+1 when that token is trained text (not the forced <image_end>)
    p.target = [p.tokens[q + 1] if trained[q + 1] and p.tokens[q + 1] != IMAGE_END else IGNORE
                for q in range(len(p.tokens) - 1)] + [IGNORE]
    return p


def attention_mask(kind: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """[B, T] kinds and groups -> bool [B, T, T], True where query q may attend key k:
    causal over everything but noisy blocks, plus both ways inside one group (an image block)."""
    T = kind.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=kind.device).tril()  # [T, T]
    visible = causal[None] & (kind != NOISY)[:, None, :]  # noisy blocks are hidden from other positions
    same = group[:, :, None] == group[:, None, :]  # [B, T, T]
    return visible | same


def attention_mask_naive(kind: list[int], group: list[int]) -> torch.Tensor:
    """Reference for one trace, pair by pair: [T, T] bool."""
    T = len(kind)
    mask = torch.zeros(T, T, dtype=torch.bool)
    for q in range(T):
        for k in range(T):
            mask[q, k] = group[q] == group[k] or (k <= q and kind[k] != NOISY)
    return mask


def collate(packs: list[Packed], generator: torch.Generator | None = None,
            device: str | torch.device = "cpu", time_shift: float = 1.0) -> dict[str, torch.Tensor]:
    """Pad to the longest trace; draw flow-matching times (t = sigmoid(N(0, 1)), one per generated
    image, shifted by time_shift) and noise here, so a batch is a pure function of the generator
    (exact resume)."""
    T = max(len(p.tokens) for p in packs)
    B = len(packs)

    def pad(name, fill):
        out = torch.full((B, T), fill, dtype=torch.long)
        for b, p in enumerate(packs):
            out[b, :len(p.tokens)] = torch.tensor(getattr(p, name), dtype=torch.long)
        return out

    batch = {name: pad(name, fill) for name, fill in
             [("tokens", PAD), ("kind", TEXT), ("pos", 0), ("row", 0), ("col", 0), ("target", IGNORE),
              ("image_of", -1)]}
    group = pad("group", 0)
    for b, p in enumerate(packs):  # padding positions: each its own group
        group[b, len(p.tokens):] = -10_000 - torch.arange(T - len(p.tokens))
    batch["group"] = group
    pd = packs[0].patches[0].shape[-1] if any(p.patches for p in packs) else 3 * CELL * CELL
    patches = torch.zeros(B, T, pd)
    image_base = 0
    for b, p in enumerate(packs):
        slots = (batch["kind"][b] != TEXT).nonzero().squeeze(-1)
        if len(slots):
            patches[b, slots] = torch.cat(p.patches)
        img = batch["image_of"][b]
        n_img = int(img.max()) + 1
        img[img >= 0] += image_base  # number generated images across the batch
        image_base += max(n_img, 0)
    batch["patches"] = patches
    noisy = batch["kind"] == NOISY
    conds = [c for p in packs for c in p.cond]
    batch["cond"] = torch.cat(conds) if conds else torch.zeros(0, pd)  # [P, pd], like x_t
    t_img = sample_t(image_base, generator, "logit_normal")  # [n_images]
    if time_shift != 1.0:
        t_img = shift_timesteps(t_img, *_shift_dims(time_shift))
    batch["t"] = t_img[batch["image_of"][noisy]] if image_base else torch.zeros(0)  # [P] one per patch
    batch["eps"] = torch.randn(int(noisy.sum()), pd, generator=generator)  # [P, pd]
    return {k: v.to(device) for k, v in batch.items()}


# ---- the model ----------------------------------------------------------------------------------------

class MaskedSelfAttention(nn.Module):
    """Softmax attention under an explicit bool mask, with optional past keys/values (KV cache).
    x [B, T, C], mask [B, T, S0 + T], past (k, v) [B, S0, H, D] -> y [B, T, C] and this chunk's (k, v)."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head, self.head_dim = n_head, d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, mask, past=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # [B, T, H, D]
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 1), torch.cat([past[1], v], 1))
        y = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
                                           attn_mask=mask[:, None])  # [B, H, T, D]
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = MaskedSelfAttention(cfg.d_model, cfg.n_head)
        self.mlp = SwiGLU(cfg.d_model)

    def forward(self, x, mask, past=None):
        a, kv = self.attn(self.norm1(x), mask, past)
        x = x + a
        return x + self.mlp(self.norm2(x)), kv


class KVCache:
    """Per-layer keys/values [B, max_len, H, D] and each sample's filled length [B]."""

    def __init__(self, cfg: ModelConfig, B: int, device, dtype=torch.float32):
        shape = (B, cfg.max_len, cfg.n_head, cfg.d_model // cfg.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.len = torch.zeros(B, dtype=torch.long, device=device)


class InterleavedTransformer(nn.Module):
    """Text tokens + image patch tokens in one causal sequence; an LM head for text and a small
    flow-matching head (velocity of the image patches) on the same hidden states."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.patch_in = nn.Linear(cfg.patch_dim, d)  # RGB patch -> token (linear embedding)
        self.noisy_emb = nn.Parameter(torch.zeros(d))  # marks noisy slots
        self.cond_in = nn.Linear(cfg.patch_dim, d)  # the problem patch under a noisy slot
        self.time_emb = TimestepEmbedder(d)  # flow time t of noisy slots
        # fixed sinusoids (they extend to unseen lengths and grid sizes) through learned projections
        self.pos_proj = nn.Linear(d, d, bias=False)
        self.grid_proj = nn.Linear(d, d, bias=False)
        self.register_buffer("grid_table", sincos_pos_embed_2d(d, MAX_GRID), persistent=False)
        # a patch also carries the embeddings of the number words naming its row and column (the column's
        # through a rotation, so (r, c) and (c, r) differ): reading "start 2 3" off the image, or finding
        # the cell a thought names, becomes matching equal vectors instead of learning a code book
        self.col_rot = nn.Linear(d, d, bias=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.flow_head = nn.Sequential(RMSNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, cfg.patch_dim))
        init_gpt_weights(self, cfg.n_layer)
        nn.init.orthogonal_(self.col_rot.weight)
        self.lm_head.weight = self.tok_emb.weight  # tied: a number word read off a patch is the word written

    def velocity(self, h: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Hidden states h [P, d] of noisy slots, their inputs x_t [P, pd] and times t [P] -> velocity
        [P, pd]. The head predicts the clean patch x_hat and v = (x_t - x_hat) / t (x-prediction, as in
        JiT, Li & He 2025): near t = 1 a velocity head would have to copy the noise through the whole
        network, while x_hat is what the context determines. The loss stays flow matching on v."""
        return (x_t - self.flow_head(h)) / t.clamp_min(T_MIN)[:, None]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens, kind, pos, row, col, patches, t=None, cond=None) -> torch.Tensor:
        """Inputs [B, T] (patches [B, T, pd]; t [P] and cond [P, pd] for the NOISY slots in row-major
        order) -> [B, T, d]. A noisy slot also embeds cond, the problem patch at its cell, so drawing
        the visual thought means learning what to change, not how to copy the whole grid."""
        B, T = tokens.shape
        d = self.cfg.d_model
        if int(pos.max()) >= self.cfg.max_len:
            raise ValueError(f"sequence position {int(pos.max())} exceeds max_len {self.cfg.max_len}")
        if int(row.max()) >= MAX_GRID or int(col.max()) >= MAX_GRID:
            raise ValueError(f"image grids must be at most {MAX_GRID} patches a side")
        text = self.tok_emb(tokens)  # [B, T, d]
        grid = self.grid_table[row * MAX_GRID + col]  # [B, T, d]
        coords = self.tok_emb(NUMBER0 + row) + self.col_rot(self.tok_emb(NUMBER0 + col))
        image = self.patch_in(patches) + self.grid_proj(grid) + coords
        x = torch.where((kind == TEXT)[..., None], text, image)
        noisy = kind == NOISY
        if t is not None and t.numel():
            x = x.clone()
            x[noisy] = x[noisy] + self.noisy_emb + self.time_emb(t)
            if cond is not None:
                x[noisy] = x[noisy] + self.cond_in(cond)
        x = x + self.pos_proj(timestep_embedding(pos.reshape(-1).float(), d).view(B, T, d))
        return x

    def forward(self, batch: dict[str, torch.Tensor], x_t: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over a collated batch. x_t [P, pd] (noisy patches, row-major over NOISY
        slots; default: the clean ones) and t [P]. Returns logits [B, T, V] and hidden [B, T, d]."""
        patches = batch["patches"]
        noisy = batch["kind"] == NOISY
        if x_t is not None:
            patches = patches.clone()
            patches[noisy] = x_t.to(patches.dtype)
        x = self.embed(batch["tokens"], batch["kind"], batch["pos"], batch["row"], batch["col"], patches,
                       batch["t"] if t is None else t, batch.get("cond"))
        mask = attention_mask(batch["kind"], batch["group"])
        for block in self.blocks:
            x, _ = block(x, mask)
        h = self.norm(x)
        return self.lm_head(h), h

    def extend(self, cache: KVCache, idx: torch.Tensor, x: torch.Tensor, within: torch.Tensor,
               write: bool = True) -> torch.Tensor:
        """Run a chunk of embedded inputs x [b, c, d] for cache rows idx [b], attending to each row's
        cached prefix plus the chunk under `within` (bool [c, c] or [b, c, c]). write=True appends the
        chunk's keys/values. Returns final hidden states [b, c, d]."""
        b, c, _ = x.shape
        lens = cache.len[idx]  # [b]
        S = int(lens.max())  # only the filled part of the cache is read
        if S + c > self.cfg.max_len:
            raise ValueError(f"sequence would exceed max_len {self.cfg.max_len}")
        old = torch.arange(S, device=x.device)[None] < lens[:, None]  # [b, S]
        mask = torch.cat([old[:, None, :].expand(b, c, S), within.expand(b, c, c)], dim=-1)
        slots = lens[:, None] + torch.arange(c, device=x.device)  # [b, c]
        for layer, block in enumerate(self.blocks):
            x, (k, v) = block(x, mask, (cache.k[layer][idx, :S], cache.v[layer][idx, :S]))
            if write:
                cache.k[layer][idx[:, None], slots] = k
                cache.v[layer][idx[:, None], slots] = v
        if write:
            cache.len[idx] += c
        return self.norm(x)


# ---- training ------------------------------------------------------------------------------------------

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
                         ignore_index=IGNORE)
    loss = ce + core.cfg.flow_weight * flow
    return loss, {"ce": float(ce.detach()), "flow": float(flow.detach())}


TRAIN_SEEDS = 10**9  # training instances use seeds below this; evaluation seeds start here


BASE_STREAM = 10**6  # the base stage draws its mazes from its own seed stream, not the arms' puzzles


def make_batch_fn(arm: str, cfg: ThinkMorphConfig, device: str | torch.device = "cpu"):
    """batch_fn(step, rank, world) for labcore.train: cfg.batch_size traces of one arm, tasks and sizes
    drawn evenly from the training mixture. The instances depend on (seed, step, rank) only, so every
    arm trains on the very same puzzles, only the reasoning written out differs.
    arm may also be "base": the base stage's caption / draw maze traces at the training sizes."""
    if arm not in (*ARMS, "base"):
        raise ValueError(f"arm must be one of {(*ARMS, 'base')}, got {arm!r}")

    def batch_fn(step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        g = batch_generator(cfg.seed + (BASE_STREAM if arm == "base" else 0), step, rank)
        traces = []
        for _ in range(max(1, cfg.batch_size // world)):
            if arm == "base":  # only mazes have words to caption or draw from
                kind, name = BASE_KINDS[int(torch.randint(len(BASE_KINDS), (1,), generator=g))], "maze"
            else:
                name = cfg.tasks[int(torch.randint(len(cfg.tasks), (1,), generator=g))]
            sizes = cfg.train_sizes(name)
            size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
            seed = int(torch.randint(TRAIN_SEEDS, (1,), generator=g))
            task = make_task(name, size, seed)
            trace = base_trace(task, kind) if arm == "base" else make_trace(task, arm)
            traces.append(pack(trace, cfg.model.patch))
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


# ---- generation ----------------------------------------------------------------------------------------

def _text_inputs(model, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Embed text tokens [b, c] at positions [b, c]."""
    z = torch.zeros_like(tokens)
    pd = model.cfg.patch_dim
    return model.embed(tokens, z, pos, z, z, torch.zeros(*tokens.shape, pd, device=tokens.device))


def _image_inputs(model, x: torch.Tensor, side: int, start: torch.Tensor, t: torch.Tensor | None,
                  cond: torch.Tensor | None = None):
    """Embed image patches x [b, N, pd] starting at positions start [b]; noisy when t [b] is given
    (then cond [b, N, pd] is the problem image under it)."""
    b, N, _ = x.shape
    dev = x.device
    i = torch.arange(N, device=dev)
    row, col = (i // side).expand(b, N), (i % side).expand(b, N)
    pos = start[:, None] + i
    kind = torch.full((b, N), NOISY if t is not None else CLEAN, device=dev)
    tok = torch.full((b, N), PAD, device=dev)
    t_slots = None if t is None else t[:, None].expand(b, N).reshape(-1)  # [b * N]
    return model.embed(tok, kind, pos, row, col, x, t_slots, None if cond is None else cond.reshape(b * N, -1))


def draw_image(model: InterleavedTransformer, cache: KVCache, rows: torch.Tensor, side: int,
               generator: torch.Generator | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Image mode: integrate the velocity field over a side x side block from noise (t = 1) to data
    (t = 0); the noisy block reads each row's cached prefix and itself (and cond [m, N, pd], the problem
    image, patch by patch), and is not written to the cache. Returns patches [m, N, pd] in [-1, 1]."""
    N, dev = side * side, cache.len.device
    start = cache.len[rows].clone()
    full = torch.ones(N, N, dtype=torch.bool, device=dev)

    def velocity(x_t, t, _):  # the sampler's cond slot is unused: the problem image comes from `cond`
        h = model.extend(cache, rows, _image_inputs(model, x_t, side, start, t, cond), full, write=False)
        b, N, pd = x_t.shape
        return model.velocity(h.reshape(b * N, -1), x_t.reshape(b * N, pd), t.repeat_interleave(N)).view(b, N, pd)

    noise = torch.randn(len(rows), N, model.cfg.patch_dim, generator=generator).to(dev)
    shift = _shift_dims(model.cfg.time_shift) if model.cfg.time_shift != 1.0 else (None, None)
    return euler_sample(velocity, noise, model.cfg.flow_steps, latent_dim=shift[0], base_dim=shift[1]).clamp(-1, 1)


@torch.no_grad()
def generate(model: InterleavedTransformer, tasks: list, max_new_tokens: int = 96,
             temperature: float = 0.0, generator: torch.Generator | None = None,
             image_hook=None, prompts: list[list[Segment]] | None = None) -> list[list[Segment]]:
    """Continue each task's context until <eos> (or </answer>), switching to image mode at <image_start>.
    prompts replaces the contexts (one trace prefix per task, e.g. a base-stage `draw` description).

    All tasks must share name and size (one image shape per batch). temperature 0 = greedy. image_hook,
    if given, is called as image_hook(rows [m], x [m, N, pd]) -> x on every freshly drawn image (the
    blank/wrong-image probes). Returns, per task, the generated segments (Text / Image(generated=True)).
    """
    if not tasks:
        return []
    if len({(t.name, t.size) for t in tasks}) != 1:
        raise ValueError("tasks must share name and size; group them first (evaluate.by_size)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    model.eval()
    cfg, dev = model.cfg, next(model.parameters()).device
    B = len(tasks)
    side = tasks[0].render().shape[1] // cfg.patch
    N = side * side
    cache = KVCache(cfg, B, dev)
    rows = torch.arange(B, device=dev)
    # prefill the shared-shape context in one chunk, with its own (image-bidirectional) mask
    if prompts is not None and len(prompts) != B:
        raise ValueError(f"prompts must have one entry per task ({B}), got {len(prompts)}")
    packs = [pack(context(t) if prompts is None else prompts[i], cfg.patch, train=False)
             for i, t in enumerate(tasks)]
    cond = torch.stack([edit_source(p.patches[0] if p.patches else None, N, cfg.patch_dim)
                        for p in packs]).to(dev)  # [B, N, pd]
    ctx = collate(packs, device=dev)
    x = model.embed(ctx["tokens"], ctx["kind"], ctx["pos"], ctx["row"], ctx["col"], ctx["patches"])
    h = model.extend(cache, rows, x, attention_mask(ctx["kind"], ctx["group"]))
    logits = model.lm_head(h[:, -1])  # [B, V]
    out: list[list[Segment]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    one = torch.ones(1, 1, dtype=torch.bool, device=dev)
    full = torch.ones(N, N, dtype=torch.bool, device=dev)
    for _ in range(max_new_tokens):
        active = (~done).nonzero().squeeze(-1)
        if not len(active):
            break
        lg = logits[active].float()
        if temperature == 0:
            nxt = lg.argmax(-1)
        else:
            probs = torch.softmax(lg / temperature, -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(dev)
        for r, tok in zip(active.tolist(), nxt.tolist(), strict=True):
            if not out[r] or not isinstance(out[r][-1], Text):
                out[r].append(Text([], False))
            out[r][-1].tokens.append(VOCAB[tok])
        # rows that would overflow the cache stop here (scored as unanswered)
        room = cache.len[active] + 1 + (N + 1) * (nxt == IMAGE_START) <= cfg.max_len
        done[active[~room]] = True
        active, nxt = active[room], nxt[room]
        if not len(active):
            continue
        h = model.extend(cache, active, _text_inputs(model, nxt[:, None], cache.len[active][:, None]), one)
        logits[active] = model.lm_head(h[:, -1])
        done[active[(nxt == EOS) | (nxt == END_ANSWER)]] = True
        draw = active[nxt == IMAGE_START]
        if len(draw):
            img = draw_image(model, cache, draw, side, generator, cond[draw])  # [m, N, pd]
            if image_hook is not None:
                img = image_hook(draw, img)
            model.extend(cache, draw, _image_inputs(model, img, side, cache.len[draw], None), full)
            end = torch.full((len(draw), 1), IMAGE_END, device=dev)
            h = model.extend(cache, draw, _text_inputs(model, end, cache.len[draw][:, None]), one)
            logits[draw] = model.lm_head(h[:, -1])
            for j, r in enumerate(draw.tolist()):
                out[r].append(Image(patches_to_image(img[j], side, cfg.patch), True))
                out[r].append(Text(["<image_end>"], False))
    return out


@torch.no_grad()
def stepwise(model: InterleavedTransformer, trace: list[Segment], x_t: torch.Tensor | None = None,
             t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference for the teacher-forced pass: feed one trace through the KV cache a token (or a whole
    image) at a time, as generation does. Returns the logits at every text position [n_text, V] and,
    given noisy patches x_t [N, pd] and t [>=1], the velocity [N, pd] of the first generated image."""
    dev = next(model.parameters()).device
    cache = KVCache(model.cfg, 1, dev)
    row = torch.zeros(1, dtype=torch.long, device=dev)
    one = torch.ones(1, 1, dtype=torch.bool, device=dev)
    logits, vel, problem = [], None, None
    for seg in trace:
        if isinstance(seg, Text):
            for tok in encode(seg.tokens):
                ids = torch.tensor([[tok]], device=dev)
                h = model.extend(cache, row, _text_inputs(model, ids, cache.len[:, None]), one)
                logits.append(model.lm_head(h[:, -1]))
            continue
        img = image_to_patches(seg.pixels, model.cfg.patch)[None].to(dev)  # [1, N, pd]
        side = seg.pixels.shape[1] // model.cfg.patch
        full = torch.ones(side * side, side * side, dtype=torch.bool, device=dev)
        start = cache.len.clone()
        if not seg.generated and problem is None:
            problem = img[0]
        if seg.generated and vel is None and x_t is not None:
            src = edit_source(problem, img.shape[1], model.cfg.patch_dim)
            noisy = _image_inputs(model, x_t[None], side, start, t[:1], src[None])
            h = model.extend(cache, row, noisy, full, write=False)
            vel = model.velocity(h[0], x_t, t[:1].expand(x_t.shape[0]))
        model.extend(cache, row, _image_inputs(model, img, side, start, None), full)
    return torch.cat(logits), vel


def generated_tokens(segments: list[Segment]) -> list[str]:
    """All generated text words of a trace, in order (what parse_answer reads)."""
    return [tok for seg in segments if isinstance(seg, Text) for tok in seg.tokens]


__all__ = ["ModelConfig", "InterleavedTransformer", "KVCache", "Packed", "pack", "collate", "attention_mask",
           "attention_mask_naive", "thinkmorph_loss", "generate", "draw_image", "generated_tokens",
           "image_to_patches", "patches_to_image", "TOKEN_ID", "decode", "make_batch_fn", "train_arm",
           "TRAIN_SEEDS", "stepwise", "train_base"]
