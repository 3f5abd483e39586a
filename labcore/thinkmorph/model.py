"""One tiny multimodal transformer that thinks in words and in pictures.
ThinkMorph (Gu et al., 2025) fine-tunes Bagel: text tokens and image tokens share one sequence, text is
trained with cross-entropy and generated images with flow matching, weights 1:1.
Taught in notebooks/06_thinkmorph.ipynb, section "One sequence, two kinds of token".

The blocks are labcore.nn's pre-norm attention + SwiGLU; attention is labcore.nn.Attention under the
explicit mask of labcore.thinkmorph.packing. Generation keeps a RaggedKVCache: one fixed buffer per
layer and each sample's own filled length, so rows of a batch can draw an image (N tokens) or write a word
(1 token) independently.
"""

from __future__ import annotations

import torch
from torch import nn

from labcore.nn import Attention, KVCache, RMSNorm, SwiGLU
from labcore.nn.gpt import init_gpt_weights
from labcore.nn.vision import TimestepEmbedder, sincos_pos_embed_2d, timestep_embedding
from labcore.thinkmorph.config import ModelConfig
from labcore.thinkmorph.packing import NOISY, TEXT, attention_mask
from labcore.thinkmorph.traces import TOKEN_ID

MAX_GRID = 16  # largest image side in patches the 2-D position table covers
T_MIN = 0.05  # v = (x_t - x_hat) / t is cut off below this time (the 1/t would amplify errors)
NUMBER0 = TOKEN_ID["0"]  # the number words "0", "1", ... have consecutive ids


class Block(nn.Module):
    """Pre-norm block: x + Attention(norm x) under the given mask, then x + SwiGLU(norm x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_head)
        self.mlp = SwiGLU(cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        a, cache = self.attn(self.norm1(x), mask, cache)
        x = x + a
        return x + self.mlp(self.norm2(x)), cache


class RaggedKVCache:
    """Per-layer keys/values [B, max_len, H, D] and each sample's filled length [B]: a ragged batch
    (labcore.nn.KVCache holds one length for the whole batch)."""

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
        # the edited picture's cells around a noisy slot (a convolution over that picture when edit_window > 1)
        self.cond_in = nn.Linear(cfg.cond_dim, d)
        self.time_emb = TimestepEmbedder(d)  # flow time t of noisy slots
        # fixed sinusoids (they extend to unseen lengths and grid sizes) through learned projections
        self.pos_proj = nn.Linear(d, d, bias=False)
        self.grid_proj = nn.Linear(d, d, bias=False)
        self.register_buffer("grid_table", sincos_pos_embed_2d(d, MAX_GRID), persistent=False)
        # with cfg.coord_words a patch also carries the embeddings of the number words naming its row and
        # column (the column's through a rotation, so (r, c) and (c, r) differ): reading "start 2 3" off the
        # image, or finding the cell a thought names, becomes matching equal vectors instead of learning a
        # code book; without it, the words must be grounded in the sin-cos positions by training
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
        """Inputs [B, T] (patches [B, T, pd]; t [P] and cond [P, cond_dim] for the NOISY slots in row-major
        order) -> [B, T, d]. A noisy slot also embeds cond, the edited image's cells around its own, so
        drawing the visual thought means learning what to change, not how to copy the whole grid."""
        B, T = tokens.shape
        d = self.cfg.d_model
        if int(pos.max()) >= self.cfg.max_len:
            raise ValueError(f"sequence position {int(pos.max())} exceeds max_len {self.cfg.max_len}")
        if int(row.max()) >= MAX_GRID or int(col.max()) >= MAX_GRID:
            raise ValueError(f"image grids must be at most {MAX_GRID} patches a side")
        text = self.tok_emb(tokens)  # [B, T, d]
        grid = self.grid_table[row * MAX_GRID + col]  # [B, T, d]
        image = self.patch_in(patches) + self.grid_proj(grid)
        if self.cfg.coord_words:
            image = image + self.tok_emb(NUMBER0 + row) + self.col_rot(self.tok_emb(NUMBER0 + col))
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

    def extend(self, cache: RaggedKVCache, idx: torch.Tensor, x: torch.Tensor, within: torch.Tensor,
               write: bool = True) -> torch.Tensor:
        """Run a chunk of embedded inputs x [b, c, d] for cache rows idx [b], attending to each row's
        cached prefix plus the chunk under `within` (bool [c, c] or [b, c, c]). write=True appends the
        chunk's keys/values. Returns final hidden states [b, c, d]."""
        b, c, _ = x.shape
        lens = cache.len[idx]  # [b]
        S = int(lens.max())  # only the filled part of the cache is read
        if S + c > self.cfg.max_len:
            raise ValueError(f"sequence would exceed max_len {self.cfg.max_len}")
        old = torch.arange(S, device=x.device)[None] < lens[:, None]  # [b, S]: each row's own prefix
        mask = torch.cat([old[:, None, :].expand(b, c, S), within.expand(b, c, c)], dim=-1)  # [b, c, S + c]
        slots = lens[:, None] + torch.arange(c, device=x.device)  # [b, c]
        for layer, block in enumerate(self.blocks):
            # the rows' prefixes padded to S (masked past each row's length); the chunk's keys come back
            # as the last c rows of the returned cache
            past = KVCache(cache.k[layer][idx, :S], cache.v[layer][idx, :S])
            x, kv = block(x, mask, past)
            if write:
                cache.k[layer][idx[:, None], slots] = kv.k[:, S:]
                cache.v[layer][idx[:, None], slots] = kv.v[:, S:]
        if write:
            cache.len[idx] += c
        return self.norm(x)
