"""Packing traces into one sequence of text and patch tokens, the attention mask, and batches.
Taught in notebooks/06_thinkmorph.ipynb, section "One sequence, two kinds of token".

Sequence layout of a packed trace (see traces.py). Every image is a block of patch tokens (one per cell,
attending to each other both ways). A *generated* image appears twice during training, as in Bagel:

    ... <image_start> [noisy x_t block] [clean block] <image_end> ...

The noisy block carries the flow-matching loss (it sees the prefix and itself); the clean block and
everything after it see the clean copy only, which is exactly what they see at inference, where the
sampled image is written back as context. Both copies share sequence positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from labcore.nn import IGNORE_INDEX
from labcore.rae.flow import sample_t, shift_timesteps
from labcore.thinkmorph.patches import edit_source, image_to_patches, neighbourhood
from labcore.thinkmorph.tasks import CELL
from labcore.thinkmorph.traces import IMAGE_END, PAD, Segment, Text, encode

TEXT, CLEAN, NOISY = 0, 1, 2  # token kinds


def shift_dims(a: float) -> tuple[float, float]:
    """labcore.rae.flow's time shift is a = sqrt(latent_dim / base_dim): pass (a^2, 1) for a shift of a."""
    return a * a, 1.0


@dataclass
class Packed:
    """One trace as flat per-position arrays (length T)."""

    tokens: list[int] = field(default_factory=list)  # token id (PAD at image slots)
    kind: list[int] = field(default_factory=list)  # TEXT / CLEAN / NOISY
    pos: list[int] = field(default_factory=list)  # sequence position (noisy and clean copies share)
    row: list[int] = field(default_factory=list)  # patch row (0 for text)
    col: list[int] = field(default_factory=list)  # patch column
    group: list[int] = field(default_factory=list)  # attention group: positions of one image see each other
    target: list[int] = field(default_factory=list)  # next-token target or IGNORE_INDEX
    patches: list[torch.Tensor] = field(default_factory=list)  # [N, pd] per image block, in order
    image_of: list[int] = field(default_factory=list)  # index of the generated image (-1 otherwise)
    cond: list[torch.Tensor] = field(default_factory=list)  # [N, w*w*pd] per noisy block: the image it edits


def pack(trace: list[Segment], patch: int = CELL, train: bool = True, window: int = 1) -> Packed:
    """Flatten a trace. Text targets: the next token, when it is a text token with loss, except the
    forced `<image_end>`; image slots have no text target. With train=True, generated images get the
    noisy block before the clean one, and each noisy block the image it edits as `cond`, every cell with its
    window x window neighbourhood (the model's cfg.edit_window)."""
    p = Packed()
    trained: list[bool] = []  # per position: a text token that carries loss
    n_gen = 0
    latest = None  # the last image so far, what a drawn image edits

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
        start = p.pos[-1] + 1 if p.pos else 0
        for kind in ([NOISY, CLEAN] if (train and seg.generated) else [CLEAN]):
            gid = len(p.group) + 1  # positive and unique per block
            for i in range(x.shape[0]):
                put(PAD, kind, start + i, i // side, i % side, gid, n_gen if kind == NOISY else -1, False)
            p.patches.append(x)
            if kind == NOISY:
                p.cond.append(neighbourhood(edit_source(latest, x.shape[0], x.shape[1]), side, window))
        latest = x
        n_gen += int(train and seg.generated)
    # position q predicts token q+1 when that token is trained text (not the forced <image_end>)
    p.target = [p.tokens[q + 1] if trained[q + 1] and p.tokens[q + 1] != IMAGE_END else IGNORE_INDEX
                for q in range(len(p.tokens) - 1)] + [IGNORE_INDEX]
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
             [("tokens", PAD), ("kind", TEXT), ("pos", 0), ("row", 0), ("col", 0), ("target", IGNORE_INDEX),
              ("image_of", -1)]}
    group = pad("group", 0)
    for b, p in enumerate(packs):  # padding positions: each its own group
        group[b, len(p.tokens):] = -10_000 - torch.arange(T - len(p.tokens))
    batch["group"] = group
    pd = packs[0].patches[0].shape[-1] if any(p.patches for p in packs) else 3 * CELL * CELL
    cd = next((p.cond[0].shape[-1] for p in packs if p.cond), pd)
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
    batch["cond"] = torch.cat(conds) if conds else torch.zeros(0, cd)  # [P, w*w*pd], row-aligned with x_t
    t_img = sample_t(image_base, generator, "logit_normal")  # [n_images]
    if time_shift != 1.0:
        t_img = shift_timesteps(t_img, *shift_dims(time_shift))
    batch["t"] = t_img[batch["image_of"][noisy]] if image_base else torch.zeros(0)  # [P] one per patch
    batch["eps"] = torch.randn(int(noisy.sum()), pd, generator=generator)  # [P, pd]
    return {k: v.to(device) for k, v in batch.items()}
