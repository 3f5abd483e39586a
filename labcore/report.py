"""The "paper vs lab" table each chapter ends with, and the one rule every chapter judges a claim by.

A claim is judged by `judge`: per-seed results of our side against per-seed results of the other side (or
a fixed threshold), with a margin stated in the claim's own units. Every chapter uses it, so "holds" means
the same thing everywhere:

- **holds**: every seed of ours beats every seed of theirs by more than the margin ("beats"), or is never
  worse by more than the margin ("matches"); the seed ranges separate, so the gap is not seed noise;
- **does not hold**: anything else, and `why` says whether the trend is reversed or within noise;
- **n/a**: not judgeable in this run (the smoke profile, fewer seeds than asked, a NaN).

Rows that restate a design fact ("the 3:1 stack caches 25% of the layers' K/V") are `by_construction`:
shown, never counted as a reproduced trend. One row per chapter is `central=True`: the paper's headline
claim at toy scale; the course runner collects those into the first table of build/summary.md.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

MIME_KEY = "labcore_paper_vs_lab"  # display metadata key the course runner looks for

HOLDS, DOES_NOT_HOLD, NA, BY_CONSTRUCTION = "holds", "does not hold", "n/a", "by construction"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # holds | does not hold | n/a | by construction
    why: str  # the numbers the outcome was decided on, in one line

    def __post_init__(self):
        if self.outcome not in (HOLDS, DOES_NOT_HOLD, NA, BY_CONSTRUCTION):
            raise ValueError(f"outcome must be one of {HOLDS!r}, {DOES_NOT_HOLD!r}, {NA!r}, {BY_CONSTRUCTION!r}, "
                             f"got {self.outcome!r}")

    @property
    def holds(self) -> bool | None:
        """True / False for a judged trend, None for n/a and design facts."""
        return {HOLDS: True, DOES_NOT_HOLD: False}.get(self.outcome)


def by_construction(why: str) -> Verdict:
    """A row that restates how the lab is built (it cannot fail, so it is not evidence)."""
    return Verdict(BY_CONSTRUCTION, why)


def not_judged(why: str) -> Verdict:
    """A row this run does not measure (e.g. an ImageNet number)."""
    return Verdict(NA, why)


def _values(name: str, xs: Sequence[float] | float) -> list[float]:
    vals = [float(xs)] if isinstance(xs, numbers.Real) else [float(x) for x in xs]
    if not vals:
        raise ValueError(f"{name} must hold at least one per-seed value, got none")
    return vals


def judge(ours: Sequence[float] | float, theirs: Sequence[float] | float, *, margin: float, profile: str,
          better: str = "higher", kind: str = "beats", min_seeds: int = 2, unit: str = "") -> Verdict:
    """Decide a claim "ours beats (or matches) theirs" from per-seed results.

    Args:
        ours: our side's result, one value per seed.
        theirs: the other side's result per seed, or one number: a fixed threshold (e.g. 0.999).
        margin: how far past the other side (in the metric's units, >= 0) a gap must be to count; state
            why in the notebook (seed spread, a binomial error, the paper's effect size).
        profile: the run's profile; "smoke" is always n/a (too small to mean anything).
        better: "higher" or "lower": which direction of the metric is better.
        kind: "beats" (ahead by more than margin) or "matches" (never behind by more than margin).
        min_seeds: fewer seeds of ours than this is n/a (a threshold claim may ask for 1).
        unit: appended to the numbers in `why`.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    if kind not in ("beats", "matches"):
        raise ValueError(f"kind must be 'beats' or 'matches', got {kind!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    if not isinstance(min_seeds, int) or min_seeds < 1:
        raise ValueError(f"min_seeds must be an int >= 1, got {min_seeds!r}")
    a, b = _values("ours", ours), _values("theirs", theirs)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    shown = f"{mean_a:.4g}{unit} vs {mean_b:.4g}{unit} (mean of {len(a)} vs {len(b)} seed(s))"
    if isinstance(theirs, numbers.Real):
        shown = f"{mean_a:.4g}{unit} (mean of {len(a)} seed(s)) vs threshold {mean_b:.4g}{unit}"
    if profile == "smoke":
        return Verdict(NA, f"{shown}; the smoke profile is too small to judge")
    if any(math.isnan(x) for x in a + b):
        return Verdict(NA, f"{shown}; a result is NaN")
    if len(a) < min_seeds:
        return Verdict(NA, f"{shown}; needs >= {min_seeds} seeds")
    sign = 1.0 if better == "higher" else -1.0
    gaps = [sign * (x - y) for x in a for y in b]  # every seed of ours against every seed of theirs
    worst, best = min(gaps), max(gaps)
    need = margin if kind == "beats" else -margin
    where = f"{shown}; worst gap {worst:+.3g}{unit}, best {best:+.3g}{unit}, margin {margin:g}{unit}"
    if worst > need:
        return Verdict(HOLDS, where)
    if kind == "beats":
        side = "reversed" if best < -margin else "within noise or below the margin"
    else:
        side = "behind by more than the margin" if best < -margin else "seeds disagree"
    return Verdict(DOES_NOT_HOLD, f"{where} ({side})")


def all_of(parts: dict[str, Verdict]) -> Verdict:
    """One verdict for a claim made of parts (every length, every task): n/a if any part is n/a, holds if
    every part holds, else does not hold; `why` names each part's outcome and numbers."""
    if not parts:
        raise ValueError("parts must name at least one verdict")
    outcomes = [v.outcome for v in parts.values()]
    why = "; ".join(f"{name}: {v.outcome} ({v.why})" for name, v in parts.items())
    if NA in outcomes or BY_CONSTRUCTION in outcomes:
        return Verdict(NA, why)
    return Verdict(HOLDS if all(o == HOLDS for o in outcomes) else DOES_NOT_HOLD, why)


@dataclass(frozen=True)
class Claim:
    claim: str  # what the paper says, in a few words
    paper: str  # the paper's number or trend
    lab: str  # what we measured in this run
    verdict: Verdict  # from judge(), by_construction() or not_judged()
    central: bool = False  # the chapter's headline claim (exactly one per chapter)

    def __post_init__(self):
        if not isinstance(self.verdict, Verdict):
            raise TypeError(f"verdict must be a labcore.report.Verdict (use judge, by_construction or "
                            f"not_judged), got {type(self.verdict).__name__}")


def md_cell(text: object) -> str:
    """Text safe inside one markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[Claim], profile: str) -> str:
    lines = [f"Measured with profile `{profile}`. Central claim in bold; 'by construction' rows restate a "
             "design fact and are not evidence.", "",
             "| claim | paper | lab | verdict | why |", "|---|---|---|---|---|"]
    for r in rows:
        name = f"**{md_cell(r.claim)}** (central)" if r.central else md_cell(r.claim)
        cells = [name, md_cell(r.paper), md_cell(r.lab), r.verdict.outcome, md_cell(r.verdict.why)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def central_rows(results: list[dict], profile: str) -> list[str]:
    """The course summary's first table, `| chapter | central claim | verdict | profile |`, one row per
    chapter run (`results`: the runner's dicts with "chapter" and the table's "central" metadata)."""
    rows = ["| chapter | central claim | verdict | profile |", "|---|---|---|---|"]
    for r in results:
        c = r.get("central") or {}
        claim, verdict = (c["claim"], c["verdict"]) if c else ("_no central claim was produced_", NA)
        rows.append(f"| {r['chapter']} | {md_cell(claim)} | {verdict} | {c.get('profile') or profile} |")
    return rows


def central_claim(rows: list[Claim]) -> Claim:
    """The one row marked central; a ValueError says how many there were otherwise."""
    central = [r for r in rows if r.central]
    if len(central) != 1:
        raise ValueError(f"a chapter's table needs exactly one central=True claim, got {len(central)}")
    return central[0]


class Table(str):
    """The markdown of a table that is already displayed: as a cell's last expression it shows nothing
    more (a plain str would be echoed a second time, escaped)."""

    def _ipython_display_(self) -> None:
        pass


def paper_vs_lab(rows: list[Claim], profile: str, chapter: str) -> Table:
    """Display the table in the notebook (tagged, with its central claim, so the course runner can find
    it) and return it."""
    central = central_claim(rows)
    md = Table(markdown_table(rows, profile))
    meta = {"chapter": chapter, "profile": profile,
            "central": {"claim": central.claim, "verdict": central.verdict.outcome, "why": central.verdict.why}}
    try:
        from IPython.display import Markdown, display

        display(Markdown(md), metadata={MIME_KEY: meta})
    except ImportError:  # plain python: just print
        print(md)
    return md
