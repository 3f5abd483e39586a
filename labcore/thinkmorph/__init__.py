"""ThinkMorph (Gu et al., 2025): interleaved text + image chain of thought, on procedural puzzles.

Chapter 6 (notebooks/06_thinkmorph.ipynb). Modules, in the order the notebook teaches them:
tasks (simulators + renderer: maze, jigsaw, falling blocks), traces (the four reasoning arms in the
special-token format), patches (images <-> patch tokens), packing (one sequence, the attention mask,
batches), model (one transformer for text tokens and image patches), training (CE + flow matching; base
stage and arms), generation (mode-switching decoding), evaluate (scoring by execution, probes, partial
oracle, best-of-N), experiment (seeds, the control and the ablation as jobs), config (profiles).
"""

from labcore.thinkmorph.config import ModelConfig, ThinkMorphConfig, profile_config
from labcore.thinkmorph.evaluate import (
           EVAL_SEED,
           PROBES,
           Result,
           accuracy,
           accuracy_by_size,
           best_of_n,
           cells_match,
           drawing_right,
           eval_tasks,
           oracle_hook,
           pass_at_k,
           solve,
           true_hook,
           wrong_hook,
)
from labcore.thinkmorph.experiment import DRAWING_ARMS, Job, plan, run_experiment, variant_config
from labcore.thinkmorph.generation import draw_image, generate, generated_tokens, stepwise
from labcore.thinkmorph.model import InterleavedTransformer, RaggedKVCache
from labcore.thinkmorph.packing import NOISY, TEXT, Packed, attention_mask, attention_mask_naive, collate, pack
from labcore.thinkmorph.patches import edit_source, image_to_patches, patches_to_image
from labcore.thinkmorph.tasks import CELL, GravityTask, JigsawTask, MazeTask, gravity_step, make_task, seam_costs
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
from labcore.thinkmorph.training import make_batch_fn, thinkmorph_loss, train_arm, train_base

__all__ = ["CELL", "GravityTask", "JigsawTask", "MazeTask", "gravity_step", "make_task", "seam_costs", "ARMS",
           "VOCAB", "make_trace", "parse_answer", "trace_text", "ModelConfig", "ThinkMorphConfig", "profile_config",
           "EVAL_SEED", "PROBES", "Result", "accuracy", "accuracy_by_size", "best_of_n", "cells_match",
           "drawing_right", "eval_tasks", "oracle_hook", "pass_at_k", "solve", "true_hook", "wrong_hook",
           "DRAWING_ARMS", "Job", "plan", "run_experiment", "variant_config", "InterleavedTransformer",
           "RaggedKVCache", "NOISY", "TEXT", "Packed", "attention_mask", "attention_mask_naive", "collate", "pack",
           "draw_image", "generate", "generated_tokens", "stepwise", "edit_source", "image_to_patches",
           "patches_to_image", "make_batch_fn", "thinkmorph_loss", "train_arm", "train_base", "Image", "base_trace",
           "context", "describe"]
