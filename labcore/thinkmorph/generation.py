"""Generation that switches modes at the special tokens, and the token-by-token reference pass.
Taught in notebooks/06_thinkmorph.ipynb, section "One sequence, two kinds of token" (generation) and its
check cell (`stepwise`).

`generate` decodes text through a RaggedKVCache; after `<image_start>` it integrates the velocity field
over the whole image block with Euler steps (labcore.rae.flow), writes the clean image into the cache,
appends `<image_end>` and goes back to text.
"""

from __future__ import annotations

import torch

from labcore.rae.flow import euler_sample
from labcore.thinkmorph.model import InterleavedTransformer, RaggedKVCache
from labcore.thinkmorph.packing import CLEAN, NOISY, attention_mask, collate, pack, shift_dims
from labcore.thinkmorph.patches import edit_source, image_to_patches, neighbourhood, patches_to_image
from labcore.thinkmorph.traces import (
    END_ANSWER,
    EOS,
    IMAGE_END,
    IMAGE_START,
    PAD,
    VOCAB,
    Image,
    Segment,
    Text,
    context,
    encode,
)


def _text_inputs(model: InterleavedTransformer, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Embed text tokens [b, c] at positions [b, c]."""
    z = torch.zeros_like(tokens)
    pd = model.cfg.patch_dim
    return model.embed(tokens, z, pos, z, z, torch.zeros(*tokens.shape, pd, device=tokens.device))


def _image_inputs(model: InterleavedTransformer, x: torch.Tensor, side: int, start: torch.Tensor,
                  t: torch.Tensor | None, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Embed image patches x [b, N, pd] starting at positions start [b]; noisy when t [b] is given
    (then cond [b, N, pd] is the image it edits; each cell reads its cfg.edit_window neighbourhood)."""
    b, N, _ = x.shape
    dev = x.device
    i = torch.arange(N, device=dev)
    row, col = (i // side).expand(b, N), (i % side).expand(b, N)
    pos = start[:, None] + i
    kind = torch.full((b, N), NOISY if t is not None else CLEAN, device=dev)
    tok = torch.full((b, N), PAD, device=dev)
    t_slots = None if t is None else t[:, None].expand(b, N).reshape(-1)  # [b * N]
    if cond is not None:
        cond = neighbourhood(cond, side, model.cfg.edit_window).reshape(b * N, -1)  # [b * N, cond_dim]
    return model.embed(tok, kind, pos, row, col, x, t_slots, cond)


def draw_image(model: InterleavedTransformer, cache: RaggedKVCache, rows: torch.Tensor, side: int,
               generator: torch.Generator | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Image mode: integrate the velocity field over a side x side block from noise (t = 1) to data
    (t = 0); the noisy block reads each row's cached prefix and itself (and cond [m, N, pd], the image it
    edits, patch by patch), and is not written to the cache. Returns patches [m, N, pd] in [-1, 1]."""
    N, dev = side * side, cache.len.device
    start = cache.len[rows].clone()
    full = torch.ones(N, N, dtype=torch.bool, device=dev)

    def velocity(x_t, t, _):  # the sampler's cond slot is unused: the edited image comes from `cond`
        h = model.extend(cache, rows, _image_inputs(model, x_t, side, start, t, cond), full, write=False)
        b, N, pd = x_t.shape
        return model.velocity(h.reshape(b * N, -1), x_t.reshape(b * N, pd), t.repeat_interleave(N)).view(b, N, pd)

    noise = torch.randn(len(rows), N, model.cfg.patch_dim, generator=generator).to(dev)
    shift = shift_dims(model.cfg.time_shift) if model.cfg.time_shift != 1.0 else (None, None)
    return euler_sample(velocity, noise, model.cfg.flow_steps, latent_dim=shift[0], base_dim=shift[1]).clamp(-1, 1)


@torch.no_grad()
def generate(model: InterleavedTransformer, tasks: list, max_new_tokens: int = 96,
             temperature: float = 0.0, generator: torch.Generator | None = None,
             image_hook=None, prompts: list[list[Segment]] | None = None) -> list[list[Segment]]:
    """Continue each task's context until <eos> (or </answer>), switching to image mode at <image_start>.
    prompts replaces the contexts (one trace prefix per task, e.g. a base-stage `draw` description).

    All tasks must share name and size (one image shape per batch). temperature 0 = greedy. image_hook,
    if given, is called as image_hook(rows [m], x [m, N, pd], k [m]) -> x on every freshly drawn image,
    k counting each row's drawn images from 0 (the blank/wrong/true-image probes); what it returns is what
    the model reads back. Returns, per task, the generated segments (Text / Image(generated=True)).
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
    cache = RaggedKVCache(cfg, B, dev)
    rows = torch.arange(B, device=dev)
    # prefill the shared-shape context in one chunk, with its own (image-bidirectional) mask
    if prompts is not None and len(prompts) != B:
        raise ValueError(f"prompts must have one entry per task ({B}), got {len(prompts)}")
    packs = [pack(context(t) if prompts is None else prompts[i], cfg.patch, train=False)
             for i, t in enumerate(tasks)]
    latest = torch.stack([edit_source(p.patches[-1] if p.patches else None, N, cfg.patch_dim)
                          for p in packs]).to(dev)  # [B, N, pd]: what the next drawn image edits
    ctx = collate(packs, device=dev)
    x = model.embed(ctx["tokens"], ctx["kind"], ctx["pos"], ctx["row"], ctx["col"], ctx["patches"])
    h = model.extend(cache, rows, x, attention_mask(ctx["kind"], ctx["group"]))
    logits = model.lm_head(h[:, -1])  # [B, V]
    out: list[list[Segment]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    drawn = torch.zeros(B, dtype=torch.long, device=dev)  # images drawn so far per row
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
            img = draw_image(model, cache, draw, side, generator, latest[draw])  # [m, N, pd]
            if image_hook is not None:
                img = image_hook(draw, img, drawn[draw])
            drawn[draw] += 1
            latest[draw] = img
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
    given noisy patches x_t [P, pd] and their times t [P] for every generated image in order (the
    training layout's NOISY slots), their velocities [P, pd]: each noisy block reads the prefix before
    it and edits the latest image, and is never written to the cache."""
    dev = next(model.parameters()).device
    cache = RaggedKVCache(model.cfg, 1, dev)
    row = torch.zeros(1, dtype=torch.long, device=dev)
    one = torch.ones(1, 1, dtype=torch.bool, device=dev)
    logits, vels, latest, used = [], [], None, 0
    for seg in trace:
        if isinstance(seg, Text):
            for tok in encode(seg.tokens):
                ids = torch.tensor([[tok]], device=dev)
                h = model.extend(cache, row, _text_inputs(model, ids, cache.len[:, None]), one)
                logits.append(model.lm_head(h[:, -1]))
            continue
        img = image_to_patches(seg.pixels, model.cfg.patch)[None].to(dev)  # [1, N, pd]
        side, N = seg.pixels.shape[1] // model.cfg.patch, img.shape[1]
        full = torch.ones(N, N, dtype=torch.bool, device=dev)
        start = cache.len.clone()
        if seg.generated and x_t is not None:
            xs, ts = x_t[used:used + N], t[used:used + N]  # this image's noisy patches and time
            src = edit_source(latest, N, model.cfg.patch_dim).to(dev)
            h = model.extend(cache, row, _image_inputs(model, xs[None], side, start, ts[:1], src[None]), full,
                             write=False)
            vels.append(model.velocity(h[0], xs, ts))
            used += N
        model.extend(cache, row, _image_inputs(model, img, side, start, None), full)
        latest = img[0]
    return torch.cat(logits), (torch.cat(vels) if vels else None)


def generated_tokens(segments: list[Segment]) -> list[str]:
    """All generated text words of a trace, in order (what parse_answer reads)."""
    return [tok for seg in segments if isinstance(seg, Text) for tok in seg.tokens]
