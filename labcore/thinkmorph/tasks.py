"""Procedural visual puzzles with exact simulators: a FrozenLake-style maze, a small jigsaw and falling
blocks. ThinkMorph (Gu et al., 2025) trains on spatial navigation (VSP) and jigsaw assembly; the first two
are offline stand-ins, the third is our positive control. Taught in notebooks/06_thinkmorph.ipynb, section "The tasks".

Every instance is a pure function of (size, seed), is solvable, renders to a uint8 [H, W, 3] image made
of CELL x CELL pixel cells (one cell = one image patch token), and scores an answer by executing it.
Each task also draws its *visual thoughts*: the pictures a reasoner would sketch on the way to the answer
(the path drawn on the maze, the assembled jigsaw, the blocks after every step of falling).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

CELL = 4  # pixels per cell side: one cell is one [CELL, CELL, 3] patch token
MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}

MAZE_SIZES = (4, 9)  # smallest and largest maze side the renderer/model support
TRAIN_MAZE_SIZES = (4, 6)  # in-distribution
HELDOUT_MAZE_SIZES = (5,)  # never trained on, but every coordinate word it needs is (6x6 mazes use 0..5)
JIGSAW_SIZES = (2, 4)  # pieces per side
TRAIN_JIGSAW_SIZES = (2, 3)
HELDOUT_JIGSAW_SIZES = ()
GRAVITY_SIZES = (4, 8)  # grid side
TRAIN_GRAVITY_SIZES = (4, 5)
HELDOUT_GRAVITY_SIZES = ()
GRAVITY_STEPS = 3  # steps of falling before the question

# colours (RGB)
FLOOR, HOLE, START, GOAL, PATH, GRID = (225, 225, 215), (30, 60, 140), (40, 170, 70), (240, 190, 30), \
    (220, 50, 50), (150, 150, 150)
BLOCK = (150, 80, 40)


def _rng(kind: int, size: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([kind, size, seed])


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _cell(img: np.ndarray, r: int, c: int, color) -> None:
    """Fill cell (r, c) inside its 1-pixel grid line (top and left edges stay grid-coloured)."""
    y, x = r * CELL, c * CELL
    img[y + 1:y + CELL, x + 1:x + CELL] = color


# ---- maze ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MazeTask:
    """A size x size FrozenLake grid: walk from start to goal with U/D/L/R without stepping into a hole.

    holes: bool [size, size]; start, goal: (row, col). Build with `MazeTask.generate(size, seed)`.
    """

    size: int
    seed: int
    holes: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]

    name = "maze"

    @classmethod
    def generate(cls, size: int, seed: int, hole_rate: float = 0.25) -> MazeTask:
        """Random holes, start and goal at least size-1 steps apart (Manhattan); resampled until BFS
        finds a path, and after 200 failed draws the holes are dropped, so every seed is solvable."""
        lo, hi = MAZE_SIZES
        if not isinstance(size, (int, np.integer)) or not lo <= size <= hi:
            raise ValueError(f"size must be an int in [{lo}, {hi}], got {size!r}")
        _check_seed(seed)
        if not 0.0 <= hole_rate < 0.6:
            raise ValueError(f"hole_rate must be in [0, 0.6), got {hole_rate}")
        rng = _rng(1, int(size), int(seed))
        cells = [(r, c) for r in range(size) for c in range(size)]
        for attempt in range(201):
            holes = rng.random((size, size)) < (hole_rate if attempt < 200 else 0.0)
            while True:
                i, j = rng.choice(len(cells), size=2, replace=False)
                start, goal = cells[i], cells[j]
                if abs(start[0] - goal[0]) + abs(start[1] - goal[1]) >= size - 1:
                    break
            holes[start] = holes[goal] = False
            task = cls(int(size), int(seed), holes, start, goal)
            if task._bfs() is not None:
                return task
        raise AssertionError("unreachable: a hole-free grid is always solvable")

    def _distances(self) -> np.ndarray:
        """BFS steps from every cell to the goal (-1 where the goal is cut off)."""
        dist = np.full((self.size, self.size), -1, dtype=int)
        dist[self.goal] = 0
        queue = deque([self.goal])
        while queue:
            cur = queue.popleft()
            for dr, dc in MOVES.values():
                nxt = (cur[0] + dr, cur[1] + dc)
                if 0 <= nxt[0] < self.size and 0 <= nxt[1] < self.size and not self.holes[nxt] \
                        and dist[nxt] < 0:
                    dist[nxt] = dist[cur] + 1
                    queue.append(nxt)
        return dist

    def _bfs(self) -> list[str] | None:
        """Shortest path as moves, None when the goal is cut off. Walked forward: at every cell take the
        first move in U, D, L, R order that gets one step closer to the goal, a rule that only needs the
        distances next to the current cell (easier for a small model to imitate than BFS parent links)."""
        dist = self._distances()
        if dist[self.start] < 0:
            return None
        cur, moves = self.start, []
        while cur != self.goal:
            for m, (dr, dc) in MOVES.items():
                nxt = (cur[0] + dr, cur[1] + dc)
                if 0 <= nxt[0] < self.size and 0 <= nxt[1] < self.size and dist[nxt] == dist[cur] - 1:
                    moves.append(m)
                    cur = nxt
                    break
        return moves

    def solution(self) -> list[str]:
        """One shortest list of moves from "U", "D", "L", "R"."""
        return self._bfs()  # type: ignore[return-value]

    def walk(self, moves: list[str]) -> list[tuple[int, int]]:
        """Cells visited from the start (start included), stopping at the goal or before a bad move."""
        cur, seen = self.start, [self.start]
        for m in moves:
            if cur == self.goal or m not in MOVES:
                break
            nxt = (cur[0] + MOVES[m][0], cur[1] + MOVES[m][1])
            if not (0 <= nxt[0] < self.size and 0 <= nxt[1] < self.size) or self.holes[nxt]:
                break
            cur = nxt
            seen.append(cur)
        return seen

    def score(self, moves) -> bool:
        """Execute the moves: True only if they reach the goal without entering a hole, leaving the grid
        or using an unknown move before it. As in FrozenLake, reaching the goal ends the episode."""
        if moves is None:
            return False
        if isinstance(moves, str) or not isinstance(moves, (list, tuple)):
            raise ValueError(f"moves must be a list of 'U'/'D'/'L'/'R', got {type(moves).__name__}")
        cur = self.start
        for m in moves:
            if cur == self.goal:
                return True
            if m not in MOVES:
                return False
            cur = (cur[0] + MOVES[m][0], cur[1] + MOVES[m][1])
            if not (0 <= cur[0] < self.size and 0 <= cur[1] < self.size) or self.holes[cur]:
                return False
        return cur == self.goal

    def render(self, path: list[str] | None = None) -> np.ndarray:
        """uint8 [size*CELL, size*CELL, 3]: grid lines, holes, start (green), goal (gold); with `path`,
        the cells it visits are painted red (the visual thought)."""
        n = self.size
        img = np.empty((n * CELL, n * CELL, 3), dtype=np.uint8)
        img[:] = GRID
        for r in range(n):
            for c in range(n):
                _cell(img, r, c, HOLE if self.holes[r, c] else FLOOR)
        if path is not None:
            for r, c in self.walk(path)[1:]:
                if (r, c) != self.goal:
                    _cell(img, r, c, PATH)
        _cell(img, *self.start, START)
        _cell(img, *self.goal, GOAL)
        return img

    def visual_thoughts(self) -> list[np.ndarray]:
        """The images an interleaved reasoner draws: the solution path painted on the grid."""
        return [self.render(self.solution())]


# ---- jigsaw --------------------------------------------------------------------------------------

def seam_costs(picture: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """How badly piece j continues piece i across a seam, for every pair of pieces (raster positions of
    the assembled picture): right[i, j] when j is put right of i, down[i, j] when j is put below i. The
    cost is the mean |difference| between j's first pixel line and the line i's last two predict (linear
    extrapolation, so a smooth gradient across the seam costs nothing). [k, k] each, k = size^2."""
    img = picture.astype(float)
    pieces = [img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] for r in range(size) for c in range(size)]
    right_pred = np.stack([2 * p[:, -1] - p[:, -2] for p in pieces])  # [k, CELL, 3]
    left = np.stack([p[:, 0] for p in pieces])
    down_pred = np.stack([2 * p[-1] - p[-2] for p in pieces])
    top = np.stack([p[0] for p in pieces])
    right = np.abs(right_pred[:, None] - left[None]).mean((-1, -2))
    down = np.abs(down_pred[:, None] - top[None]).mean((-1, -2))
    return right, down


def _seams_unique(picture: np.ndarray, size: int, margin: float) -> bool:
    """Every true neighbour is the best continuation of its seam, both ways, by more than margin."""
    right, down = seam_costs(picture, size)
    k = size * size
    for cost, pairs in ((right, [(i, i + 1) for i in range(k) if i % size < size - 1]),
                        (down, [(i, i + size) for i in range(k - size)])):
        for i, j in pairs:
            others_j = np.delete(cost[i], [i, j])  # i's seam against every other piece
            others_i = np.delete(cost[:, j], [i, j])  # j's seam against every other piece
            if cost[i, j] + margin >= min(others_j.min(), others_i.min()):
                return False
    return True


@dataclass(frozen=True)
class JigsawTask:
    """A size x size jigsaw of one-cell pieces cut from a procedural picture, then shuffled.

    The picture is a smooth random field (two random plane waves per colour channel, directions and phases
    drawn per instance, each channel stretched to [30, 225]), so a piece's colour says nothing about where
    it belongs; only the seams do. Instances are kept only when every true neighbour is its seam's clearly
    best continuation (`seam_costs`), so the assembly is decided by seam continuity alone.
    perm[i] is the original position (raster order) of the piece shown at shuffled position i.
    """

    size: int
    seed: int
    picture: np.ndarray  # uint8 [size*CELL, size*CELL, 3], the assembled image
    perm: tuple[int, ...]

    name = "jigsaw"
    SEAM_MARGIN = 6.0  # in 0..255 pixel units: how much better the true seam must be than any other

    @classmethod
    def generate(cls, size: int, seed: int) -> JigsawTask:
        lo, hi = JIGSAW_SIZES
        if not isinstance(size, (int, np.integer)) or not lo <= size <= hi:
            raise ValueError(f"size must be an int in [{lo}, {hi}], got {size!r}")
        _check_seed(seed)
        rng = _rng(2, int(size), int(seed))
        side = size * CELL
        y, x = np.mgrid[0:side, 0:side] / (side - 1)
        for _ in range(500):
            pic = np.zeros((side, side, 3))
            for ch in range(3):
                for _ in range(2):
                    theta, freq, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.2), rng.uniform(0, 2 * np.pi)
                    pic[..., ch] += np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)
                lo_c, hi_c = pic[..., ch].min(), pic[..., ch].max()
                pic[..., ch] = 30 + 195 * (pic[..., ch] - lo_c) / max(hi_c - lo_c, 1e-9)
            picture = np.clip(np.rint(pic), 0, 255).astype(np.uint8)
            if _seams_unique(picture, int(size), cls.SEAM_MARGIN):
                break
        else:
            raise AssertionError(f"no picture with unique seams for size {size}, seed {seed}")
        k = size * size
        perm = rng.permutation(k)
        while np.all(perm == np.arange(k)):  # a solved puzzle is no puzzle
            perm = rng.permutation(k)
        return cls(int(size), int(seed), picture, tuple(int(p) for p in perm))

    def _piece(self, img: np.ndarray, pos: int) -> np.ndarray:
        r, c = divmod(pos, self.size)
        return img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL]

    def render(self) -> np.ndarray:
        """uint8 [size*CELL, size*CELL, 3]: the shuffled pieces."""
        out = np.empty_like(self.picture)
        for i, src in enumerate(self.perm):
            r, c = divmod(i, self.size)
            out[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = self._piece(self.picture, src)
        return out

    def solution(self) -> list[int]:
        """order[j] = shuffled position (raster) of the piece that belongs at position j."""
        order = [0] * len(self.perm)
        for i, src in enumerate(self.perm):
            order[src] = i
        return order

    def assemble(self, order: list[int]) -> np.ndarray:
        """Place shuffled piece order[j] at position j (what the answer would build)."""
        shuffled = self.render()
        out = np.zeros_like(self.picture)
        for j, i in enumerate(order):
            r, c = divmod(j, self.size)
            out[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = self._piece(shuffled, i)
        return out

    def score(self, order) -> bool:
        """True iff the order rebuilds the picture exactly (compared as piece order)."""
        if order is None:
            return False
        if isinstance(order, str) or not isinstance(order, (list, tuple)):
            raise ValueError(f"order must be a list of piece indices, got {type(order).__name__}")
        return list(order) == self.solution()

    def visual_thoughts(self) -> list[np.ndarray]:
        """The images an interleaved reasoner draws: the pieces moved into place."""
        return [self.picture.copy()]


# ---- gravity (the positive control) ---------------------------------------------------------------

def gravity_step(blocks: np.ndarray) -> np.ndarray:
    """One step of falling blocks, all cells at once: a block moves down one cell when the cell below it
    is empty (the floor is below the last row). Cell (r, c) next depends only on (r-1, c), (r, c),
    (r+1, c): every step is a local edit of the grid."""
    b = blocks.astype(bool)
    below = np.ones_like(b)
    below[:-1] = b[1:]  # is the cell below filled (the floor counts as filled)
    above = np.zeros_like(b)
    above[1:] = b[:-1]
    return (b & below) | (above & ~b)


@dataclass(frozen=True)
class GravityTask:
    """A size x size grid of blocks; every step, each block with an empty cell below falls one cell.
    Question: how many blocks are in row `row` after `steps` steps? The positive control: the state that
    matters is spatial and each step changes it locally, so the picture after each step is a small edit
    of the one before, while words have to list every block's coordinates again.

    blocks: bool [size, size] at the start. Build with `GravityTask.generate(size, seed)`.
    """

    size: int
    seed: int
    blocks: np.ndarray
    row: int
    steps: int

    name = "gravity"

    @classmethod
    def generate(cls, size: int, seed: int, steps: int = GRAVITY_STEPS, density: float = 0.35) -> GravityTask:
        """Random blocks (each cell filled with probability density), resampled until every step moves
        some block (no step is a copy); the asked row is uniform among the rows that end with a block."""
        lo, hi = GRAVITY_SIZES
        if not isinstance(size, (int, np.integer)) or not lo <= size <= hi:
            raise ValueError(f"size must be an int in [{lo}, {hi}], got {size!r}")
        _check_seed(seed)
        if not isinstance(steps, (int, np.integer)) or not 1 <= steps <= size - 1:
            raise ValueError(f"steps must be an int in [1, size - 1 = {size - 1}], got {steps!r}")
        if not 0.0 < density < 1.0:
            raise ValueError(f"density must be in (0, 1), got {density}")
        rng = _rng(3, int(size), int(seed))
        while True:
            blocks = rng.random((size, size)) < density
            states = [blocks]
            for _ in range(steps):
                states.append(gravity_step(states[-1]))
            if all((a != b).any() for a, b in zip(states, states[1:], strict=False)):
                break
        rows = states[-1].any(1).nonzero()[0]  # ask about a row that ends with blocks (0 would be too common)
        return cls(int(size), int(seed), blocks, int(rng.choice(rows)), int(steps))

    def states(self) -> list[np.ndarray]:
        """The grid after step 1, 2, ..., steps (bool [size, size] each)."""
        out, cur = [], self.blocks
        for _ in range(self.steps):
            cur = gravity_step(cur)
            out.append(cur)
        return out

    def solution(self) -> int:
        """Blocks in the asked row after the last step."""
        return int(self.states()[-1][self.row].sum())

    def score(self, answer) -> bool:
        if answer is None:
            return False
        if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
            raise ValueError(f"answer must be an int count, got {type(answer).__name__}")
        return int(answer) == self.solution()

    def render(self, blocks: np.ndarray | None = None) -> np.ndarray:
        """uint8 [size*CELL, size*CELL, 3]: grid lines, empty cells, blocks (default: the start)."""
        blocks = self.blocks if blocks is None else blocks
        n = self.size
        img = np.empty((n * CELL, n * CELL, 3), dtype=np.uint8)
        img[:] = GRID
        for r in range(n):
            for c in range(n):
                _cell(img, r, c, BLOCK if blocks[r, c] else FLOOR)
        return img

    def visual_thoughts(self) -> list[np.ndarray]:
        """The images an interleaved reasoner draws: the grid after every step."""
        return [self.render(s) for s in self.states()]


TASKS = {"maze": MazeTask, "jigsaw": JigsawTask, "gravity": GravityTask}
Task = MazeTask | JigsawTask | GravityTask


def make_task(name: str, size: int, seed: int) -> Task:
    """MazeTask, JigsawTask or GravityTask by name."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name].generate(size, seed)
