"""Outputs and inputs of every command (issue 17, items 1-5): a device or a
FIFO named as output is written in place, never renamed over; ``-`` is
standard output; an output that is also an input is refused before any
work; a symlinked output keeps its link and its target gets the content; an
output that could never be written is refused before the run; every reader
refuses a device, a FIFO or an oversized file at once.

Commands that could run long or read forever run in a subprocess with a
timeout and a memory cap, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from safety_testlib import IO, TINY_RUN, USAGE, _one_error_line, cli

from emu.cli import main
from emu.errors import OutputError, UsageError
from emu.fileio import check_outputs, check_writable

GRID = '[grid]\niterations = [1, 2]\n[fixed]\nnodes = 2\n'


# -- 1. devices and FIFOs are written in place; - is standard output ----------------

def _char_device(path: Path) -> bool:
    """A private /dev/null twin (needs root): the test never touches the real one."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        return False
    return True


@pytest.mark.parametrize("argv", [
    ["build", "-o", "{out}"],
    [*TINY_RUN, "--json", "{out}"],
], ids=["build -o", "run --json"])  # fmt: skip
def test_a_character_device_output_is_written_not_replaced(tmp_path, argv):
    device = tmp_path / "null"
    if not _char_device(device):
        pytest.skip("creating a device node needs root")
    result = cli(*[a.format(out=device) for a in argv])
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.lstat(device).st_mode), "the device was replaced by a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temp file left


@pytest.mark.parametrize("argv", [
    ["build", "-o", "{out}"],
    [*TINY_RUN, "--json", "{out}"],
], ids=["build -o", "run --json"])  # fmt: skip
def test_a_fifo_output_is_written_through_not_replaced(tmp_path, argv):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def drain() -> None:
        with open(fifo, "rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = cli(*[a.format(out=fifo) for a in argv], timeout=120)
    finally:
        if reader.is_alive():  # the command never opened the FIFO: let the reader go
            with open(fifo, "wb"):
                pass
        reader.join(10)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a file"
    data = received[0]
    if argv[0] == "build":
        assert data[:4] == b"\x7fELF"
    else:
        assert json.loads(data)["complete"] is True


def test_dash_is_standard_output_for_every_report_output(tmp_path):
    run = cli(*TINY_RUN[:-1], "--json", "-")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)  # nothing but the JSON on stdout: the table went to stderr
    assert report["complete"] is True and len(report["runs"]) == 2
    assert b"ktext off" in run.stderr
    built = cli("build", "-o", "-", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert built.stdout[:4] == b"\x7fELF"
    assert b"written to standard output" in built.stderr
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    sweep = cli("sweep", str(grid), "--json", "-", "--jobs", "1", "--quiet", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    assert len(json.loads(sweep.stdout)["rows"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.toml"]  # no file named -


# -- 2. an output that is also an input ------------------------------------------------

@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    files = {
        "src": ("x.S", "\t.text\n\t.globl\tuser_fn\nuser_fn:\n\tret\n"),
        "machine": ("m.toml", "[machine]\nnodes = 2\n"),
        "grid": ("g.toml", GRID),
        "script": ("s.ld", "SECTIONS { .text : { *(.text) } }\n"),
        "kernel": ("k.elf", "not really an ELF, never read\n"),
    }
    made = {}
    for key, (name, text) in files.items():
        made[key] = tmp_path / name
        made[key].write_text(text)
    (tmp_path / "alias.S").symlink_to(made["src"])
    os.link(made["machine"], tmp_path / "hard.toml")
    made["alias"], made["hard"] = tmp_path / "alias.S", tmp_path / "hard.toml"
    return made


@pytest.mark.parametrize("argv", [
    "build {src} -o {src}",
    "build --add {src} -o {src}",
    "build -T {script} -o {script}",
    "run --kernel {kernel} --json {kernel}",
    "run --machine {machine} --json {machine}",
    "run --machine {hard} --json {machine}",  # a hard link: same inode
    "run --add {alias} --json {src}",  # through a symlink
    "run --add {src} --plot {src}",
    "run --add-user {src} --json {src}",
    "build --add-user {src} -o {src}",
    "run --json {src} --plot {src}",  # two outputs, one file
    "sweep {grid} --json {grid}",
    "sweep {grid} --csv {grid}",
    "verify --machine {machine} --json {machine}",
    "storm --kernel {kernel} --json {kernel}",
])  # fmt: skip
def test_an_output_that_is_an_input_is_refused_before_any_work(inputs, argv, capsys):
    before = {path: path.read_bytes() for path in inputs.values()}
    args = [part.format(**inputs) for part in argv.split()]
    assert main(args) == USAGE
    line = _one_error_line(capsys.readouterr().err)
    assert "is also" in line
    assert {path: path.read_bytes() for path in inputs.values()} == before


def test_the_refusal_compares_resolved_paths(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    target = tmp_path / "x.S"
    target.write_text("x")
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(UsageError, match="is also an input"):
        check_outputs([("-o", Path("../x.S"))], [("a source", target)])
    check_outputs([("-o", Path("../y.S"))], [("a source", target)])  # a new file is fine


# -- 3. a symlinked output keeps its link -------------------------------------------------

def test_a_symlinked_output_writes_its_target_and_keeps_the_link(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "kernel.elf"
    target.write_bytes(b"old")
    link = tmp_path / "kernel.elf"
    link.symlink_to(target)
    assert main(["build", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"\x7fELF"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["kernel.elf"]
    dangling = tmp_path / "report.json"
    dangling.symlink_to(tmp_path / "real" / "new.json")
    assert main([*TINY_RUN, "--json", str(dangling)]) == 0
    assert dangling.is_symlink()
    assert json.loads((tmp_path / "real" / "new.json").read_text())["complete"] is True


def test_a_symlink_to_a_device_writes_the_device(tmp_path):
    device = tmp_path / "null"
    if not _char_device(device):
        pytest.skip("creating a device node needs root")
    link = tmp_path / "out.json"
    link.symlink_to(device)
    assert main([*TINY_RUN, "--json", str(link)]) == 0
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(device).st_mode)


# -- 4. an output that can never be written is refused before the run -------------------

@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_an_unwritable_output_is_refused_before_the_run(option):
    """/proc takes no new files, not even root's (access() says yes to root): only a
    probe finds out.  The run would take hours; the refusal must come first."""
    if option == "--plot":
        pytest.importorskip("matplotlib")
    result = cli("run", "--iterations", "0", "--max-instructions", str(10**12),
                 option, "/proc/ktext-emu-report.out", timeout=90, text=True)
    assert result.returncode == IO
    assert "/proc/ktext-emu-report.out" in _one_error_line(result.stderr)


@pytest.mark.parametrize("argv", [
    "build -o /proc/k.elf",
    "sweep {grid} --json /proc/g.json",
    "sweep {grid} --csv /proc/g.csv",
    "scenarios --json /proc/s.json",
    "verify --json /proc/v.json",
    "storm --json /proc/s.json",
])  # fmt: skip
def test_every_command_probes_every_output_first(inputs, argv, capsys, monkeypatch):
    import emu.system

    def no_boot(*args: object, **kwargs: object) -> None:
        raise AssertionError("the machine booted before the output was checked")

    monkeypatch.setattr(emu.system.System, "__init__", no_boot)
    assert main([part.format(**inputs) for part in argv.split()]) == IO
    assert "/proc/" in _one_error_line(capsys.readouterr().err)


def test_check_writable_probes_and_leaves_nothing(tmp_path):
    check_writable(tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="it is a directory"):
        check_writable(tmp_path)
