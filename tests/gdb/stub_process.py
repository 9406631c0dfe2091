"""Start ``ktext-emu run --gdb 0`` in a subprocess and find its port and kernel ELF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WAITING = re.compile(r"waiting for a connection on ([\d.]+):(\d+) \(target remote [^;]+; "
                     r"symbols: file ([^)]+)\)")


@dataclass
class Stub:
    process: subprocess.Popen
    host: str
    port: int
    elf: Path
    stderr_path: Path

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        self.process.wait(timeout=timeout)
        return self.process.returncode, self.stderr_path.read_text()


def start_stub(tmp_path: Path, *args: str, gdb: str = "--gdb", command: str = "run") -> Stub:
    stderr_path = tmp_path / "emu.err"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    with open(stderr_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "emu", command, "--quiet", gdb, "0", *args],
            stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = WAITING.search(stderr_path.read_text())
        if match:
            return Stub(process, match[1], int(match[2]), Path(match[3]), stderr_path)
        if process.poll() is not None:
            raise AssertionError(f"the emulator exited: {stderr_path.read_text()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the emulator never waited for gdb")
