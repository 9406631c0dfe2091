"""QEMU ``-d exec[,nochain][,in_asm]`` logs (QEMU 7.2, Debian bookworm) into
trace records.

QEMU writes, per translated block entered (accel/tcg/cpu-exec.c,
log_cpu_exec)::

    Trace 0: 0x7fcab0020480 [0000000000007001/ffff800009668fdc/00000021/ff080200] sym

that is ``Trace VCPU: HOST_TB [CS_BASE/PC/FLAGS/CFLAGS] SYMBOL``.  In CFLAGS,
``CF_NO_GOTO_TB`` (0x200) is set under ``nochain`` (without it, blocks
entered by direct chaining are not logged and counts are a lower bound), and
``CF_COUNT_MASK`` (0x1ff) is the length of a block QEMU cut short (-icount,
I/O).  ``Stopped execution of TB chain before HOST [PC]``: the block just
logged for PC did not run, its record is dropped.  ``cpu_io_recompile:
rewound execution of TB to PC``: that block ran up to the instruction doing
I/O, where its CPU's next record starts (size REWOUND, measured by
blocks.NextRecordSizer).  With ``in_asm`` every translation is printed
(``IN:``, one line per instruction, a blank line): the longest listing of a
PC is its block's size.

A chunk is scanned by the C scanner (``_qemulog.c``) when it is built, else
by numpy over fixed-width fields located from each line's ``[``; a line
either cannot vouch for sends the chunk through the line-by-line reference
parser, which names the bad line.  All three give the same records
(tests/replay, and the ``replay`` fuzz target).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emu.hw.accounting import NO_ACCEL_ENV
from emu.replay.errors import TraceError
from emu.replay.records import (
    CHUNK_BYTES,
    FORMAT_QEMU,
    INSN_BYTES,
    REWOUND,
    Records,
    TraceStats,
    read_chunks,
    shown_line,
)

CF_NO_GOTO_TB = 0x200  # include/exec/exec-all.h (QEMU 7.2): set by -d nochain
CF_COUNT_MASK = 0x1FF  # same header: a block cut to this many instructions (0: not cut)

_PAD = b"\0" * 64
_HEX = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
_SHIFTS16 = np.arange(60, -4, -4, dtype=np.uint64)
_ARANGE16 = np.arange(16)

_TRACE = re.compile(
    rb"Trace (\d{1,9}): (?:0x)?[0-9a-f]{1,16} \[([0-9a-f]{1,16})/([0-9a-f]{1,16})/([0-9a-f]{1,8})/"
    rb"([0-9a-f]{1,8})\](?: .*)?"
)
# A block logged as entered that did not run (its record is dropped): the
# chain stopped before it, or an I/O access rewound it to be retranslated
# and entered again (accel/tcg/cpu-exec.c, translate-all.c cpu_io_recompile).
_STOPPED = re.compile(rb"(?:Stopped execution of TB chain before (?:0x)?[0-9a-f]{1,16} \[([0-9a-f]{1,16})\]"
                      rb"|cpu_io_recompile: rewound execution of TB to ([0-9a-f]{1,16})).*")
_INSN = re.compile(rb"0x([0-9a-f]{1,16}):  .*")
_IN = re.compile(rb"IN:(?: .*)?")
_SKIPPED = re.compile(rb"(?:-{16}|Linking TBs .*|OBJD-[HT]: .*|)")


@dataclass
class QemuState:
    """What carries over from one chunk to the next: the longest translation
    of each PC so far."""

    path: str
    sizes: dict[int, int] = field(default_factory=dict)
    stats: TraceStats = field(default_factory=lambda: TraceStats(FORMAT_QEMU))
    _table: tuple[np.ndarray, np.ndarray] | None = None

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._table is None:
            pcs = np.fromiter(self.sizes.keys(), np.uint64, len(self.sizes))
            sizes = np.fromiter(self.sizes.values(), np.int64, len(self.sizes))
            order = np.argsort(pcs)
            self._table = (pcs[order], sizes[order])
        return self._table

    def learn(self, pcs: np.ndarray, sizes: np.ndarray) -> None:
        """Keep the longest translation of each PC (see _resolve_sizes)."""
        known = self.sizes
        for pc, size in zip(pcs.tolist(), sizes.tolist(), strict=True):
            if size > known.get(pc, 0):
                known[pc] = size
                self._table = None


def parse_qemu(path: str | Path, chunk_bytes: int = CHUNK_BYTES,
               backend: str = "auto") -> tuple[Iterator[Records], QemuState]:  # fmt: skip
    """Records of a QEMU exec log, chunk by chunk; the state's stats fill in as
    the iterator runs (``backend``: see parse_qemu_chunk)."""
    state = QemuState(str(path))

    def chunks() -> Iterator[Records]:
        for data in read_chunks(path, chunk_bytes, cut=b"\nTrace "):
            records = parse_qemu_chunk(data, state.stats.lines + 1, state, backend)
            state.stats.records += len(records)
            yield records

    return chunks(), state


def _load_scanner():
    """The C scanner's ``scan`` and ``count_lines``, or None (not built, or
    KTEXT_EMU_NO_ACCEL=1)."""
    if os.environ.get(NO_ACCEL_ENV) == "1":
        return None
    try:
        from emu.replay import _qemulog  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _qemulog.scan, _qemulog.count_lines


_SCAN, _COUNT_LINES = _load_scanner() or (None, None)


def parse_qemu_chunk(data: bytes | memoryview, first_line: int, state: QemuState,
                     backend: str = "auto") -> Records:  # fmt: skip
    """One chunk of whole lines: the exec records, sizes resolved from in_asm
    translations where the log has them.  ``backend``: "auto" (C if built,
    else numpy), "c", "numpy" or "python" (the reference); all give the same
    records, and any line the fast ones cannot vouch for goes to the reference,
    which names it."""
    if backend == "c" and _SCAN is None:
        raise RuntimeError("the C QEMU log scanner (emu.replay._qemulog) is not built")
    fast = None
    if backend in ("auto", "c") and _SCAN is not None:
        fast, lines = _qemu_chunk_c(data, first_line)
    else:
        data = bytes(data)
        lines = data.count(b"\n")
        if backend in ("auto", "numpy"):
            fast = _qemu_chunk_numpy(data, first_line)
    state.stats.lines += lines
    if fast is None:
        exec_part, translations, stopped, chained = _qemu_chunk_python(bytes(data), first_line,
                                                                       state.path)  # fmt: skip
    else:
        exec_part, translations, stopped, chained = fast
    state.stats.chained |= chained
    if len(stopped):
        exec_part = _drop_stopped(exec_part, stopped, state.stats)
    t_pc, t_size, t_line = translations
    state.stats.translations += len(t_pc)
    _resolve_sizes(exec_part, t_pc, t_size, t_line, state)
    state.learn(t_pc, t_size)
    return exec_part


def _qemu_chunk_c(data: bytes | memoryview, first_line: int):
    """The C scanner for exec records; the other lines judged here."""
    n_lines = _COUNT_LINES(data)
    cpu = np.empty(n_lines, np.int64)
    pc = np.empty(n_lines, np.uint64)
    size = np.empty(n_lines, np.int64)
    line = np.empty(n_lines, np.int64)
    other = np.empty(3 * n_lines, np.int64)
    n, n_other, chained, lines = _SCAN(data, first_line, cpu, pc, size, line, other)
    records = Records(cpu[:n], pc[:n], size[:n], line[:n])
    items = ((index, bytes(data[start:end]))
             for index, start, end in other[: 3 * n_other].reshape(-1, 3).tolist())  # fmt: skip
    judged = _judge_other_lines(items, first_line)
    if judged is None:
        return None, lines
    translations, stopped, linking = judged
    return (records, translations, stopped, bool(chained) or linking), lines


def _judge_other_lines(items, first_line: int):
    """In_asm translations, Stopped lines and chaining evidence from the
    non-record lines, given as (index in chunk, text) in order; None at the
    first line that is none of those (the reference parser then names it)."""
    t_pc: list[int] = []
    t_size: list[int] = []
    t_line: list[int] = []
    stopped: list[tuple[int, int, bool]] = []
    linking = False
    open_at = -2  # index of the last IN: or instruction line of an open block
    for index, line in items:
        if line[:2] == b"0x":
            match = _INSN.fullmatch(line)
            if match is None or open_at != index - 1:
                return None
            if t_size[-1] == 0:
                t_pc[-1] = int(match[1], 16)
            t_size[-1] += INSN_BYTES
            open_at = index
            continue
        if _IN.fullmatch(line):
            t_pc.append(0)
            t_size.append(0)
            t_line.append(first_line + index)
            open_at = index
            continue
        open_at = -2
        match = _STOPPED.fullmatch(line)
        if match:
            stopped.append((first_line + index, int(match[1] or match[2], 16), match[2] is not None))
            continue
        if _SKIPPED.fullmatch(line):
            linking |= line.startswith(b"Linking")
            continue
        return None
    keep = [i for i, size in enumerate(t_size) if size]
    translations = (np.array([t_pc[i] for i in keep], np.uint64),
                    np.array([t_size[i] for i in keep], np.int64),
                    np.array([t_line[i] for i in keep], np.int64))  # fmt: skip
    return translations, stopped, linking


def _hex_columns(buf: np.ndarray, at: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of the ``width``-digit hex fields at offsets ``at``, and which were valid."""
    digits = _HEX[buf[at[:, None] + _ARANGE16[:width]]]
    ok = (digits != 255).all(axis=1)
    shifts = _SHIFTS16[16 - width:]
    values = np.bitwise_or.reduce(digits.astype(np.uint64) << shifts, axis=1)
    return values, ok


def _qemu_chunk_numpy(data: bytes, first_line: int):
    """The vectorised parser; None when some line needs the reference parser."""
    n = len(data)
    buf = np.frombuffer(data + _PAD, np.uint8)
    ends = np.flatnonzero(buf[:n] == 10)
    starts = np.empty(len(ends), np.int64)
    starts[0:1] = 0
    starts[1:] = ends[:-1] + 1
    c0 = buf[starts]
    trace = (c0 == ord("T")) & (buf[starts + 1] == ord("r")) & (buf[starts + 5] == ord(" ")) & \
        (buf[starts + 2] == ord("a")) & (buf[starts + 3] == ord("c")) & (buf[starts + 4] == ord("e"))
    insn = (c0 == ord("0")) & (buf[starts + 1] == ord("x"))
    other = ~(trace | insn)
    other_idx = np.flatnonzero(other)
    # Separators, blank lines, IN:, Stopped, Linking: few; checked one by one.
    stopped_lines: list[tuple[int, int, bool]] = []
    in_lines: list[int] = []
    chained = False
    for index in other_idx.tolist():
        line = data[starts[index]:ends[index]]
        if _SKIPPED.fullmatch(line):
            chained |= line.startswith(b"Linking")
            continue
        if _IN.fullmatch(line):
            in_lines.append(index)
            continue
        match = _STOPPED.fullmatch(line)
        if match:
            stopped_lines.append((first_line + index, int(match[1] or match[2], 16),
                                  match[2] is not None))
            continue
        return None
    t_idx = np.flatnonzero(trace)
    ts = starts[t_idx]
    te = ends[t_idx]
    # vCPU number: 1 to 4 digits after "Trace ", then ':'
    cpu = np.zeros(len(ts), np.int64)
    ndig = np.zeros(len(ts), np.int64)
    going = np.ones(len(ts), bool)
    for k in range(4):
        ch = buf[ts + 6 + k].astype(np.int64)
        digit = going & (ch >= 48) & (ch <= 57)
        cpu = np.where(digit, cpu * 10 + ch - 48, cpu)
        ndig += digit
        going &= digit
    colon = ts + 6 + ndig
    if len(ts) and ((ndig == 0).any() or (buf[colon] != ord(":")).any()
                    or (buf[colon + 1] != ord(" ")).any()):
        return None
    brackets = np.flatnonzero(buf[:n] == ord("["))
    pos = np.searchsorted(brackets, ts)
    if len(ts) and (pos >= len(brackets)).any():
        return None
    b = brackets[np.minimum(pos, len(brackets) - 1)] if len(brackets) else ts
    shape_ok = (b < te) & (b + 53 <= te) & (buf[b + 17] == ord("/")) & \
        (buf[b + 34] == ord("/")) & (buf[b + 43] == ord("/")) & (buf[b + 52] == ord("]")) & \
        ((b + 53 == te) | (buf[b + 53] == ord(" ")))
    if not shape_ok.all():
        return None
    # The host pointer: [0x]1-16 hex digits, then " [".
    host = colon + 2
    host = np.where((buf[host] == ord("0")) & (buf[host + 1] == ord("x")), host + 2, host)
    host_len = b - 1 - host
    if len(ts) and ((host_len < 1).any() or (host_len > 16).any() or
                    (buf[b - 1] != ord(" ")).any()):
        return None
    host_digits = _HEX[buf[host[:, None] + _ARANGE16]]
    if not ((host_digits != 255) | (host_len[:, None] <= _ARANGE16)).all():
        return None
    pc, ok = _hex_columns(buf, b + 18, 16)
    for at, width in ((b + 1, 16), (b + 35, 8), (b + 44, 8)):  # CS_BASE, FLAGS, CFLAGS
        ok &= _hex_columns(buf, at, width)[1]
    low_cflags, _ = _hex_columns(buf, b + 44 + 5, 3)  # CFLAGS bits 0-11
    if not ok.all():
        return None
    chained |= bool(((low_cflags & np.uint64(CF_NO_GOTO_TB)) == 0).any())
    size = (low_cflags & np.uint64(CF_COUNT_MASK)).astype(np.int64) * INSN_BYTES
    records = Records(cpu, pc, size, first_line + t_idx)
    translations = _translations_numpy(data, starts, ends, np.flatnonzero(insn),
                                       np.array(in_lines, np.int64), first_line)  # fmt: skip
    if translations is None:
        return None
    return records, translations, stopped_lines, chained


def _translations_numpy(data: bytes, starts: np.ndarray, ends: np.ndarray, insn_idx: np.ndarray,
                        in_idx: np.ndarray, first_line: int):  # fmt: skip
    """(PC, bytes, line) of each in_asm translation: the instruction lines
    that follow an ``IN:`` line."""
    if len(insn_idx) == 0:
        empty = np.zeros(0, np.int64)
        return empty.astype(np.uint64), empty, empty
    if len(in_idx) == 0:
        return None  # instruction lines with no IN: header (e.g. -d op): not ours
    block = np.searchsorted(in_idx, insn_idx, side="right") - 1
    if (block < 0).any():
        return None
    # An instruction line must follow its IN: line or another instruction line.
    gap = np.empty(len(insn_idx), np.int64)
    gap[0] = insn_idx[0] - in_idx[block[0]]
    same = block[1:] == block[:-1]
    gap[1:] = np.where(same, insn_idx[1:] - insn_idx[:-1], insn_idx[1:] - in_idx[block[1:]])
    if (gap != 1).any():
        return None
    # Each instruction line checked as the reference parser checks it (this is
    # the fallback path; the C scanner's caller judges these lines the same way).
    addresses = []
    for i in insn_idx.tolist():
        match = _INSN.fullmatch(data, starts[i], ends[i])
        if match is None:
            return None
        addresses.append(match[1])
    counts = np.bincount(block, minlength=len(in_idx))
    has = np.flatnonzero(counts)
    first_insn = np.searchsorted(block, has)
    pcs = np.fromiter((int(addresses[i], 16) for i in first_insn.tolist()), np.uint64, len(has))
    return pcs, counts[has].astype(np.int64) * INSN_BYTES, first_line + in_idx[has]


def _qemu_chunk_python(data: bytes, first_line: int, path: str):
    """Line by line: the reference parser, and the one that names a bad line."""
    cpus: list[int] = []
    pcs: list[int] = []
    sizes: list[int] = []
    lines: list[int] = []
    stopped: list[tuple[int, int, bool]] = []
    t_pc: list[int] = []
    t_size: list[int] = []
    t_line: list[int] = []
    chained = False
    block_open = False  # after IN: or an instruction line of its block
    for offset, line in enumerate(data.split(b"\n")[:-1]):
        number = first_line + offset
        match = _TRACE.fullmatch(line)
        if match:
            cpus.append(int(match[1]))
            pcs.append(int(match[3], 16))
            cflags = int(match[5], 16)
            sizes.append((cflags & CF_COUNT_MASK) * INSN_BYTES)
            lines.append(number)
            chained |= not cflags & CF_NO_GOTO_TB
            block_open = False
            continue
        match = _INSN.fullmatch(line)
        if match:
            if not block_open:
                raise TraceError(f"an instruction line outside an in_asm block: {shown_line(line)}",
                                 path, number)  # fmt: skip
            if t_size[-1] == 0:
                t_pc[-1] = int(match[1], 16)
            t_size[-1] += INSN_BYTES
            continue
        if _IN.fullmatch(line):
            t_pc.append(0)
            t_size.append(0)
            t_line.append(number)
            block_open = True
            continue
        block_open = False
        match = _STOPPED.fullmatch(line)
        if match:
            stopped.append((number, int(match[1] or match[2], 16), match[2] is not None))
            continue
        if _SKIPPED.fullmatch(line):
            chained |= line.startswith(b"Linking")
            continue
        if line.startswith(b"Trace"):
            raise TraceError(f"truncated or malformed QEMU exec record: {shown_line(line)}", path,
                             number)  # fmt: skip
        raise TraceError(f"not a QEMU -d exec/in_asm line: {shown_line(line)}", path, number)
    keep = [i for i, size in enumerate(t_size) if size]
    records = Records(np.array(cpus, np.int64), np.array(pcs, np.uint64),
                      np.array(sizes, np.int64), np.array(lines, np.int64))  # fmt: skip
    translations = (np.array([t_pc[i] for i in keep], np.uint64),
                    np.array([t_size[i] for i in keep], np.int64),
                    np.array([t_line[i] for i in keep], np.int64))  # fmt: skip
    return records, translations, stopped, chained


def _drop_stopped(records: Records, stopped: list[tuple[int, int, bool]],
                  stats: TraceStats) -> Records:  # fmt: skip
    """Apply the "Stopped" and "rewound" lines to the latest record before
    each with that PC (a few records back at most): a stopped block did not
    run and is dropped; a rewound one ran up to the instruction that did I/O,
    where the same CPU's next record starts, so its size becomes REWOUND
    (blocks.NextRecordSizer measures it)."""
    keep = np.ones(len(records), bool)
    lines = records.line
    pcs = records.pc
    for number, pc, rewound in stopped:
        index = int(np.searchsorted(lines, number)) - 1
        for candidate in range(index, max(index - 16, -1), -1):
            if keep[candidate] and records.size[candidate] != REWOUND and \
                    int(pcs[candidate]) == pc:
                if rewound:
                    records.size[candidate] = REWOUND
                    stats.rewound += 1
                else:
                    keep[candidate] = False
                    stats.dropped_stopped += 1
                break
        else:
            stats.unmatched_stopped += 1
    return records if keep.all() else records.take(np.flatnonzero(keep))


def _resolve_sizes(records: Records, t_pc: np.ndarray, t_size: np.ndarray, t_line: np.ndarray,
                   state: QemuState) -> None:  # fmt: skip
    """The size of each record not cut by QEMU (size still 0): the longest
    translation of its PC logged before it, in this chunk or an earlier one.
    A PC is translated again shorter when QEMU cuts a block (-icount, I/O);
    the record of a cut block carries its own length in CFLAGS, and the full
    block is the longest listing."""
    size = records.size
    unsized = np.flatnonzero(size == 0)
    if not len(unsized):
        return
    best = np.zeros(len(unsized), np.int64)
    if state.sizes:
        table_pc, table_size = state.table()
        at = np.minimum(np.searchsorted(table_pc, records.pc[unsized]), len(table_pc) - 1)
        hit = table_pc[at] == records.pc[unsized]
        best[hit] = table_size[at[hit]]
    if len(t_pc):
        pcs = np.concatenate([t_pc, records.pc])
        lines = np.concatenate([t_line, records.line])
        is_t = np.zeros(len(pcs), bool)
        is_t[: len(t_pc)] = True
        order = np.lexsort((~is_t, lines, pcs))  # by PC, then line; a translation first
        sorted_pc = pcs[order]
        group = np.concatenate([[0], np.cumsum(sorted_pc[1:] != sorted_pc[:-1])])
        values = np.concatenate([t_size, np.zeros(len(records), np.int64)])[order]
        # The running maximum within each PC group: groups offset apart, then accumulate.
        offset = group * np.int64(1 << 32)
        running = np.maximum.accumulate(values + offset) - offset
        in_chunk = np.zeros(len(records), np.int64)
        rec = ~is_t[order]
        in_chunk[order[rec] - len(t_pc)] = running[rec]
        best = np.maximum(best, in_chunk[unsized])
    size[unsized] = best
