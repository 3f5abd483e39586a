"""The Kimi Linear hybrid LM: KDA layers and MLA (NoPE) layers in a fixed ratio, one residual stream.

Taught in notebooks/03_kimi_linear_hybrid.ipynb, section "Assembling the hybrid".

Structure is data: `HybridConfig(ratio="3:1").layer_types` is ("kda", "kda", "kda", "mla", ...). The
paper's 48B model has 27 layers with MLA at 0-based 3, 7, ..., 23 and at the last layer 26
(`last_layer_mla=True`). Blocks are pre-norm: x + mixer(norm(x)), then x + SwiGLU(norm(x)); the head is
tied to the embedding. No positional encoding anywhere: KDA's decay and short conv carry order.

> Simplifications vs the paper: dense SwiGLU MLP in every layer (the paper: layer 0 dense, then MoE);
> one head_dim shared by KDA and MLA heads.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from labcore.hybrid.cache import HybridCache
from labcore.hybrid.mla import MultiHeadLatentAttention
from labcore.nn import Attention, matched_hidden, normal_init, scale_residual_init
from labcore.nn.blocks import RMSNorm, SwiGLU, swiglu_hidden

LAYER_KINDS = ("kda", "mla", "attn")
INITS = ("normal", "torch")
INIT_STD = 0.02  # fla's initializer_range
RATIO_HELP = "'N:M' (N KDA then M MLA layers, repeated, e.g. '3:1', '1:1', '7:1'), 'kda', 'mla' or 'attn'"


def parse_ratio(ratio: str, n_layer: int, last_layer_mla: bool = False) -> tuple[str, ...]:
    """Layer pattern from a ratio string: "3:1" with 8 layers -> kda,kda,kda,mla,kda,kda,kda,mla.

    "kda" / "mla" give a pure stack; "attn" a pure softmax-attention stack (the speed baseline).
    last_layer_mla forces the final layer to MLA, as Kimi Linear does.
    """
    if not isinstance(n_layer, int) or n_layer <= 0:
        raise ValueError(f"n_layer must be a positive int, got {n_layer!r}")
    if not isinstance(ratio, str):
        raise ValueError(f"ratio must be a string: {RATIO_HELP}; got {ratio!r}")
    r = ratio.strip().lower()
    if r in LAYER_KINDS:
        kinds = [r] * n_layer
    else:
        m = re.fullmatch(r"(\d+):(\d+)", r)
        if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise ValueError(f"ratio must be {RATIO_HELP} with N, M >= 1; got {ratio!r}")
        n_kda, n_mla = int(m.group(1)), int(m.group(2))
        period = ["kda"] * n_kda + ["mla"] * n_mla
        kinds = [period[i % len(period)] for i in range(n_layer)]
    if last_layer_mla:
        if r == "attn":
            raise ValueError("last_layer_mla cannot be combined with ratio 'attn'")
        kinds[-1] = "mla"
    return tuple(kinds)


@dataclass(frozen=True)
class HybridConfig:
    vocab_size: int = 256  # tokenizer size (byte-level default)
    d_model: int = 64  # residual width
    n_layer: int = 8  # blocks; 8 makes 3:1 -> 2 MLA, 7:1 -> 1 MLA
    n_head: int = 4  # heads of every mixer (KDA, MLA, softmax)
    head_dim: int = 16  # per-head K = V width for KDA; Dn = Dv for MLA and softmax heads
    ratio: str = "3:1"  # KDA:MLA pattern, see parse_ratio
    kv_lora_rank: int = 32  # R, MLA latent width (paper: 512 for 32 heads x 128)
    shared_dim: int = 8  # Dr, MLA key slice shared by all heads, unrotated (paper: 64); 0 drops it
    conv_size: int = 4  # KDA short causal conv width
    chunk_size: int = 64  # KDA chunk length in the parallel (training / prefill) form
    mlp_hidden: int | None = None  # SwiGLU hidden width (None: ~8/3 d_model)
    max_seq_len: int = 8192  # longest context forward accepts (prompt + generated)
    last_layer_mla: bool = False  # force the final layer to MLA (Kimi Linear does)
    init: str = "normal"  # "normal": every Linear/Conv1d ~ N(0, 0.02) as fla; "torch": KDA keeps PyTorch's
    #                       default (the control of section "Experiment: the ratio ablation")

    def __post_init__(self):
        for f in ("vocab_size", "d_model", "n_layer", "n_head", "head_dim", "kv_lora_rank",
                  "conv_size", "chunk_size", "max_seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{f} must be a positive int, got {v!r}")
        if self.shared_dim < 0:
            raise ValueError(f"shared_dim must be >= 0, got {self.shared_dim}")
        if self.mlp_hidden is not None and self.mlp_hidden <= 0:
            raise ValueError(f"mlp_hidden must be > 0 or None, got {self.mlp_hidden}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        parse_ratio(self.ratio, self.n_layer, self.last_layer_mla)  # raises on a bad ratio

    @property
    def layer_types(self) -> tuple[str, ...]:
        """One of "kda" | "mla" | "attn" per layer."""
        return parse_ratio(self.ratio, self.n_layer, self.last_layer_mla)

    @property
    def mla_layers(self) -> list[int]:
        """0-based indices of the MLA layers (fla's attn={'layers': [...]})."""
        return [i for i, k in enumerate(self.layer_types) if k == "mla"]

    def signature(self) -> tuple:
        """What a cache must agree with to be reused: every field but max_seq_len / chunk_size / init,
        plus layer_types."""
        d = asdict(self)
        d.pop("max_seq_len"), d.pop("chunk_size"), d.pop("init")
        return tuple(sorted(d.items())) + (("layer_types", self.layer_types),)


def make_mixer(kind: str, cfg: HybridConfig) -> nn.Module:
    """The token mixer of one layer: KDA, MLA (NoPE) or softmax attention (baseline)."""
    if kind == "kda":
        from labcore.kda.layer import KimiDeltaAttention

        return KimiDeltaAttention(cfg.d_model, cfg.n_head, cfg.head_dim, conv_size=cfg.conv_size,
                                  chunk_size=cfg.chunk_size)
    if kind == "mla":
        return MultiHeadLatentAttention(cfg.d_model, cfg.n_head, cfg.kv_lora_rank, cfg.head_dim,
                                        shared_dim=cfg.shared_dim)
    if kind == "attn":
        return Attention(cfg.d_model, cfg.n_head, cfg.head_dim)
    raise ValueError(f"layer kind must be one of {LAYER_KINDS}, got {kind!r}")


class HybridBlock(nn.Module):
    """Pre-norm block: x + mixer(norm1(x)); x + SwiGLU(norm2(x))."""

    def __init__(self, kind: str, cfg: HybridConfig):
        super().__init__()
        self.kind = kind
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.mixer = make_mixer(kind, cfg)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor, cache=None, use_cache: bool = False):
        y, cache = self.mixer(self.norm1(x), cache=cache, use_cache=use_cache)
        x = x + y
        return x + self.mlp(self.norm2(x)), cache


class HybridLM(nn.Module):
    """forward(input_ids [B, T], cache=None, use_cache=None) -> (logits [B, T, vocab], HybridCache | None).

    HF-like: with use_cache (default: True when a cache is passed) the returned cache holds every
    layer's state after these tokens; pass it back with the next tokens to continue decoding.
    """

    def __init__(self, cfg: HybridConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(HybridBlock(kind, cfg) for kind in cfg.layer_types)
        self.norm = RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied
        nn.init.normal_(self.embed.weight, 0.0, INIT_STD)
        for block in self.blocks:
            # KDA's A_log and dt_bias are no Linear weights: their decay ranges survive either init. With
            # init="torch" KDA's projections and convs keep PyTorch's default (uniform, std 1/sqrt(3 fan_in):
            # 0.07 for a Linear from d_model 64, 0.29 for a 4-tap depthwise conv), which Adam moves slowly.
            keep_torch = block.kind == "kda" and cfg.init == "torch"
            for m in ([block.mlp] if keep_torch else [block.mlp, block.mixer]):
                normal_init(m, INIT_STD, (nn.Linear, nn.Conv1d))  # fla: KDA's short convs too
        scale_residual_init(self, ("o_proj.weight", "mixer.proj.weight", "mlp.down.weight"), cfg.n_layer, INIT_STD)

    @property
    def layer_types(self) -> tuple[str, ...]:
        return self.cfg.layer_types

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def layers_of(self, kind: str) -> list[nn.Module]:
        """The mixers of one kind, e.g. layers_of("kda") for the gate-decay widget."""
        if kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
        return [b.mixer for b in self.blocks if b.kind == kind]

    def new_cache(self) -> HybridCache:
        """An empty cache for this model (what forward starts from when cache=None, use_cache=True)."""
        return HybridCache(self.cfg.signature(), [None] * self.cfg.n_layer)

    def forward(self, input_ids: torch.Tensor, cache: HybridCache | None = None,
                use_cache: bool | None = None) -> tuple[torch.Tensor, HybridCache | None]:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if B == 0:
            raise ValueError(f"input_ids must hold at least one sequence (B >= 1), got shape {tuple(input_ids.shape)}")
        if T == 0:
            raise ValueError("input_ids must hold at least one token (T >= 1)")
        if input_ids.min() < 0 or input_ids.max() >= self.cfg.vocab_size:
            raise ValueError(f"input_ids must be in [0, {self.cfg.vocab_size}), got range "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        use_cache = (cache is not None) if use_cache is None else use_cache
        if cache is not None:
            if not isinstance(cache, HybridCache) or cache.signature != self.cfg.signature():
                raise ValueError("cache was built by a different model (layer types or widths differ); "
                                 "start a new one with cache=None")
            if cache.batch_size is not None and cache.batch_size != B:
                raise ValueError(f"cache holds batch size {cache.batch_size}, input_ids has {B}")
        past = cache.seq_len if cache is not None else 0
        if past + T > self.cfg.max_seq_len:
            raise ValueError(f"context {past} + {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        layer_caches = cache.layers if cache is not None else [None] * self.cfg.n_layer
        x = self.embed(input_ids)  # [B, T, d]
        new_layers = []
        for block, c in zip(self.blocks, layer_caches, strict=True):
            x, c = block(x, cache=c, use_cache=use_cache)
            new_layers.append(c)
        logits = self.lm_head(self.norm(x))  # [B, T, vocab]
        if not use_cache:
            return logits, None
        return logits, HybridCache(self.cfg.signature(), new_layers, past + T, B)


def count_params(cfg: HybridConfig) -> int:
    """Parameters of HybridLM(cfg), counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return HybridLM(cfg).num_params()


def match_params(cfg: HybridConfig, target: int) -> HybridConfig:
    """cfg with the SwiGLU width chosen so the model has as close to `target` parameters as possible.

    The ratio ablation compares models at equal parameters: KDA and MLA layers differ in size, so the
    MLP of each variant absorbs the difference (each hidden unit costs 3 * d_model per layer).
    """
    default = cfg.mlp_hidden or swiglu_hidden(cfg.d_model)
    return replace(cfg, mlp_hidden=matched_hidden(lambda h: HybridLM(replace(cfg, mlp_hidden=h)), target, default))
