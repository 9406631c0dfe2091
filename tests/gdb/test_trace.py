"""``ktext-emu trace``: one line per traced instruction, with the CPU, the
node it was fetched from, the symbol and the disassembly; JSON Lines with
--json; the window by CPU, by function and by count."""

from __future__ import annotations

import json

import pytest

from emu.cli import main
from emu.errors import UsageError

MACHINE = ["--ktext", "on", "--cpus-per-node", "1", "--workload", "syscall", "--iterations", "3"]


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_trace_of_a_handler_on_one_cpu(capsys, nodes):
    cpu = nodes - 1
    assert main(["trace", *MACHINE, "--nodes", str(nodes), "--cpu", str(cpu),
                 "--function", "sys_null", "--count", "20", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 20
    assert [line["seq"] for line in lines] == list(range(20))
    assert {line["cpu"] for line in lines} == {cpu}
    assert {line["node"] for line in lines} == {cpu}  # replication on: its own copy
    assert all(line["symbol"].startswith("sys_null") for line in lines)
    assert lines[0]["symbol"] == "sys_null" and lines[0]["insn"].startswith("adrp")


def test_text_trace_and_skip(capsys):
    assert main(["trace", *MACHINE, "--nodes", "2", "--skip", "5000", "--count", "5"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 5
    assert all(" cpu" in line and " <" in line for line in lines)
    assert "5 instruction(s) traced" in captured.err


def test_bad_window_is_one_line():
    with pytest.raises(UsageError, match="no symbol"):
        from emu.cli import build_parser

        args = build_parser().parse_args(["trace", *MACHINE, "--function", "no_such_fn"])
        args.run(args)
    assert main(["trace", *MACHINE, "--cpu", "9"]) != 0
