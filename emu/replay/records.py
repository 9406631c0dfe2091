"""Trace records and how trace files are read: the record arrays every
format's parser yields (vCPU, PC, block bytes, line number), the parser's
statistics, and the file in chunks of whole lines.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emu.replay.errors import TraceError
from emu.replay.format_names import FORMAT_PERF as FORMAT_PERF
from emu.replay.format_names import FORMAT_QEMU as FORMAT_QEMU
from emu.replay.format_names import FORMATS as FORMATS

CHUNK_BYTES = 32 << 20
MAX_PIECE = 1 << 30  # no record boundary in this much: not a trace we can read
INSN_BYTES = 4  # A64 instructions
REWOUND = -1  # Records.size of a block that ran up to the same CPU's next record
KERNEL_SPACE = 1 << 63  # arm64 kernel VAs (TTBR1) have the top bit set


@dataclass
class Records:
    """Trace records in file order: block start PCs with their vCPU, size in
    bytes (0 while unknown) and line number."""

    cpu: np.ndarray
    pc: np.ndarray
    size: np.ndarray
    line: np.ndarray

    @classmethod
    def empty(cls) -> Records:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64),
                   np.zeros(0, np.int64))  # fmt: skip

    @classmethod
    def concat(cls, parts: list[Records]) -> Records:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("cpu", "pc", "size", "line")))  # fmt: skip

    def take(self, index: np.ndarray) -> Records:
        return Records(self.cpu[index], self.pc[index], self.size[index], self.line[index])

    def __len__(self) -> int:
        return len(self.pc)


@dataclass
class TraceStats:
    """What the parser saw, for the report's ``source`` object."""

    format: str
    lines: int = 0
    records: int = 0
    dropped_stopped: int = 0
    rewound: int = 0
    unmatched_stopped: int = 0
    translations: int = 0
    chained: bool = False  # a record without CF_NO_GOTO_TB, or "Linking TBs" lines
    brstack_ranges_dropped: int = 0


def open_trace(path: str | Path) -> BinaryIO:
    """The trace, opened for reading: a regular file (a FIFO or a device
    such as /dev/zero is refused; traces are read twice, to detect the
    format, then in full)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise TraceError(f"cannot read the trace: {err.strerror or err}", str(path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TraceError("the trace is not a regular file", str(path))
    return os.fdopen(fd, "rb")  # the caller closes it


def shown_line(line: bytes) -> str:
    return repr(line[:72].decode("ascii", errors="replace"))


def read_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES,
                cut: bytes = b"\n") -> Iterator[memoryview]:  # fmt: skip
    """The file in pieces of whole lines, each ending just before a ``cut``
    (the buffer grows until one arrives), the last at the end of the file,
    with a newline added if the file has none (the parser then judges that
    line).  Each piece is a view of one reused buffer, valid until the next
    is asked for."""
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    filled = 0
    with open_trace(path) as handle:
        while True:
            if filled == len(buffer):  # no cut in a whole buffer: a bigger one
                if filled >= MAX_PIECE:
                    shown = cut.decode().strip() or "newline"
                    raise TraceError(f"no {shown!r} in {MAX_PIECE >> 20} MiB: not a trace of this "
                                     "format", str(path))  # fmt: skip
                buffer = buffer + bytes(len(buffer))  # (views of the old may live on)
                view = memoryview(buffer)
            got = handle.readinto(view[filled:])
            if not got:
                break
            filled += got
            end = buffer.rfind(cut, 0, filled) + 1
            if end <= 0:
                continue
            yield view[:end]
            rest = filled - end
            buffer[:rest] = view[end:filled]
            filled = rest
    if filled:
        tail = bytes(buffer[:filled])
        yield memoryview(tail if tail.endswith(b"\n") else tail + b"\n")
