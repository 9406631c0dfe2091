"""Helpers of the safety tests (issue 17): the CLI in a subprocess with a
memory cap and a timeout, and the one-error-line check."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from emu.errors import BlobError, ConfigError, OutputError, UsageError

ROOT = Path(__file__).resolve().parents[2]
USAGE, CONFIG, BUILD, IO = (UsageError.exit_status, ConfigError.exit_status,
                            BlobError.exit_status, OutputError.exit_status)
MEMORY_CAP = 4 << 30  # above the emulator's reservations (a run takes ~2.5 GiB of VA)
TINY_RUN = ("run", "--iterations", "2", "--quiet")


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(*argv: str, timeout: float = 120, cwd: Path = ROOT, **kwargs: object
        ) -> subprocess.CompletedProcess:
    """``python -m emu ARGV`` with a memory cap; a hang is a TimeoutExpired."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "emu", *argv], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout, preexec_fn=_cap_memory,
                          **kwargs)  # type: ignore[call-overload]


def _one_error_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("ktext-emu: error: "), text
    return lines[0]


