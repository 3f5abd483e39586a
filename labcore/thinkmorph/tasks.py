"""Procedural visual puzzles with exact simulators: a FrozenLake-style maze and a small jigsaw.
ThinkMorph (Gu et al., 2025) trains on spatial navigation (VSP) and jigsaw assembly; these are offline
stand-ins. Taught in notebooks/06_thinkmorph.ipynb, section "The tasks".

Every instance is a pure function of (size, seed), is solvable, renders to a uint8 [H, W, 3] image made
of CELL x CELL pixel cells (one cell = one image patch token), and scores an answer by executing it.
Each task also draws its *visual thought*: the picture a reasoner would sketch on the way to the answer
(the path drawn on the maze, the assembled jigsaw).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

CELL = 4  # pixels per cell side: one cell is one [CELL, CELL, 3] patch token
MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}

MAZE_SIZES = (4, 9)  # smallest and largest maze side the renderer/model support
TRAIN_MAZE_SIZES = (4, 5, 6, 7)  # in-distribution (the 4x4..7x7)
HELDOUT_MAZE_SIZES = (8, 9)  # never trained on
JIGSAW_SIZES = (2, 4)  # pieces per side
TRAIN_JIGSAW_SIZES = (2, 3)
HELDOUT_JIGSAW_SIZES = (4,)

# colours (RGB)
FLOOR, HOLE, START, GOAL, PATH, GRID = (225, 225, 215), (30, 60, 140), (40, 170, 70), (240, 190, 30), \
    (220, 50, 50), (150, 150, 150)


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

    def visual_thought(self) -> np.ndarray:
        """The image an interleaved reasoner draws: the solution path painted on the grid."""
        return self.render(self.solution())


# ---- jigsaw --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JigsawTask:
    """A size x size jigsaw of one-cell pieces cut from a procedural picture, then shuffled.

    The picture is a colour ramp (red grows to the right, green downwards, slightly jittered per
    instance) with a disk drawn in the blue channel, so each piece carries where it came from.
    perm[i] is the original position (raster order) of the piece shown at shuffled position i.
    """

    size: int
    seed: int
    picture: np.ndarray  # uint8 [size*CELL, size*CELL, 3], the assembled image
    perm: tuple[int, ...]

    name = "jigsaw"

    @classmethod
    def generate(cls, size: int, seed: int) -> JigsawTask:
        lo, hi = JIGSAW_SIZES
        if not isinstance(size, (int, np.integer)) or not lo <= size <= hi:
            raise ValueError(f"size must be an int in [{lo}, {hi}], got {size!r}")
        _check_seed(seed)
        rng = _rng(2, int(size), int(seed))
        side = size * CELL
        y, x = np.mgrid[0:side, 0:side] / (side - 1)
        # near-fixed ramps: a piece's colour says where it belongs (a reasoner still has to look)
        r0, g0 = rng.uniform(20, 40, size=2)
        span_r, span_g = rng.uniform(170, 190, size=2)
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        radius = rng.uniform(0.2, 0.4)
        disk = (y - cy) ** 2 + (x - cx) ** 2 < radius ** 2
        pic = np.stack([r0 + span_r * x, g0 + span_g * y, np.where(disk, 220.0, 50.0)], axis=-1)
        picture = np.clip(np.rint(pic), 0, 255).astype(np.uint8)
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

    def visual_thought(self) -> np.ndarray:
        """The image an interleaved reasoner draws: the pieces moved into place."""
        return self.picture.copy()


TASKS = {"maze": MazeTask, "jigsaw": JigsawTask}


def make_task(name: str, size: int, seed: int) -> MazeTask | JigsawTask:
    """MazeTask or JigsawTask by name."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name].generate(size, seed)
