"""Benchmarks write JSON + HTML (no timing assertions: speed is reported, not tested)."""

import json

from labcore.bench import BENCHES, run_bench


def test_soft_top_p_bench_writes_json_and_plot(tmp_path):
    assert "soft_top_p" in BENCHES
    res = run_bench("soft_top_p", tmp_path, quick=True)
    data = json.loads((tmp_path / "soft_top_p.json").read_text())
    assert [r["V"] for r in data["rows"]] == [256, 4096] and all(r["torch_ms"] > 0 for r in data["rows"])
    assert (tmp_path / "soft_top_p.html").stat().st_size > 1000 and res["summary"]
