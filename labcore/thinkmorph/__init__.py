"""ThinkMorph (Gu et al., 2025): interleaved text + image chain of thought, on procedural puzzles.

Chapter 6 (notebooks/06_thinkmorph.ipynb). Modules, in the order the notebook teaches them:
tasks (maze and jigsaw simulators + renderer), traces (the four reasoning arms in the special-token
format), model (one transformer for text tokens and image patches; CE + flow matching; mode-switching
generation), evaluate (scoring by execution, blank/wrong-image probes, best-of-N), config (profiles).
"""

from labcore.thinkmorph.config import profile_config
from labcore.thinkmorph.evaluate import accuracy, accuracy_by_size, best_of_n, eval_tasks, pass_at_k, solve, wrong_hook
from labcore.thinkmorph.model import (
           InterleavedTransformer,
           attention_mask,
           attention_mask_naive,
           collate,
           generate,
           generated_tokens,
           image_to_patches,
           pack,
           stepwise,
           thinkmorph_loss,
           train_arm,
           train_base,
)
from labcore.thinkmorph.tasks import CELL, JigsawTask, MazeTask, make_task
from labcore.thinkmorph.traces import (
           ARMS,
           VOCAB,
           Image,
           base_trace,
           context,
           describe,
           make_trace,
           parse_answer,
           trace_text,
)

__all__ = ["CELL", "JigsawTask", "MazeTask", "make_task", "ARMS", "VOCAB", "make_trace", "parse_answer", "trace_text",
           "profile_config", "accuracy", "accuracy_by_size", "best_of_n", "eval_tasks", "pass_at_k", "solve",
           "wrong_hook", "InterleavedTransformer", "attention_mask", "attention_mask_naive", "collate", "generate",
           "generated_tokens", "image_to_patches", "pack", "stepwise", "thinkmorph_loss", "train_arm", "train_base",
           "Image", "base_trace", "context", "describe"]
