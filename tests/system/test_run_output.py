"""What ``ktext-emu run`` prints on the terminal (issue 13): console output
prefixed with its CPU, fault reports with the last blocks, the balance
measure, the compiled-extension notice."""

from __future__ import annotations

import json
from pathlib import Path

from emu.cli import main

ASM = Path(__file__).parent / "asm"
SMALL = ["--nodes", "2", "--cpus-per-node", "1"]


def test_console_output_is_printed_with_its_cpu(capsys, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    status = main(["run", *SMALL, "--ktext", "on", "--add", str(ASM / "hello.S"),
                   "--workload", "hello", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert status == 0
    assert "[cpu 0] hello from a task" in out and "[cpu 1] hello from a task" in out
    run = json.loads(out_json.read_text())["runs"][0]
    assert run["console"] == ["hello from a task\n"] * 2
    assert sorted(run["console_cpus"]) == [0, 1]


def test_quiet_prints_no_console_output(capsys) -> None:
    status = main(["run", *SMALL, "--ktext", "on", "--add", str(ASM / "hello.S"),
                   "--workload", "hello", "--quiet"])
    assert status == 0
    assert capsys.readouterr().out == ""


def test_a_fault_report_shows_the_last_blocks_disassembled(capsys) -> None:
    status = main(["run", *SMALL, "--ktext", "on", "--add", str(ASM / "bad_unmapped.S"),
                   "--workload", "bad_load"])
    err = capsys.readouterr().err.splitlines()
    assert status == 5
    assert err[-1].startswith("ktext-emu: error: CPU 0 (node 0): ")
    header = next(i for i, line in enumerate(err) if line.startswith("last "))
    assert err[header].endswith("blocks run on CPU 0 (oldest first):")
    listing = "\n".join(err[header:-1])
    # The user block that faulted, symbolized, with the faulting load disassembled.
    assert "<workload_bad_load+0x8 (user)>:" in listing
    assert "ldr x3, [x2, #0x10]    <- fault PC" in listing
    assert "<el1_sync>:" in listing


def test_the_table_says_which_balance_measure_it_prints(capsys) -> None:
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "20"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("memory traffic balance"))
    assert "(busiest node / mean over nodes; 1.00 even, 2.00 all on one node)" in line
    assert "max/min" not in out
