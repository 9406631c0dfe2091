"""``ktext-emu verify`` and ``ktext-emu storm``: output, JSON report, exit status."""

from __future__ import annotations

import json

import pytest

from emu import cli
from emu.system import System


def test_verify_passes_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "verify.json"
    assert cli.main(["verify", "--json", str(out), "--iterations", "10"]) == 0
    printed = capsys.readouterr().out
    assert "on 4 node(s), 3 copies: OK" in printed
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["verify"]["ok"] is True and run["verify"]["differences"] == []
    assert run["ktext"] is True and run["workload"] == "static_keys"
    assert run["static_keys"]["probe_key_false"]["sites"] == 2
    assert run["cpu_caps"] == []


def test_verify_reports_a_corrupted_copy_and_fails(tmp_path, capsys, monkeypatch):
    original_run = System.run

    def run_then_corrupt(self, *args, **kwargs):
        result = original_run(self, *args, **kwargs)
        va = self.image.sym("sys_getcpu")
        copy = self.kernel.replication.text_copies[2]
        self.physmem.write_u32(copy + va - self.image.sym("_stext"), 0xD4200000)
        return result

    monkeypatch.setattr(System, "run", run_then_corrupt)
    out = tmp_path / "verify.json"
    assert cli.main(["verify", "--json", str(out), "--iterations", "5"]) == 1
    printed = capsys.readouterr().out
    assert "DIFFERENT" in printed
    assert "node 2: first difference at" in printed and "<sys_getcpu>" in printed
    assert "brk #0" in printed
    run = json.loads(out.read_text())["runs"][0]
    assert run["verify"]["ok"] is False
    assert run["verify"]["differences"][0]["node"] == 2


@pytest.mark.parametrize("argv", [
    ["--ktext", "off"],
    ["--nodes", "2", "--granule", "64k", "--va-bits", "42"],
    ["--cpu-features", "ARM64_HAS_CACHE_DIC,has_pan", "--nodes", "2"],
])  # fmt: skip
def test_verify_machine_options(argv, capsys):
    assert cli.main(["verify", "--iterations", "5", *argv]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("argv,status,message", [
    (["verify", "--cpu-features", "HAS_WINGS"], 3, "unknown CPU feature 'HAS_WINGS'"),
    (["verify", "--iterations", "-1"], 2, "--iterations -1"),
    (["verify", "--kernel", "k.elf", "--add", "x.S"], 2, "cannot be combined"),
    (["storm", "--flips", "0"], 2, "must be positive"),
])  # fmt: skip
def test_errors_are_one_line(argv, status, message, capsys):
    assert cli.main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ktext-emu: error:") and message in err[0]


def test_storm_command(tmp_path, capsys):
    out = tmp_path / "storm.json"
    assert cli.main(["storm", "--flips", "200", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200 flips by 4 CPU(s)" in printed and printed.rstrip().endswith("OK")
    run = json.loads(out.read_text())["runs"][0]
    storm = run["storm"]
    assert storm["flips"] == 200 and storm["anomalies"] == []
    assert sorted(storm["executions_by_node"]) == ["0", "1", "2", "3"]
    assert storm["cache_check"]["violations"] == []
    assert run["verify"]["ok"] is True
