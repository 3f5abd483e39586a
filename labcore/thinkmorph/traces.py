"""Reasoning traces for the four arms, in ThinkMorph's special-token format.
Taught in notebooks/06_thinkmorph.ipynb, section "Four ways to think".

Every trace starts with the task's context (no loss): `<bos> task size [question] <image_start> [problem]
<image_end>`. What follows depends on the arm:

    direct       <answer> a </answer> <eos>
    text         <think> the reasoning in words, step by step </think> <answer> a </answer> <eos>
    visual       <image_start> [sketch] <image_end> ... <answer> a </answer> <eos>
    interleaved  <think> words </think> <image_start> [sketch] <image_end> ... <think> words </think>
                 <answer> a </answer> <eos>

A trace is a list of segments: Text(tokens, loss) and Image(pixels uint8 [H, W, 3], generated). The
model's collate turns it into one sequence of text tokens and image patch tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labcore.thinkmorph.tasks import MOVES, GravityTask, JigsawTask, MazeTask, Task

ARMS = ("direct", "text", "visual", "interleaved")
BASE_KINDS = ("caption", "draw")  # the shared base stage (see base_trace)
BASE_TASKS = ("maze", "gravity")  # the tasks whose pictures can be said in words (and drawn back)

SPECIALS = ("<pad>", "<bos>", "<eos>", "<think>", "</think>", "<image_start>", "<image_end>",
            "<answer>", "</answer>")
WORDS = ("maze", "jigsaw", "gravity", "start", "goal", "len", "grid", "at", "hole", "blocks", "step", "row",
         *MOVES)
NUMBERS = tuple(str(i) for i in range(100))
VOCAB: tuple[str, ...] = SPECIALS + WORDS + NUMBERS
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
PAD, BOS, EOS = TOKEN_ID["<pad>"], TOKEN_ID["<bos>"], TOKEN_ID["<eos>"]
THINK, END_THINK = TOKEN_ID["<think>"], TOKEN_ID["</think>"]
IMAGE_START, IMAGE_END = TOKEN_ID["<image_start>"], TOKEN_ID["<image_end>"]
ANSWER, END_ANSWER = TOKEN_ID["<answer>"], TOKEN_ID["</answer>"]


@dataclass
class Text:
    tokens: list[str]  # words from VOCAB
    loss: bool  # trained on (True) or context (False)


@dataclass
class Image:
    pixels: np.ndarray  # uint8 [H, W, 3]
    generated: bool  # drawn by the model (flow-matching loss) or given as context


Segment = Text | Image


def encode(tokens: list[str]) -> list[int]:
    """Words -> ids; unknown words raise (a typo in a trace would silently train garbage)."""
    bad = [t for t in tokens if t not in TOKEN_ID]
    if bad:
        raise ValueError(f"tokens not in VOCAB: {bad[:5]}")
    return [TOKEN_ID[t] for t in tokens]


def decode(ids) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


def _cells(mask: np.ndarray) -> list[str]:
    """The filled cells of a bool grid as words `r c r c ...`, raster order."""
    return [str(int(v)) for rc in zip(*mask.nonzero(), strict=True) for v in rc]


def question(task: Task) -> list[str]:
    """The words of the question after `<bos> task size` (only gravity asks something per instance)."""
    return ["row", str(task.row)] if isinstance(task, GravityTask) else []


def context(task: Task) -> list[Segment]:
    """The problem: task name, size, the question, and the problem image (all context, no loss)."""
    return [Text(["<bos>", task.name, str(task.size), *question(task), "<image_start>"], False),
            Image(task.render(), False), Text(["<image_end>"], False)]


def _thoughts(task: Task) -> tuple[list[str], list[str], list[str]]:
    """(plan, steps, answer) for one instance. The steps are the reasoning written out one small step
    at a time, so each next word needs only a local look-up (a tiny model cannot plan a whole path in
    one hidden state): for the maze every move followed by the cell it reaches, for the jigsaw where each
    shuffled piece belongs, for gravity the blocks after every step and then the asked row's blocks,
    counted as they are read (`column count column count ...`)."""
    if isinstance(task, MazeTask):
        moves = task.solution()
        plan = ["start", *map(str, task.start), "goal", *map(str, task.goal)]
        cells = task.walk(moves)[1:]
        steps = [w for m, (r, c) in zip(moves, cells, strict=True) for w in (m, str(r), str(c))]
        return plan, steps, list(moves)
    if isinstance(task, JigsawTask):
        plan = ["grid", str(task.size)]
        return plan, ["at", *map(str, task.perm)], [str(i) for i in task.solution()]
    plan = ["blocks", *_cells(task.blocks)]
    steps = [w for s in task.states() for w in ("step", *_cells(s))]
    return plan, steps, [str(task.solution())]


def read_off(task: GravityTask) -> list[str]:
    """The asked row's blocks after the last step, read left to right and counted as they are read:
    `row r c1 1 c2 2 ...`; the answer is the last count."""
    cols = task.states()[-1][task.row].nonzero()[0]
    return ["row", str(task.row), *[w for k, c in enumerate(cols) for w in (str(int(c)), str(k + 1))]]


def make_trace(task: Task, arm: str) -> list[Segment]:
    """The full training trace of `task` for one arm (see the module docstring for the layouts)."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    plan, steps, answer = _thoughts(task)
    tail = Text(["<answer>", *answer, "</answer>", "<eos>"], True)
    sketches = []  # <image_start> [image] <image_end> per visual thought; the model opens each image
    for k, pixels in enumerate(task.visual_thoughts()):
        sketches += [Text(["<image_start>"] if k == 0 else ["<image_end>", "<image_start>"], True),
                     Image(pixels, True)]
    if arm == "direct":
        return context(task) + [tail]
    if isinstance(task, GravityTask):  # the pictures carry the falling, the words count the asked row
        if arm == "text":
            body = [Text(["<think>", *plan, *steps, *read_off(task), "</think>"], True)]
        elif arm == "visual":
            body = [*sketches, Text(["<image_end>"], True)]
        else:
            body = [*sketches, Text(["<image_end>", "<think>", *read_off(task), "</think>"], True)]
    elif arm == "text":
        body = [Text(["<think>", *plan, *steps, "</think>"], True)]
    elif arm == "visual":
        body = [*sketches, Text(["<image_end>"], True)]
    else:  # the words fix the endpoints, the picture the route, the second thought reads it off
        body = [Text(["<think>", *plan, "</think>", *sketches[0].tokens], True), *sketches[1:],
                Text(["<image_end>", "<think>", *steps, "</think>"], True)]
    return context(task) + body + [tail]


def describe(task: MazeTask | GravityTask) -> list[str]:
    """What a maze or gravity picture shows, in words: start and goal cells, then every hole in raster
    order; or every block."""
    if isinstance(task, MazeTask):
        words = ["start", *map(str, task.start), "goal", *map(str, task.goal)]
        for r, c in zip(*task.holes.nonzero(), strict=True):
            words += ["hole", str(r), str(c)]
        return words
    if isinstance(task, GravityTask):
        return ["blocks", *_cells(task.blocks)]
    raise ValueError(f"only mazes and gravity grids have a description, got {type(task).__name__}")


def base_trace(task: MazeTask | GravityTask, kind: str) -> list[Segment]:
    """A base-stage trace: `caption` reads a picture out (text loss), `draw` paints it from its words (flow
    loss; the words are context). Neither contains a path or a step: reasoning is left to the arms."""
    if kind not in BASE_KINDS:
        raise ValueError(f"kind must be one of {BASE_KINDS}, got {kind!r}")
    words = describe(task)
    if kind == "caption":
        return context(task) + [Text([*words, "<eos>"], True)]
    return [Text(["<bos>", task.name, str(task.size), *words], False), Text(["<image_start>"], True),
            Image(task.render(), True), Text(["<image_end>", "<eos>"], True)]


def parse_answer(task: Task, tokens: list[str]):
    """The answer between <answer> and </answer> in generated words, in the task's answer type;
    None when the trace has no well-formed answer (scored as wrong)."""
    if "<answer>" not in tokens:
        return None
    ans = tokens[tokens.index("<answer>") + 1:]
    if "</answer>" not in ans:
        return None
    ans = ans[:ans.index("</answer>")]
    if isinstance(task, MazeTask):
        return ans if all(a in MOVES for a in ans) else None
    if isinstance(task, GravityTask):
        return int(ans[0]) if len(ans) == 1 and ans[0].isdigit() else None
    return [int(a) for a in ans] if all(a.isdigit() for a in ans) else None


def trace_text(trace: list[Segment]) -> str:
    """One line per segment, images as `[image HxW]` (for printing and the widget)."""
    out = []
    for seg in trace:
        if isinstance(seg, Text):
            out.append(" ".join(seg.tokens))
        else:
            h, w, _ = seg.pixels.shape
            out.append(f"[{'generated ' if seg.generated else ''}image {h}x{w}]")
    return "\n".join(out)
