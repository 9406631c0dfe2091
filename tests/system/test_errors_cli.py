"""The one error path of the CLI: every user error of every subcommand ends in
one ``ktext-emu: error: ...`` line naming what is wrong and the documented
exit status, never a traceback (unless --traceback); a bug is one "internal
error" line; Ctrl-C ends a run or a build with status 130, a run keeping its
partial report marked incomplete."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emu.cli import command_names, main
from emu.config import machine_config
from emu.errors import (
    EXIT_STATUS_DOC,
    BlobError,
    ConfigError,
    OutputError,
    UsageError,
)
from emu.system import RunSpec, System

USAGE, CONFIG, BUILD, IO = (UsageError.exit_status, ConfigError.exit_status,
                            BlobError.exit_status, OutputError.exit_status)
INTERRUPTED = EXIT_STATUS_DOC["interrupted"]
ROOT = Path(__file__).resolve().parents[2]
REPORT = '{"ktext_emu_report": 1, "complete": true, "runs": [], "timings": []}\n'


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    """Good and bad inputs of every kind the CLI reads."""
    d = tmp_path_factory.mktemp("inputs")
    system = System(machine_config(), RunSpec())
    elf = Path(system.image.path).read_bytes()
    system.close()
    (d / "kernel.elf").write_bytes(elf)
    (d / "adir").mkdir()
    (d / "afile").write_text("not a directory\n")
    (d / "empty").write_bytes(b"")
    (d / "garbage.elf").write_bytes(bytes(range(256)) * 8)
    (d / "truncated.elf").write_bytes(elf[:200])
    x86 = bytearray(elf)
    x86[18:20] = (62).to_bytes(2, "little")  # e_machine EM_X86_64
    (d / "x86.elf").write_bytes(bytes(x86))
    (d / "garbage.S").write_bytes(b"\x00\xff\xfe garbage \x01\n" * 4)
    (d / "syntax.S").write_text("\t.text\n\tmov\tx0, #1\n\tfrobnicate\tx1, x2\n")
    (d / "garbage.toml").write_text("[machine\nnodes = = 3\n")
    (d / "machine.toml").write_text("[machine]\nnodes = 0\n")
    (d / "report.json").write_text(REPORT)
    (d / "notareport.json").write_text('{"hello": 1}\n')
    (d / "garbage.json").write_text("{ runs: \n")
    (d / "badgrid.toml").write_text("[grid]\nnodes = [1, 'two']\n")
    (d / "grid.toml").write_text("[grid]\nnodes = [1]\n[fixed]\niterations = 2\n")
    return {p.name.replace(".", "_"): p for p in d.iterdir()} | {
        "missing": d / "missing", "dir": d / "adir",
        "under_file": d / "afile" / "out", "no_parent": d / "nowhere" / "out",
    }


# (argv template, exit status, what the line must name); {name} are paths above
CASES = [
    # build
    ("build {missing} -o {out}", BUILD, "missing"),
    ("build {dir} -o {out}", BUILD, "adir"),
    ("build {garbage_S} -o {out}", BUILD, "garbage.S"),
    ("build {syntax_S} -o {out}", BUILD, "syntax.S:3"),
    ("build -T {missing} -o {out}", BUILD, "missing"),
    ("build -T {dir} -o {out}", BUILD, "adir"),
    ("build --add {missing} -o {out}", BUILD, "missing"),
    ("build -o {dir}", IO, "adir"),
    ("build -o {under_file}", IO, "afile"),
    ("build -o {no_parent}", IO, "nowhere"),
    ("build --defsym KIMAGE_VADDR -o {out}", USAGE, "--defsym"),
    # disasm and symbols
    ("disasm {missing}", BUILD, "missing"),
    ("disasm {dir}", BUILD, "adir"),
    ("disasm {empty}", BUILD, "empty"),
    ("disasm {garbage_elf}", BUILD, "garbage.elf"),
    ("disasm {truncated_elf}", BUILD, "truncated.elf"),
    ("disasm {x86_elf}", BUILD, "x86.elf"),
    ("disasm {kernel_elf} --symbol no_such_symbol", USAGE, "no_such_symbol"),
    ("disasm {kernel_elf} --start 0x10", USAGE, "--end"),
    ("disasm {kernel_elf} --start zz --end 0x20", USAGE, "zz"),
    ("symbols {missing}", BUILD, "missing"),
    ("symbols {dir}", BUILD, "adir"),
    ("symbols {garbage_elf}", BUILD, "garbage.elf"),
    ("symbols {truncated_elf}", BUILD, "truncated.elf"),
    ("symbols {x86_elf}", BUILD, "x86.elf"),
    # run
    ("run --kernel {missing}", BUILD, "missing"),
    ("run --kernel {dir}", BUILD, "adir"),
    ("run --kernel {empty}", BUILD, "empty"),
    ("run --kernel {garbage_elf}", BUILD, "garbage.elf"),
    ("run --kernel {truncated_elf}", BUILD, "truncated.elf"),
    ("run --kernel {x86_elf}", BUILD, "x86.elf"),
    ("run --add {missing}", BUILD, "missing"),
    ("run --add {dir}", BUILD, "adir"),
    ("run --add {syntax_S}", BUILD, "syntax.S:3"),
    ("run --machine {missing}", CONFIG, "missing"),
    ("run --machine {dir}", CONFIG, "adir"),
    ("run --machine {garbage_toml}", CONFIG, "garbage.toml"),
    ("run --machine {machine_toml}", CONFIG, "machine.toml:1"),
    ("run --json {dir}", IO, "adir"),
    ("run --json {under_file}", IO, "afile"),
    ("run --json {no_parent}", IO, "nowhere"),
    ("run --watchdog -1", USAGE, "watchdog"),
    ("run --iterations many", USAGE, "iterations"),
    # compare
    ("compare {missing} {report_json}", IO, "missing"),
    ("compare {dir} {report_json}", IO, "adir"),
    ("compare {report_json} {garbage_json}", CONFIG, "garbage.json"),
    ("compare {report_json} {notareport_json}", CONFIG, "notareport.json"),
    ("compare {report_json} {garbage_elf}", CONFIG, "garbage.elf"),
    # sweep
    ("sweep {missing}", CONFIG, "missing"),
    ("sweep {dir}", CONFIG, "adir"),
    ("sweep {garbage_toml}", CONFIG, "garbage.toml"),
    ("sweep {badgrid_toml}", CONFIG, "badgrid.toml"),
    ("sweep {grid_toml} --quiet --json {under_file}", IO, "afile"),
    # verify, storm, scenarios
    ("verify --kernel {garbage_elf}", BUILD, "garbage.elf"),
    ("verify --add {dir}", BUILD, "adir"),
    ("verify --machine {garbage_toml}", CONFIG, "garbage.toml"),
    ("storm --kernel {dir}", BUILD, "adir"),
    ("storm --flips -3", USAGE, "--flips"),
    ("storm --json {dir} --quiet", IO, "adir"),
    ("scenarios no-such-scenario", USAGE, "no-such-scenario"),
    ("scenarios --layout nope", CONFIG, "nope"),
    ("scenarios --quiet --json {under_file}", IO, "afile"),
    # no command line at all makes sense
    ("frobnicate", USAGE, "frobnicate"),
    ("run --nodes", USAGE, "--nodes"),
]


def _argv(template: str, paths: dict[str, Path]) -> list[str]:
    names = {key: str(value) for key, value in paths.items()}
    return [part.format(**names) for part in template.split()]


@pytest.mark.parametrize("template,status,needle", CASES,
                         ids=[c[0] if isinstance(c, tuple) else c.id for c in CASES])
def test_user_error_is_one_line_and_its_status(template, status, needle, paths, tmp_path, capsys):
    out_path = tmp_path / "k.elf"
    argv = _argv(template, {**paths, "out": out_path})
    assert argv[0] in command_names() or argv[0] == "frobnicate"
    assert main(argv) == status
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ktext-emu: error: ")
    assert needle in lines[0]
    assert "Traceback" not in out + err
    assert not out_path.exists()
    assert list(paths["dir"].iterdir()) == []


# Root passes file modes by CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: dropped
# from the bounding set (and the inheritable set) by util-linux's setpriv,
# the command runs as root whom the modes stop.
DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search"]
_PROBE = """
import pathlib, sys
try:
    (pathlib.Path(sys.argv[1]) / "probe").write_text("")
except PermissionError:
    sys.exit(13)
"""


def _modes_enforced(prefix: list[str]) -> bool:
    """Whether a process started with ``prefix`` is stopped by a 0o500 directory."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        locked = Path(directory) / "locked"
        locked.mkdir(mode=0o500)
        try:
            probe = subprocess.run([*prefix, sys.executable, "-c", _PROBE, str(locked)],
                                   capture_output=True, timeout=60)
        except OSError:  # no setpriv
            return False
        finally:
            locked.chmod(0o700)
        return probe.returncode == 13


def _mode_enforcer() -> list[str] | None:
    """The command prefix under which file modes apply: none for a user they
    already stop, setpriv dropping the DAC capabilities for root, or None."""
    if _modes_enforced([]):
        return []
    if shutil.which(DROP_DAC[0]) and _modes_enforced(DROP_DAC):
        return DROP_DAC
    return None


ENFORCER = _mode_enforcer()


@pytest.mark.skipif(ENFORCER is None, reason="file modes do not apply to this user and "
                    "setpriv cannot drop CAP_DAC_OVERRIDE here")
@pytest.mark.parametrize("argv,status", [
    (["build", "-o", "{locked}/k.elf"], IO),
    (["run", "--iterations", "2", "--json", "{locked}/r.json"], IO),
    (["symbols", "{unreadable}"], BUILD),
    (["run", "--machine", "{unreadable}"], CONFIG),
])  # fmt: skip
def test_permission_denied(tmp_path, argv, status):
    locked, unreadable = tmp_path / "locked", tmp_path / "secret.toml"
    locked.mkdir(mode=0o500)
    unreadable.write_text("[machine]\n")
    unreadable.chmod(0)
    argv = [a.format(locked=locked, unreadable=unreadable) for a in argv]
    assert ENFORCER is not None
    result = subprocess.run([*ENFORCER, sys.executable, "-m", "emu", *argv], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert result.returncode == status, result.stderr
    assert len(lines) == 1 and "ermission denied" in lines[0]
    assert list(locked.iterdir()) == []


def test_traceback_only_on_request(paths, capsys):
    assert main(["--traceback", "symbols", str(paths["garbage_elf"])]) == BUILD
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("ktext-emu: error: ")


def test_internal_error_is_one_line(paths, capsys, monkeypatch):
    from emu.blob import disasm

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("symbol table upside down")

    monkeypatch.setattr(disasm, "format_symbols", broken)
    assert main(["symbols", str(paths["kernel_elf"])]) == EXIT_STATUS_DOC["internal error"]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "ktext-emu: internal error: RuntimeError: symbol table upside down "
        "(a bug in ktext-emu; --traceback shows where)"
    ]
    assert main(["--traceback", "symbols", str(paths["kernel_elf"])]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_every_status_is_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, status in EXIT_STATUS_DOC.items():
        assert f"{status} {name}" in text


# ---------------------------------------------------------- real processes
def _cli(*argv: str, **kwargs: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "emu", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)  # type: ignore[call-overload]


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


def test_exit_status_of_a_real_process(paths):
    status, out, err = _finish(_cli("disasm", str(paths["truncated_elf"])))
    assert status == BUILD
    assert err.startswith("ktext-emu: error: ") and err.count("\n") == 1
    assert out == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_disk_on_stdout_is_one_line(paths):
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "emu", "disasm", str(paths["kernel_elf"])],
                                cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == IO
    assert err.splitlines() == ["ktext-emu: error: No space left on device"]


def test_ctrl_c_ends_a_run_with_a_partial_report(tmp_path, paths):
    out = tmp_path / "report.json"
    out.write_text(REPORT)
    proc = _cli("run", "--iterations", "0", "--max-instructions", "100000000000",
                "--json", str(out))
    time.sleep(3.0)  # booted (the kernel is cached) and well into the first run
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    status, _, err = _finish(proc, timeout=60)
    assert time.monotonic() - started < 10  # within a quantum or so, not at the limit
    assert (status, err) == (INTERRUPTED, "ktext-emu: interrupted\n")
    report = json.loads(out.read_text())
    assert report["complete"] is False
    (run,) = report["runs"]
    assert run["stop_reason"] == "interrupted"
    assert 0 < run["instructions"] < 100_000_000_000
    assert sum(cpu["instructions"] for cpu in run["cpus"]) == run["instructions"]


def test_ctrl_c_ends_a_build_and_keeps_the_old_output(tmp_path):
    # 40,000 more instructions make the build last several seconds
    big = tmp_path / "big.S"
    body = "".join(f"\tadd\tx{i % 28}, x{i // 28 % 28}, #{i % 4096}\n" for i in range(40_000))
    big.write_text(f"\t.text\n\t.globl\tbig_text\nbig_text:\n{body}\tret\n")
    out = tmp_path / "kernel.elf"
    out.write_bytes(b"the previous build")
    proc = _cli("build", "--add", str(big), "-o", str(out))
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    status, _, err = _finish(proc)
    assert (status, err) == (INTERRUPTED, "ktext-emu: interrupted\n")
    assert out.read_bytes() == b"the previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.S", "kernel.elf"]


def test_ctrl_c_inside_any_machine_run_is_a_clean_keyboard_interrupt():
    """Not only `run`: whoever runs the machine gets KeyboardInterrupt at the end of
    a quantum, never one dropped inside a Unicorn callback (which ctypes prints as
    "Exception ignored" and which fails the callback, e.g. a TLB fill)."""
    script = textwrap.dedent("""
        import sys
        from emu.config import machine_config
        from emu.system import RunSpec, System
        system = System(machine_config(), RunSpec(workload="dbsim_tiny", iterations=0))
        print("running", flush=True)
        try:
            system.run(max_instructions=10**12)
        except KeyboardInterrupt:
            machine = system.machine
            counted = sum(machine.accounting.counts(c.index).instructions for c in machine.cpus)
            print("interrupted", machine.total_instructions, counted, flush=True)
            sys.exit(0)
        sys.exit(1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == "running\n"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    word, total, counted = out.split()
    assert word == "interrupted" and int(total) == int(counted) > 0
