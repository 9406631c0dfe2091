"""Determinism: the same inputs give the same report, byte for byte, except for
the host timings, which live only under "timings" - in one process, and in
separate processes with different string-hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu.cli import main
from emu.errors import GuestFault

ROOT = Path(__file__).resolve().parents[2]
ASM = Path(__file__).parent / "asm"
# Words that would betray a wall-clock or host-speed figure outside "timings".
TIME_WORDS = ("second", "time", "per_sec", "date", "wall", "elapsed", "duration")


def results_part(path: Path) -> str:
    """The report without its timings, as the text written to ``path`` has it."""
    report = json.loads(path.read_text())
    assert set(report) >= {"runs", "timings", "complete"}
    report.pop("timings")
    return json.dumps(report, indent=2)


def keys(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in keys(item, f"{prefix}.{key}")] + [
            f"{prefix}.{key}" for key in value
        ]
    if isinstance(value, list):
        return [k for item in value for k in keys(item, prefix + "[]")]
    return []


def runs_bytes(path: Path) -> bytes:
    """The bytes of the "runs" member exactly as written to the file."""
    text = path.read_text()
    start = text.index('\n  "runs": ')
    end = text.index('\n  "timings": ')
    return text[start:end].encode()


def test_default_command_twice_in_one_process(tmp_path, capsys):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert main(["run", "--json", str(first)]) == 0
    assert main(["run", "--json", str(second)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ktext on") >= 1
    assert runs_bytes(first) == runs_bytes(second)
    assert results_part(first) == results_part(second)
    report = json.loads(first.read_text())
    assert report["complete"] is True
    assert len(report["timings"]) == len(report["runs"]) == 2
    timed = [key for key in keys(report["runs"]) if any(word in key for word in TIME_WORDS)]
    assert timed == []


def test_default_command_in_processes_with_different_hash_seeds(tmp_path):
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.json"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "emu", "run", "--json", str(out), "--quiet"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(out)
    assert runs_bytes(outputs[0]) == runs_bytes(outputs[1])
    assert results_part(outputs[0]) == results_part(outputs[1])


@pytest.mark.parametrize("argv", [
    ["--workload", "migrate", "--nodes", "3", "--cpus-per-node", "2"],
    ["--detail", "cache", "--nodes", "2", "--iterations", "50"],
    ["--granule", "64k", "--va-bits", "42", "--ktext", "on", "--workload", "syscall"],
], ids=["migrate", "cache-model", "64k"])  # fmt: skip
def test_other_runs_are_deterministic_too(tmp_path, argv, capsys):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["run", *argv, "--quiet", "--json", str(first)]) == 0
    assert main(["run", *argv, "--quiet", "--json", str(second)]) == 0
    assert runs_bytes(first) == runs_bytes(second)


def test_a_guest_fault_is_reported_the_same_way_every_time(tmp_path, capsys):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    messages = []
    for path in paths:
        status = main(["run", "--nodes", "2", "--add", str(ASM / "bad_undef.S"),
                       "--workload", "bad_undef", "--json", str(path)])
        assert status == GuestFault.exit_status
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1]
    assert runs_bytes(paths[0]) == runs_bytes(paths[1])
    assert json.loads(paths[0].read_text())["runs"][0]["fault"]["recent_blocks"]
