"""Trace formats: which one a file is, and its records.  The formats are
QEMU exec logs (emu/replay/qemu_log.py) and perf script output
(emu/replay/perf_script.py); the record arrays and file reading are in
emu/replay/records.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from emu.replay.errors import TraceError
from emu.replay.perf_script import parse_perf
from emu.replay.qemu_log import parse_qemu
from emu.replay.records import (
    CHUNK_BYTES,
    FORMAT_PERF,
    FORMAT_QEMU,
    FORMATS,
    Records,
    TraceStats,
    open_trace,
    shown_line,
)

__all__ = ["FORMATS", "FORMAT_PERF", "FORMAT_QEMU", "detect_format", "parse_trace"]


def detect_format(path: str | Path) -> str:
    """FORMAT_QEMU or FORMAT_PERF from the first meaningful lines."""
    with open_trace(path) as handle:
        head = handle.read(1 << 16)
    for number, raw in enumerate(head.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if line.startswith((b"Trace ", b"----------------", b"IN:", b"Stopped execution")):
            return FORMAT_QEMU
        if re.search(rb"\[\d+\]", line):
            return FORMAT_PERF
        raise TraceError("neither a QEMU -d exec log nor perf script output (with the cpu field): "
                         f"{shown_line(raw)}", str(path), number)  # fmt: skip
    raise TraceError("the trace is empty", str(path))


def parse_trace(path: str | Path, fmt: str | None = None,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[Iterator[Records], TraceStats]:  # fmt: skip
    """The records of ``path`` in its format (detected unless given) and the
    stats object the iterator fills in."""
    fmt = fmt or detect_format(path)
    if fmt == FORMAT_QEMU:
        chunks, state = parse_qemu(path, chunk_bytes)
        return chunks, state.stats
    if fmt == FORMAT_PERF:
        return parse_perf(path, chunk_bytes)
    raise TraceError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})", str(path))
