"""Benchmarks write JSON + HTML (no timing assertions: speed is reported, not tested)."""

import json

import pytest

from labcore.bench import BENCHES, run_bench, timeit


def test_soft_top_p_bench_writes_json_and_plot(tmp_path):
    assert "soft_top_p" in BENCHES
    res = run_bench("soft_top_p", tmp_path, quick=True)
    data = json.loads((tmp_path / "soft_top_p.json").read_text())
    assert [r["V"] for r in data["rows"]] == [256, 4096] and all(r["torch_ms"] > 0 for r in data["rows"])
    assert (tmp_path / "soft_top_p.html").stat().st_size > 1000 and res["summary"]
    page = (tmp_path / "soft_top_p.html").read_text()
    assert 'src="plotly.min.js"' in page and "cdn.plot.ly" not in page, "the plot must open offline"
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000


def test_kda_bench_writes_ratios_timed_in_process_time(tmp_path):
    res = run_bench("kda", tmp_path, quick=True)
    data = json.loads((tmp_path / "kda.json").read_text())
    cpu = [r for r in data["rows"] if r["device"] == "cpu"]
    assert sorted({r["T"] for r in cpu}) == [512, 1024]
    # every (T, gate, mode) measured once, each row naming its gate
    assert {(r["T"], r["gate"], r["mode"]) for r in cpu} == {
        (T, g, m) for T in (512, 1024) for g in ("layer_init", "trained", "mild") for m in ("fwd", "fwd+bwd")}
    assert len(cpu) == 12
    # one CPU thread -> process time, so a busy machine does not skew the ratio
    assert all(r["clock"] == "process" and r["chunk_vs_recurrent"] > 0 for r in cpu)
    r0 = cpu[0]
    assert res["summary"][f"cpu_chunk_vs_recurrent@512/{r0['gate']}/{r0['mode']}"] == round(r0["chunk_vs_recurrent"], 2)


def test_timeit_rejects_unknown_clock():
    with pytest.raises(ValueError, match="clock must be one of"):
        timeit(lambda: None, clock="gpu")
