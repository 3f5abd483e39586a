"""Chapter 6 (ThinkMorph): tasks, traces, the interleaved model, generation and scoring."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from labcore.testing import assert_close
from labcore.thinkmorph.config import SMOKE, ModelConfig, profile_config
from labcore.thinkmorph.evaluate import best_of_n, eval_tasks, pass_at_k, pass_at_k_naive, solve, wrong_hook
from labcore.thinkmorph.generation import draw_image, generate, stepwise
from labcore.thinkmorph.model import InterleavedTransformer, RaggedKVCache
from labcore.thinkmorph.packing import CLEAN, NOISY, TEXT, attention_mask, collate, pack
from labcore.thinkmorph.patches import image_to_patches, patches_to_image
from labcore.thinkmorph.tasks import CELL, JigsawTask, MazeTask, make_task
from labcore.thinkmorph.traces import (
    ARMS,
    TOKEN_ID,
    VOCAB,
    Image,
    Text,
    base_trace,
    context,
    describe,
    make_trace,
    parse_answer,
)
from labcore.thinkmorph.training import make_batch_fn, thinkmorph_loss, train_arm, train_base

TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, flow_steps=3, max_len=256)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny matrices: one thread is fastest and immune to a busy machine's thread contention
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- tasks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [4, 5, 7, 8, 9])
def test_maze_generate(size):
    for seed in range(25):
        a, b = MazeTask.generate(size, seed), MazeTask.generate(size, seed)
        assert np.array_equal(a.holes, b.holes) and a.start == b.start and a.goal == b.goal
        img = a.render()
        assert img.dtype == np.uint8 and img.shape == (size * CELL, size * CELL, 3)
        moves = a.solution()
        assert set(moves) <= set("UDLR") and a.score(moves), f"seed {seed}: BFS path does not execute"
        assert not a.holes[a.start] and not a.holes[a.goal] and a.start != a.goal
    assert any(not np.array_equal(MazeTask.generate(size, 0).holes, MazeTask.generate(size, s).holes)
               for s in range(1, 5)), "different seeds should give different mazes"


def test_maze_score_executes():
    m = MazeTask.generate(6, 3)
    moves = m.solution()
    assert m.score(moves) and m.score(moves + ["U"])  # reaching the goal ends the episode
    assert not m.score([]) and not m.score(moves[:-1]) and not m.score(None)
    assert not m.score(["X"] + moves)
    # walking off the grid fails
    off = {0: "U", m.size - 1: "D"}.get(m.start[0]) or {0: "L", m.size - 1: "R"}.get(m.start[1])
    if off:
        assert not m.score([off] + moves)
    # stepping into a hole fails: find a hole next to the start path
    for r, c in m.walk(moves):
        for mv, (dr, dc) in {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}.items():
            rr, cc = r + dr, c + dc
            if 0 <= rr < m.size and 0 <= cc < m.size and m.holes[rr, cc]:
                k = m.walk(moves).index((r, c))
                assert not m.score(moves[:k] + [mv] + moves[k:])
    with pytest.raises(ValueError, match="moves"):
        m.score("UDLR")
    with pytest.raises(ValueError, match="size"):
        MazeTask.generate(3, 0)
    with pytest.raises(ValueError, match="seed"):
        MazeTask.generate(5, -1)


def test_maze_solution_walks_downhill():
    # the solution is shortest and every move is the first of U, D, L, R that gets closer to the goal
    for seed in range(20):
        m = MazeTask.generate(7, seed)
        dist, cells, moves = m._distances(), m.walk(m.solution()), m.solution()
        assert len(moves) == dist[m.start] and cells[-1] == m.goal
        for (r, c), mv in zip(cells, moves, strict=False):
            closer = [k for k, (dr, dc) in {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}.items()
                      if 0 <= r + dr < 7 and 0 <= c + dc < 7 and dist[r + dr, c + dc] == dist[r, c] - 1]
            assert mv == closer[0]


def test_text_steps_follow_the_walk():
    m = MazeTask.generate(6, 2)
    words = [w for s in make_trace(m, "text") if isinstance(s, Text) for w in s.tokens]
    steps = words[words.index("goal") + 3:words.index("</think>")]
    cells = m.walk(m.solution())[1:]
    assert steps == [w for mv, (r, c) in zip(m.solution(), cells, strict=True) for w in (mv, str(r), str(c))]
    inter = [w for s in make_trace(m, "interleaved") if isinstance(s, Text) for w in s.tokens]
    thinks = [i for i, w in enumerate(inter) if w == "<think>"]
    second = inter[thinks[1] + 1:]
    assert second[:len(steps)] == steps, "the interleaved arm's second thought transcribes the same steps"


def test_maze_visual_thought_draws_the_path():
    m = MazeTask.generate(7, 11)
    plain, drawn = m.render(), m.visual_thought()
    changed = {(r // CELL, c // CELL) for r, c in zip(*np.nonzero((plain != drawn).any(-1)), strict=True)}
    assert changed == set(m.walk(m.solution())[1:-1]), "the sketch should paint exactly the path's cells"


@pytest.mark.parametrize("size", [2, 3, 4])
def test_jigsaw(size):
    for seed in range(10):
        j, j2 = JigsawTask.generate(size, seed), JigsawTask.generate(size, seed)
        assert j.perm == j2.perm and np.array_equal(j.render(), j2.render())
        assert j.render().shape == (size * CELL, size * CELL, 3) and j.render().dtype == np.uint8
        order = j.solution()
        assert j.score(order) and np.array_equal(j.assemble(order), j.picture)
        assert sorted(order) == list(range(size * size)) and j.perm != tuple(range(size * size))
        swapped = order[:]
        swapped[0], swapped[1] = swapped[1], swapped[0]
        assert not j.score(swapped) and not j.score(None)
    with pytest.raises(ValueError, match="size"):
        JigsawTask.generate(5, 0)
    with pytest.raises(ValueError, match="task"):
        make_task("sudoku", 4, 0)


# ---- traces --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize(("name", "size"), [("maze", 5), ("maze", 9), ("jigsaw", 3)])
def test_trace_format(arm, name, size):
    task = make_task(name, size, 1)
    trace = make_trace(task, arm)
    words = [w for s in trace if isinstance(s, Text) for w in s.tokens]
    assert isinstance(trace[1], Image) and not trace[1].generated
    assert np.array_equal(trace[1].pixels, task.render())
    assert words[:4] == ["<bos>", name, str(size), "<image_start>"] and len(context(task)) == 3
    assert words[-1] == "<eos>" and task.score(parse_answer(task, words))
    n_think = words.count("<think>")
    n_gen = sum(isinstance(s, Image) and s.generated for s in trace)
    expected = {"direct": (0, 0), "text": (1, 0), "visual": (0, 1), "interleaved": (2, 1)}[arm]
    assert (n_think, n_gen) == expected
    assert words.count("<image_start>") == words.count("<image_end>") == 1 + n_gen
    assert all(w in TOKEN_ID for w in words)
    if arm == "interleaved":  # think -> image -> think -> answer
        kinds = ["img" if isinstance(s, Image) else s.tokens[0] for s in trace[3:]]
        assert kinds == ["<think>", "img", "<image_end>", "<answer>"]
    with pytest.raises(ValueError, match="arm"):
        make_trace(task, "audio")


def test_thought_steps_determine_the_answer():
    """Each step is checkable on its own: a maze step names a move and the cell it reaches, a jigsaw step
    a piece and its place; the answer is what the steps spell out."""
    m = MazeTask.generate(6, 4)
    words = make_trace(m, "text")[3].tokens
    steps = words[words.index("goal") + 3:-1]
    assert [steps[i] for i in range(0, len(steps), 3)] == m.solution()
    assert [(int(steps[i + 1]), int(steps[i + 2])) for i in range(0, len(steps), 3)] == m.walk(m.solution())[1:]
    j = JigsawTask.generate(3, 4)
    words = make_trace(j, "text")[3].tokens
    perm = [int(w) for w in words[words.index("at") + 1:-1]]  # where each shuffled piece belongs
    assert perm == list(j.perm)
    answer = sorted(range(9), key=perm.__getitem__)  # the piece for place 0, 1, ...
    assert answer == j.solution() and j.score(answer)


def test_parse_answer_rejects_malformed():
    m = MazeTask.generate(5, 0)
    assert parse_answer(m, ["<answer>", "U", "D"]) is None  # no closing tag
    assert parse_answer(m, ["<answer>", "U", "7", "</answer>"]) is None
    assert parse_answer(m, ["U"]) is None
    j = JigsawTask.generate(3, 0)
    assert parse_answer(j, ["<answer>", "7", "0", "</answer>"]) == [7, 0]
    assert parse_answer(j, ["<answer>", "7", "U", "</answer>"]) is None


# ---- packing and the attention mask ---------------------------------------------------------------------

def naive_mask(kind, group):
    """Rules written out per pair: causal, except noisy blocks hidden from others; blocks see themselves."""
    T = len(kind)
    m = torch.zeros(T, T, dtype=torch.bool)
    for q in range(T):
        for k in range(T):
            same_block = group[q] == group[k]
            m[q, k] = same_block or (k <= q and kind[k] != NOISY)
    return m


@pytest.mark.parametrize("arm", ["visual", "interleaved", "text"])
def test_attention_mask(arm):
    p = pack(make_trace(MazeTask.generate(4, 2), arm))
    mask = attention_mask(torch.tensor([p.kind]), torch.tensor([p.group]))[0]
    assert torch.equal(mask, naive_mask(p.kind, p.group))
    kind = torch.tensor(p.kind)
    noisy, clean = (kind == NOISY).nonzero().squeeze(-1), (kind == CLEAN).nonzero().squeeze(-1)
    if arm == "text":
        assert len(noisy) == 0
        return
    assert len(noisy) == 16 and torch.equal(torch.tensor(p.pos)[noisy], torch.tensor(p.pos)[clean[16:]])
    after = torch.arange(int(noisy[-1]) + 1, len(kind))
    assert not mask[after][:, noisy].any(), "positions after the noisy block must not see it"
    assert mask[noisy][:, noisy].all(), "a noisy block attends to itself both ways"
    # targets: the forced <image_end> is never a target, image slots have none
    tgt = torch.tensor(p.target)
    assert not (tgt == TOKEN_ID["<image_end>"]).any() and (tgt[kind != TEXT] == -100).all()


def test_collate_batch_is_deterministic():
    fn = make_batch_fn("interleaved", SMOKE)
    a, b = fn(3, 0, 1), fn(3, 0, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = make_batch_fn("direct", SMOKE)(3, 0, 1)
    # every arm sees the very same puzzles: the problem images match
    def problems(bt):  # the patches before each row's first <image_end>
        end = (bt["tokens"] == TOKEN_ID["<image_end>"]).int().argmax(1)
        return [bt["patches"][b, :e][bt["kind"][b, :e] == CLEAN] for b, e in enumerate(end.tolist())]
    assert all(torch.equal(x, y) for x, y in zip(problems(a), problems(c), strict=True))
    assert a["t"].shape[0] == int((a["kind"] == NOISY).sum()) and ((a["t"] > 0) & (a["t"] < 1)).all()


def test_patches_roundtrip():
    img = JigsawTask.generate(3, 5).render()
    x = image_to_patches(img)
    assert x.shape == (9, CELL * CELL * 3) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(patches_to_image(x, 3), img)


# ---- model: loss, gradients, cache consistency ----------------------------------------------------------

def test_loss_and_gradients():
    model = InterleavedTransformer(TINY)
    g = torch.Generator().manual_seed(0)
    traces = [make_trace(MazeTask.generate(s, 1), a) for s, a in [(5, "interleaved"), (7, "visual")]]
    batch = collate([pack(t) for t in traces], g)
    loss, metrics = thinkmorph_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics["flow"] > 0 and metrics["ce"] > 0
    # lm_head is tied to tok_emb (one parameter, listed under tok_emb)
    assert model.lm_head.weight is model.tok_emb.weight
    for name in ("flow_head.3.weight", "tok_emb.weight", "patch_in.weight", "time_emb.mlp.0.weight",
                 "col_rot.weight", "cond_in.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"{name} gets no gradient"
    # the flow term is the MSE between the head's velocity at noisy slots and eps - x (independent recompute)
    noisy = batch["kind"] == NOISY
    x, eps, t = batch["patches"][noisy], batch["eps"], batch["t"][:, None]
    _, h = model(batch, (1 - t) * x + t * eps, batch["t"])
    x_hat = model.flow_head(h[noisy])  # x-prediction: v = (x_t - x_hat) / t
    ref = (((1 - t) * x + t * eps - x_hat) / t.clamp_min(0.05) - (eps - x)).pow(2).mean()
    assert_close("flow", ref, torch.tensor(metrics["flow"]), 1e-5)  # same fp32 math, reordered
    # text-only arm: no flow term, no gradient into the flow head
    model.zero_grad()
    batch = collate([pack(make_trace(MazeTask.generate(5, 1), "text"))], g)
    loss, metrics = thinkmorph_loss(model, batch)
    loss.backward()
    assert metrics["flow"] == 0 and model.flow_head[3].weight.grad is None


@pytest.mark.parametrize(("name", "size", "arm"), [("maze", 5, "interleaved"), ("maze", 7, "visual"),
                                                  ("jigsaw", 3, "interleaved"), ("maze", 4, "text")])
def test_cache_matches_full_forward(name, size, arm):
    torch.manual_seed(0)
    model = InterleavedTransformer(TINY).eval()
    trace = make_trace(make_task(name, size, 4), arm)
    # inference layout: generated images appear once, clean
    batch = collate([pack(trace, train=False)])
    logits, _ = model(batch)
    text = batch["kind"][0] == TEXT
    inc, _ = stepwise(model, trace)
    assert_close("logits", logits[0][text], inc, 1e-5)  # fp32, same math in a different order
    if arm == "text":
        return
    # training layout: the noisy block's velocity equals the cached image-mode pass
    batch = collate([pack(trace, train=True)], torch.Generator().manual_seed(1))
    noisy = batch["kind"] == NOISY
    N = size * size
    x_t = torch.randn(N, 3 * CELL * CELL)
    _, h = model(batch, x_t, batch["t"])
    _, vel = stepwise(model, trace, x_t, batch["t"])
    assert_close("velocity", model.velocity(h[noisy], x_t, batch["t"]), vel, 1e-5)


class Scripted(torch.nn.Module):
    """An lm_head that ignores its input and emits a fixed script, one entry per call."""

    def __init__(self, words):
        super().__init__()
        self.ids, self.calls = [TOKEN_ID[w] for w in words], 0

    def forward(self, h):
        out = torch.full((h.shape[0], len(VOCAB)), -1e4)
        out[:, self.ids[min(self.calls, len(self.ids) - 1)]] = 0.0
        self.calls += 1
        return out


def test_generate_switches_modes():
    model = InterleavedTransformer(TINY)
    # calls: prefill, then one per text step; the <image_start> step's logits are replaced after the image
    model.lm_head = Scripted(["<think>", "</think>", "<image_start>", "<eos>", "<answer>", "U", "</answer>",
                              "R"])
    tasks = [MazeTask.generate(5, s) for s in range(3)]
    seen = []

    def hook(rows, x):
        seen.append(x.shape)
        return torch.zeros_like(x)

    outs = generate(model, tasks, max_new_tokens=20, image_hook=hook)
    assert seen == [(3, 25, 3 * CELL * CELL)], "the image hook runs once per drawn batch of images"
    for segs in outs:
        assert [type(s).__name__ for s in segs] == ["Text", "Image", "Text"]
        assert segs[0].tokens == ["<think>", "</think>", "<image_start>"]
        assert segs[1].pixels.shape == (20, 20, 3) and segs[1].generated
        assert set(np.unique(segs[1].pixels)) <= {127, 128}, "the hook's blank image is what gets kept"
        assert segs[2].tokens == ["<image_end>", "<answer>", "U", "</answer>"]
    with pytest.raises(ValueError, match="share"):
        generate(model, [MazeTask.generate(5, 0), MazeTask.generate(6, 0)])


def test_drawn_image_depends_on_the_problem_image():
    # the sampler must pass the problem image to every Euler step (it once got shadowed and dropped)
    torch.manual_seed(0)
    model = InterleavedTransformer(TINY).eval()
    with torch.no_grad():
        model.cond_in.weight.mul_(50)  # make the conditioning path loud
    task = MazeTask.generate(5, 0)
    p = collate([pack(context(task), train=False)])
    cond = image_to_patches(task.render())[None]  # [1, 25, pd]: the problem image
    draws = []
    with torch.no_grad():
        for c in (cond, torch.zeros_like(cond)):
            cache = RaggedKVCache(TINY, 1, "cpu")
            x = model.embed(p["tokens"], p["kind"], p["pos"], p["row"], p["col"], p["patches"])
            model.extend(cache, torch.arange(1), x, attention_mask(p["kind"], p["group"]))
            draws.append(draw_image(model, cache, torch.arange(1), 5, torch.Generator().manual_seed(0), c))
    assert draws[0].shape == (1, 25, 3 * CELL * CELL)
    assert not torch.allclose(draws[0], draws[1]), "the problem image does not reach the drawn image"


def test_solve_and_probes_run():
    model = InterleavedTransformer(TINY)
    model.lm_head = Scripted(["<image_start>", "<eos>", "<answer>", "</answer>"])
    tasks = eval_tasks("jigsaw", (2,), 3)
    res = solve(model, tasks, max_new_tokens=8, probe="wrong")
    assert all(r.drew_image and r.answer == [] and not r.correct for r in res)
    wrong = res[0].segments[1].pixels
    other = JigsawTask.generate(2, tasks[0].seed + 7919).visual_thought()
    assert np.array_equal(wrong, other), "the wrong-image probe shows another puzzle's sketch"
    assert wrong_hook(tasks)(torch.tensor([1]), torch.zeros(1, 4, 48)).shape == (1, 4, 48)
    # the oracle probe: each row gets its own puzzle's correct sketch (rows index into the chunk)
    model.lm_head.calls = 0  # replay the script
    res = solve(model, tasks, max_new_tokens=8, probe="true")
    for r, t in zip(res, tasks, strict=True):
        assert np.array_equal(r.segments[1].pixels, t.visual_thought())
    with pytest.raises(ValueError, match="probe"):
        solve(model, tasks, probe="noise")


@pytest.mark.parametrize("n", [1, 4, 7])
def test_pass_at_k(n):
    rng = random.Random(n)
    for _ in range(5):
        correct = [rng.random() < 0.4 for _ in range(n)]
        for k in range(1, n + 1):
            assert abs(pass_at_k(n, sum(correct), k) - pass_at_k_naive(correct, k)) < 1e-12
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_best_of_n_aggregates_samples(monkeypatch):
    import labcore.thinkmorph.evaluate as ev

    tasks = eval_tasks("maze", (4,), 3)
    draws = iter([[True, False, False], [False, False, False], [True, True, False]])  # 3 samples x 3 tasks

    def fake_solve(model, tasks, *args, **kwargs):
        return [ev.Result(t, [], None, c, False) for t, c in zip(tasks, next(draws), strict=True)]

    monkeypatch.setattr(ev, "solve", fake_solve)
    curve = best_of_n(None, tasks, n=3)
    # task 0 solved in 2 of 3 samples, task 1 in 1 of 3, task 2 never
    expect = [np.mean([pass_at_k(3, c, k) for c in (2, 1, 0)]) for k in (1, 2, 3)]
    assert curve["k"] == [1, 2, 3] and np.allclose(curve["acc"], expect)
    assert np.isclose(curve["acc"][0], 1 / 3) and np.isclose(curve["acc"][-1], 2 / 3)


def test_training_lowers_the_loss():
    cfg = dataclasses.replace(SMOKE, steps=30, lr=3e-3, tasks=("maze",), maze_train=(4,))
    _, res = train_arm("direct", cfg, progress=False)
    first, last = np.mean(res.losses[:3]), np.mean(res.losses[-3:])
    # 30 AdamW steps on one tiny task: the answer format alone is worth far more than 20% of the CE
    assert last < 0.8 * first, f"loss {first:.2f} -> {last:.2f}: training does not learn"


def test_config_validation():
    assert profile_config("smoke") is SMOKE
    with pytest.raises(ValueError, match="tasks"):
        dataclasses.replace(SMOKE, tasks=("chess",))
    with pytest.raises(ValueError, match="d_model"):
        ModelConfig(d_model=30, n_head=4)


# ---- the base stage ----------------------------------------------------------------------------------

def test_describe_lists_every_hole_and_round_trips():
    for seed in range(10):
        task = MazeTask.generate(6, seed)
        words = describe(task)
        assert words[:6] == ["start", *map(str, task.start), "goal", *map(str, task.goal)]
        holes = np.zeros_like(task.holes)
        for i in range(6, len(words), 3):  # rebuild the grid from the words alone
            assert words[i] == "hole"
            holes[int(words[i + 1]), int(words[i + 2])] = True
        assert np.array_equal(holes, task.holes)
    with pytest.raises(ValueError, match="only mazes"):
        describe(JigsawTask.generate(2, 0))


def test_base_traces_and_draw_has_no_source_image():
    task = MazeTask.generate(5, 3)
    cap, draw = base_trace(task, "caption"), base_trace(task, "draw")
    assert isinstance(cap[1], Image) and not cap[1].generated and cap[-1].loss
    assert cap[-1].tokens == [*describe(task), "<eos>"]
    assert not draw[0].loss and draw[1].tokens == ["<image_start>"] and draw[1].loss  # the model opens the image
    assert isinstance(draw[2], Image) and draw[2].generated
    assert all("U" not in s.tokens and "R" not in s.tokens for s in cap + draw if isinstance(s, Text))
    p = pack(draw)
    # nothing to edit: a picture drawn from words is conditioned on zeros, never on its own pixels
    assert len(p.cond) == 1 and not p.cond[0].any()
    # an arm's sketch edits the problem image
    q = pack(make_trace(task, "visual"))
    assert torch.equal(q.cond[0], image_to_patches(task.render()))
    with pytest.raises(ValueError, match="kind"):
        base_trace(task, "solve")


def test_base_batches_are_mazes_from_their_own_stream():
    b = make_batch_fn("base", SMOKE)(0, 0, 1)
    a = make_batch_fn("visual", SMOKE)(0, 0, 1)
    assert (b["tokens"][:, 1] == TOKEN_ID["maze"]).all(), "only mazes have words to caption or draw from"
    assert (b["kind"] == NOISY).any() and (b["target"] != -100).any(), "both caption and draw traces"
    # the base stage's puzzles are not the arms' puzzles of the same step
    assert b["patches"].shape != a["patches"].shape or not torch.equal(b["patches"], a["patches"])
    with pytest.raises(ValueError, match="arm"):
        make_batch_fn("caption", SMOKE)


def test_arms_start_from_the_base_weights():
    cfg = dataclasses.replace(SMOKE, steps=1, base_steps=2, tasks=("maze",), maze_train=(4,))
    base, res = train_base(cfg, progress=False)
    assert len(res.history) == 2
    state = {k: v.clone() for k, v in base.state_dict().items()}
    m1, _ = train_arm("direct", dataclasses.replace(cfg, steps=1, lr=1e-12), progress=False, base=state)
    fresh, _ = train_arm("direct", dataclasses.replace(cfg, steps=1, lr=1e-12), progress=False)
    w = "tok_emb.weight"
    assert torch.allclose(m1.state_dict()[w], state[w], atol=1e-6, rtol=0)  # lr ~ 0: still the base weights
    assert not torch.allclose(fresh.state_dict()[w], state[w]), "the base stage changed nothing"
    with pytest.raises(ValueError, match="base_steps"):
        dataclasses.replace(SMOKE, base_steps=-1)


@pytest.mark.parametrize("prof", ["smoke", "cpu", "gpu"])
def test_every_profile_fits_its_longest_traces(prof):
    """The largest puzzles a profile trains or tests on (held-out sizes included) fit the model's max_len,
    and, except at smoke (which cuts generation short to stay fast), their words fit the generation budget."""
    import labcore.thinkmorph.config as C

    cfg = getattr(C, prof.upper())  # the constant itself: profile_config("gpu") needs CUDA
    longest, words = 0, 0
    for name in cfg.tasks:
        size = max(cfg.train_sizes(name) + cfg.heldout_sizes(name))
        for seed in range(5):
            task = make_task(name, size, seed)
            for arm in cfg.arms:
                trace = make_trace(task, arm)
                longest = max(longest, len(pack(trace).tokens))
                words = max(words, sum(len(s.tokens) for s in trace[3:] if isinstance(s, Text)))
            if name == "maze":
                longest = max(longest, *(len(pack(base_trace(task, k)).tokens) for k in ("caption", "draw")))
    assert longest <= cfg.model.max_len, f"{prof}: a {longest}-position trace exceeds max_len"
    assert prof == "smoke" or words <= cfg.max_new_tokens, f"{prof}: {words} words exceed max_new_tokens"


def test_gpu_sized_model_trains_and_generates_on_cpu():
    """The gpu profile's model, one base step and one arm step on CPU, then a held-out-size generation:
    the shapes and budgets of the run nobody can do here."""
    from labcore.thinkmorph.config import GPU

    cfg = dataclasses.replace(GPU, steps=1, base_steps=1, batch_size=2, warmup=1)
    base, _ = train_base(cfg, progress=False)
    model, res = train_arm("interleaved", cfg, progress=False, base=base.state_dict())
    assert np.isfinite(res.losses).all()
    out = generate(model, [MazeTask.generate(9, 0)], max_new_tokens=8)
    assert len(out) == 1 and out[0]
