# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 6 — ThinkMorph: thinking in words *and* in pictures
#
# **Paper.** Jiawei Gu, Yunzhuo Hao, Huichen Will Wang, Linjie Li, Michael Qizhe Shieh, Yejin Choi, Ranjay
# Krishna, Yu Cheng. *ThinkMorph: Emergent Properties in Multimodal Interleaved Chain-of-Thought Reasoning*,
# arXiv:2510.27492 (Oct 2025).
#
# **The idea.** A unified model (Bagel-7B) that can both read and *draw* images is fine-tuned on ~24k
# reasoning traces in which text and generated images are complementary steps: think in words, draw
# something that moves the problem forward (the path on the maze, the jigsaw pieces moved into place),
# think again, answer. The model emits plain-text markers (`<think>`, `<image_start>`, ...) and, when it
# writes `<image_start>`, generates an image with flow matching and reads it back as context. Trained the
# same way, interleaved traces beat text-only and image-only ones on vision-centric puzzles (Table 2).
#
# **What we build.**
# 1. Three procedural puzzles with exact simulators: a FrozenLake-style maze and a jigsaw (the paper's
#    spatial-navigation and jigsaw tasks), and falling blocks, a *positive control* built so that drawing
#    should pay off.
# 2. Traces for four arms from the same puzzles: direct answer, text chain of thought, visual chain of
#    thought, interleaved.
# 3. One tiny transformer whose sequence mixes text tokens and image patch tokens, trained with text
#    cross-entropy + flow matching on the patches it draws, and a generator that switches modes at the
#    special tokens. We write its attention mask, forward pass and loss from scratch and check them.
# 4. A shared base stage (caption pictures, draw them from words) standing in for the pretrained Bagel, then
#    the four arms fine-tuned from it on equal budgets, on two seeds: the Table-2 analog, the control,
#    image probes, a partial oracle ("how good must the drawing be?"), a coordinate ablation, best-of-N,
#    mode switching, a trace viewer, and the paper-vs-lab table.
#
# **Runtime.** smoke: about a minute (CI; the models learn nothing yet, the numbers are placeholders) ·
# cpu: about 12 minutes on two cores (~1400 s of process time in two one-thread worker processes; measured
# numbers in the closing note) · gpu: about 30 minutes on one modern GPU (estimated, never run: bigger
# model, 3x the steps at 4x the batch, three seeds).

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | cpu | gpu | auto
WORKERS = None  # None keeps the profile's worker processes (cpu: 2); 1 runs every job in this kernel

# %%
import dataclasses

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

from labcore.nn import IGNORE_INDEX
from labcore.report import Claim, all_of, by_construction, judge, not_judged, paper_vs_lab
from labcore.runtime import setup
from labcore.testing import compare
from labcore.thinkmorph import GravityTask, JigsawTask, MazeTask, make_trace, trace_text
from labcore.thinkmorph.config import profile_config
from labcore.thinkmorph.evaluate import EVAL_SEED, PROBES, accuracy, accuracy_by_size, cells_match
from labcore.thinkmorph.experiment import DRAWING_ARMS, run_experiment
from labcore.thinkmorph.generation import stepwise
from labcore.thinkmorph.model import InterleavedTransformer
from labcore.thinkmorph.packing import NOISY, TEXT, attention_mask, attention_mask_naive, collate, pack
from labcore.thinkmorph.tasks import CELL
from labcore.thinkmorph.traces import Image, context
from labcore.thinkmorph.training import thinkmorph_loss
from labcore.widgets.trace_viewer import TraceViewer

prof = setup(PROFILE)
cfg = profile_config(prof)
if WORKERS:
    cfg = dataclasses.replace(cfg, workers=WORKERS)
if cfg.threads:
    torch.set_num_threads(cfg.threads)
print(f"numbers below come from profile={prof.name}; model d={cfg.model.d_model} L={cfg.model.n_layer}; "
      f"{cfg.steps} steps x {cfg.batch_size} traces per arm on {cfg.tasks}, {cfg.control_steps} on the control "
      f"{cfg.control_tasks}; seeds {cfg.seeds}; {cfg.workers} worker process(es)")

# %% [markdown]
# ## The tasks
#
# ThinkMorph's four training tasks are jigsaw assembly, spatial navigation (VSP: FrozenLake mazes), visual
# search and chart refocus. We keep the two whose "visual thought" is easy to render exactly, and add a
# third of our own:
#
# * **Maze.** A `size x size` grid with holes; walk from the green start to the gold goal with `U D L R`.
#   The answer is executed in the simulator: it is right only if it reaches the goal without falling into a
#   hole or leaving the grid. The visual thought is the path painted red.
# * **Jigsaw.** A picture cut into `size x size` one-cell pieces and shuffled. The answer lists, for every
#   target position, which shuffled piece goes there. The visual thought is the assembled picture. The
#   picture is a smooth random field whose colours are drawn afresh for every puzzle, so a piece's colour
#   says nothing about where it belongs: only the *seams* do (every puzzle is kept only if each true
#   neighbour is its seam's clearly best continuation, `labcore.thinkmorph.tasks.seam_costs`).
# * **Falling blocks (the positive control).** Blocks on a grid fall one cell per step when the cell below
#   is empty. The question names a row: how many blocks are in it after three steps? The visual thoughts are
#   the grid after each step. Each picture is a *local edit* of the one before (a cell's next state depends
#   on the cells above and below it), while words must list every block's coordinates again at every
#   step. If drawing cannot beat writing here, nothing in this setup can show it.
#
# Every instance is a pure function of `(size, seed)` and is solvable. One image cell is one patch token.
# We train on 4x4 and 6x6 mazes, 2x2 and 3x3 jigsaws and (at the cpu profile) 4x4 block grids, and hold out
# 5x5 mazes: a size never trained on, but every word its answer needs (coordinates 0..4) was written in
# training.
#
# > Note: the paper's images are 512-pixel photos encoded by a VAE; ours are 4-pixel-per-cell renders fed
# > to the transformer as raw RGB patches (a linear embedding, no VAE). Visual search and chart refocus are
# > left out: they need natural images.

# %%
maze, jig, grav = MazeTask.generate(6, 0), JigsawTask.generate(3, 0), GravityTask.generate(5, 0)
fig = make_subplots(rows=2, cols=4, vertical_spacing=0.12, subplot_titles=(
    "maze", "its visual thought", "jigsaw (shuffled)", "its visual thought",
    f"blocks (row {grav.row} asked)", "after step 1", "after step 2", "after step 3"))
for i, img in enumerate([maze.render(), *maze.visual_thoughts(), jig.render(), *jig.visual_thoughts(),
                         grav.render(), *grav.visual_thoughts()]):
    fig.add_trace(go.Image(z=img), i // 4 + 1, i % 4 + 1)
fig.update_xaxes(visible=False).update_yaxes(visible=False).update_layout(height=480, margin=dict(t=40, b=0))
fig.show()

# %% tags=["nbval-check-output"]
# deterministic: same (size, seed), same puzzle; the simulator accepts the solution and rejects a detour
print("maze start", maze.start, "goal", maze.goal, "solution", "".join(maze.solution()))
print("scores:", maze.score(maze.solution()), maze.score(maze.solution()[:-1]))
print("jigsaw order", jig.solution(), "score", jig.score(jig.solution()))
print("blocks: row", grav.row, "ends with", grav.solution(), "blocks; score", grav.score(grav.solution()))
assert maze.score(maze.solution()) and not maze.score(maze.solution()[:-1]) and jig.score(jig.solution())
assert grav.score(grav.solution()) and not grav.score(grav.solution() + 1)

# %% [markdown]
# > Note: four design choices would decide this chapter's outcome before any training, and each is
# > handled here. (1) *Coordinates for free*: our patches can carry the embeddings of the number words
# > naming their row and column (below). That removes the text arm's grounding problem, which the paper's
# > gap may depend on, so a coordinate ablation reruns the text and interleaved arms without it.
# > (2) A jigsaw whose colours encode each piece's position is solved by a colour lookup, and the picture is
# > redundant: ours is decided by seams. (3) Held-out sizes whose answers need words never emitted in
# > training test the vocabulary, not generalisation: our held-out 5x5 maze sits between trained sizes.
# > (4) If every interleaved training trace draws, "skipping the image" can only appear as a failure: a
# > share of the interleaved arm's training traces (`cfg.text_mix`) are text-only, so the model can learn
# > to switch modes. One choice here does favour pictures, and we name it: a drawn cell sees the 3x3 cells
# > around it in the picture it edits (a convolution, `cfg.model.edit_window`), the locality a picture
# > offers and a list of coordinates does not. It decides nothing where the answer needs a global search
# > (a maze path, a jigsaw), and it is what lets a picture of falling blocks be drawn right at all.
#
# ## Four ways to think
#
# Each trace starts with the same context, `<bos> task size [question] <image_start> [problem] <image_end>`,
# which carries no loss. Then, in the paper's format:
#
# | arm | maze: what the model writes | falling blocks |
# |---|---|---|
# | direct | `<answer> ... </answer>` | `<answer> n </answer>` |
# | text | `<think>` start, goal, then every step in words: the move and the cell it reaches (`R 0 4 D 1 4 ...`) `</think> <answer> ...` | `<think> blocks r c ... step r c ... step ... step ... row q c 1 c 2 </think> <answer> 2 </answer>` |
# | visual | `<image_start> [path drawn] <image_end> <answer> ...` | three pictures, then `<answer>` |
# | interleaved | `<think>` start, goal `</think> <image_start> [path drawn] <image_end> <think>` the steps, read off the picture `</think> <answer> ...` | three pictures, then `<think> row q c 1 c 2 </think> <answer>` |
#
# For the jigsaw the words are, for each shuffled piece, where it belongs (`at 5 7 6 ...`), and the picture
# is the assembled image. For the blocks, the asked row is read off the last grid column by column and
# counted as it is read (`column, count so far`), so the answer is the last count.
#
# In the interleaved arm text and image are *complementary*, the paper's design principle: for the maze
# the words locate the endpoints, the picture carries the route, the second thought transcribes the route
# one cell at a time; for the blocks the pictures carry the falling and the words do the counting. Why step
# by step? A model this small cannot plan a whole path inside one hidden state; written out as "move, then
# the cell it reaches", every next word needs only a look at the current cell's neighbours.
#
# > Note: the paper's traces are written by strong models (and filtered); ours are generated by the
# > simulators, so every trace is correct.

# %%
for arm in ("direct", "text", "visual", "interleaved"):
    print(f"--- {arm}\n{trace_text(make_trace(MazeTask.generate(5, 1), arm))}\n")
print(f"--- text (falling blocks)\n{trace_text(make_trace(GravityTask.generate(4, 1), 'text'))}")

# %% [markdown]
# ## One sequence, two kinds of token
#
# Text tokens are embedded from a table; an image cell (a `[4, 4, 3]` RGB patch in `[-1, 1]`) is embedded by
# one linear map plus a fixed 2-D sin-cos position for its (row, column), and, with `cfg.model.coord_words`,
# plus the embeddings of the *number words* naming its row and column (the column's through a learned
# rotation, so `2 3` and `3 2` differ). All tokens get a 1-D position. One transformer reads the mixed
# sequence; an LM head (tied to the token table) predicts the next text token and a small *flow-matching
# head* draws image patches.
#
# > Why the number words on the patches: the model must learn to see from scratch in a few minutes. With
# > the address of a cell written in the same vectors as the words `2`, `3`, reading "start 2 3" off the
# > green cell, or finding the cell a thought names, is matching equal vectors; with sin-cos positions
# > alone it first has to learn a code book between the two. It is also a gift to the text arm, which is
# > why the ablation below takes it away.
#
# **Drawing an image (flow matching).** For a drawn image with clean patches $x$ and noise
# $\epsilon \sim \mathcal N(0, I)$, at time $t = \sigma(n),\ n \sim \mathcal N(0, 1)$:
# $$x_t = (1 - t)\,x + t\,\epsilon, \qquad \mathcal L_\text{flow} = \lVert v_\theta(x_t, t) - (\epsilon - x)\rVert^2 .$$
# The total loss is $\mathcal L = \mathcal L_\text{CE} + \lambda\,\mathcal L_\text{flow}$ with $\lambda = 1$, as
# in the paper. Three changes that a from-scratch model this small needs (not in the paper):
# each noisy patch also embeds the cells around its own (a `cfg.model.edit_window` square, 3x3: a
# convolution) of the image it *edits*, the latest picture before it (the problem for a first sketch, the
# previous grid for the next step of falling blocks), as image-editing models see the picture they edit
# through a convolutional encoder; the head predicts the clean patch $\hat x$ and $v_\theta = (x_t - \hat x)/t$
# (*x-prediction*, as in JiT, Li & He 2025; the loss is unchanged), because near $t = 1$ a velocity head
# must copy the noise through the whole network; the times are shifted toward noise,
# $t' = a t / (1 + (a - 1) t)$ (Chapter 5's shift, `cfg.model.time_shift`), because the picture is fully
# determined by the context, so the hard, useful part is drawing it from (almost) pure noise. At inference
# the image starts as noise and is integrated from $t = 1$ to $0$ with Euler steps (the sampler from
# Chapter 5, `labcore.rae.flow`).
#
# **The attention mask.** During training a drawn image appears twice, as in Bagel: a *noisy* copy $x_t$
# (it carries the flow loss) followed by a *clean* copy (what everything after it reads, exactly as at
# inference, where the finished image is written back as context). The rules:
# causal everywhere; a position never sees a noisy block other than its own; the patches of one image see
# each other in both directions.

# %%
def my_mask(kind, group):
    """kind, group: [B, T] -> bool [B, T, T], True where query q may read key k."""
    T = kind.shape[1]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))  # k <= q
    public = (kind != NOISY)[:, None, :]  # noisy blocks are private to themselves
    same_image = group[:, :, None] == group[:, None, :]  # an image sees all of itself
    return (causal[None] & public) | same_image


# %% [markdown]
# Attention under that mask, and the whole forward pass, written out (we borrow the labcore model's
# weights and its embedding layer, so the two can be compared number for number):

# %%
def my_attention(attn, x, mask):
    B, T, C = x.shape
    H, D = attn.n_head, attn.head_dim
    q, k, v = attn.qkv(x).view(B, T, 3, H, D).unbind(2)  # [B, T, H, D]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / D ** 0.5  # [B, H, T, T]
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    return attn.proj(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(B, T, C))


def my_forward(model, batch, patches):
    """-> logits [B, T, V] and velocities [B, T, pd] (meaningful at noisy slots)."""
    t = torch.zeros(patches.shape[:2])
    t[batch["kind"] == NOISY] = batch["t"]  # [B, T]: each noisy slot's flow time
    x = model.embed(batch["tokens"], batch["kind"], batch["pos"], batch["row"], batch["col"], patches,
                    batch["t"], batch["cond"])  # [B, T, d]: token or patch embedding + positions
    # (+ at noisy slots: time and the patch of the image it edits)
    mask = my_mask(batch["kind"], batch["group"])
    for blk in model.blocks:
        x = x + my_attention(blk.attn, blk.norm1(x), mask)
        x = x + blk.mlp(blk.norm2(x))
    h = model.norm(x)
    x_hat = model.flow_head(h)  # the head predicts the clean patch ...
    v = (patches - x_hat) / t.clamp_min(0.05)[..., None]  # ... and v = (x_t - x_hat) / t
    return model.lm_head(h), v


# %% [markdown]
# The loss: noise the drawn patches, one forward pass, cross-entropy on the text targets (the next token,
# where it is a trained text token) plus the velocity regression on the noisy slots.

# %%
def my_loss(model, batch):
    noisy = batch["kind"] == NOISY  # [B, T]
    x, eps, t = batch["patches"][noisy], batch["eps"], batch["t"][:, None]  # [P, pd], [P, pd], [P, 1]
    x_t = (1 - t) * x + t * eps  # the interpolation path
    patches = batch["patches"].masked_scatter(noisy[..., None], x_t)
    logits, v = my_forward(model, batch, patches)
    ce = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), ignore_index=IGNORE_INDEX)
    flow = (v[noisy] - (eps - x)).pow(2).mean()  # regress the velocity eps - x
    return ce + model.cfg.flow_weight * flow


# %% [markdown]
# **Check.** Our mask against labcore's and a pair-by-pair loop; our forward pass against labcore's and
# against feeding the trace one token (or one whole image) at a time through the KV cache, the way
# generation does; our loss against labcore's. Two traces: an interleaved maze (one drawn picture) and the
# visual arm's falling blocks (three drawn pictures, each editing the one before).

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
model = InterleavedTransformer(cfg.model).eval()
ok = []
for trace in (make_trace(MazeTask.generate(5, 3), "interleaved"), make_trace(GravityTask.generate(4, 3), "visual")):
    g = torch.Generator().manual_seed(0)
    train_batch = collate([pack(trace, train=True, window=cfg.model.edit_window)], g)  # noisy + clean copies
    infer_batch = collate([pack(trace, train=False)], g)  # clean copy only, as at inference
    kind, group = train_batch["kind"], train_batch["group"]
    ok += [compare("mask vs labcore", my_mask(kind, group), attention_mask(kind, group)),
           compare("mask vs naive", my_mask(kind, group)[0], attention_mask_naive(kind[0].tolist(), group[0].tolist()))]
    with torch.no_grad():
        text = infer_batch["kind"][0] == TEXT
        ours, _ = my_forward(model, infer_batch, infer_batch["patches"])
        ok.append(compare("logits vs labcore", ours, model(infer_batch)[0], atol=1e-5))
        ok.append(compare("logits vs stepwise", ours[0][text], stepwise(model, trace)[0], atol=1e-5))
        noisy = train_batch["kind"] == NOISY
        x_t = torch.randn(int(noisy.sum()), cfg.model.patch_dim, generator=g)
        _, v = my_forward(model, train_batch, train_batch["patches"].masked_scatter(noisy[..., None], x_t))
        ok.append(compare("velocity vs stepwise", v[noisy], stepwise(model, trace, x_t, train_batch["t"])[1], atol=1e-5))
        ok.append(compare("loss vs labcore", my_loss(model, train_batch), thinkmorph_loss(model, train_batch)[0]))
assert all(ok)

# %% [markdown]
# From here on the notebook uses `labcore.thinkmorph` only.
#
# **Generation switches modes at the special tokens.** `labcore.thinkmorph.generation.generate` decodes text
# greedily (or with a temperature) through a KV cache. When the model writes `<image_start>`, it draws the
# whole image block at once: start from noise, run `flow_steps` Euler steps in which the noisy block reads
# the cached prefix and itself, write the clean image into the cache, append `<image_end>`, and go back to
# text. Nothing forces an arm to draw: the model decides by emitting the marker or not.

# %% [markdown]
# ## A base model that starts to see and draw
#
# ThinkMorph does not start from nothing: it fine-tunes Bagel, which can already describe a picture and draw
# one. A model trained from scratch on reasoning traces alone has to learn *to see* at the same time, and
# seeing is where it stalls. Writing `start 2 3` means finding the one green cell among up to 36 and copying
# its coordinates: attention cannot learn where to look until the looked-up value carries the answer, and
# the value cannot learn to carry it while attention looks everywhere, so the loss sits on a plateau first.
#
# So every arm starts from one shared *base* stage per seed, our stand-in for Bagel: the perception steps are
# paid once instead of once per arm, and the comparison stays what the paper's is, fine-tunes of one model.
# It is trained `cfg.base_steps` steps on two generic skills and no reasoning
# (`labcore.thinkmorph.traces.base_trace`), on mazes and block grids:
#
# * **caption**: read a picture out in words: `start r c goal r c hole r c ...`, `blocks r c r c ...`
# * **draw**: paint a picture from those words (flow matching, from zeros: there is no picture to edit).
#
# No path, no step of falling and no jigsaw is ever shown, so whatever the arms learn about *solving* comes
# from their own traces. The base's puzzles come from a seed stream of their own.
#
# ## Training the four arms on equal budgets
#
# Same starting weights (the seed's base), same optimizer, same number of steps and traces per step, *the
# very same puzzles* in every batch (they depend only on the seed and the step). Only the reasoning written
# out differs; the arms without images simply have no flow term. Each arm is trained twice per seed: once on
# the paper's tasks (a 50/50 mix of mazes and jigsaws, `cfg.steps` steps) and once on the falling blocks
# (`cfg.control_steps` steps), so the control's verdict does not hang on how the mixture shares the budget.
# The interleaved arm writes a `cfg.text_mix` share of its traces as text-only ones.
#
# Everything is repeated for each seed in `cfg.seeds` (init and batches; the test puzzles stay the same),
# and a trend counts only when it clears the spread between seeds, as in chapter 2. The coordinate ablation
# reruns the base and the text and interleaved arms with `coord_words` flipped, on `cfg.ablation_seeds` and the
# tasks of `cfg.ablation_mix`.
#
# `run_experiment` runs these jobs in `cfg.workers` processes (one thread each: tiny models run best on one
# core); every job trains its model and then scores it (test sets, probes, partial oracle, best-of-N), and
# the sections below read those results. A job is a pure function of its config, so the numbers do not
# depend on the number of workers.
#
# > Note: the paper fine-tunes a 7B model pretrained on web-scale interleaved data (lr 1e-5, 8k steps); our
# > models have well under a million parameters and their base has seen a few thousand captions and
# > drawings, so the arms still learn most of their seeing and drawing on the job.

# %%
runs = run_experiment(cfg, prof)
mix_of = {**{n: "paper" for n in cfg.tasks}, **{n: "control" for n in cfg.control_tasks}}
all_tasks = cfg.tasks + cfg.control_tasks
arms = cfg.arms
cpu_min = sum(r["cpu_s"] for r in runs.values()) / 60
print(f"{len(runs)} jobs, {cpu_min:.1f} min of process time in {cfg.workers} worker(s) (profile={prof.name})")
for (variant, seed, mix, arm), r in runs.items():
    h = r["history"][-1]
    print(f"{variant:8s} seed {seed} {mix:7s} {arm:12s} loss {h['loss']:.3f} (ce {h['ce']:.3f}, flow {h['flow']:.3f}) "
          f"{r['cpu_s']:.0f}s")
model0 = InterleavedTransformer(cfg.model)
print(f"{model0.num_params() / 1e6:.2f}M parameters per model")

# %%
fig = make_subplots(1, 2, subplot_titles=("paper's tasks (seed 0)", "falling blocks (seed 0)"))
for col, mix in enumerate(("paper", "control"), 1):
    for arm in arms:
        r = runs.get(("main", cfg.seeds[0], mix, arm))
        if r is None:
            continue
        steps = [row["step"] for row in r["history"]]
        fig.add_scatter(x=steps, y=[row["ce"] for row in r["history"]], name=f"{arm} text CE", legendgroup=arm,
                        showlegend=col == 1, row=1, col=col)
        if arm in DRAWING_ARMS:
            fig.add_scatter(x=steps, y=[row["flow"] for row in r["history"]], name=f"{arm} flow", legendgroup=arm,
                            line=dict(dash="dot"), showlegend=col == 1, row=1, col=col)
fig.update_layout(title=f"training losses ({prof.name} profile)", height=350).update_xaxes(title="step").show()

# %% [markdown]
# **What the base learned.** On pictures it never saw: the coordinates after `start`/`goal` (mazes) or the
# first block (grids) read right, whole captions right, and cells right when it paints the picture back from
# the true words. Do not expect a good captioner: the base has started to see, the arms finish the job.

# %%
for seed in cfg.seeds:
    for name, c in runs[("main", seed, "base", "base")]["check"].items():
        what = {"maze": "mazes", "gravity": "block grids"}.get(name, name)
        print(f"seed {seed} base on {c['n']} unseen {c['size']}x{c['size']} {what}: coordinates read right "
              f"{100 * c['coords']:.0f}%, whole caption right {100 * c['exact']:.0f}%, cells drawn right "
              f"{100 * c['cells']:.0f}% (profile={prof.name})")
shown = runs[("main", cfg.seeds[0], "base", "base")]["check"]
fig = make_subplots(1, 2 * len(shown), subplot_titles=[f"{n}: {w}" for n in shown for w in ("truth", "drawn by the base")])
for i, (name, c) in enumerate(shown.items()):
    truth, drawn = c["example"]
    fig.add_trace(go.Image(z=truth), 1, 2 * i + 1)
    if drawn is not None:
        fig.add_trace(go.Image(z=drawn), 1, 2 * i + 2)
fig.update_xaxes(visible=False).update_yaxes(visible=False).update_layout(height=240, margin=dict(t=40, b=0)).show()

# %% [markdown]
# ## Table 2, lab edition
#
# Every model answers the same held-aside puzzles (seeds never used in training), greedily. The answer is
# parsed from `<answer> ... </answer>` and executed in the simulator. Each cell is the mean over seeds, with
# the seeds' range in brackets.

# %%
def per_seed(arm, name, split="in-dist", variant="main", seeds=None):
    """Accuracy of one arm on one test set, one value per seed."""
    return [accuracy(runs[(variant, s, mix_of[name], arm)]["tests"][(name, split)])
            for s in (seeds or (cfg.seeds if variant == "main" else cfg.ablation_seeds))]


def fmt(vals):
    return f"{100 * np.mean(vals):5.1f} [{100 * min(vals):3.0f}, {100 * max(vals):3.0f}]"


cols = [(n, s) for n in all_tasks for s in ("in-dist", "held-out") if (n, s) in runs[("main", cfg.seeds[0], mix_of[n], arms[0])]["tests"]]
n_test = {c: len(runs[("main", cfg.seeds[0], mix_of[c[0]], arms[0])]["tests"][c]) for c in cols}
print(f"accuracy % (profile={prof.name}, mean [min, max] over seeds {cfg.seeds}; puzzles per column: "
      + ", ".join(f"{n} {s} {k}" for (n, s), k in n_test.items()) + ")")
print(f"{'arm':12s}" + "".join(f"{n + ' ' + s:>22s}" for n, s in cols))
for arm in arms:
    print(f"{arm:12s}" + "".join(f"{fmt(per_seed(arm, n, s)):>22s}" for n, s in cols))

# %%
fig = go.Figure()
for arm in arms:
    vals = [per_seed(arm, n, s) for n, s in cols]
    fig.add_bar(name=arm, x=[f"{n} {s}" for n, s in cols], y=[100 * np.mean(v) for v in vals],
                error_y=dict(type="data", symmetric=False, array=[100 * (max(v) - np.mean(v)) for v in vals],
                             arrayminus=[100 * (np.mean(v) - min(v)) for v in vals]))
fig.update_layout(barmode="group", title=f"accuracy per arm (Table-2 analog; bars: seed range; {prof.name})",
                  yaxis_title="accuracy %", height=350).show()
fig = go.Figure()
for arm in arms:
    for name in all_tasks:
        sizes = {}
        for s in cfg.seeds:
            res = [r for key, rs in runs[("main", s, mix_of[name], arm)]["tests"].items() if key[0] == name for r in rs]
            for (_, size), a in accuracy_by_size(res).items():
                sizes.setdefault(size, []).append(a)
        fig.add_scatter(x=sorted(sizes), y=[100 * np.mean(sizes[k]) for k in sorted(sizes)], name=f"{arm} / {name}",
                        mode="lines+markers")
fig.update_layout(title="accuracy vs puzzle size (mazes: 5x5 is held out)", xaxis_title="size",
                  yaxis_title="accuracy %", height=350).show()

# %% [markdown]
# **Are the drawn pictures any good?** Before asking whether the model *uses* its pictures, check what it
# draws on the in-distribution puzzles: the mean squared patch error of every drawn picture against the true
# one (in `[-1, 1]` units), next to the error of simply copying the picture it edits; the share of cells
# whose colour is right (within 40 of 255 on every channel); and the share of traces whose pictures are all
# right in every cell. Then the accuracy split by that last test: how often is the answer right when the
# drawing was right, and when it was not?

# %%
def image_quality(results):
    mse, copy, cells = [], [], []
    for r in results:
        drawn = [s.pixels for s in r.segments if isinstance(s, Image)]
        truth = r.task.visual_thoughts()
        sources = [r.task.render(), *truth[:-1]]  # what each picture edits
        for k, d in enumerate(drawn[:len(truth)]):
            g, t, src = (x.astype(float) / 127.5 - 1 for x in (d, truth[k], sources[k]))
            mse.append(((g - t) ** 2).mean())
            copy.append(((src - t) ** 2).mean())
            cells.append(cells_match(d, truth[k]).mean())
    right = [r.drawn_right for r in results if r.drawn_right is not None]
    return len(right), *(float(np.mean(v)) if v else float("nan") for v in (mse, copy, cells, right))


cross = {}  # (arm, task) -> {drawn right?: [correct, ...]} over seeds
for arm in [a for a in arms if a in DRAWING_ARMS]:
    for name in all_tasks:
        res = [r for s in cfg.seeds for r in runs[("main", s, mix_of[name], arm)]["tests"][(name, "in-dist")]]
        n, mse, copy, cells, whole = image_quality(res)
        cross[(arm, name)] = {ok: [r.correct for r in res if r.drawn_right is ok] for ok in (True, False)}
        acc_ok, acc_bad = (100 * np.mean(v) if v else float("nan") for v in cross[(arm, name)].values())
        print(f"{arm:12s} {name:8s} drew {n:3d}  patch MSE {mse:.3f} (copying: {copy:.3f})  cells right "
              f"{100 * cells:4.0f}%  all pictures right {100 * whole:4.0f}%  | accuracy when the drawing was "
              f"right {acc_ok:5.1f}% (n={len(cross[(arm, name)][True])}), when not {acc_bad:5.1f}% "
              f"(n={len(cross[(arm, name)][False])})")

# %% [markdown]
# ## Does the picture matter?
#
# If the drawn image carries the reasoning, the answer should depend on it. We rerun the image-drawing arms
# with every drawn image replaced, after it is sampled and before the model reads it, by a flat grey
# picture (*blank*) or by the matching sketch of a different puzzle of the same size (*wrong*).
#
# A fourth run swaps in the *true* sketch of the puzzle itself: an oracle drawer. It splits a low score into
# its two causes, "cannot draw the thought" (the true picture helps a lot) and "cannot use it" (it does not).

# %%
def probe_seeds(arm, probe, name):
    return [accuracy(runs[("main", s, mix_of[name], arm)]["probes"][(probe, name)]) for s in cfg.seeds]


for arm in [a for a in arms if a in DRAWING_ARMS]:
    for name in all_tasks:
        print(f"{arm:12s} {name:8s} " + "  ".join(f"{p} {100 * np.mean(probe_seeds(arm, p, name)):5.1f}%" for p in PROBES)
              + f"  (mean of {len(cfg.seeds)} seeds, {len(runs[('main', cfg.seeds[0], mix_of[name], arm)]['probes'][('none', name)])} puzzles)")

# %% [markdown]
# ## How good must the drawing be?
#
# The *partial oracle* repairs a fraction of each drawn picture: a random share of its cells is replaced by
# the true cells, the rest stays as the model drew it (0 = the model's own pictures, 1 = the true sketch).
# Where the curve crosses the text arm's accuracy on the same puzzles is how good the drawing must be for
# thinking in pictures to pay off at this scale.
#
# > Note: we repair cells, not whole pictures. Replacing a fraction $p$ of whole pictures would give, for a
# > one-picture trace, exactly $(1 - p)\,\text{acc}_\text{drawn} + p\,\text{acc}_\text{true}$ in expectation:
# > a straight line whose two ends the probes above already measure.

# %%
def curve(arm, name):
    """[(fraction of cells repaired, accuracy per seed)] from 0 (as drawn) to 1 (the true picture)."""
    pts = [(0.0, probe_seeds(arm, "none", name))]
    pts += [(f, [accuracy(runs[("main", s, mix_of[name], arm)]["oracle"][(f, name)]) for s in cfg.seeds])
            for f in cfg.oracle_fixes]
    return pts + [(1.0, probe_seeds(arm, "true", name))]


def text_line(name):
    """The text arm's accuracy on the probe puzzles (the first probe_per_size test puzzles of each size)."""
    return [accuracy([r for r in runs[("main", s, mix_of[name], "text")]["tests"][(name, "in-dist")]
                      if r.task.seed - EVAL_SEED < cfg.probe_per_size]) for s in cfg.seeds]


fig = make_subplots(1, len(all_tasks), subplot_titles=all_tasks)
crossing = {}
for i, name in enumerate(all_tasks, 1):
    for arm in [a for a in arms if a in DRAWING_ARMS]:
        pts = curve(arm, name)
        fig.add_scatter(x=[f for f, _ in pts], y=[100 * np.mean(a) for _, a in pts], name=arm, legendgroup=arm,
                        showlegend=i == 1, mode="lines+markers", row=1, col=i)
        above = [f for f, a in pts if np.mean(a) > 0 and np.mean(a) >= np.mean(text_line(name))]
        crossing[(arm, name)] = above[0] if above else None
    if "text" in arms:
        fig.add_hline(y=100 * np.mean(text_line(name)), line_dash="dash", annotation_text="text arm", row=1, col=i)
fig.update_layout(title=f"partial oracle: accuracy vs share of drawn cells repaired ({prof.name}, mean of seeds)",
                  height=350).update_xaxes(title="cells repaired").update_yaxes(title="accuracy %", col=1).show()
for (arm, name), f in crossing.items():
    print(f"{arm:12s} {name:8s} vs the text arm's {100 * np.mean(text_line(name)):.1f}%: "
          + ("never reached, not even with the true picture" if f is None else "above it as drawn" if f == 0
             else f"reached with {100 * f:.0f}% of the drawn cells repaired"))

# %% [markdown]
# ## Coordinates for free?
#
# The ablation reruns the base and the text and interleaved arms with `coord_words` flipped, on the tasks of
# `cfg.ablation_mix` (at the cpu profile the falling blocks: the tasks the arms learn, so an effect can
# show). If the number-word coordinates on the patches mostly spare the *text* arm its grounding problem,
# taking them away should cost the text arm more than the interleaved arm.

# %%
ablated = f"coord_words={not cfg.model.coord_words}"
abl_tasks = cfg.mix_tasks(cfg.ablation_mix)
for name in abl_tasks:
    for arm in cfg.ablation_arms:
        main = per_seed(arm, name, seeds=cfg.ablation_seeds)
        abl = per_seed(arm, name, variant="ablation")
        print(f"{name:8s} {arm:12s} coord_words={cfg.model.coord_words}: {fmt(main)}   {ablated}: {fmt(abl)}   "
              f"(seeds {cfg.ablation_seeds})")

# %% [markdown]
# ## Best of N
#
# The paper finds that sampling several interleaved traces and keeping the best scales better than
# sampling several text-only ones, because text-image traces are more diverse. We sample `N` traces per
# puzzle at temperature `cfg.temperature` (text tokens and image noise both random) and count a puzzle
# solved if any of `k <= N` traces executes correctly (the unbiased pass@k estimate).
#
# > Note: here the verifier is the simulator (an oracle); the paper selects among samples without one.

# %%
def bon(arm, mix, seed):
    return runs[("main", seed, mix, arm)]["bon"]


fig = make_subplots(1, 2, subplot_titles=("paper's tasks", "falling blocks"))
for col, mix in enumerate(("paper", "control"), 1):
    for arm in arms:
        c = [bon(arm, mix, s) for s in cfg.seeds]
        fig.add_scatter(x=c[0]["k"], y=[100 * np.mean(a) for a in zip(*[x["acc"] for x in c], strict=True)],
                        name=arm, legendgroup=arm, showlegend=col == 1, mode="lines+markers", row=1, col=col)
        print(f"{mix:7s} {arm:12s} N=1 {100 * np.mean([x['acc'][0] for x in c]):5.1f}%  "
              f"N={c[0]['k'][-1]} {100 * np.mean([x['acc'][-1] for x in c]):5.1f}%")
fig.update_layout(title=f"best-of-N accuracy ({prof.name}, mean of seeds)", height=350)
fig.update_xaxes(title="N", type="log").update_yaxes(title="accuracy %", col=1).show()

# %% [markdown]
# ## Mode switching
#
# ThinkMorph skips the image in 5.3% of cases, and those cases are more accurate than its interleaved ones.
# Our interleaved arm saw `cfg.text_mix` of its training traces without a picture, so skipping is something
# it *can* do; whether it skips where that pays is what we measure, on its best-of-N samples (temperature 1)
# and on its greedy answers.

# %%
skip = {}
for mix in ("paper", "control"):
    for s in cfg.seeds:
        samples = bon("interleaved", mix, s)["samples"]
        greedy = [r for key, rs in runs[("main", s, mix, "interleaved")]["tests"].items() if key[1] == "in-dist" for r in rs]
        skip[(mix, s)] = {"rate": np.mean([not d for d, _ in samples]),
                          "acc_skip": np.mean([c for d, c in samples if not d]) if any(not d for d, _ in samples) else float("nan"),
                          "acc_draw": np.mean([c for d, c in samples if d]) if any(d for d, _ in samples) else float("nan"),
                          "greedy_rate": np.mean([not r.drew_image for r in greedy])}
        k = skip[(mix, s)]
        print(f"{mix:7s} seed {s}: sampled traces without a picture {100 * k['rate']:4.1f}% (accuracy "
              f"{100 * k['acc_skip']:5.1f}% vs {100 * k['acc_draw']:5.1f}% with one); greedy {100 * k['greedy_rate']:4.1f}%")

# %% [markdown]
# ## Reading the traces
#
# Step through what each arm generated for one held-aside maze (and the interleaved arm for one grid of
# falling blocks): the problem, the latest image the model drew, and its words so far. Each arm's *gold*
# trace (what it was trained to write for this puzzle) is listed too; a generation that stopped before
# writing anything (possible at the smoke profile) is left out.

# %%
shown = {}
for arm in sorted(arms, key=lambda a: a != "interleaved"):  # the interleaved arm first
    res = runs[("main", cfg.seeds[0], "paper", arm)]["tests"][("maze", "in-dist")][0]
    if res.segments:
        shown[f"{arm}: generated"] = context(res.task) + res.segments
    shown[f"{arm}: gold"] = make_trace(res.task, arm)
if "interleaved" in arms and cfg.control_tasks:
    name = cfg.control_tasks[0]
    res = runs[("main", cfg.seeds[0], "control", "interleaved")]["tests"][(name, "in-dist")][0]
    if res.segments:
        shown[f"interleaved ({name}): generated"] = context(res.task) + res.segments
    shown[f"interleaved ({name}): gold"] = make_trace(res.task, "interleaved")
viewer = TraceViewer(shown, title=f"one maze, every arm; one grid of falling blocks (profile={prof.name})")
viewer

# %% [markdown]
# ## Paper vs lab
#
# Our numbers come from this run. Every row is judged by `labcore.report.judge`, the rule all chapters
# share: per-seed results, and a claim holds only when every seed of one side beats every seed of the other
# by more than a stated margin. The seeds share their test puzzles, so the seed spread does not show the
# noise of which puzzles were drawn; the margin adds it: one binomial standard error of the difference of
# two accuracies on the same $n$ puzzles at their pooled rate $\bar p$, $\sqrt{2\bar p(1-\bar p)/n}$. A
# comparison where neither side solves a single puzzle is n/a: the models have not learned that task and
# the trend cannot show. Rows marked "(lab)" are our controls, not claims of the paper.

# %%
def pct(vals):
    return f"{100 * np.mean(vals):.1f}%"


def noise(a, b, n):
    """One binomial standard error of the difference of two accuracies on the same n puzzles (pooled rate)."""
    p = (np.mean(a) + np.mean(b)) / 2
    return float(np.sqrt(2 * p * (1 - p) / n))


def beats(a, b, n, kind="beats", min_seeds=2):
    """judge "a beats (matches) b" per seed, margin one binomial standard error; n/a if nothing is solved."""
    if max(a) == max(b) == 0:
        return not_judged("neither side solves a single puzzle")
    return judge(a, b, margin=noise(a, b, n), profile=prof.name, kind=kind, min_seeds=min_seeds)


def seed_mean(*per_task):
    """Mean over tasks, one value per seed."""
    return [float(np.mean(v)) for v in zip(*per_task, strict=True)]


acc_paper = {a: seed_mean(*(per_seed(a, n) for n in cfg.tasks)) for a in arms}
n_paper = sum(n_test[(n, "in-dist")] for n in cfg.tasks)
v_text = beats(acc_paper["interleaved"], acc_paper["text"], n_paper)
v_visual = beats(acc_paper["interleaved"], acc_paper["visual"], n_paper)
rows = [Claim("interleaved beats text-only and visual-only (mean of the paper's tasks)",
              "+5.33 points on average (Table 2)",
              f"{' + '.join(cfg.tasks)}: interleaved {pct(acc_paper['interleaved'])} vs text {pct(acc_paper['text'])}, "
              f"visual {pct(acc_paper['visual'])} (mean of {len(cfg.seeds)} seeds)",
              all_of({"vs text": v_text, "vs visual": v_visual}), central=True)]
acc = {(a, n): per_seed(a, n) for a in arms for n in all_tasks}
n_in = {n: n_test[(n, "in-dist")] for n in all_tasks}
rows.append(Claim("spatial navigation: interleaved > text-only", "VSP 86.67 vs 49.17",
                  f"maze {pct(acc[('interleaved', 'maze')])} vs {pct(acc[('text', 'maze')])}",
                  beats(acc[("interleaved", "maze")], acc[("text", "maze")], n_in["maze"])))
rows.append(Claim("spatial navigation: interleaved at least matches visual-only", "VSP 86.67 vs 85.50",
                  f"maze {pct(acc[('interleaved', 'maze')])} vs {pct(acc[('visual', 'maze')])}",
                  beats(acc[("interleaved", "maze")], acc[("visual", "maze")], n_in["maze"], kind="matches")))
rows.append(Claim("jigsaw: interleaved > visual-only and > text-only", "VisPuzzle 73.75 vs 61.25 / 63.50",
                  f"jigsaw {pct(acc[('interleaved', 'jigsaw')])} vs visual {pct(acc[('visual', 'jigsaw')])}, "
                  f"text {pct(acc[('text', 'jigsaw')])}",
                  all_of({"vs visual": beats(acc[("interleaved", "jigsaw")], acc[("visual", "jigsaw")], n_in["jigsaw"]),
                          "vs text": beats(acc[("interleaved", "jigsaw")], acc[("text", "jigsaw")], n_in["jigsaw"])})))
rows.append(Claim("interleaved reasoning >> no reasoning (paper: vs the base model)", "+34.7 points on average",
                  f"{pct(acc_paper['interleaved'])} vs direct {pct(acc_paper['direct'])}",
                  beats(acc_paper["interleaved"], acc_paper["direct"], n_paper)))
ctrl = cfg.control_tasks[0] if cfg.control_tasks else None
if ctrl:
    rows.append(Claim("(lab) positive control: where each picture is a local edit, interleaved beats text-only "
                      "and visual-only", "the mechanism Table 2 credits",
                      f"{ctrl}: interleaved {pct(acc[('interleaved', ctrl)])} vs text {pct(acc[('text', ctrl)])}, "
                      f"visual {pct(acc[('visual', ctrl)])}, direct {pct(acc[('direct', ctrl)])}",
                      all_of({"vs text": beats(acc[("interleaved", ctrl)], acc[("text", ctrl)], n_in[ctrl]),
                              "vs visual": beats(acc[("interleaved", ctrl)], acc[("visual", ctrl)], n_in[ctrl])})))
# the picture carries the reasoning: the unprobed interleaved arm beats its worst probe, mean over every task
n_probe = sum(len(runs[("main", cfg.seeds[0], mix_of[n], "interleaved")]["probes"][("none", n)]) for n in all_tasks)
unprobed = seed_mean(*(probe_seeds("interleaved", "none", n) for n in all_tasks))
worst = [max(b, w) for b, w in zip(seed_mean(*(probe_seeds("interleaved", "blank", n) for n in all_tasks)),
                                   seed_mean(*(probe_seeds("interleaved", "wrong", n) for n in all_tasks)), strict=True)]
rows.append(Claim("the drawn image carries the reasoning (blank / wrong image hurts)", "qualitative",
                  f"interleaved, mean of {', '.join(all_tasks)}: {pct(unprobed)} -> worst probe {pct(worst)}; "
                  + "; ".join(f"{n} {pct(probe_seeds('interleaved', 'none', n))} -> blank "
                              f"{pct(probe_seeds('interleaved', 'blank', n))} / wrong {pct(probe_seeds('interleaved', 'wrong', n))}"
                              for n in all_tasks),
                  beats(unprobed, worst, n_probe)))
true_paper = seed_mean(*(probe_seeds("interleaved", "true", n) for n in cfg.tasks))
text_paper = seed_mean(*(text_line(n) for n in cfg.tasks))
n_probe_paper = sum(len(runs[("main", cfg.seeds[0], "paper", "interleaved")]["probes"][("none", n)]) for n in cfg.tasks)
rows.append(Claim("(lab) drawing is the bottleneck: with the true picture the interleaved arm beats the text arm",
                  "n/a (not in the paper)",
                  f"paper's tasks: true picture {pct(true_paper)}, own {pct(seed_mean(*(probe_seeds('interleaved', 'none', n) for n in cfg.tasks)))}"
                  f" vs text {pct(text_paper)}",
                  beats(true_paper, text_paper, n_probe_paper)))
drop = {}
if cfg.ablation_arms:
    with_coords = {a: seed_mean(*(per_seed(a, n, seeds=cfg.ablation_seeds) for n in abl_tasks)) for a in cfg.ablation_arms}
    without = {a: seed_mean(*(per_seed(a, n, variant="ablation") for n in abl_tasks)) for a in cfg.ablation_arms}
    drop = {a: [m - b for m, b in zip(with_coords[a], without[a], strict=True)] for a in cfg.ablation_arms}
    if {"text", "interleaved"} <= set(drop):
        # each change is a difference of two accuracies on n puzzles, so their difference has twice the variance
        p_all = np.mean([np.mean(v) for v in (*with_coords.values(), *without.values())])
        n_abl = sum(n_in[n] for n in abl_tasks)
        rows.append(Claim(f"(lab) coordinates for free help the text arm more than the interleaved arm "
                          f"(coord_words={cfg.model.coord_words} -> {not cfg.model.coord_words})", "n/a (not in the paper)",
                          f"accuracy change without them on {', '.join(abl_tasks)}: text {-100 * np.mean(drop['text']):+.1f}, "
                          f"interleaved {-100 * np.mean(drop['interleaved']):+.1f} points (seeds {cfg.ablation_seeds})",
                          judge(drop["text"], drop["interleaved"], margin=float(np.sqrt(4 * p_all * (1 - p_all) / n_abl)),
                                profile=prof.name, min_seeds=1)))
held = [(n, "held-out") for n in cfg.tasks if (n, "held-out") in n_test]
if held:
    hi, ht = (seed_mean(*(per_seed(a, n, s) for n, s in held)) for a in ("interleaved", "text"))
    rows.append(Claim("generalises beyond training (paper: out-of-domain benchmarks)", "matches larger VLMs",
                      "held-out sizes (" + ", ".join(n for n, _ in held) + f"): interleaved {pct(hi)} vs text {pct(ht)}",
                      beats(hi, ht, sum(n_test[k] for k in held))))
gain = {a: [bon(a, "paper", s)["acc"][-1] - bon(a, "paper", s)["acc"][0] for s in cfg.seeds] for a in arms}
other = max((a for a in arms if a != "interleaved"), key=lambda a: np.mean(gain[a]))
n_bon = len(bon("interleaved", "paper", cfg.seeds[0])["samples"]) // cfg.best_of_n
rows.append(Claim(f"best-of-N gains more for interleaved (N=1 -> {cfg.best_of_n})", "+8.0 on BLINK-J",
                  f"paper's tasks: +{100 * np.mean(gain['interleaved']):.1f} vs best other ({other}) "
                  f"+{100 * np.mean(gain[other]):.1f} points",
                  not_judged("no arm gains") if max(max(v) for v in gain.values()) == 0
                  else judge(gain["interleaved"], gain[other], margin=noise([0.5], [0.5], n_bon), profile=prof.name)))
skip_paper = [skip[("paper", s)] for s in cfg.seeds]
rows.append(Claim("autonomous mode switching: some traces skip the image", "5.3% of cases",
                  f"{100 * np.mean([k['rate'] for k in skip_paper]):.1f}% of sampled, "
                  f"{100 * np.mean([k['greedy_rate'] for k in skip_paper]):.1f}% of greedy traces",
                  by_construction(f"the interleaved arm trained on {100 * cfg.text_mix:.0f}% text-only traces")))
has_both = all(np.isfinite(k["acc_skip"]) and np.isfinite(k["acc_draw"]) for k in skip_paper)
n_skip = min(sum(not d for d, _ in bon("interleaved", "paper", s)["samples"]) for s in cfg.seeds)
rows.append(Claim("traces that skip the image are more accurate", "+7.29 points",
                  f"paper's tasks, sampled: {100 * np.mean([k['acc_skip'] for k in skip_paper]):.1f}% without vs "
                  f"{100 * np.mean([k['acc_draw'] for k in skip_paper]):.1f}% with a picture",
                  judge([k["acc_skip"] for k in skip_paper], [k["acc_draw"] for k in skip_paper],
                        margin=noise([0.5], [0.5], max(n_skip, 1)), profile=prof.name) if has_both
                  else not_judged("some seed's samples never (or always) skip")))
rows.append(Claim("equal budgets", "same data and steps per mode",
                  f"every arm: the same puzzles, {cfg.steps} steps x {cfg.batch_size} traces ({cfg.control_steps} on the control)",
                  by_construction("the batches depend only on the seed and the step")))
table = paper_vs_lab(rows, prof.name, "06_thinkmorph")

# %% [markdown]
# > Simplifications, all named above: procedural 4-pixel-cell renders instead of photos and no VAE; two of
# > the four task families, plus our control; simulator-written traces; a tiny model trained from scratch
# > (after a small base stage) instead of a fine-tuned 7B unified model; an oracle verifier for best-of-N;
# > greedy decoding for the main table.
#
# **What this run shows** (computed from the numbers above):

# %%
def outcome(claim_start):
    return next(r.verdict.outcome for r in rows if r.claim.startswith(claim_start))


g = {a: np.mean(acc[(a, ctrl)]) for a in arms} if ctrl else {}
quality = {(a, n): image_quality([r for s in cfg.seeds for r in runs[("main", s, mix_of[n], a)]["tests"][(n, "in-dist")]])
           for a in DRAWING_ARMS if a in arms for n in all_tasks}
notes = [f"*Profile `{prof.name}`, seeds {cfg.seeds}, {cpu_min:.1f} min of process time in {cfg.workers} worker(s).*", ""]
if ctrl:
    notes.append(
        f"- **The positive control {outcome('(lab) positive control')}.** On {ctrl}, where each picture is a local "
        f"edit of the last, the interleaved arm answers {100 * g['interleaved']:.1f}% against text "
        f"{100 * g['text']:.1f}%, visual {100 * g['visual']:.1f}% and direct {100 * g['direct']:.1f}%. Its pictures "
        f"are right in every cell in {100 * quality[('interleaved', ctrl)][4]:.0f}% of traces "
        f"(cells right: {100 * quality[('interleaved', ctrl)][3]:.0f}%); with the true pictures it reaches "
        f"{pct(probe_seeds('interleaved', 'true', ctrl))}, with blank ones {pct(probe_seeds('interleaved', 'blank', ctrl))}.")
    # how close the call against text was: the closest pair of seeds against the margin the judge used
    closest = min(a - b for a in acc[("interleaved", ctrl)] for b in acc[("text", ctrl)])
    margin = noise(acc[("interleaved", ctrl)], acc[("text", ctrl)], n_in[ctrl])
    notes.append(
        f"  Per seed, interleaved {', '.join(pct([a]) for a in acc[('interleaved', ctrl)])} vs text "
        f"{', '.join(pct([b]) for b in acc[('text', ctrl)])}: the closest pair of seeds is {100 * closest:+.1f} points "
        f"apart against a margin of {100 * margin:.1f}"
        + (f". A narrow call: the text arm's seeds lie {100 * np.ptp(acc[('text', ctrl)]):.1f} points apart, so "
           "another seed could flip it." if abs(closest - margin) < margin else "."))
notes.append(
    f"- **The paper's headline {rows[0].verdict.outcome}** at this scale: on {' and '.join(cfg.tasks)} the "
    f"interleaved arm answers {pct(acc_paper['interleaved'])}, text {pct(acc_paper['text'])}, visual "
    f"{pct(acc_paper['visual'])}, direct {pct(acc_paper['direct'])} (mazes: "
    + ", ".join(f"{a} {pct(acc[(a, 'maze')])}" for a in arms) + "; jigsaws: "
    + ", ".join(f"{a} {pct(acc[(a, 'jigsaw')])}" for a in arms) + ").")
own_maze, true_maze = probe_seeds("interleaved", "none", "maze"), probe_seeds("interleaved", "true", "maze")
bottleneck = beats(true_maze, own_maze, len(runs[("main", cfg.seeds[0], "paper", "interleaved")]["probes"][("none", "maze")]))
notes.append(
    f"- **Drawing the maze path.** The interleaved arm's paths are right in every cell in "
    f"{100 * quality[('interleaved', 'maze')][4]:.0f}% of traces (patch error {quality[('interleaved', 'maze')][1]:.3f} "
    f"vs {quality[('interleaved', 'maze')][2]:.3f} for copying the problem), its jigsaws in "
    f"{100 * quality[('interleaved', 'jigsaw')][4]:.0f}%. Swapping in the true path moves its maze accuracy from "
    f"{pct(own_maze)} to {pct(true_maze)} (text arm on the same mazes: {pct(text_line('maze'))}): "
    + ("the drawing is a bottleneck" if bottleneck.outcome == "holds" else "not beyond the margin")
    + "; the " + ("partial oracle never reaches the text arm's line." if crossing.get(("interleaved", "maze")) is None
                  else "own drawings are already at or above the text arm's line." if crossing[("interleaved", "maze")] == 0
                  else f"partial oracle reaches the text arm's line with {100 * crossing[('interleaved', 'maze')]:.0f}% "
                       "of the drawn cells repaired.")
    + " Drawing a maze path or an assembled jigsaw is the whole search, done in one image generation; a picture of "
      "falling blocks is one local edit of the last.")
if {"text", "interleaved"} <= set(drop):
    notes.append(
        f"- **Coordinates for free:** with `coord_words={not cfg.model.coord_words}` the text arm's accuracy changes by "
        f"{-100 * np.mean(drop['text']):+.1f} and the interleaved arm's by {-100 * np.mean(drop['interleaved']):+.1f} "
        f"points on {', '.join(abl_tasks)} (seeds {cfg.ablation_seeds}; verdict: {outcome('(lab) coordinates')}).")
if held:
    notes.append(f"- **Held-out 5x5 mazes** (every word seen in training): interleaved {pct(hi)}, text {pct(ht)}.")
notes.append(
    f"- **Mode switching:** trained on {100 * cfg.text_mix:.0f}% text-only traces, the interleaved arm skips the "
    f"picture in {100 * np.mean([k['rate'] for k in skip_paper]):.1f}% of sampled traces and "
    f"{100 * np.mean([k['greedy_rate'] for k in skip_paper]):.1f}% of greedy ones; skipped traces score "
    f"{100 * np.nanmean([k['acc_skip'] for k in skip_paper]):.1f}% vs {100 * np.nanmean([k['acc_draw'] for k in skip_paper]):.1f}% "
    f"(verdict: {outcome('traces that skip')}).")
held_rows = sum(r.verdict.outcome == "holds" for r in rows if not r.claim.startswith("(lab)") and r.verdict.outcome != "by construction")
judged = sum(r.verdict.outcome in ("holds", "does not hold") for r in rows if not r.claim.startswith("(lab)"))
notes.append(f"- Of the paper's rows judged in this run, {held_rows} of {judged} hold.")
display(Markdown("\n".join(notes)))

# %% [markdown]
# ## Exercises
#
# Three checked exercises. Finish each stub (the cell that ends in `# Finish me!`), then run the check cell
# after it: `check` gives your function and labcore's own implementation the same random inputs (sizes in the
# printout) and prints yours, the expected values and their difference against a stated tolerance, with a
# hint, until it says `PASS`. A failed check only reports, it never stops the notebook.
#
# 1. **Scoring an answer by executing it.** Write `my_score(task, moves)` for a maze: walk the moves from
#    `task.start`; reaching `task.goal` ends the episode (later moves do not count); an unknown move, a step
#    off the grid or into a hole fails. Checked exactly against `MazeTask.score` on 16 random answers (right,
#    one move changed, one short, walking on past the goal).

# %% tags=["exercise-setup"]
from math import comb  # noqa: E402

import torch  # noqa: E402

from labcore.exercises import MAZE_SCORE, PASS_AT_K, WRONG_PROBE, check  # noqa: E402
from labcore.thinkmorph.patches import image_to_patches  # noqa: E402


# %% tags=["exercise-stub"]
def my_score(task, moves):
    """MazeTask, list of 'U'/'D'/'L'/'R' -> True when the moves reach the goal safely."""
    step = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
    # Finish me!
    return None


# %% tags=["solution"]
def my_score(task, moves):
    """MazeTask, list of 'U'/'D'/'L'/'R' -> True when the moves reach the goal safely."""
    step = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
    r, c = task.start
    for m in moves:
        if (r, c) == task.goal:
            return True  # the episode already ended
        if m not in step:
            return False
        r, c = r + step[m][0], c + step[m][1]
        if not (0 <= r < task.size and 0 <= c < task.size) or task.holes[r, c]:
            return False
    return (r, c) == task.goal


# %% tags=["exercise-check"]
check(my_score, MAZE_SCORE)

# %% [markdown]
# 2. **The "wrong picture" probe** (section "Does the picture matter?"). Write `my_wrong_picture(tasks, rows, x)`:
#    what the probe writes in place of the images the model drew for `rows`: for each, the correct sketch of
#    *another* puzzle of the same kind and size, `type(t).generate(t.size, t.seed + 7919)`, as patches.
#    Checked exactly against `labcore.thinkmorph.evaluate.wrong_hook`.

# %% tags=["exercise-stub"]
def my_wrong_picture(tasks, rows, x):
    """tasks, rows [n] indices into tasks, x [n, P, patch_dim] the drawn images -> [n, P, patch_dim]."""
    # Finish me! (image_to_patches turns a task's visual_thoughts()[0] into [P, patch_dim])
    return None


# %% tags=["solution"]
def my_wrong_picture(tasks, rows, x):
    """tasks, rows [n] indices into tasks, x [n, P, patch_dim] the drawn images -> [n, P, patch_dim]."""
    others = [type(tasks[r]).generate(tasks[r].size, tasks[r].seed + 7919) for r in rows.tolist()]
    return torch.stack([image_to_patches(o.visual_thoughts()[0]) for o in others]).to(x.device, x.dtype)


# %% tags=["exercise-check"]
check(my_wrong_picture, WRONG_PROBE)

# %% [markdown]
# 3. **pass@k without bias** (section "Best of N"). From $n$ sampled answers of which $c$ are correct, write
#    `my_pass_at_k(n, c, k)`: the probability that at least one of $k$ answers drawn without replacement is
#    correct. Checked against `labcore.thinkmorph.evaluate.pass_at_k` to 1e-9 relative on 12 random (n, c, k).

# %% tags=["exercise-stub"]
def my_pass_at_k(n, c, k):
    """ints, 0 <= c <= n, 1 <= k <= n -> P(at least one of k draws is correct), a float."""
    # Finish me!
    return None


# %% tags=["solution"]
def my_pass_at_k(n, c, k):
    """ints, 0 <= c <= n, 1 <= k <= n -> P(at least one of k draws is correct), a float."""
    return 1.0 - comb(n - c, k) / comb(n, k)  # comb is 0 when n - c < k: some draw must hit


# %% tags=["exercise-check"]
check(my_pass_at_k, PASS_AT_K)

# %% [markdown]
# **Open exercises** (no checker: they ask for an experiment):

# %% tags=["exercise"]
# 4. Make the interleaved arm's text and image *isomorphic* instead of complementary: put the full path in
#    words inside the first <think> as well (copy the text arm's thought into labcore.thinkmorph.traces).
#    The paper argues this helps less. Does accuracy or the probe drop change?
# 5. Run the probes on the text arm: if it never draws, they cannot change anything. How often does the
#    text arm emit <image_start> on its own?
if "text" in arms:
    print("text-arm traces that drew an image:",
          sum(r.drew_image for r in runs[("main", cfg.seeds[0], "paper", "text")]["tests"][("maze", "in-dist")]))

# %% tags=["exercise"]
# 6. Flow steps: load the interleaved arm's weights (runs[("main", 0, "control", "interleaved")]["state"]) into
#    InterleavedTransformer(dataclasses.replace(cfg.model, flow_steps=k)) for k = 1, 2, 16 and re-run
#    labcore.thinkmorph.evaluate.solve on the falling blocks. How few Euler steps still give readable grids?
# 7. Make the control harder: GravityTask.generate(size, seed, steps=4) on 5x5 grids (a fourth picture, a
#    fourth list of blocks). Which arm loses most? Then make it easier for words: ask about the bottom row
#    only. Does the interleaved arm's lead survive?
