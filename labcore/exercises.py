"""Checked exercises for every chapter, in the Triton-Puzzles style: a *spec* (labcore's own
implementation, or an independent naive reference, run on random inputs of the sizes it states), a stub
in the chapter notebook that ends in `# Finish me!`, and `check`, which runs yours and the spec on the
same inputs and prints yours, the expected value and their difference, with a hint when they disagree.

`check` never raises because of your function: if it raises, returns None, the wrong type, shape or
number of outputs, `check` says what happened, prints the hint and returns False, so a notebook with
unfinished exercises still runs end to end. Each chapter's exercises are in the section "Exercises" of
its notebook (e.g. Taught in notebooks/02_kda.ipynb, section "Exercises"); the student edition
(`python -m labcore course student --out DIR`, labcore.student) keeps the stubs and drops the solutions.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from labcore.nn import IGNORE_INDEX
from labcore.testing import compare


@dataclass(frozen=True)
class Spec:
    name: str  # what the function computes, in a few words
    reference: Callable[..., Any]  # the spec: labcore's implementation or a naive reference
    make_inputs: Callable[[dict[str, int], torch.Generator], tuple]  # sizes, generator -> arguments
    dims: dict[str, int] = field(default_factory=dict)  # default sizes (override with check(nelem=...))
    outputs: tuple[str, ...] = ("out",)  # names of the outputs, for the printout
    hint: str = ""  # printed when a check fails: where to look
    atol: float = 1e-5  # |yours - expected| <= atol + rtol * |expected| (0, 0 = exact)
    rtol: float = 1e-4
    trials: int = 1  # independent random draws (more for exercises on integers / a few cases)
    device: str | None = "cpu"  # None: cuda when available (kernel exercises)


class _Mismatch(Exception):
    """Raised inside `check` to stop at the first problem; never escapes `check`."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (bool, int, float)) or (hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0
                                                 and not isinstance(x, torch.Tensor))


def _short(x: Any, n: int = 4) -> str:
    """First n values of a tensor (or the repr of anything else), for one printed line."""
    if isinstance(x, torch.Tensor):
        flat = x.detach().flatten()[:n].double().tolist()
        more = " ..." if x.numel() > n else ""
        fmt = "{:+.4f}" if x.is_floating_point() else "{:.0f}"  # masks and counts print as integers
        return " ".join(fmt.format(v) for v in flat) + more
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"Tensor{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    return type(x).__name__


def _compare_one(name: str, got: Any, want: Any, atol: float, rtol: float, verbose: bool) -> None:
    """Print yours / expected / difference for one output; raise _Mismatch when they disagree."""
    out = print if verbose else (lambda *a, **k: None)
    if isinstance(want, torch.Tensor) and want.dim() > 0:
        if not isinstance(got, torch.Tensor):
            raise _Mismatch(f"{name}: expected a torch.Tensor of shape {tuple(want.shape)}, "
                            f"got {_describe(got)}: {_short(got)}")
        if tuple(got.shape) != tuple(want.shape):
            raise _Mismatch(f"{name}: shape {tuple(got.shape)} != expected {tuple(want.shape)}\n"
                            f"    yours    {_short(got)}\n    expected {_short(want)}")
        diff = (got.detach().double().cpu() - want.detach().double().cpu()).abs()
        out(f"  {name}: {_describe(want)}")
        out(f"    yours    {_short(got)}\n    expected {_short(want)}\n    |diff|   {_short(diff)}")
        if not compare(f"    {name}", got, want, atol=atol, rtol=rtol, quiet=not verbose):
            worst = diff.nan_to_num(float("inf")).flatten().argmax()
            idx = tuple(int(i) for i in torch.unravel_index(worst, diff.shape))
            raise _Mismatch(f"{name}: largest difference at index {idx}: yours "
                            f"{float(got.flatten()[worst]):+.6g}, expected {float(want.flatten()[worst]):+.6g}")
        return
    if isinstance(want, torch.Tensor) or _is_number(want):  # a scalar
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.detach().reshape(()).cpu()
        elif not _is_number(got):
            raise _Mismatch(f"{name}: expected a number like {_short(want)}, got {_describe(got)}: {_short(got)}")
        g, w = float(got), float(want)
        show = (lambda x: repr(x)) if isinstance(want, (bool, int)) else (lambda x: f"{float(x):+.6g}")
        out(f"  {name}: yours {show(got)} | expected {show(want)} | |diff| {abs(g - w):.1e} "
            f"(tol {atol:.0e} + {rtol:.0e}·|expected|)")
        if not (math.isfinite(g) and abs(g - w) <= atol + rtol * abs(w)):
            raise _Mismatch(f"{name}: {g!r} != expected {w!r}")
        return
    # anything else (tuples of strings, bools in lists, ...) must be equal
    out(f"  {name}: yours {_short(got)} | expected {_short(want)}")
    if type(got) is not type(want) and not (isinstance(got, (list, tuple)) and isinstance(want, (list, tuple))):
        raise _Mismatch(f"{name}: expected a {type(want).__name__}, got {_describe(got)}")
    if list(got) != list(want) if isinstance(want, (list, tuple)) else got != want:
        raise _Mismatch(f"{name}: {_short(got)} != expected {_short(want)}")


def _run(fn: Callable, args: tuple) -> tuple[Any, str | None]:
    """Call fn, turning an exception into a one-paragraph report (the last frame of the learner's code)."""
    try:
        return fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args]), None
    except NotImplementedError:
        return None, "not done yet: your function raised NotImplementedError (the stub)"
    except Exception as e:  # noqa: BLE001 - any error in the learner's code is reported, not raised
        frames = traceback.extract_tb(e.__traceback__)[1:]  # drop this function's own frame
        where = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
        return None, f"your function raised {type(e).__name__}: {e}{where}"


def check(fn: Callable[..., Any], spec: Spec, nelem: dict[str, int] | None = None, device: str | None = None,
          atol: float | None = None, rtol: float | None = None, seed: int = 0, verbose: bool = True) -> bool:
    """Run `fn` and the spec on the same random inputs (sizes: spec.dims updated by nelem) for
    spec.trials draws; print yours, the expected output and the difference; return whether all match.

    Tolerance: |yours - expected| <= atol + rtol * |expected| elementwise (spec.atol / spec.rtol unless
    given); non-tensor outputs must be equal. The last line is `PASS: <name>` or `FAIL: <name>` plus the
    exercise's hint. `fn` returning None or raising NotImplementedError means "not done yet".
    """
    unknown = set(nelem or {}) - set(spec.dims)
    if unknown:
        raise ValueError(f"nelem keys must be among {sorted(spec.dims)}, got {sorted(unknown)}")
    sizes = {**spec.dims, **(nelem or {})}
    atol = spec.atol if atol is None else atol
    rtol = spec.rtol if rtol is None else rtol
    device = device or spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{spec.name} at {sizes}" + (f", {spec.trials} random draws" if spec.trials > 1 else ""))
    problem = None
    for trial in range(spec.trials):
        args = spec.make_inputs(sizes, torch.Generator().manual_seed(seed + trial))
        args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
        want = spec.reference(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        got, problem = _run(fn, args)
        if problem is None and got is None:
            problem = "not done yet: your function returned None"
        if problem is not None:
            break
        many = len(spec.outputs) > 1
        want_t = want if many else (want,)
        if not many and isinstance(got, tuple) and not isinstance(want, tuple):
            got = got[0] if len(got) == 1 else got  # a 1-tuple is fine; a longer one is reported below
        got_t = got if many and isinstance(got, tuple) else (got,)
        if len(got_t) != len(want_t) or (not many and isinstance(got, tuple) and not isinstance(want, tuple)):
            n_got = len(got) if isinstance(got, tuple) else f"one {_describe(got)}"
            problem = f"expected {len(want_t)} output(s) {spec.outputs}, got {n_got}"
            break
        loud = trial == 0  # print the first draw in full; later draws only when they fail
        try:
            for name, a, b in zip(spec.outputs, got_t, want_t, strict=True):
                _compare_one(name, a, b, atol, rtol, loud)
        except _Mismatch as e:
            if not loud:  # show the failing draw in full
                print(f"  draw {trial + 1}: inputs {_short(args)}")
                for name, a, b in zip(spec.outputs, got_t, want_t, strict=True):
                    try:
                        _compare_one(name, a, b, atol, rtol, True)
                    except _Mismatch:
                        pass
            problem = str(e)
            break
    if problem is None:
        print(f"PASS: {spec.name}")
        return True
    print(f"  {problem}")
    print(f"FAIL: {spec.name}" + (f"\n  hint: {spec.hint}" if spec.hint else ""))
    return False


# ==== Chapter 1: AutoDeco (notebooks/01_autodeco.ipynb, section "Exercises") ==========================

def _logits_T_P(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    N, V = n["N"], n["V"]
    return (torch.randn(N, V, generator=gen) * 3, torch.rand(N, generator=gen) * 1.5 + 0.2,
            torch.rand(N, generator=gen) * 0.9 + 0.1)


def _autodeco_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, T, V = n["B"], n["T"], n["V"]
    logits = torch.randn(B, T, V, generator=gen) * 2
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[:, :2] = IGNORE_INDEX  # a prompt that carries no loss
    labels[0, -1] = logits[0, -1].argmax()  # at least one easy token
    return (logits, torch.rand(B, T, generator=gen) * 1.8 + 0.1, torch.rand(B, T, generator=gen) * 0.9 + 0.05,
            labels)


def _autodeco_spec(logits, temperature, top_p, labels):
    from labcore.autodeco import autodeco_loss

    return autodeco_loss(logits, temperature, top_p, labels, easy_drop=0.0)[0]


AUTODECO_LOSS = Spec(
    "AutoDeco loss L_temp + L_top-p (no easy-token drop)", _autodeco_spec, _autodeco_inputs,
    dims={"B": 2, "T": 9, "V": 40}, outputs=("loss",), atol=1e-5, rtol=1e-5,
    hint="only positions with label != -100 count; w = softmax(logits)[y] at T = 1, without gradient; "
         "L_temp = mean of w * CE(logits / max(T, 0.01), y); L_top-p = mean of -w * log(p~[y] + 1e-9) with "
         "p~ = soft_top_p(logits, T, P) (alpha = 30); return the sum as a 0-d tensor.")


def _temp_grad_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    logits, T, _ = _logits_T_P(n, gen)
    labels = torch.randint(0, n["V"], (n["N"],), generator=gen)
    labels[: n["N"] // 2] = logits[: n["N"] // 2].argmax(-1)  # half easy tokens: their gradient has the other sign
    return logits, T, labels


def _temp_grad_spec(logits, temperature, labels):
    """Autograd through the weighted L_temp term, one position at a time (the positions are independent)."""
    T = temperature.detach().clone().requires_grad_()
    w = torch.softmax(logits, -1).gather(-1, labels[:, None]).squeeze(-1)
    term = w * F.cross_entropy(logits / T[:, None], labels, reduction="none")
    return torch.autograd.grad(term.sum(), T)[0]


TEMP_GRAD = Spec(
    "d/dT of w * CE(logits / T, y), in closed form", _temp_grad_spec, _temp_grad_inputs,
    dims={"N": 16, "V": 30}, outputs=("dT",), atol=1e-5, rtol=1e-4,
    hint="p_T = softmax(logits / T); d/dT [logsumexp(l / T) - l_y / T] = (l_y - sum_j p_T,j l_j) / T^2; "
         "multiply by w = softmax(logits)[y] (T = 1, a constant): one value per position, shape [N].")


def _top_p_masks_spec(probs, top_p):
    from labcore.autodeco import top_p_mask

    return top_p_mask(probs, top_p, "hf"), top_p_mask(probs, top_p, "inclusive")


def _probs_P(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    logits, _, P = _logits_T_P(n, gen)
    return torch.softmax(logits, -1), P


TOP_P_MASKS = Spec(
    "hard top-p masks, Hugging Face rule and inclusive rule", _top_p_masks_spec, _probs_P,
    dims={"N": 16, "V": 30}, outputs=("hf", "inclusive"), atol=0.0, rtol=0.0,
    hint="sort p descending and take c = cumsum; HF keeps a token when the mass *before* it (c - p) is < P "
         "(so the top token always stays), inclusive keeps it when c <= P, and the top token too; scatter the "
         "kept flags back to vocabulary order (bool [N, V]).")


def _logits_T(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return _logits_T_P(n, gen)[:2]


def _stats_spec(logits, temperature):
    from labcore.autodeco import distribution_stats

    return distribution_stats(logits, temperature)


DISTRIBUTION_STATS = Spec(
    "the top-p head's 4 statistics of softmax(l / T)", _stats_spec, _logits_T,
    dims={"N": 12, "V": 50}, outputs=("stats",), atol=1e-6, rtol=1e-5,
    hint="p = softmax(logits / (T + 1e-8)); stack [max p, entropy -sum p log(p + 1e-8), unbiased variance "
         "of p over the vocabulary, sum of the 5 largest p] on the last axis -> [N, 4].")


# ==== Chapter 2: KDA (notebooks/02_kda.ipynb, section "Exercises") ====================================

def _qkv(n: dict[str, int], gen: torch.Generator, T: int) -> tuple[torch.Tensor, ...]:
    B, H, K, V = n["B"], n["H"], n["K"], n["V"]
    return (torch.randn(B, T, H, K, generator=gen), F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1),
            torch.randn(B, T, H, V, generator=gen))


def gdn_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor,
              beta: torch.Tensor) -> torch.Tensor:
    """Gated DeltaNet, token by token: S = alpha S; S += beta k (v - S^T k)^T; o = S^T q K^-0.5.
    q, k [B, T, H, K]; v [B, T, H, V]; alpha, beta [B, T, H] -> o [B, T, H, V]."""
    B, T, H, K = q.shape
    S, outs = q.new_zeros(B, H, K, v.shape[-1]), []
    for t in range(T):
        S = alpha[:, t, :, None, None] * S
        err = v[:, t] - (S * k[:, t, :, :, None]).sum(-2)  # [B, H, V]
        S = S + beta[:, t, :, None, None] * k[:, t, :, :, None] * err[..., None, :]
        outs.append((S * q[:, t, :, :, None]).sum(-2) * K ** -0.5)
    return torch.stack(outs, 1)


def _gdn_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, T, H = n["B"], n["T"], n["H"]
    return (*_qkv(n, gen, T), torch.rand(B, T, H, generator=gen) * 0.5 + 0.5, torch.rand(B, T, H, generator=gen))


GDN_VIA_KDA = Spec(
    "Gated DeltaNet computed by KDA with a scalar gate", gdn_naive, _gdn_inputs,
    dims={"B": 2, "T": 37, "H": 2, "K": 8, "V": 12}, outputs=("o",), atol=1e-4, rtol=1e-4,
    hint="KDA's g is a *log* decay per key channel: g = log(alpha), the same for every channel, i.e. "
         "alpha.log()[..., None].expand(B, T, H, K); then o, _ = chunk_kda(q, k, v, g, beta).")


def _chunk_step_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, C, H, K, V = n["B"], n["C"], n["H"], n["K"], n["V"]
    q, k, v = _qkv(n, gen, C)
    return (q, k, v, -torch.rand(B, C, H, K, generator=gen), torch.rand(B, C, H, generator=gen),
            torch.randn(B, H, K, V, generator=gen))


def _chunk_step_spec(q, k, v, g, beta, S):
    from labcore.kda import recurrent_kda

    return recurrent_kda(q, k, v, g, beta, initial_state=S, output_final_state=True)


KDA_CHUNK_STEP = Spec(
    "one KDA chunk with an incoming state (UT transform)", _chunk_step_spec, _chunk_step_inputs,
    dims={"B": 2, "C": 16, "H": 2, "K": 8, "V": 12}, outputs=("o", "S"), atol=1e-4, rtol=1e-4,
    hint="per (b, h): G = cumsum(g) over the chunk; A[i,j] = beta_i sum_c K_ic K_jc exp(G_ic - G_jc) for j < i; "
         "T = (I + A)^-1 diag(beta); W = T (exp(G) * K), U = T V; V' = U - W S; "
         "O = (Q K^-0.5 * exp(G)) S + tril(Aqk) V'; S_new = exp(G_last) * S + (exp(G_last - G) * K)^T V'.")


def kda_decode_step_spec(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                         beta: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of KDA. q, k, g: [B, H, K]; v: [B, H, V]; beta: [B, H]; S: [B, H, K, V] (fp32).
    Returns o [B, H, V] (q scaled by K^-0.5 inside) and the new state [B, H, K, V]."""
    from labcore.kda import recurrent_kda

    o, S_new = recurrent_kda(q[:, None], k[:, None], v[:, None], g[:, None], beta[:, None],
                             initial_state=S, output_final_state=True)
    return o[:, 0], S_new


def _kda_step_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, H, K, V = n["B"], n["H"], n["K"], n["V"]
    return (torch.randn(B, H, K, generator=gen), F.normalize(torch.randn(B, H, K, generator=gen), dim=-1),
            torch.randn(B, H, V, generator=gen), -torch.rand(B, H, K, generator=gen) * 3,
            torch.rand(B, H, generator=gen), torch.randn(B, H, K, V, generator=gen))


# fp32 kernels vs the fp32 spec agree to ~1e-7; the tolerance leaves room for another summation order
KDA_DECODE_STEP = Spec(
    "KDA decode step: decay, delta-rule write, read", kda_decode_step_spec, _kda_step_inputs,
    dims={"B": 2, "H": 2, "K": 16, "V": 24}, outputs=("o", "S"), device=None,
    hint="S' = S * exp(g)[:, None]; delta = v - sum(S' * k[:, None], axis=0); S = S' + beta * k[:, None] * "
         "delta[None, :]; o = sum(S * (q * scale)[:, None], axis=0); store o and S (masked).")


# ==== Chapter 3: the hybrid (notebooks/03_kimi_linear_hybrid.ipynb, section "Exercises") =============

def _ratio_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    r = torch.randint(0, 10, (5,), generator=gen).tolist()
    ratio = ["kda", "mla", "attn"][r[0]] if r[0] < 3 else f"{1 + r[1] % 7}:{1 + r[2] % 3}"
    n_layer = 1 + int(torch.randint(0, n["L"], (1,), generator=gen))
    return ratio, n_layer, ratio != "attn" and r[3] % 2 == 1


def _ratio_spec(ratio, n_layer, last_layer_mla):
    from labcore.hybrid.model import parse_ratio

    return parse_ratio(ratio, n_layer, last_layer_mla)


LAYER_PATTERN = Spec(
    "layer pattern from a KDA:MLA ratio", _ratio_spec, _ratio_inputs, dims={"L": 27},
    outputs=("layer_types",), trials=12,
    hint="'N:M' repeats N 'kda' then M 'mla' for n_layer layers; 'kda' / 'mla' / 'attn' give a pure stack; "
         "last_layer_mla forces the final entry to 'mla'; return a tuple of strings.")


def _cache_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    from labcore.hybrid import HybridConfig

    ratio, n_layer, last = _ratio_inputs(n, gen)
    r = torch.randint(1, 9, (6,), generator=gen).tolist()
    cfg = HybridConfig(d_model=16, n_layer=n_layer, n_head=r[0] % 4 + 1, head_dim=2 * r[1], ratio=ratio,
                       kv_lora_rank=4 * r[2], shared_dim=r[3] - 1, conv_size=r[4] % 4 + 1, last_layer_mla=last,
                       max_seq_len=n["S"])
    return cfg, r[5], 1 + int(torch.randint(0, n["S"], (1,), generator=gen))


def _cache_spec(cfg, batch_size, seq_len):
    from labcore.hybrid import HybridLM, filled_cache

    with torch.random.fork_rng():  # building the model must not move the caller's RNG
        return filled_cache(HybridLM(cfg).eval(), batch_size, seq_len, random=False).nbytes()


HYBRID_CACHE_BYTES = Spec(
    "decode-cache bytes of a hybrid model", _cache_spec, _cache_inputs, dims={"L": 12, "S": 100},
    outputs=("bytes",), atol=0.0, rtol=0.0, trials=8,
    hint="fp32 = 4 bytes; per layer of cfg.layer_types, with H = n_head, D = head_dim: KDA keeps the state "
         "[B, H, D, D] plus conv tails [B, conv_size - 1, H * D] for q, k and v (no growth with S); MLA keeps "
         "c_kv [B, S, kv_lora_rank] and k_r [B, S, shared_dim]; softmax 'attn' keeps K and V [B, S, H, D].")


def _absorbed_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, S, H, Dn, Dr, Dv, R = n["B"], n["S"], n["H"], n["Dn"], n["Dr"], n["Dv"], n["R"]
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return r(B, H, Dn), r(B, H, Dr), r(B, S, R), r(B, S, Dr), r(H, Dn, R) * R ** -0.5, r(H, Dv, R) * R ** -0.5


def _absorbed_spec(q_nope, q_r, c_kv, k_r, W_uk, W_uv):
    from labcore.hybrid import MultiHeadLatentAttention

    (H, Dn, R), Dv, Dr = W_uk.shape, W_uv.shape[1], q_r.shape[-1]
    with torch.random.fork_rng():
        mla = MultiHeadLatentAttention(8, H, R, Dn, shared_dim=Dr, v_head_dim=Dv)
    with torch.no_grad():
        mla.kv_up.weight.copy_(torch.cat([W_uk, W_uv], 1).reshape(H * (Dn + Dv), R))
        # the expanded path: up-project every cached latent to keys and values, then attend
        return mla.attend_expanded(q_nope[:, None], q_r[:, None], c_kv, k_r)[:, 0]


ABSORBED_DECODE = Spec(
    "MLA decode step, absorbed into the latent space", _absorbed_spec, _absorbed_inputs,
    dims={"B": 2, "S": 13, "H": 3, "Dn": 8, "Dr": 4, "Dv": 6, "R": 16}, outputs=("o",), atol=1e-5, rtol=1e-4,
    hint="q_lat = einsum('bhd,hdr->bhr', q_nope, W_uk); scores = (q_lat . c_kv + q_r . k_r) * (Dn + Dr)**-0.5 "
         "over all S cached tokens; p = softmax over S; o_lat = sum_s p c_kv; o = einsum('bhr,hvr->bhv', o_lat, W_uv).")


# ==== Chapter 4: CALM (notebooks/04_calm.ipynb, section "Exercises") ==================================

def _energy_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    N, B, D = n["N"], n["B"], n["D"]
    return (torch.randn(N, B, D, generator=gen, dtype=torch.float64),
            torch.randn(B, D, generator=gen, dtype=torch.float64) + 0.5)


def _energy_spec(samples, y):
    from labcore.calm.energy import energy_score_loss

    # with one target the loss is 2 E||X - y|| - E||X - X'||, twice the energy score
    return torch.stack([energy_score_loss(samples[:, b:b + 1], y[None, b:b + 1]) / 2 for b in range(y.shape[0])])


ENERGY_SCORE = Spec(
    "energy score S(P, y) from samples", _energy_spec, _energy_inputs, dims={"N": 7, "B": 5, "D": 3},
    outputs=("score",), atol=1e-10, rtol=1e-10,
    hint="per b: mean over n of ||X_n - y|| minus one half of the mean over the N(N-1) pairs n != k of "
         "||X_n - X_k|| (the diagonal n = k is excluded); return [B].")


def _brier_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    B, T, V = n["B"], n["T"], n["V"]
    y = torch.randint(0, V, (B, T), generator=gen)
    noisy = lambda: torch.where(torch.rand(B, T, generator=gen) < 0.7, y,  # noqa: E731
                                torch.randint(0, V, (B, T), generator=gen))
    return noisy(), noisy(), y, n["max_n"]


def _brier_spec(x1, x2, y, max_n):
    from labcore.calm.brier import brier_lm

    out = brier_lm(x1, x2, y, max_n)
    return torch.tensor([out[f"brier_{i}"] for i in range(1, max_n + 1)]), out["brier_lm"]


BRIER_NGRAMS = Spec(
    "two-sample Brier-n over every n-gram, and BrierLM", _brier_spec, _brier_inputs,
    dims={"B": 3, "T": 12, "V": 3, "max_n": 4}, outputs=("brier_n", "brier_lm"), atol=1e-6, rtol=1e-6,
    hint="an n-gram matches only if all n tokens match; for every start t = 0..T-n: 1[x1 = y] + 1[x2 = y] - "
         "1[x1 = x2], averaged over rows and starts -> Brier-n; BrierLM = 100 * max(prod_n Brier-n, 0)^(1/max_n) "
         "(the clamp is on the product).")


def _brier_exact_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    B, V = n["B"], n["V"]
    return torch.softmax(torch.randn(B, V, generator=gen) * 2, -1), torch.randint(0, V, (B,), generator=gen)


def _brier_exact_spec(probs, y):
    from labcore.calm.brier import brier_exact

    return brier_exact(probs, y)


BRIER_EXACT = Spec(
    "Brier score in closed form", _brier_exact_spec, _brier_exact_inputs, dims={"B": 10, "V": 7},
    outputs=("brier",), atol=1e-6, rtol=1e-6,
    hint="2 p(y) - sum_x p(x)^2 per row: the first term is what 1[x1 = y] + 1[x2 = y] estimates, the second "
         "the collision probability P(x1 = x2).")


# ==== Chapter 5: RAE (notebooks/05_rae.ipynb, section "Exercises") ====================================

def _grid_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    r = torch.randint(1, 1000, (3,), generator=gen).tolist()
    return 1 + r[0] % n["steps"], 16 * r[1], 16 + r[2] % 512


def _grid_spec(steps, latent_dim, base_dim):
    from labcore.rae.flow import time_grid

    return time_grid(steps, latent_dim, base_dim)


SHIFTED_GRID = Spec(
    "the sampler's shifted time grid", _grid_spec, _grid_inputs, dims={"steps": 50}, outputs=("grid",),
    atol=1e-6, rtol=1e-6, trials=5,
    hint="steps + 1 times from 1 down to 0 (torch.linspace, float64), each mapped by t' = a t / (1 + (a - 1) t) "
         "with a = sqrt(latent_dim / base_dim); return float32.")


def _fd_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    N1, N2, D = n["N1"], n["N2"], n["D"]
    mix = torch.randn(D, D, generator=gen, dtype=torch.float64) / D ** 0.5
    return (torch.randn(N1, D, generator=gen, dtype=torch.float64),
            torch.randn(N2, D, generator=gen, dtype=torch.float64) @ mix + 0.3)


def _fd_spec(f1, f2):
    from labcore.rae.fid import frechet_distance_features

    return frechet_distance_features(f1, f2)


FRECHET_FEATURES = Spec(
    "Fréchet distance between two feature sets", _fd_spec, _fd_inputs, dims={"N1": 200, "N2": 150, "D": 6},
    outputs=("fd",), atol=1e-8, rtol=1e-6,
    hint="fit mean and *unbiased* covariance (divide by N - 1) to each set; FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) "
         "- 2 tr((S1^1/2 S2 S1^1/2)^1/2), square roots of symmetric PSD matrices via torch.linalg.eigh.")


class _ToyVelocity:
    """A fixed random velocity field v(x, t, c) = tanh(x A + t b + E[c]) for sampler exercises."""

    def __init__(self, dim: int, classes: int, gen: torch.Generator):
        self.A = torch.randn(dim, dim, generator=gen) / dim ** 0.5
        self.b = torch.randn(dim, generator=gen)
        self.E = torch.randn(classes + 1, dim, generator=gen)  # the last row is the "no label" class

    def __call__(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.A + t[:, None] * self.b + self.E[c])

    def __repr__(self) -> str:
        return f"_ToyVelocity(dim={self.A.shape[0]})"


def _euler_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    B, D, C = n["B"], n["D"], n["classes"]
    model = _ToyVelocity(D, C, gen)
    return (model, torch.randn(B, D, generator=gen), torch.randint(0, C, (B,), generator=gen),
            torch.full((B,), C), n["steps"], 2.5, 4 * D, D)


def _euler_spec(model, noise, cond, null_cond, steps, cfg_scale, latent_dim, base_dim):
    from labcore.rae.flow import euler_sample

    return euler_sample(model, noise, steps, cond, latent_dim=latent_dim, base_dim=base_dim,
                        null_cond=null_cond, cfg_scale=cfg_scale)


EULER_CFG = Spec(
    "Euler sampler with classifier-free guidance on the shifted grid", _euler_spec, _euler_inputs,
    dims={"B": 4, "D": 5, "classes": 3, "steps": 12}, outputs=("x",), atol=1e-5, rtol=1e-5,
    hint="times from the shifted grid (1 -> 0, steps + 1 points); at each step v = v_null + w (v_cond - v_null) "
         "with v_cond = model(x, t, cond), v_null = model(x, t, null_cond), t a [B] tensor; "
         "x <- x + (t_next - t) v (t_next < t: the step goes toward data).")


# ==== Chapter 6: ThinkMorph (notebooks/06_thinkmorph.ipynb, section "Exercises") ======================

def _probe_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    from labcore.thinkmorph.tasks import MazeTask

    size = n["size"]
    seeds = torch.randint(0, 10_000, (n["tasks"],), generator=gen).tolist()
    tasks = [MazeTask.generate(size, s) for s in seeds]
    rows = torch.randperm(len(tasks), generator=gen)[:n["rows"]]
    return tasks, rows, torch.randn(len(rows), size * size, n["patch_dim"], generator=gen)


def _probe_spec(tasks, rows, x):
    from labcore.thinkmorph.evaluate import wrong_hook

    return wrong_hook(tasks)(rows, x)


WRONG_PROBE = Spec(
    "the 'wrong picture' probe", _probe_spec, _probe_inputs,
    dims={"size": 4, "tasks": 6, "rows": 3, "patch_dim": 48}, outputs=("patches",), atol=0.0, rtol=0.0,
    hint="for each r in rows: other = type(t).generate(t.size, t.seed + 7919) with t = tasks[r]; its picture "
         "image_to_patches(other.visual_thoughts()[0]); stack them and match x's device and dtype.")


def _pass_inputs(n: dict[str, int], gen: torch.Generator) -> tuple[int, int, int]:
    r = torch.randint(0, 10_000, (3,), generator=gen).tolist()
    samples = 1 + r[0] % n["n"]
    return samples, r[1] % (samples + 1), 1 + r[2] % samples


def _pass_spec(n, c, k):
    from labcore.thinkmorph.evaluate import pass_at_k

    return pass_at_k(n, c, k)


PASS_AT_K = Spec(
    "unbiased pass@k", _pass_spec, _pass_inputs, dims={"n": 20}, outputs=("pass@k",), atol=1e-12, rtol=1e-9,
    trials=12,
    hint="1 - C(n - c, k) / C(n, k) (math.comb): one minus the chance that k draws without replacement from "
         "n samples all miss the c correct ones; it is 1.0 when n - c < k.")


def _score_inputs(n: dict[str, int], gen: torch.Generator) -> tuple:
    from labcore.thinkmorph.tasks import MazeTask

    r = torch.randint(0, 10_000, (4,), generator=gen).tolist()
    task = MazeTask.generate(4 + r[0] % (n["max_size"] - 3), r[1])  # sizes 4..max_size
    moves = list(task.solution())
    if r[2] % 4 == 1:  # walk on past the goal: the episode has already ended
        moves += ["U", "L"]
    elif r[2] % 4 == 2:  # one move changed
        i = r[3] % len(moves)
        moves[i] = "UDLR"[("UDLR".index(moves[i]) + 1 + r[3] % 3) % 4]
    elif r[2] % 4 == 3:  # stop one move short
        moves = moves[:-1]
    return task, moves


def _score_spec(task, moves):
    return task.score(moves)


MAZE_SCORE = Spec(
    "scoring a maze answer by executing it", _score_spec, _score_inputs, dims={"max_size": 6},
    outputs=("correct",), atol=0.0, rtol=0.0, trials=16,
    hint="start at task.start; for each move: stop with True if already at task.goal; an unknown move, leaving "
         "the grid or entering a hole (task.holes[r, c]) is False; U/D/L/R = (-1, 0)/(+1, 0)/(0, -1)/(0, +1); "
         "at the end return whether you stand on task.goal.")
