"""ThinkMorph (Gu et al., 2025): interleaved text + image chain of thought, on procedural puzzles.

Chapter 6 (notebooks/06_thinkmorph.ipynb). Modules, in the order the notebook teaches them:
tasks (maze and jigsaw simulators + renderer), traces (the four reasoning arms in the special-token
format), model (one transformer for text tokens and image patches; CE + flow matching; mode-switching
generation), evaluate (scoring by execution, blank/wrong-image probes, best-of-N), config (profiles).
"""

from labcore.thinkmorph.tasks import CELL, JigsawTask, MazeTask, make_task
from labcore.thinkmorph.traces import ARMS, VOCAB, make_trace, parse_answer, trace_text

__all__ = ["CELL", "JigsawTask", "MazeTask", "make_task", "ARMS", "VOCAB", "make_trace", "parse_answer",
           "trace_text"]
