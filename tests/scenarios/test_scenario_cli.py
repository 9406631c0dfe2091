"""``ktext-emu scenarios``: the table, the JSON document, and the exit status
(1 when a remedy does not remove its hazard, the usual statuses for errors)."""

from __future__ import annotations

import json

import pytest

import emu.scenarios as scenarios
from emu.cli import main
from emu.scenarios.base import Outcome, Role, Scenario


def test_table_and_json(tmp_path, capsys):
    report = tmp_path / "scenarios.json"
    assert main(["scenarios", "layouts", "free-initmem", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    for header in ("scenario", "what v3 does", "hazard seen", "remedy", "with the remedy"):
        assert header in out.splitlines()[1]
    assert out.index("free-initmem") < out.index("layouts")  # registry order
    assert "removed:" in out and "REMEDY FAILS" not in out
    assert "CPU 2 (node 1): fetched freed init text at 0x" in out  # the addresses
    assert out.rstrip().endswith("2 scenarios: every remedy removes its hazard")
    doc = json.loads(report.read_text())
    assert doc["all_remedies_hold"] is True
    assert doc["setup"] == {"nodes": 2, "cpus_per_node": 2, "granule": 4096, "va_bits": 48}
    assert [s["scenario"] for s in doc["scenarios"]] == ["free-initmem", "layouts"]
    hazard = doc["scenarios"][0]["outcomes"][0]
    assert hazard["role"] == "hazard" and hazard["hazard"] is True
    assert hazard["counts"]["cpus_fetched_freed_text"] == 2
    assert {t["scenario"] for t in doc["timings"]} == {"free-initmem", "layouts"}


def test_machine_options(capsys):
    assert main(["scenarios", "pgd-propagation", "--nodes", "3", "--cpus-per-node", "1",
                 "--layout", "16k-36"]) == 0
    out = capsys.readouterr().out
    assert "3 nodes x 1 CPUs, 16K pages, 36-bit VA" in out
    assert "missing from the roots of nodes [1, 2]" in out


def test_failing_remedy_exits_1(monkeypatch, capsys):
    def run(_setup):
        return [Outcome(Role.HAZARD, "v3", True, {"bad": 1}, [], "1 bad thing"),
                Outcome(Role.REMEDY, "a fix that is not", True, {"bad": 1}, [], "1 bad thing")]

    monkeypatch.setitem(scenarios.SCENARIOS, "broken", Scenario("broken", "t", "v3 does x", run))
    assert main(["scenarios", "broken"]) == 1
    out = capsys.readouterr().out
    assert "REMEDY FAILS" in out and out.rstrip().endswith("remedy fails: broken")


def test_unseen_hazard_is_said_but_not_a_failure(monkeypatch, capsys):
    def run(_setup):
        return [Outcome(Role.HAZARD, "v3", False, {"bad": 0}, [], "nothing"),
                Outcome(Role.REMEDY, "fix", False, {"bad": 0}, [], "nothing")]

    monkeypatch.setitem(scenarios.SCENARIOS, "quiet", Scenario("quiet", "t", "v3", run))
    assert main(["scenarios", "quiet"]) == 0
    assert "hazard not seen: quiet" in capsys.readouterr().out


@pytest.mark.parametrize("argv,status,message", [
    (["scenarios", "nonsense"], 2, "unknown scenario 'nonsense'"),
    (["scenarios", "layouts", "--layout", "5k-48"], 3, "granule 5120"),
    (["scenarios", "layouts", "--layout", "big"], 3, "layout name"),
    (["scenarios", "layouts", "--nodes", "0"], 2, "must be positive"),
    (["scenarios", "layouts", "--json", "/nonexistent/dir/x.json"], 7, "does not exist"),
])
def test_errors(argv, status, message, capsys):
    assert main(argv) == status
    assert message in capsys.readouterr().err
