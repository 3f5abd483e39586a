"""Checked exercises (labcore.exercises) and the student edition (labcore.student).

- `check` reports and never raises for the learner's function (wrong value, shape, type, count, an
  exception, None), and says PASS only when every output is within the spec's tolerance;
- every chapter has >= 3 checked exercises; every instructor solution passes its check and every
  student stub fails with its hint (the notebook's exercise cells exec'd in-process, no kernel);
- the student build drops every solution, strips outputs, and runs end to end under papermill at the
  smoke profile, each check reporting FAIL without aborting.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import torch

from labcore import course, student
from labcore.exercises import AUTODECO_LOSS, KDA_DECODE_STEP, LAYER_PATTERN, Spec, check

STEMS = [c.stem for c in course.written()]


def _capture(fn, *args, **kwargs) -> tuple[object, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = fn(*args, **kwargs)
    return result, buf.getvalue()


# ---- check() itself ---------------------------------------------------------------------------------

def _double(x):
    return 2 * x


SQUARE = Spec("twice x", _double, lambda n, g: (torch.randn(n["N"], generator=g),), dims={"N": 7},
              hint="multiply by two")


def test_check_passes_a_solution_and_prints_both_sides():
    ok, out = _capture(check, lambda x: x + x, SQUARE)
    assert ok and "PASS: twice x" in out and "yours" in out and "expected" in out


@pytest.mark.parametrize(("fn", "message"), [
    (lambda x: 2 * x + 1e-3, "largest difference at index"),  # wrong values
    (lambda x: (2 * x)[:-1], "shape (6,) != expected (7,)"),  # wrong shape
    (lambda x: (2 * x).tolist(), "expected a torch.Tensor"),  # wrong type
    (lambda x: (2 * x, x), "expected 1 output(s)"),  # wrong count
    (lambda x: None, "not done yet: your function returned None"),
    (lambda x: x @ torch.ones(3), "your function raised RuntimeError"),  # the learner's code crashes
    (lambda x: 2 * x * float("nan"), "largest difference"),  # NaN never passes
], ids=["value", "shape", "type", "count", "none", "raises", "nan"])
def test_check_reports_a_wrong_answer_with_the_hint(fn, message):
    ok, out = _capture(check, fn, SQUARE)
    assert ok is False
    assert message in out and "FAIL: twice x" in out and "hint: multiply by two" in out


def test_check_raising_not_implemented_is_not_done_yet():
    def stub(x):
        raise NotImplementedError

    ok, out = _capture(check, stub, SQUARE)
    assert not ok and "not done yet" in out and "Traceback" not in out


def test_check_tolerance_and_sizes():
    assert _capture(check, lambda x: 2 * x + 1e-7, SQUARE)[0]  # inside the default 1e-5
    assert not _capture(check, lambda x: 2 * x + 1e-7, SQUARE, atol=0.0, rtol=0.0)[0]
    ok, out = _capture(check, lambda x: x + x, SQUARE, nelem={"N": 3})
    assert ok and "{'N': 3}" in out
    with pytest.raises(ValueError, match="nelem keys"):
        check(lambda x: x, SQUARE, nelem={"T": 3})


def test_check_compares_non_tensors_exactly_over_every_draw():
    from labcore.hybrid.model import parse_ratio

    assert _capture(check, parse_ratio, LAYER_PATTERN)[0]
    # right on most draws, wrong when the last layer is forced to MLA: a later draw must catch it
    ok, out = _capture(check, lambda r, n, last: parse_ratio(r, n), LAYER_PATTERN)
    assert not ok and "!= expected" in out and "draw" in out


def test_check_scalar_output():
    from labcore.autodeco import autodeco_loss

    assert _capture(check, lambda *a: autodeco_loss(*a, easy_drop=0.0)[0], AUTODECO_LOSS)[0]
    ok, out = _capture(check, lambda *a: autodeco_loss(*a, easy_drop=0.0)[0] * 1.01, AUTODECO_LOSS)
    assert not ok and "loss: yours" in out


def test_kda_decode_spec_is_the_recurrent_form():
    from labcore.kda import recurrent_kda

    def solution(q, k, v, g, beta, S):
        o, S_new = recurrent_kda(q[:, None], k[:, None], v[:, None], g[:, None], beta[:, None],
                                 initial_state=S, output_final_state=True)
        return o[:, 0], S_new

    def forgets_to_decay(q, k, v, g, beta, S):
        return solution(q, k, v, torch.zeros_like(g), beta, S)

    assert _capture(check, solution, KDA_DECODE_STEP, device="cpu")[0]
    ok, out = _capture(check, forgets_to_decay, KDA_DECODE_STEP, device="cpu")
    assert not ok and "o: Tensor" in out and "hint:" in out


# ---- the notebooks' exercises, exec'd in-process ----------------------------------------------------

@pytest.fixture(scope="module")
def parsed():
    return {stem: student.exercises(student.read(stem)) for stem in STEMS}


def _exec(src: str, ns: dict, where: Path) -> str:
    """Run one cell's source from a real file (triton.jit reads a kernel's source back from disk)."""
    where.write_text(src)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(src, str(where), "exec"), ns)  # noqa: S102 - our own notebook cells
    return buf.getvalue()


def test_every_chapter_has_three_checked_exercises(parsed):
    counts = {stem: len(ex) for stem, (_, ex) in parsed.items()}
    print("checked exercises per chapter:", counts)
    assert set(counts) == set(STEMS)
    short = {s: n for s, n in counts.items() if n < 3}
    assert not short, f"chapters with fewer than 3 checked exercises: {short}"
    for stem, (setup, ex) in parsed.items():
        assert setup, f"{stem}: no cell tagged exercise-setup"
        for e in ex:
            assert e.solution is not None, f"{stem}: an exercise without a solution cell:\n{e.stub}"
            assert "check(" in e.check and "# Finish me!" in e.stub, f"{stem}: stub or check malformed"


@pytest.mark.parametrize("stem", STEMS)
def test_instructor_solutions_pass_and_student_stubs_fail(parsed, stem, tmp_path):
    setup, ex = parsed[stem]
    ns: dict = {"__name__": "__main__"}
    for i, src in enumerate(setup):
        _exec(src, ns, tmp_path / f"setup{i}.py")
    for i, e in enumerate(ex):
        _exec(e.stub, ns, tmp_path / f"stub{i}.py")
        out = _exec(e.check, ns, tmp_path / f"check{i}.py")
        assert "FAIL:" in out and "hint:" in out, \
            f"{stem} exercise {i + 1}: the stub should fail with its teaching message, printed:\n{out}"
        _exec(e.solution, ns, tmp_path / f"solution{i}.py")
        out = _exec(e.check, ns, tmp_path / f"check{i}b.py")
        assert "PASS:" in out and "FAIL" not in out, f"{stem} exercise {i + 1}: the solution fails:\n{out}"


# ---- the student build ------------------------------------------------------------------------------

def test_student_build_drops_solutions_and_outputs(tmp_path):
    rows = student.build(tmp_path)
    assert [r["stem"] for r in rows] == STEMS
    import nbformat

    for r in rows:
        nb = nbformat.read(r["path"], as_version=4)
        assert r["exercises"] >= 3 and r["solutions_removed"] >= r["exercises"]
        assert not any(student.SOLUTION in student.tags(c) for c in nb.cells)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert "Student edition" in nb.cells[1].source
        stubs = [c for c in nb.cells if student.STUB in student.tags(c)]
        assert len(stubs) == r["exercises"]


def test_exercise_tags_must_pair_up():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def f(): return 1", metadata={"tags": ["solution"]})]
    with pytest.raises(ValueError, match="directly follow its exercise-stub"):
        student.exercises(nb)


@pytest.mark.slow
def test_student_notebooks_run_end_to_end_at_smoke(tmp_path):
    """Every student notebook under papermill at the smoke profile, start to finish: no cell raises, and
    every exercise check reports FAIL with its hint (the stubs are unfinished) instead of aborting."""
    import nbformat
    import papermill as pm

    rows = student.build(tmp_path / "student")
    old = os.environ.get("LABCORE_PROFILE")
    os.environ["LABCORE_PROFILE"] = "smoke"
    try:
        for r in rows:
            out = tmp_path / f"{r['stem']}.ran.ipynb"
            pm.execute_notebook(str(r["path"]), str(out), parameters={"PROFILE": "smoke"},
                                cwd=str(course.NOTEBOOK_DIR), progress_bar=False, kernel_name="python3")
            nb = nbformat.read(out, as_version=4)
            checks = [c for c in nb.cells if student.CHECK in student.tags(c)]
            assert len(checks) == r["exercises"]
            for c in checks:
                text = "".join(o.get("text", "") for o in c.outputs if o.get("output_type") == "stream")
                assert "FAIL:" in text and "hint:" in text, f"{r['stem']}: a check did not report:\n{text}"
    finally:
        if old is None:
            os.environ.pop("LABCORE_PROFILE", None)
        else:
            os.environ["LABCORE_PROFILE"] = old


# ---- each spec catches a plausible mistake ------------------------------------------------------------

def _cache_without_conv(cfg, B, S):
    H, D = cfg.n_head, cfg.head_dim
    values = {"kda": H * D * D, "mla": S * (cfg.kv_lora_rank + cfg.shared_dim), "attn": S * 2 * H * D}
    return 4 * B * sum(values[k] for k in cfg.layer_types)


def _score_ignoring_goal(task, moves):  # keeps walking after the goal
    step = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}
    r, c = task.start
    for m in moves:
        r, c = r + step[m][0], c + step[m][1]
        if not (0 <= r < task.size and 0 <= c < task.size) or task.holes[r, c]:
            return False
    return (r, c) == task.goal


def _energy_with_diagonal(samples, y):  # averages ||X - X'|| over N^2 pairs, zeros included
    s = samples.transpose(0, 1)
    return (s - y[:, None]).norm(dim=-1).mean(-1) - torch.cdist(s, s).mean(dim=(1, 2)) / 2


def _swapped_masks(probs, P):
    from labcore.autodeco import top_p_mask

    return top_p_mask(probs, P, "inclusive"), top_p_mask(probs, P, "hf")


def _unshifted_grid(steps, latent_dim, base_dim):
    return torch.linspace(1.0, 0.0, steps + 1)


@pytest.mark.parametrize(("spec_name", "buggy"), [
    ("HYBRID_CACHE_BYTES", _cache_without_conv), ("MAZE_SCORE", _score_ignoring_goal),
    ("ENERGY_SCORE", _energy_with_diagonal), ("TOP_P_MASKS", _swapped_masks),
    ("SHIFTED_GRID", _unshifted_grid),
], ids=lambda x: x if isinstance(x, str) else "")
def test_specs_catch_a_plausible_bug(spec_name, buggy):
    import labcore.exercises as ex

    ok, out = _capture(check, buggy, getattr(ex, spec_name))
    assert not ok and "FAIL:" in out and "hint:" in out
