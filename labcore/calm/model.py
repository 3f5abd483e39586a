"""CALM: a transformer over chunks that predicts the next *vector*. CALM (Shao et al., 2025,
arXiv:2510.27688). Taught in notebooks/04_calm.ipynb, section "CALM: next-vector prediction".

Input at chunk position c: the K tokens of chunk c, embedded with the backbone's own table, concatenated
(K*d) and compressed by Linear(K*d -> 2d) -> SiLU -> Linear(2d -> d) -> LayerNorm. The hidden state h_c
conditions the energy head, whose samples should match the frozen autoencoder's posterior of chunk c+1.
Generation decodes a predicted vector to K tokens (argmax per token) and feeds those *tokens* back,
never the latent. One generative step = K tokens.

Also here: the token-level baseline's sampler for the same chunk-aligned evaluation, training-FLOPs
estimates for both (Kaplan et al. 2020: 6 x matmul params x positions + 6 x layers x context x d), and
KV-cached generation for both (`cached_blocks`), so their wall-clock per generated token compares like
for like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from labcore.calm.autoencoder import CALMAutoencoder
from labcore.calm.energy import EnergyHead, energy_score_loss
from labcore.calm.sampling import sample_batch_approx, sample_exact
from labcore.nn import GPT, Block, GPTConfig, KVCache, RMSNorm


@dataclass(frozen=True)
class CALMConfig:
    vocab_size: int  # token vocabulary (the autoencoder's)
    chunk_len: int = 4  # K tokens per vector
    latent_dim: int = 128  # size of the autoencoder's vector
    d_model: int = 256  # backbone width
    n_layer: int = 4  # backbone transformer blocks
    n_head: int = 4  # attention heads
    block_chunks: int = 32  # longest context, in chunks (K * block_chunks tokens)
    head_width: int = 256  # energy head width
    head_blocks: int = 4  # residual blocks in the energy head (paper: 4)
    noise_dim: int = 64  # uniform noise fed to the head (paper: 64)
    n_samples: int = 8  # N head samples per position in the loss (paper: 8)
    n_targets: int = 100  # M posterior draws of the target per position (paper: 100)

    def __post_init__(self):
        for f in ("vocab_size", "chunk_len", "latent_dim", "d_model", "n_layer", "n_head", "block_chunks",
                  "head_width", "head_blocks", "noise_dim", "n_targets"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be > 0, got {getattr(self, f)}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 (the energy loss needs pairs), got {self.n_samples}")


def cached_blocks(blocks: nn.ModuleList, x: torch.Tensor,
                  cache: list[KVCache]) -> tuple[torch.Tensor, list[KVCache]]:
    """Run labcore.nn Blocks (eval mode) on new positions x [B, t, d] after the cached ones.

    An empty cache is a prefill; after it, new positions attend causally to every cached key. Each block's
    attention is `labcore.nn.Attention` with its growing KVCache (no copy of the whole cache per step).
    Returns the blocks' output [B, t, d] and the grown caches, one per block.
    """
    if cache and len(cache) != len(blocks):
        raise ValueError(f"cache must hold one KVCache per block ({len(blocks)}), got {len(cache)}")
    grown = []
    for i, blk in enumerate(blocks):
        y, layer_cache = blk.attn(blk.norm1(x), cache=cache[i] if cache else None, use_cache=True)
        x = x + y
        x = x + blk.mlp(blk.norm2(x))
        grown.append(layer_cache)
    return x, grown


class CALM(nn.Module):
    """forward(ids [B, T]) -> h [B, T/K, d]; loss(ids [B, (C+1)K]); generate(prompt, n_chunks, temp)."""

    def __init__(self, cfg: CALMConfig, ae: CALMAutoencoder):
        super().__init__()
        if (ae.chunk_len, ae.latent_dim, ae.vocab_size) != (cfg.chunk_len, cfg.latent_dim, cfg.vocab_size):
            raise ValueError(f"autoencoder (K={ae.chunk_len}, latent={ae.latent_dim}, V={ae.vocab_size}) "
                             f"does not match cfg (K={cfg.chunk_len}, latent={cfg.latent_dim}, "
                             f"V={cfg.vocab_size})")
        self.cfg = cfg
        K, d = cfg.chunk_len, cfg.d_model
        self.ae = ae.requires_grad_(False).eval()  # frozen: it defines the targets
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.compress = nn.Sequential(nn.Linear(K * d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d),
                                      nn.LayerNorm(d))
        self.pos_emb = nn.Embedding(cfg.block_chunks, d)
        gcfg = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.block_chunks, n_layer=cfg.n_layer,
                         n_head=cfg.n_head, d_model=d)
        self.blocks = nn.ModuleList(Block(gcfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(d)
        self.head = EnergyHead(d, cfg.latent_dim, cfg.head_width, cfg.head_blocks, cfg.noise_dim)
        nn.init.normal_(self.tok_emb.weight, 0.0, 0.02)
        nn.init.normal_(self.pos_emb.weight, 0.0, 0.02)

    def train(self, mode: bool = True):
        super().train(mode)
        self.ae.eval()  # no token masking / z dropout when making targets
        return self

    def num_params(self, with_ae: bool = False) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if with_ae or not n.startswith("ae."))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] (T a multiple of K, T/K <= block_chunks) -> h [B, T/K, d]; h_c has read chunks 0..c."""
        K = self.cfg.chunk_len
        if ids.dim() != 2 or ids.shape[1] == 0 or ids.shape[1] % K:
            raise ValueError(f"ids must be [B, T] with T a positive multiple of chunk_len={K}, "
                             f"got {tuple(ids.shape)}")
        B, T = ids.shape
        C = T // K
        if C > self.cfg.block_chunks:
            raise ValueError(f"{C} chunks exceed block_chunks={self.cfg.block_chunks}")
        x = self._inputs(ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def _inputs(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """ids [B, C*K] at chunk positions start.. -> compressed chunk inputs [B, C, d]."""
        B, T = ids.shape
        K, d = self.cfg.chunk_len, self.cfg.d_model
        x = self.tok_emb(ids).reshape(B, T // K, K * d)  # [B, C, K*d]
        pos = torch.arange(start, start + T // K, device=ids.device)
        return self.compress(x) + self.pos_emb(pos)  # [B, C, d]

    def loss(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Energy loss for predicting chunks 1..C from chunks 0..C-1 of ids [B, (C+1)K]."""
        K, N, M = self.cfg.chunk_len, self.cfg.n_samples, self.cfg.n_targets
        h = self(ids[:, :-K])  # [B, C, d]
        with torch.no_grad():
            mu, log_sigma = self.ae.posterior(ids[:, K:])  # [B, C, L]
            eps = torch.randn(M, *mu.shape, device=mu.device, dtype=mu.dtype)
            targets = (mu + log_sigma.exp() * eps).flatten(1, 2)  # [M, B*C, L]
        samples = self.head(h, N).flatten(1, 2)  # [N, B*C, L]
        loss = energy_score_loss(samples.float(), targets.float())
        return loss, {"mean_err": float((samples.detach().mean(0) - mu.flatten(0, 1)).norm(dim=-1).mean())}

    @torch.no_grad()
    def sample_chunks(self, ids: torch.Tensor, n_draws: int) -> torch.Tensor:
        """Draws of chunks 1..C given the true chunks before each: ids [B, (C+1)K] -> [n_draws, B*C, K]."""
        K = self.cfg.chunk_len
        h = self(ids[:, :-K])  # [B, C, d]
        z = self.head(h, n_draws)  # [n, B, C, L]
        tokens = self.ae.decode_tokens(z)  # [n, B, C*K]
        return tokens.reshape(n_draws, -1, K)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n_chunks: int, temp: float = 1.0, exact: bool = True,
                 max_tries: int = 10_000, n_candidates: int = 200) -> torch.Tensor:
        """Append n_chunks * K tokens to prompt [B, T0] (T0 a positive multiple of K), one chunk per step.

        temp must be 1/n (n integer); exact=True uses rejection, False the batch approximation. The
        backbone keeps a KV cache; when the context fills block_chunks it restarts on the last window.
        """
        if n_chunks < 1:
            raise ValueError(f"n_chunks must be >= 1, got {n_chunks}")
        K, W = self.cfg.chunk_len, self.cfg.block_chunks
        if prompt.dim() != 2 or prompt.shape[1] == 0 or prompt.shape[1] % K:
            raise ValueError(f"prompt must be [B, T0] with T0 a positive multiple of chunk_len={K}, "
                             f"got {tuple(prompt.shape)}")
        ids = prompt
        x, cache = cached_blocks(self.blocks, self._inputs(ids[:, -W * K:]), [])
        for step in range(n_chunks):
            h = self.norm(x[:, -1])  # [B, d]
            # one draw = a head sample decoded to K tokens (argmax), re-embedded on the next step
            draw = lambda k, h=h: self.ae.decode_tokens(self.head(h, k)[:, :, None])  # [k, B, K]
            if exact:
                chunk, _ = sample_exact(draw, temp, max_tries)
            else:
                chunk = sample_batch_approx(draw, temp, n_candidates)
            ids = torch.cat([ids, chunk], dim=1)
            if step == n_chunks - 1:
                break
            seen = cache[0].seq_len  # chunk positions in the cache
            if seen < W:
                x, cache = cached_blocks(self.blocks, self._inputs(chunk, start=seen), cache)
            else:  # window full: start again on the last W chunks (as an uncached model would)
                x, cache = cached_blocks(self.blocks, self._inputs(ids[:, -W * K:]), [])
        return ids

    def flops_per_position(self, n_chunks: int) -> dict[str, float]:
        """Training FLOPs per chunk position (6 = forward + backward per multiply-add pair), by part.

        backbone: the input compressor and the blocks' matmuls; attention: scores and mixing over
        n_chunks positions; head: the energy head, run N times; loss: the N x (M + N) distances. The frozen
        autoencoder (its encoder makes the targets) is not counted, as in the paper.
        """
        d, L, N, M = self.cfg.d_model, self.cfg.n_layer, self.cfg.n_samples, self.cfg.n_targets
        backbone = sum(p.numel() for n, p in self.named_parameters()
                       if n.startswith(("compress", "blocks")) and p.dim() == 2)
        head = sum(p.numel() for p in self.head.parameters() if p.dim() == 2)
        return {"backbone": 6.0 * backbone, "attention": 6.0 * L * n_chunks * d, "head": 6.0 * N * head,
                "loss": 6.0 * N * (M + N) * self.cfg.latent_dim}

    def train_flops_per_step(self, batch: int, n_chunks: int) -> float:
        """Training FLOPs of one step on [batch, (n_chunks+1)K] ids: every part of flops_per_position."""
        return float(sum(self.flops_per_position(n_chunks).values()) * batch * n_chunks)


def gpt_flops_per_position(model: GPT, T: int) -> dict[str, float]:
    """Training FLOPs per token position of a GPT on T-token windows: the blocks' matmuls, attention
    over T, and the (tied) output layer over the vocabulary."""
    cfg = model.cfg
    mats = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks") and p.dim() == 2)
    return {"backbone": 6.0 * mats, "attention": 6.0 * cfg.n_layer * T * cfg.d_model,
            "output": 6.0 * cfg.d_model * cfg.vocab_size}


def gpt_train_flops_per_step(model: GPT, batch: int, T: int) -> float:
    """Training FLOPs of one GPT step on [batch, T] (matmul params incl. the tied output layer)."""
    return float(sum(gpt_flops_per_position(model, T).values()) * batch * T)


@torch.no_grad()
def gpt_generate(model: GPT, prompt: torch.Tensor, n_tokens: int, temp: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Append n_tokens sampled at temperature temp to prompt [B, T0], one token per step, KV-cached like
    CALM.generate (so per-token timings compare like for like); restarts on the last window when full."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    if not temp > 0:
        raise ValueError(f"temp must be > 0, got {temp}")
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be [B, T0] with T0 >= 1, got {tuple(prompt.shape)}")
    W = model.cfg.block_size

    def embed(ids: torch.Tensor, start: int) -> torch.Tensor:
        return model.tok_emb(ids) + model.pos_emb(torch.arange(start, start + ids.shape[1], device=ids.device))

    ids = prompt
    x, cache = cached_blocks(model.blocks, embed(ids[:, -W:], 0), [])
    for step in range(n_tokens):
        probs = (model.lm_head(model.norm(x[:, -1])).float() / temp).softmax(-1)  # [B, V]
        nxt = torch.multinomial(probs, 1, generator=generator)  # [B, 1]
        ids = torch.cat([ids, nxt], dim=1)
        if step == n_tokens - 1:
            break
        seen = cache[0].seq_len
        if seen < W:
            x, cache = cached_blocks(model.blocks, embed(nxt, seen), cache)
        else:
            x, cache = cached_blocks(model.blocks, embed(ids[:, -W:], 0), [])
    return ids


def gpt_chunk_decode(model: GPT, ids: torch.Tensor, chunk_len: int, n_draws: int,
                     choose: Callable[[int, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Continue every chunk c = 1..C of ids [B, (C+1)K] after its true prefix ids[:, :cK], K tokens
    each, n_draws times, all chunks at once.

    One causal pass over the true windows gives every prefix's keys/values (attention is causal, so
    the prefix of chunk c is the first cK positions of it); each continuation token then attends to its
    row's prefix (masked at cK) plus the tokens chosen before it in its own chunk.
    choose(j, probs [n, B, C, V]) -> tokens [n, B, C] picks token j (sample it, or force it in a test).
    Returns tokens [n, B, C, K] and the probabilities they were chosen from [n, B, C, K, V].
    """
    B, T = ids.shape
    K, n = chunk_len, n_draws
    if T % K or T // K < 2:
        raise ValueError(f"ids must be [B, (C+1)*K] with C >= 1 and K={K}, got {tuple(ids.shape)}")
    C = T // K - 1
    pos = torch.arange(T - 1, device=ids.device)
    x, caches = cached_blocks(model.blocks, model.tok_emb(ids[:, :-1]) + model.pos_emb(pos), [])
    # per block: the prefix keys and values [B, H, T-1, D], laid out once for every continuation token
    prefix = [(c.k.transpose(1, 2).contiguous(), c.v.transpose(1, 2).contiguous()) for c in caches]
    ends = torch.arange(1, C + 1, device=ids.device) * K  # chunk c's prefix is [0, cK)
    probs = [model.lm_head(model.norm(x[:, ends - 1])).float().softmax(-1).expand(n, B, C, -1)]  # j = 0
    tokens = [choose(0, probs[0])]
    own: list[list[torch.Tensor]] = [[] for _ in model.blocks]  # per block: own keys and values so far
    hidden = torch.arange(T - 1, device=ids.device) >= ends.repeat(n)[:, None]  # [n*C, T-1] not prefix
    for j in range(1, K):
        # rows grouped by window b: [B, n*C, d], row r = draw * C + chunk
        t = tokens[-1].permute(1, 0, 2).reshape(B, n * C)
        h = model.tok_emb(t) + model.pos_emb(ends.repeat(n) + j - 1)
        for blk, (kp, vp), mine in zip(model.blocks, prefix, own, strict=True):
            a = blk.attn
            q, k, v = a.qkv(blk.norm1(h)).view(B, n * C, 3, a.n_head, a.head_dim).unbind(2)  # [B, R, H, D]
            mine.append((k, v))
            ko, vo = torch.stack([m[0] for m in mine], 3), torch.stack([m[1] for m in mine], 3)  # [B, R, H, j, D]
            scale = a.head_dim ** -0.5
            s_pre = torch.einsum("brhd,bhtd->brht", q, kp) * scale  # [B, R, H, T-1]
            s_pre = s_pre.masked_fill(hidden[None, :, None], float("-inf"))
            s_own = torch.einsum("brhd,brhjd->brhj", q, ko) * scale  # [B, R, H, j]
            w = torch.cat([s_pre, s_own], -1).softmax(-1)
            y = (torch.einsum("brht,bhtd->brhd", w[..., :T - 1], vp)
                 + torch.einsum("brhj,brhjd->brhd", w[..., T - 1:], vo))  # [B, R, H, D]
            h = h + a.proj(y.reshape(B, n * C, -1))
            h = h + blk.mlp(blk.norm2(h))
        p = model.lm_head(model.norm(h)).float().softmax(-1)  # [B, n*C, V]
        probs.append(p.reshape(B, n, C, -1).transpose(0, 1))
        tokens.append(choose(j, probs[-1]))
    return torch.stack(tokens, -1), torch.stack(probs, 3)


@torch.no_grad()
def gpt_sample_chunks(model: GPT, ids: torch.Tensor, chunk_len: int, n_draws: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The token baseline under CALM's chunk-aligned evaluation: for each chunk c = 1..C of
    ids [B, (C+1)K], sample K tokens autoregressively (temp 1) after the true prefix ids[:, :cK].

    Returns [n_draws, B*C, K], the same layout as CALM.sample_chunks.
    """
    def sample(j: int, probs: torch.Tensor) -> torch.Tensor:
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])

    tokens, _ = gpt_chunk_decode(model, ids, chunk_len, n_draws, sample)  # [n, B, C, K]
    return tokens.flatten(1, 2)


@torch.no_grad()
def gpt_exact_brier1(model: GPT, ids: torch.Tensor, chunk_len: int) -> float:
    """Closed-form Brier-1 (2 p(y) - sum p^2) at the chunk starts: what the sampled estimate averages to."""
    from labcore.calm.brier import brier_exact

    K = chunk_len
    probs = model(ids[:, :-1]).float().softmax(-1)  # [B, T-1, V]
    starts = torch.arange(K, ids.shape[1], K, device=ids.device)
    return float(brier_exact(probs[:, starts - 1], ids[:, starts]).mean())
