"""What ``ktext-emu run`` prints on the terminal (issue 13): console output
prefixed with its CPU, fault reports with the last blocks, the balance
measure, the compiled-extension notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


class FakeBar:
    """Records what tqdm is asked to show."""

    made: list[FakeBar] = []

    def __init__(self, total=None, desc="", **_kwargs) -> None:
        self.total, self.desc, self.n = total, desc, 0
        FakeBar.made.append(self)

    def update(self, step: int) -> None:
        self.n += step

    def close(self) -> None:
        pass


@pytest.fixture
def bars(monkeypatch):
    import sys

    import tqdm

    FakeBar.made = []
    monkeypatch.setattr(tqdm, "tqdm", FakeBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    return FakeBar.made


def test_progress_total_is_the_work_of_the_run_not_the_limit(bars, tmp_path: Path) -> None:
    """Defect 8: the total was --max-instructions, so a normal run ended at a few percent."""
    out_json = tmp_path / "r.json"
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "30", "--quiet",
                 "--json", str(out_json)]) == 0
    assert bars == []  # --quiet: no bar
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "30",
                 "--json", str(out_json)]) == 0
    off, on = json.loads(out_json.read_text())["runs"]
    first, second = bars
    assert (first.desc, second.desc) == ("ktext off", "ktext on")
    assert first.total is None  # unknown before anything ran: a count and a rate, no percentage
    assert first.n == off["instructions"]
    assert second.total == off["instructions"]  # the same work as the run before it
    assert second.n == on["instructions"]


def test_progress_total_is_the_limit_when_the_run_goes_to_the_limit(bars) -> None:
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "0", "--ktext", "on",
                 "--max-instructions", "300000"]) == 0
    (bar,) = bars
    assert bar.total == 300000 and bar.n >= 300000


def test_without_the_compiled_extension_it_says_so_once_and_records_it(
        monkeypatch, capsys, tmp_path: Path) -> None:
    """Defect 10: the 20x slower Python path was silent."""
    import sys

    from emu.hw.accounting import NO_ACCEL_ENV

    monkeypatch.delenv(NO_ACCEL_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "emu.hw._accel", None)  # import fails: not built
    out_json = tmp_path / "r.json"
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "5",
                 "--json", str(out_json)]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("ktext-emu: note:")]
    assert len(notes) == 1 and "emu.hw._accel not built" in notes[0]
    assert "about 20x slower" in notes[0]
    host = json.loads(out_json.read_text())["host"]
    assert host["compiled_extension"] is False and "emu.hw._accel" in host["reason"]


def test_with_the_compiled_extension_there_is_no_note(monkeypatch, capsys, tmp_path) -> None:
    from emu.hw.accounting import NO_ACCEL_ENV, compiled_extension_status

    monkeypatch.delenv(NO_ACCEL_ENV, raising=False)
    if not compiled_extension_status()["compiled_extension"]:
        pytest.skip("the compiled extension is not built here")
    out_json = tmp_path / "r.json"
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "5", "--quiet",
                 "--json", str(out_json)]) == 0
    assert "note:" not in capsys.readouterr().err
    assert json.loads(out_json.read_text())["host"] == {"compiled_extension": True,
                                                       "reason": None}
