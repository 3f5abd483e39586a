"""A held-out task where both accuracy and diversity matter: "name two digits that sum to N".

Each problem is 7 bytes, `NN=a+b;` (e.g. `12=5+7;`). The first digit `a` is a free choice among
every valid digit (up to 10 right answers), everything after it is determined. A good decoder is
random at `a` and certain at `b`: exactly what a per-token temperature can do and one static (T, p)
cannot. Score of k samples for one prompt: coverage@k = #distinct correct answers / min(k, #valid).
Greedy decoding gets accuracy but coverage 1/min(k, #valid).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from labcore.nn import IGNORE_INDEX
from labcore.tokenizer import ByteTokenizer

PROBLEM_LEN = 7  # bytes per problem: NN=a+b;
PROMPT_LEN = 3  # NN=
ANSWER_LEN = 4  # a+b;


def valid_answers(n: int) -> list[tuple[int, int]]:
    if not 0 <= n <= 18:
        raise ValueError(f"n must be in [0, 18], got {n}")
    return [(a, n - a) for a in range(max(0, n - 9), min(9, n) + 1)]


def problem(n: int, a: int) -> str:
    return f"{n:02d}={a}+{n - a};"


def random_problems(count: int, generator: torch.Generator) -> list[str]:
    """`count` problems with N uniform over 0..18 and `a` uniform over N's valid digits."""
    ns = torch.randint(0, 19, (count,), generator=generator).tolist()
    out = []
    for n in ns:
        answers = valid_answers(n)
        a = answers[int(torch.randint(0, len(answers), (1,), generator=generator))][0]
        out.append(problem(n, a))
    return out


def training_batch(batch_size: int, problems_per_row: int, tokenizer: ByteTokenizer,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) [B, L] for next-token training; labels are IGNORE_INDEX (-100) except on answer bytes."""
    rows, labels = [], []
    for _ in range(batch_size):
        text = "".join(random_problems(problems_per_row + 1, generator))
        ids = torch.tensor(tokenizer.encode(text))
        x, y = ids[:-1], ids[1:].clone()
        # position j predicts byte j+1; keep only targets that are answer bytes (offsets 3..6 in a problem)
        offset_in_problem = (torch.arange(1, ids.numel()) % PROBLEM_LEN)
        y[offset_in_problem < PROMPT_LEN] = IGNORE_INDEX
        rows.append(x[: problems_per_row * PROBLEM_LEN])
        labels.append(y[: problems_per_row * PROBLEM_LEN])
    return torch.stack(rows), torch.stack(labels)


@dataclass(frozen=True)
class EvalSet:
    prompts: torch.Tensor  # [P, L] byte ids: a few solved problems, then "NN="
    targets: list[int]  # N per prompt


def eval_set(prefix_problems: int, repeats: int, tokenizer: ByteTokenizer, seed: int = 10_000) -> EvalSet:
    """Every N in 0..18, `repeats` times, each after a fresh few-shot prefix (held-out seed)."""
    g = torch.Generator().manual_seed(seed)
    prompts, targets = [], []
    for _ in range(repeats):
        for n in range(19):
            text = "".join(random_problems(prefix_problems, g)) + f"{n:02d}="
            prompts.append(torch.tensor(tokenizer.encode(text)))
            targets.append(n)
    return EvalSet(torch.stack(prompts), targets)


def parse(answer: str) -> tuple[int, int] | None:
    """`a+b;` -> (a, b), or None when malformed."""
    if len(answer) != ANSWER_LEN or answer[1] != "+" or answer[3] != ";" or not (
            answer[0].isdigit() and answer[2].isdigit()):
        return None
    return int(answer[0]), int(answer[2])


def score(n: int, answers: list[str]) -> dict[str, float]:
    """accuracy and coverage@k of k sampled answers for target N."""
    if not answers:
        raise ValueError("answers must be non-empty")
    parsed = [parse(a) for a in answers]
    correct = [p for p in parsed if p is not None and p[0] + p[1] == n]
    k, n_valid = len(answers), len(valid_answers(n))
    return {"accuracy": len(correct) / k, "coverage": len(set(correct)) / min(k, n_valid),
            "pass": float(bool(correct))}
