"""The one verdict every chapter's paper-vs-lab table is judged by (labcore.report.judge)."""

import pytest

from labcore.report import (
    BY_CONSTRUCTION,
    DOES_NOT_HOLD,
    HOLDS,
    NA,
    Claim,
    all_of,
    by_construction,
    central_claim,
    judge,
    markdown_table,
    not_judged,
)


@pytest.mark.parametrize(("ours", "theirs", "kw", "outcome"), [
    pytest.param([0.6, 0.7], [0.3, 0.4], {}, HOLDS, id="ranges-separate"),
    pytest.param([0.6, 0.35], [0.3, 0.4], {}, DOES_NOT_HOLD, id="ranges-overlap"),
    pytest.param([0.6, 0.7], [0.3, 0.4], {"margin": 0.25}, DOES_NOT_HOLD, id="gap-below-margin"),
    pytest.param([0.2, 0.1], [0.3, 0.4], {}, DOES_NOT_HOLD, id="reversed"),
    pytest.param([3.1, 3.2], [3.5, 3.6], {"better": "lower"}, HOLDS, id="lower-is-better"),
    pytest.param([3.52, 3.55], [3.5, 3.51], {"better": "lower", "kind": "matches", "margin": 0.1}, HOLDS,
                 id="matches-within-margin"),
    pytest.param([3.9, 3.8], [3.5, 3.51], {"better": "lower", "kind": "matches", "margin": 0.1}, DOES_NOT_HOLD,
                 id="matches-behind"),
    pytest.param([0.9995, 0.9992], 0.999, {}, HOLDS, id="threshold"),
    pytest.param([0.7], [0.3], {}, NA, id="one-seed"),
    pytest.param([0.7], [0.3], {"min_seeds": 1}, HOLDS, id="one-seed-allowed"),
    pytest.param([0.7, float("nan")], [0.3, 0.2], {}, NA, id="nan"),
])
def test_judge(ours, theirs, kw, outcome):
    v = judge(ours, theirs, **{"margin": 0.0, "profile": "cpu", **kw})
    assert v.outcome == outcome, v.why


def test_smoke_is_always_na():
    assert judge([0.9, 0.9], [0.1, 0.1], margin=0.0, profile="smoke").outcome == NA


def test_why_says_reversed_or_noise():
    assert "reversed" in judge([0.1, 0.2], [0.5, 0.6], margin=0.0, profile="cpu").why
    assert "noise" in judge([0.5, 0.3], [0.4, 0.45], margin=0.0, profile="cpu").why


@pytest.mark.parametrize(("kw", "message"), [
    ({"margin": -1}, "margin"), ({"better": "up"}, "better"), ({"kind": "wins"}, "kind"),
    ({"min_seeds": 0}, "min_seeds"),
])
def test_judge_rejects_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        judge([1.0, 2.0], [0.0], **{"margin": 0.0, "profile": "cpu", **kw})


def test_all_of():
    yes, no = judge([2, 3], [1], margin=0, profile="cpu"), judge([0, 1], [2], margin=0, profile="cpu")
    assert all_of({"a": yes, "b": yes}).outcome == HOLDS
    assert all_of({"a": yes, "b": no}).outcome == DOES_NOT_HOLD
    assert all_of({"a": yes, "b": not_judged("x")}).outcome == NA


def test_table_marks_central_and_design_facts():
    rows = [Claim("c1", "p", "l", judge([2, 3], [1], margin=0, profile="cpu"), central=True),
            Claim("c2", "p", "l", by_construction("1 of 4 layers caches"))]
    md = markdown_table(rows, "cpu")
    assert "**c1** (central) | p | l | holds |" in md and f"| {BY_CONSTRUCTION} |" in md
    assert central_claim(rows).claim == "c1"
    with pytest.raises(ValueError, match="exactly one central"):
        central_claim([rows[1]])
    with pytest.raises(TypeError, match="Verdict"):
        Claim("c", "p", "l", True)
