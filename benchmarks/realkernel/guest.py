"""Boots the measurement guest in qemu-system-aarch64 and records its loops.

QEMU's exec log is off during boot and warm-up.  The guest's /init prints
"KTM READY" and blocks on a console read; only then is the log switched on
through the HMP monitor (`log in_asm,exec,nochain`), a line is sent, the
guest runs its loops, prints "KTM DONE", and the log is switched off again.
Every wait is bounded; a guest that does not answer ends the run with
GuestError naming the step.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The flags behind the committed logs: in_asm gives each translation block's
# instructions once per translation, exec one "Trace" line per block run,
# nochain makes every block run pass through the logging lookup.
LOG_FLAGS = "in_asm,exec,nochain"


class GuestError(RuntimeError):
    """The guest or QEMU did not do what the protocol expects."""


@dataclass
class GuestRun:
    """What one recorded run produced."""

    command: list[str]
    console: str
    log_path: Path
    boot_seconds: float
    recorded_seconds: float


@dataclass
class _Console:
    """QEMU's stdout (the guest's serial console), read on a thread."""

    proc: subprocess.Popen
    text: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):
            with self.lock:
                self.text += chunk

    def wait_for(self, marker: str, timeout: float, step: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if marker.encode() in self.text:
                    return
            if self.proc.poll() is not None:
                raise GuestError(f"{step}: QEMU exited (status {self.proc.returncode}) "
                                 f"before printing {marker!r}; console tail: {self.tail()!r}")
            time.sleep(0.05)
        raise GuestError(f"{step}: no {marker!r} on the console within {timeout:.0f} s; "
                         f"console tail: {self.tail()!r}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def tail(self) -> str:
        with self.lock:
            return self.text[-300:].decode(errors="replace")


class _Monitor:
    """A line-at-a-time client of QEMU's HMP monitor on a unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"monitor socket {path} did not open within {timeout:.0f} s") from None
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self._read_prompt()

    def _read_prompt(self) -> str:
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise GuestError("monitor closed the connection")
            data += chunk
        return data.decode(errors="replace")

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        reply = self._read_prompt()
        if "Invalid" in reply or "unknown" in reply.lower():
            raise GuestError(f"monitor refused {line!r}: {reply.strip()!r}")
        return reply

    def quit(self) -> None:
        """Ends QEMU: no prompt follows, the connection just closes."""
        with contextlib.suppress(OSError):
            self.sock.sendall(b"quit\n")

    def close(self) -> None:
        self.sock.close()


def qemu_command(qemu: str, kernel: Path, initrd: Path, monitor: Path, *, cpu: str,
                 smp: int, iters: int, warmup: int, stream: bool = False,
                 icount_shift: int | None = None) -> list[str]:
    """The exact qemu-system-aarch64 command line of a measurement run.

    icount_shift=S ties the guest's clock to instructions (2**S ns each), so
    timer interrupts arrive at the same rate per instruction whether or not
    the (slow) exec log is on; it also makes TCG single-threaded, each vCPU
    running slices of ~a tick.  None: multi-threaded TCG, clock = host time.
    """
    append = (f"console=ttyAMA0 nokaslr panic=-1 ktm_iters={iters} "
              f"ktm_warmup={warmup} ktm_cpus={smp} ktm_mode={int(stream)}")
    icount = [] if icount_shift is None else ["-icount", f"shift={icount_shift}"]
    return [
        qemu, "-M", "virt", "-cpu", cpu, "-smp", str(smp), "-m", "512", *icount,
        "-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", append, "-monitor", f"unix:{monitor},server=on,wait=off",
    ]


@contextlib.contextmanager
def _guest(command: list[str], monitor: Path, log_path: Path, boot_timeout: float
           ) -> Iterator[tuple[subprocess.Popen, _Console, _Monitor]]:  # fmt: skip
    """QEMU started with its console pumped and its monitor connected; on the
    way out the monitor is closed and a QEMU still running is killed."""
    log_path.unlink(missing_ok=True)
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    console = _Console(proc)
    console.start()
    mon = None
    try:
        mon = _Monitor(monitor, timeout=boot_timeout)
        yield proc, console, mon
    finally:
        if mon is not None:
            with contextlib.suppress(OSError, GuestError):
                mon.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def record(command: list[str], monitor: Path, log_path: Path, *, boot_timeout: float,
           run_timeout: float) -> GuestRun:
    """Boot, switch the exec log on around the loops only, power off."""
    started = time.monotonic()
    with _guest(command, monitor, log_path, boot_timeout) as (proc, console, mon):
        console.wait_for("KTM READY", boot_timeout, "boot and warm-up")
        booted = time.monotonic()
        mon.command(f"logfile {log_path}")
        mon.command(f"log {LOG_FLAGS}")
        console.send("go\n")
        console.wait_for("KTM DONE", run_timeout, "recorded loops")
        mon.command("log none")
        recorded = time.monotonic()
        console.send("off\n")
        try:
            proc.wait(timeout=boot_timeout)
        except subprocess.TimeoutExpired:
            mon.quit()
            proc.wait(timeout=boot_timeout)
    console_text = console.text.decode(errors="replace")
    if "KTM ERROR" in console_text:
        line = next(ln for ln in console_text.splitlines() if "KTM ERROR" in ln)
        raise GuestError(f"the guest reported: {line.strip()}")
    if not log_path.exists() or log_path.stat().st_size == 0:
        raise GuestError(f"QEMU wrote no exec log to {log_path}")
    return GuestRun(command=command, console=console_text, log_path=log_path,
                    boot_seconds=booted - started, recorded_seconds=recorded - booted)


def record_stream(command: list[str], monitor: Path, log_path: Path, *, log_bytes: int,
                  settle_seconds: float, boot_timeout: float, run_timeout: float) -> GuestRun:
    """A short capture for excerpts: the guest (ktm_mode=1) loops without a
    handshake; the log is switched on mid-loop until it holds log_bytes."""
    started = time.monotonic()
    with _guest(command, monitor, log_path, boot_timeout) as (proc, console, mon):
        console.wait_for("KTM STREAM", boot_timeout, "boot and warm-up")
        booted = time.monotonic()
        time.sleep(settle_seconds)  # both CPUs deep in their loops
        mon.command(f"logfile {log_path}")
        mon.command(f"log {LOG_FLAGS}")
        deadline = time.monotonic() + run_timeout
        while not log_path.exists() or log_path.stat().st_size < log_bytes:
            if time.monotonic() > deadline:
                raise GuestError(f"the log did not reach {log_bytes} bytes within "
                                 f"{run_timeout:.0f} s")
            if proc.poll() is not None:
                raise GuestError("QEMU exited while recording the stream; console tail: "
                                 f"{console.tail()!r}")
            time.sleep(0.002)
        mon.command("log none")
        recorded = time.monotonic()
        mon.quit()
        proc.wait(timeout=boot_timeout)
    return GuestRun(command=command, console=console.text.decode(errors="replace"),
                    log_path=log_path, boot_seconds=booted - started,
                    recorded_seconds=recorded - booted)
