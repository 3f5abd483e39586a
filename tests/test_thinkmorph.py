"""Chapter 6 (ThinkMorph): tasks, traces, the interleaved model, generation and scoring."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from labcore.testing import assert_close
from labcore.thinkmorph.config import SMOKE, ModelConfig, profile_config
from labcore.thinkmorph.evaluate import (
    best_of_n,
    cells_match,
    drawing_right,
    eval_tasks,
    oracle_hook,
    pass_at_k,
    pass_at_k_naive,
    solve,
    true_hook,
    wrong_hook,
)
from labcore.thinkmorph.generation import draw_image, generate, stepwise
from labcore.thinkmorph.model import InterleavedTransformer, RaggedKVCache
from labcore.thinkmorph.packing import CLEAN, NOISY, TEXT, attention_mask, collate, pack
from labcore.thinkmorph.patches import image_to_patches, neighbourhood, patches_to_image
from labcore.thinkmorph.tasks import CELL, GravityTask, JigsawTask, MazeTask, gravity_step, make_task, seam_costs
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
    plain, [drawn] = m.render(), m.visual_thoughts()
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


@pytest.mark.parametrize("size", [2, 3])
def test_jigsaw_is_decided_by_seams_not_colour(size):
    """No absolute colour code: a piece's mean colour does not tell its row or column across instances
    (the old colour ramp did, with |correlation| ~ 1); every true neighbour is its seam's best continuation."""
    means, rows, cols = [], [], []
    for seed in range(150):
        j = JigsawTask.generate(size, seed)
        right, down = seam_costs(j.picture, size)
        k = size * size
        for i in range(k):
            if i % size < size - 1:
                others = np.delete(right[i], [i, i + 1])
                assert right[i, i + 1] < others.min(), f"seed {seed}: piece {i}'s right seam is ambiguous"
            if i < k - size:
                assert down[i, i + size] < np.delete(down[i], [i, i + size]).min()
        pic = j.picture.astype(float).reshape(size, CELL, size, CELL, 3).mean((1, 3))  # [size, size, 3]
        means.append(pic.reshape(k, 3))
        rows += [i // size for i in range(k)]
        cols += [i % size for i in range(k)]
    means = np.concatenate(means)
    for ch in range(3):
        for pos in (rows, cols):
            r = np.corrcoef(means[:, ch], pos)[0, 1]
            assert abs(r) < 0.2, f"channel {ch} encodes the position (correlation {r:.2f})"


def naive_gravity_step(blocks):
    """Block by block: it falls one cell when the cell below is empty now (the floor holds it)."""
    n = blocks.shape[0]
    out = np.zeros_like(blocks)
    for r in range(n):
        for c in range(n):
            if blocks[r, c]:
                falls = r < n - 1 and not blocks[r + 1, c]
                out[r + 1 if falls else r, c] = True
    return out


@pytest.mark.parametrize("size", [4, 5, 6])
def test_gravity(size):
    for seed in range(20):
        g = GravityTask.generate(size, seed)
        assert g == g and np.array_equal(g.blocks, GravityTask.generate(size, seed).blocks)
        cur = g.blocks
        for s in g.states():
            assert np.array_equal(s, naive_gravity_step(cur)) and np.array_equal(s, gravity_step(cur))
            assert s.sum() == g.blocks.sum(), "blocks are never created or lost"
            changed = (s != cur).nonzero()
            assert len(changed[0]) > 0, "every step moves some block"
            cur = s
        assert g.states()[-1][g.row].any(), "the asked row ends with a block"
        assert g.score(g.solution()) and not g.score(g.solution() + 1) and not g.score(None)
        assert len(g.visual_thoughts()) == g.steps and g.render().shape == (size * CELL, size * CELL, 3)
        # each picture is a local edit: only cells in a column where a block fell change
        for a, b in zip([g.render(), *g.visual_thoughts()], g.visual_thoughts(), strict=False):
            cells = {(r // CELL, c // CELL) for r, c in zip(*np.nonzero((a != b).any(-1)), strict=True)}
            assert cells and len(cells) < size * size
    with pytest.raises(ValueError, match="size"):
        GravityTask.generate(3, 0)
    with pytest.raises(ValueError, match="steps"):
        GravityTask.generate(4, 0, steps=4)
    with pytest.raises(ValueError, match="answer"):
        GravityTask.generate(4, 0).score("2")


# ---- traces --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize(("name", "size"), [("maze", 5), ("maze", 9), ("jigsaw", 3), ("gravity", 5)])
def test_trace_format(arm, name, size):
    task = make_task(name, size, 1)
    trace = make_trace(task, arm)
    words = [w for s in trace if isinstance(s, Text) for w in s.tokens]
    assert isinstance(trace[1], Image) and not trace[1].generated
    assert np.array_equal(trace[1].pixels, task.render())
    asked = ["row", str(task.row)] if name == "gravity" else []
    assert words[:4 + len(asked)] == ["<bos>", name, str(size), *asked, "<image_start>"] and len(context(task)) == 3
    assert words[-1] == "<eos>" and task.score(parse_answer(task, words))
    n_think = words.count("<think>")
    drawn = [s.pixels for s in trace if isinstance(s, Image) and s.generated]
    n_img = len(task.visual_thoughts())
    expected = {"direct": (0, 0), "text": (1, 0), "visual": (0, n_img),
                "interleaved": (1 if name == "gravity" else 2, n_img)}[arm]
    assert (n_think, len(drawn)) == expected
    if drawn:
        assert all(np.array_equal(a, b) for a, b in zip(drawn, task.visual_thoughts(), strict=True))
    assert words.count("<image_start>") == words.count("<image_end>") == 1 + len(drawn)
    assert all(w in TOKEN_ID for w in words)
    if arm == "interleaved":  # (think ->) images -> think -> answer
        kinds = ["img" if isinstance(s, Image) else s.tokens[0] for s in trace[3:]]
        lead = ["<image_start>" if name == "gravity" else "<think>"]
        pics = ["img"] + ["<image_end>", "img"] * (n_img - 1)
        assert kinds[:len(lead) + len(pics) + 1] == [*lead, *pics, "<image_end>"]
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
    g = GravityTask.generate(5, 4)
    words = make_trace(g, "text")[3].tokens
    last = words[len(words) - words[::-1].index("step"):words.index("row")]  # the blocks after the last step
    cells = {(int(last[i]), int(last[i + 1])) for i in range(0, len(last), 2)}
    assert cells == set(zip(*g.states()[-1].nonzero(), strict=True))
    counted = words[words.index("row") + 2:-1]  # column, running count, ...
    assert counted[1::2] == [str(k + 1) for k in range(len(counted) // 2)] and counted[-1] == str(g.solution())


def test_parse_answer_rejects_malformed():
    m = MazeTask.generate(5, 0)
    assert parse_answer(m, ["<answer>", "U", "D"]) is None  # no closing tag
    assert parse_answer(m, ["<answer>", "U", "7", "</answer>"]) is None
    assert parse_answer(m, ["U"]) is None
    j = JigsawTask.generate(3, 0)
    assert parse_answer(j, ["<answer>", "7", "0", "</answer>"]) == [7, 0]
    assert parse_answer(j, ["<answer>", "7", "U", "</answer>"]) is None
    g = GravityTask.generate(4, 0)
    assert parse_answer(g, ["<answer>", "3", "</answer>"]) == 3
    assert parse_answer(g, ["<answer>", "3", "1", "</answer>"]) is None


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


def test_neighbourhood_is_a_window_of_cells():
    side, pd = 4, 5
    x = torch.randn(2, side * side, pd)
    for window in (1, 3, 5):
        got = neighbourhood(x, side, window)  # [2, N, window^2 * pd]
        assert got.shape == (2, side * side, window * window * pd)
        h = window // 2
        for cell in range(side * side):
            r, c = divmod(cell, side)
            ref = []
            for dr in range(-h, h + 1):
                for dc in range(-h, h + 1):
                    rr, cc = r + dr, c + dc
                    inside = 0 <= rr < side and 0 <= cc < side
                    ref.append(x[:, rr * side + cc] if inside else torch.zeros(2, pd))
            assert torch.equal(got[:, cell], torch.cat(ref, -1))
    with pytest.raises(ValueError, match="window"):
        neighbourhood(x, side, 2)


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
    batch = collate([pack(t, window=TINY.edit_window) for t in traces], g)
    loss, metrics = thinkmorph_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics["flow"] > 0 and metrics["ce"] > 0
    # lm_head is tied to tok_emb (one parameter, listed under tok_emb)
    assert model.lm_head.weight is model.tok_emb.weight
    for name in ("flow_head.3.weight", "tok_emb.weight", "patch_in.weight", "time_emb.mlp.0.weight",
                 "col_rot.weight", "cond_in.weight"):  # col_rot: TINY has coord_words on
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


@pytest.mark.parametrize(("name", "size", "arm", "coords", "window"), [
    ("maze", 5, "interleaved", True, 3), ("maze", 7, "visual", False, 1), ("jigsaw", 3, "interleaved", True, 3),
    ("maze", 4, "text", True, 3), ("gravity", 4, "interleaved", False, 3), ("gravity", 5, "visual", True, 5)])
def test_cache_matches_full_forward(name, size, arm, coords, window):
    torch.manual_seed(0)
    model = InterleavedTransformer(dataclasses.replace(TINY, coord_words=coords, edit_window=window)).eval()
    trace = make_trace(make_task(name, size, 4), arm)
    # inference layout: generated images appear once, clean
    batch = collate([pack(trace, train=False)])
    logits, _ = model(batch)
    text = batch["kind"][0] == TEXT
    inc, _ = stepwise(model, trace)
    assert_close("logits", logits[0][text], inc, 1e-5)  # fp32, same math in a different order
    if arm == "text":
        return
    # training layout: every noisy block's velocity equals the cached image-mode pass (the second and third
    # gravity pictures edit the one before them)
    batch = collate([pack(trace, train=True, window=window)], torch.Generator().manual_seed(1))
    noisy = batch["kind"] == NOISY
    x_t = torch.randn(int(noisy.sum()), 3 * CELL * CELL)
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

    def hook(rows, x, k):
        seen.append(x.shape)
        assert k.tolist() == [0, 0, 0], "k counts each row's drawn images from 0"
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
    [other] = JigsawTask.generate(2, tasks[0].seed + 7919).visual_thoughts()
    assert np.array_equal(wrong, other), "the wrong-image probe shows another puzzle's sketch"
    assert wrong_hook(tasks)(torch.tensor([1]), torch.zeros(1, 4, 48)).shape == (1, 4, 48)
    # the oracle probe: each row gets its own puzzle's correct sketch (rows index into the chunk)
    model.lm_head.calls = 0  # replay the script
    res = solve(model, tasks, max_new_tokens=8, probe="true")
    for r, t in zip(res, tasks, strict=True):
        assert np.array_equal(r.segments[1].pixels, t.visual_thoughts()[0])
        assert r.drawn_right is True and drawing_right(t, []) is None
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
    wide = pack(make_trace(task, "visual"), window=3).cond[0]  # [N, 9 * pd]: the middle block is the cell
    assert torch.equal(wide.view(25, 9, -1)[:, 4], q.cond[0])
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
    """The largest puzzles a profile trains or tests on (held-out sizes and the control included) fit the
    model's max_len, and, except at smoke (which cuts generation short to stay fast), their words fit the
    generation budget."""
    import labcore.thinkmorph.config as C

    cfg = getattr(C, prof.upper())  # the constant itself: profile_config("gpu") needs CUDA
    longest, words = 0, 0
    for name in cfg.tasks + cfg.control_tasks:
        size = max(cfg.train_sizes(name) + cfg.heldout_sizes(name))
        for seed in range(5):
            task = make_task(name, size, seed)
            for arm in cfg.arms:
                trace = make_trace(task, arm)
                longest = max(longest, len(pack(trace).tokens))
                words = max(words, sum(len(s.tokens) for s in trace[3:] if isinstance(s, Text)))
            if name in ("maze", "gravity"):
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


# ---- probes on multi-picture traces, the partial oracle, the text mix, the experiment -----------------------

def test_hooks_follow_the_picture_number():
    tasks = [GravityTask.generate(4, s) for s in range(3)]
    rows, x = torch.tensor([2, 0]), torch.zeros(2, 16, 3 * CELL * CELL)
    for k in range(3):
        got = true_hook(tasks)(rows, x, torch.tensor([k, k]))
        assert torch.equal(got[0], image_to_patches(tasks[2].visual_thoughts()[k]))
        wrong = wrong_hook(tasks)(rows, x, torch.tensor([k, k]))
        assert torch.equal(wrong[1], image_to_patches(GravityTask.generate(4, 7919).visual_thoughts()[k]))
    # a trace that draws more pictures than the task has gets the last one
    assert torch.equal(true_hook(tasks)(rows, x, torch.tensor([5, 5]))[0], got[0])


@pytest.mark.parametrize("fix", [0.25, 0.5, 1.0])
def test_oracle_repairs_that_fraction_of_cells(fix):
    tasks = [MazeTask.generate(6, s) for s in range(4)]
    rows, x = torch.arange(4), torch.full((4, 36, 3 * CELL * CELL), 5.0)  # 5: never a true pixel value
    out = oracle_hook(tasks, fix, torch.Generator().manual_seed(0))(rows, x, torch.zeros(4, dtype=torch.long))
    truth = true_hook(tasks)(rows, x)
    repaired = (out == truth).all(-1)  # [4, 36]
    kept = (out == 5.0).all(-1)
    assert (repaired ^ kept).all(), "a cell is either repaired or left as drawn"
    assert (repaired.sum(-1) == round(fix * 36)).all()
    with pytest.raises(ValueError, match="fix"):
        solve(InterleavedTransformer(TINY), tasks, fix=1.5)


def test_cells_match_and_drawing_right():
    m = MazeTask.generate(5, 2)
    [sketch] = m.visual_thoughts()
    assert cells_match(sketch, sketch).all() and not cells_match(m.render(), sketch).all()
    noisy = np.clip(sketch.astype(int) + 20, 0, 255).astype(np.uint8)  # within the tolerance of 40
    assert cells_match(noisy, sketch).all()
    assert drawing_right(m, [Image(sketch, True)]) and not drawing_right(m, [Image(m.render(), True)])
    assert not drawing_right(m, [Image(sketch, True), Image(sketch, True)]), "one picture too many"


def test_interleaved_batches_mix_in_text_only_traces():
    cfg = dataclasses.replace(SMOKE, batch_size=64, text_mix=0.25, tasks=("maze",))
    inter, text = make_batch_fn("interleaved", cfg)(0, 0, 1), make_batch_fn("text", cfg)(0, 0, 1)
    no_image = ~(inter["kind"] == NOISY).any(1)  # rows without a drawn picture
    assert 0.1 < no_image.float().mean() < 0.45
    # those rows are exactly the text arm's trace of the same puzzle
    assert all(torch.equal(inter["tokens"][b][inter["tokens"][b] != 0], text["tokens"][b][text["tokens"][b] != 0])
               for b in no_image.nonzero().squeeze(-1).tolist())
    none = make_batch_fn("interleaved", dataclasses.replace(cfg, text_mix=0.0))(0, 0, 1)
    assert (none["kind"] == NOISY).any(1).all()
    with pytest.raises(ValueError, match="text_mix"):
        dataclasses.replace(SMOKE, text_mix=1.0)


def test_experiment_is_the_same_in_workers():
    """Jobs are pure functions of their config: one process or two give the same models and answers."""
    from labcore.thinkmorph.experiment import plan, run_experiment, variant_config

    cfg = dataclasses.replace(SMOKE, steps=3, base_steps=2, control_steps=2, batch_size=2, seeds=(0, 1),
                              arms=("text", "interleaved"), ablation_arms=("text",), ablation_mix="paper",
                              maze_train=(4,),
                              maze_heldout=(), jigsaw_train=(2,), eval_per_size=2, probe_per_size=1, bon_per_size=1,
                              best_of_n=2, max_new_tokens=6)
    assert plan(cfg) == [("main", 0, "paper", cfg.arms), ("main", 0, "control", cfg.arms),
                         ("main", 1, "paper", cfg.arms), ("main", 1, "control", cfg.arms),
                         ("ablation", 0, "paper", ("text",))]
    control = variant_config(cfg, "main", 1, "control")
    assert control.tasks == ("gravity",) and control.steps == 2 and control.seed == 1
    assert control.eval_per_size == cfg.control_eval_per_size and control.control_eval_per_size is None
    unset = dataclasses.replace(cfg, control_eval_per_size=None)
    assert variant_config(unset, "main", 1, "control").eval_per_size == cfg.eval_per_size
    assert variant_config(cfg, "main", 1, "paper").eval_per_size == cfg.eval_per_size
    with pytest.raises(ValueError, match="control_eval_per_size"):
        dataclasses.replace(cfg, control_eval_per_size=0)
    assert variant_config(cfg, "main", 0, "base").tasks == cfg.mix_tasks("base") == ("maze", "jigsaw", "gravity")
    with pytest.raises(ValueError, match="mix"):
        cfg.mix_tasks("all")
    with pytest.raises(ValueError, match="mix"):
        variant_config(cfg, "main", 0, "all")
    assert variant_config(cfg, "ablation", 0, "paper").model.coord_words is not cfg.model.coord_words
    small = dataclasses.replace(cfg, seeds=(1,), control_tasks=(), ablation_seeds=())
    one = run_experiment(small, progress=False)
    two = run_experiment(dataclasses.replace(small, workers=2), progress=False)
    assert set(one) == set(two) == {("main", 1, "base", "base"), ("main", 1, "paper", "text"),
                                    ("main", 1, "paper", "interleaved")}
    for key in one:
        assert all(torch.equal(one[key]["state"][k], two[key]["state"][k]) for k in one[key]["state"])
    r1, r2 = one[("main", 1, "paper", "interleaved")], two[("main", 1, "paper", "interleaved")]
    assert set(r1) >= {"tests", "probes", "oracle", "bon", "history", "cpu_s"}
    key = ("maze", "in-dist")
    assert [r.correct for r in r1["tests"][key]] == [r.correct for r in r2["tests"][key]]
    assert set(r1["probes"]) == {(p, n) for p in ("none", "blank", "wrong", "true") for n in ("maze", "jigsaw")}


def test_each_drawn_picture_edits_the_one_before(monkeypatch):
    """Generation conditions a picture on the latest picture in the context: the problem for the first, the
    previous drawn (and hooked) picture for the next, as training's pack() does."""
    import labcore.thinkmorph.generation as gen

    model = InterleavedTransformer(TINY)
    # calls: prefill, then one per text step; the <image_start> step's logits are replaced after the image
    model.lm_head = Scripted(["<image_start>", "<eos>", "<image_start>", "<eos>", "<eos>"])
    tasks = [GravityTask.generate(4, s) for s in range(2)]
    conds, real = [], gen.draw_image

    def spy(model, cache, rows, side, generator=None, cond=None):
        conds.append(cond.clone())
        return real(model, cache, rows, side, generator, cond)

    monkeypatch.setattr(gen, "draw_image", spy)
    outs = gen.generate(model, tasks, max_new_tokens=4,
                        image_hook=lambda rows, x, k: torch.full_like(x, 0.5) * (k + 1)[:, None, None])
    assert len(conds) == 2 and [type(x).__name__ for x in outs[0]] == ["Text", "Image", "Text", "Image", "Text"]
    problems = torch.stack([image_to_patches(t.render()) for t in tasks])
    assert torch.equal(conds[0], problems), "the first picture edits the problem"
    assert torch.allclose(conds[1], torch.full_like(conds[1], 0.5)), "the second edits the first as read back"
    # the same rule in training: the second noisy block's cond is the first drawn picture
    p = pack(make_trace(tasks[0], "visual"))
    thoughts = [image_to_patches(x) for x in tasks[0].visual_thoughts()]
    assert torch.equal(p.cond[0], problems[0])
    assert torch.equal(p.cond[1], thoughts[0]) and torch.equal(p.cond[2], thoughts[1])
