"""KDA speed: recurrent vs chunkwise (torch) on CPU; on a GPU also the Triton chunk kernel and fla's
chunk_kda when it is installed. `python -m labcore.bench kda` -> build/bench/kda.json + kda.html.
Ratios only (same run, same machine). Discussed in notebooks/02_kda.ipynb, section "How much faster?".

Each CPU row says which gate g it timed (`GATES`): the layer's own gate at init, a trained layer's gate
and a mild one; the chunk form's cost should not depend on it. Forward, and forward + backward (a
training step's share), are timed separately.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from labcore.bench import timeit_interleaved
from labcore.kda import chunk_kda, recurrent_kda
from labcore.kda.gate import init_A_log, init_dt_bias, kda_gate

H, K, V = 4, 64, 64  # heads and head dims of the timed op (B = 1): a small layer


def layer_init_gate(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """What KimiDeltaAttention feeds the op at init: kda_gate(raw, A ~ U(1, 16), dt ~ logU[1e-3, 1e-1])."""
    Hx, Kx = x.shape[-2:]
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):  # the inits draw from the global RNG: leave it as it was
        torch.manual_seed(seed)
        return kda_gate(x, init_A_log(Hx), init_dt_bias(Hx * Kx))


GATES = {  # name -> g from standard-normal raw activations [B, T, H, K]
    "layer_init": layer_init_gate,  # some channels decay by e^-100 and more per 64 tokens
    "trained": lambda x, gen=None: F.logsigmoid(x + 4),  # a trained gate: mostly near 0
    "mild": lambda x, gen=None: -torch.rand(x.shape, generator=gen),  # U(-1, 0)
}


def _inputs(T: int, device: str, gate: str = "trained"):
    gen = torch.Generator().manual_seed(T)
    q = torch.randn(1, T, H, K, generator=gen)
    k = F.normalize(torch.randn(1, T, H, K, generator=gen), dim=-1)
    v = torch.randn(1, T, H, V, generator=gen)
    g = GATES[gate](torch.randn(1, T, H, K, generator=gen), gen)
    beta = torch.rand(1, T, H, generator=gen)
    return [x.to(device) for x in (q, k, v, g, beta)]


def _train_step(fn, args):
    """Forward + backward of fn on fresh leaves (what a training step spends in the op)."""
    def step():
        leaves = [x.detach().requires_grad_() for x in args]
        o, _ = fn(*leaves)
        o.sum().backward()
    return step


def _fla_chunk():
    try:
        from fla.ops.kda import chunk_kda as fla_chunk_kda
    except Exception:  # not installed, or an fla without KDA
        return None
    return fla_chunk_kda


def run(quick: bool = False, threads: int | None = 1) -> dict:
    """Time the forms at T in {512, 1024, 2048, 4096} (quick: the first two). threads: CPU threads for
    the CPU rows (1 by default: small ops on a shared machine time most stably on one; with one thread
    the CPU rows are timed in process CPU time, which other jobs on the machine do not inflate)."""
    cuda = torch.cuda.is_available()
    lengths = (512, 1024) if quick else (512, 1024, 2048, 4096)
    reps = 3 if quick else 7
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        rows = _time_all(lengths, reps, cuda, warmup=0 if quick else 1, clock="process" if threads == 1 else "wall")
    finally:
        torch.set_num_threads(old_threads)
    return _report(rows, threads)


def _time_all(lengths, reps, cuda, warmup: int, clock: str) -> list[dict]:
    rows = []
    for T in lengths:
        for gate in GATES:
            args = _inputs(T, "cpu", gate)
            with torch.no_grad():
                fwd = timeit_interleaved({"recurrent_s": lambda a=args: recurrent_kda(*a),
                                          "chunk_torch_s": lambda a=args: chunk_kda(*a, chunk_size=64,
                                                                                    backend="torch")},
                                         reps=reps, clock=clock)
            # the recurrent backward is ~25x its forward: fewer repeats, one warm-up
            bwd = timeit_interleaved({"recurrent_s": _train_step(recurrent_kda, args),
                                      "chunk_torch_s": _train_step(lambda *a: chunk_kda(*a, backend="torch"), args)},
                                     warmup=warmup, reps=max(1, reps // 3), clock=clock)
            for mode, times in (("fwd", fwd), ("fwd+bwd", bwd)):
                row = {"T": T, "device": "cpu", "gate": gate, "mode": mode, "clock": clock, **times}
                row["chunk_vs_recurrent"] = row["recurrent_s"] / row["chunk_torch_s"]
                rows.append(row)
        if cuda:
            with torch.no_grad():
                args = _inputs(T, "cuda", "layer_init")
                fns = {"chunk_torch_s": lambda a=args: chunk_kda(*a, backend="torch"),
                       "chunk_triton_s": lambda a=args: chunk_kda(*a, backend="triton")}
                fla, fla_error = _fla_chunk(), None
                if fla is not None:
                    try:  # fla's signature or dtype rules may change between releases: report, do not crash
                        fla(*args)
                        fns["fla_s"] = lambda a=args, f=fla: f(*a)
                    except Exception as e:
                        fla, fla_error = None, f"{type(e).__name__}: {e}"[:200]
                row = {"T": T, "device": "cuda", "gate": "layer_init", "mode": "fwd",
                       **timeit_interleaved(fns, warmup=2, reps=reps)}
            if fla_error:
                row["fla_error"] = fla_error
            row["triton_vs_torch"] = row["chunk_torch_s"] / row["chunk_triton_s"]
            if fla is not None:
                row["triton_vs_fla"] = row["fla_s"] / row["chunk_triton_s"]
            rows.append(row)
    return rows


def _report(rows: list[dict], threads: int | None) -> dict:
    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    fig = go.Figure()
    for mode in ("fwd", "fwd+bwd"):
        for gate in GATES:
            sel = [r for r in cpu_rows if r["gate"] == gate and r["mode"] == mode]
            fig.add_bar(x=[str(r["T"]) for r in sel], y=[r["chunk_vs_recurrent"] for r in sel],
                        name=f"CPU {mode}, {gate} gate: chunk (torch) vs recurrent")
    gpu_rows = [r for r in rows if r["device"] == "cuda"]
    if gpu_rows:
        fig.add_bar(x=[str(r["T"]) for r in gpu_rows], y=[r["triton_vs_torch"] for r in gpu_rows],
                    name="GPU: Triton chunk vs torch chunk")
    fig.add_hline(y=5, line_dash="dot", annotation_text="CPU forward target 5x")
    fig.update_layout(barmode="group", title=f"KDA speed-ups (B=1, H={H}, K=V={K})",
                      xaxis_title="sequence length T", yaxis_title="speed-up (x)", yaxis_type="log")
    summary = {"cpu_threads": threads or torch.get_num_threads(),
               "cpu_clock": cpu_rows[0]["clock"] if cpu_rows else None}
    summary |= {f"cpu_chunk_vs_recurrent@{r['T']}/{r['gate']}/{r['mode']}": round(r["chunk_vs_recurrent"], 2)
                for r in cpu_rows}
    summary.update({f"gpu_triton_vs_torch@{r['T']}": round(r["triton_vs_torch"], 2) for r in gpu_rows})
    return {"rows": rows, "figure": fig, "summary": summary}
