"""SIGTERM ends ``run`` and ``sweep`` as Ctrl-C does (issue 17, low): the
partial report is written, marked incomplete, and the exit status is 143.
A shell's background job (SIGINT ignored) still ends cleanly on SIGTERM and
still ignores SIGINT.  An interrupted sweep leaves no process and no
temporary directory behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu.errors import EXIT_STATUS_DOC

ROOT = Path(__file__).resolve().parents[2]
TERMINATED = EXIT_STATUS_DOC.get("terminated", 143)
ENDLESS = ("--iterations", "0", "--max-instructions", str(10**11))


def _spawn(argv: list[str], tmp: Path, ignore_sigint: bool = False) -> subprocess.Popen:
    def setup() -> None:
        if ignore_sigint:  # as a non-interactive shell starts `cmd &`
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "emu", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=setup)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["foreground", "background job"])
def test_sigterm_ends_a_run_with_a_partial_report(tmp_path, ignore_sigint):
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    proc = _spawn(["run", *ENDLESS, "--json", str(report)], tmp_path, ignore_sigint)
    time.sleep(4.0)  # booted and well into the first run
    if ignore_sigint:
        proc.send_signal(signal.SIGINT)  # ignored, as the shell meant
        time.sleep(1.0)
        assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    status, err = _finish(proc)
    assert (status, err) == (TERMINATED, "ktext-emu: terminated\n")
    document = json.loads(report.read_text())
    assert document["complete"] is False
    (run,) = document["runs"]
    assert run["stop_reason"] == "interrupted"
    assert 0 < run["instructions"] < 10**11


def test_sigterm_ends_a_sweep_with_its_report_and_leaves_nothing(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('[grid]\nnodes = [1, 2]\n[fixed]\niterations = 0\n'
                    'max-instructions = 100000000000\n')
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _spawn(["sweep", str(grid), "--jobs", "2", "--json", str(tmp_path / "s.json")],
                  scratch)
    time.sleep(5.0)
    proc.send_signal(signal.SIGTERM)
    status, err = _finish(proc)
    assert status == TERMINATED, err
    assert err.endswith("ktext-emu: terminated\n")
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["complete"] is False and document["rows"] == []
    assert list(scratch.iterdir()) == []  # no ktext-emu-point-* or other temporary left
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
    assert left.stdout == "", "points of the sweep still run"
