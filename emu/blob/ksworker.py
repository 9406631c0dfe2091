"""The keystone guard: keystone 0.9.2 encodes instructions in a worker process.

Keystone can abort the whole interpreter (LLVM ERROR, segfault) or hang on
some inputs, so the assembler never calls it in its own process. This module
owns the worker (started lazily, kept across calls, restarted when it dies),
the pipe protocol (one instruction text per line in; ``+HEX`` or ``-MESSAGE``
per line out), the per-worker encoding cache, and the screening of texts
that must never reach keystone at all (directives, relocation operators,
several statements, control characters).

Run as ``python -m emu.blob.ksworker`` it is the worker itself.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# Only what the assembler front end generates: a mnemonic, registers, '#'
# immediates, memory operands and keywords. Anything else is refused before
# keystone sees it (':' relocation operators and '.' directives kill it).
_SAFE_TEXT = re.compile(r"[a-z][a-z0-9.]*( [A-Za-z0-9_ ,#\[\]{}!.+\-]*)?")
MAX_TEXT = 200
CHUNK = 128


class EncodeResult:
    """Bytes for an instruction text, or keystone's complaint about it."""

    __slots__ = ("data", "error")

    def __init__(self, data: bytes | None = None, error: str | None = None) -> None:
        self.data = data
        self.error = error

    def __repr__(self) -> str:
        return f"EncodeResult({self.data!r}, {self.error!r})"


def screen(text: str) -> str | None:
    """Why ``text`` must not be given to keystone, or None if it may."""
    if len(text) > MAX_TEXT:
        return f"instruction text longer than {MAX_TEXT} characters"
    if not _SAFE_TEXT.fullmatch(text):
        return "instruction text has characters keystone must not see"
    return None


class KeystoneWorker:
    """A keystone worker process with an encoding cache; not thread-safe without its lock."""

    def __init__(self, timeout: float = 10.0, command: Sequence[str] | None = None) -> None:
        self.timeout = timeout
        # Tests replace the worker program (to make it crash or hang on purpose).
        self.command = list(command) if command else [sys.executable, "-m", "emu.blob.ksworker"]
        self.cache: dict[str, EncodeResult] = {}
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self._buffer = b""
        self._hung = False
        self._lock = threading.Lock()

    # -- process management -------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._buffer = b""
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        return self._proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or self._owner != os.getpid():
            return  # a forked child leaves its parent's worker alone
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _death_note(self, proc: subprocess.Popen[bytes]) -> str:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = proc.returncode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
        tail = ""
        try:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            lines = [ln for ln in err.splitlines() if ln.strip()]
            if lines:
                tail = f": {lines[-1].strip()[:120]}"
        except (OSError, ValueError):
            pass
        return f"{how}{tail}"

    # -- protocol ------------------------------------------------------------

    def _read_line(self, proc: subprocess.Popen[bytes]) -> bytes | None:
        """One response line, or None if the worker died or hung."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._hung = True
                proc.kill()
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _run_chunk(self, texts: Sequence[str]) -> list[EncodeResult]:
        try:
            return self._exchange(texts)
        except BaseException:
            # Interrupted mid-exchange (Ctrl-C, a time limit): answers still in the pipe
            # would be taken for the next texts' encodings, so this worker must go.
            self._kill()
            raise

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and self._owner == os.getpid() and proc.poll() is None:
            proc.kill()
        self.close()

    def _exchange(self, texts: Sequence[str]) -> list[EncodeResult]:
        results: list[EncodeResult] = []
        pending = list(texts)
        while pending:
            proc = self._proc if self._proc and self._proc.poll() is None else self._start()
            assert proc.stdin is not None
            try:
                proc.stdin.write("".join(t + "\n" for t in pending).encode("ascii"))
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the read below reports the death
            answered = 0
            for text in pending:
                line = self._read_line(proc)
                if line is None:
                    note = self._death_note(proc)
                    self.close()
                    self.restarts += 1
                    if self._hung:
                        self._hung = False
                        error = f"keystone hung on '{text}' (no answer in {self.timeout:g} s)"
                    else:
                        error = f"keystone crashed on '{text}' ({note})"
                    results.append(EncodeResult(error=error))
                    answered += 1
                    break
                answered += 1
                if line.startswith(b"+"):
                    results.append(EncodeResult(data=bytes.fromhex(line[1:].decode("ascii"))))
                else:
                    results.append(EncodeResult(error=line[1:].decode("utf-8", "replace")))
            pending = pending[answered:]
        return results

    def encode_many(self, texts: Sequence[str]) -> list[EncodeResult]:
        """Encode each text at address 0; results in order, cached by text."""
        with self._lock:
            if self._owner != os.getpid():
                # A forked child must not share the parent's worker pipes: start its own.
                self._proc, self._buffer, self._owner = None, b"", os.getpid()
            todo: list[str] = []
            for text in dict.fromkeys(texts):
                if text in self.cache:
                    continue
                refusal = screen(text)
                if refusal:
                    self.cache[text] = EncodeResult(error=refusal)
                else:
                    todo.append(text)
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                for text, result in zip(chunk, self._run_chunk(chunk), strict=True):
                    self.cache[text] = result
            return [self.cache[t] for t in texts]

    def encode(self, text: str) -> EncodeResult:
        return self.encode_many([text])[0]


@functools.lru_cache(maxsize=1)
def shared_worker() -> KeystoneWorker:
    """The process-wide worker (one process and one cache for all assemblies)."""
    worker = KeystoneWorker()
    atexit.register(worker.close)
    return worker


# ---------------------------------------------------------------------------
# The worker process


def serve() -> None:
    from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks, KsError

    ks = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        text = raw.decode("ascii", "replace").rstrip("\n")
        try:
            encoding, _count = ks.asm(text, 0)
            if encoding:
                reply = "+" + bytes(encoding).hex()
            else:
                reply = "-keystone produced no bytes"
        except KsError as err:
            reply = f"-{err}"
        out.write(reply.encode("ascii", "replace") + b"\n")
        out.flush()


if __name__ == "__main__":
    serve()
