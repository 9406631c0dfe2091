"""The benchmark suite runs (short mode) and writes its JSON: it must not rot.
No time is asserted; the benchmark reports times, tests never judge them."""

from __future__ import annotations

import json

from benchmarks.bench import main


def test_short_benchmark_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--short", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {row["workload"] for row in result["speed"]} == {"syscall", "dbsim", "dbsim_tiny"}
    for row in result["speed"]:
        assert row["instructions"] > 0 and row["fast_vs_baseline"] > 0
    assert [row["cpus"] for row in result["scaling"]] == [2, 8]
    assert all("error" not in row for row in result["boot"])
    assert [row["nodes"] for row in result["scale"]] == [4, 64]
    for row in result["scale"]:
        assert "error" not in row and row["complete"] and row["json_bytes"] > 0
    assert "M instr/s" in capsys.readouterr().out
