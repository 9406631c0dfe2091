"""``perf script`` output into trace records: IP samples (default fields,
``-F`` variants with the cpu field, the leaf of each ``-g`` callchain) and
``-F brstack`` branch records.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emu.replay.errors import TraceError
from emu.replay.records import (
    CHUNK_BYTES,
    FORMAT_PERF,
    INSN_BYTES,
    KERNEL_SPACE,
    Records,
    TraceStats,
    open_trace,
    read_chunks,
    shown_line,
)

# A brstack range longer than this is not one straight-line run (a context
# switch or a lost record between the two branches): dropped.
MAX_BRANCH_RANGE = 64 << 10

_CPU_FIELD = re.compile(r"\[(\d+)\]")
_BRSTACK = re.compile(r"0x([0-9a-fA-F]+)/0x([0-9a-fA-F]+)/")
_HEXTOKEN = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_CALLCHAIN = re.compile(r"\s+(?:0x)?[0-9a-fA-F]+(?:\s.*)?")


@dataclass
class PerfState:
    """Carried between chunks: a sample header (its CPU and line) whose IP
    comes on the next line, as ``perf script`` prints samples with ``-g``."""

    path: str
    stats: TraceStats = field(default_factory=lambda: TraceStats(FORMAT_PERF))
    awaiting: tuple[int, int] | None = None
    in_callchain: bool = False


def parse_perf(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> tuple[Iterator[Records],
                                                                        TraceStats]:  # fmt: skip
    """Records of ``perf script`` output: one 4-byte fetch per kernel IP sample
    (the leaf of a callchain), one straight-line range per pair of
    consecutive kernel branch records."""
    state = PerfState(str(path))
    stats = state.stats

    def chunks() -> Iterator[Records]:
        for data in read_chunks(path, chunk_bytes):
            text = bytes(data).decode("utf-8", errors="replace")
            records = _perf_chunk(text, stats.lines + 1, state)
            stats.lines += text.count("\n")
            stats.records += len(records)
            yield records
        if state.awaiting is not None:
            raise TraceError("truncated: the sample has no IP line after it", state.path,
                             state.awaiting[1])  # fmt: skip
        if not _ends_with_newline(path):  # perf script ends every line: the last was cut
            raise TraceError("truncated: the last line has no newline", state.path, stats.lines)

    return chunks(), stats


def _perf_chunk(text: str, first_line: int, state: PerfState) -> Records:
    cpus: list[int] = []
    pcs: list[int] = []
    sizes: list[int] = []
    lines: list[int] = []
    path, stats = state.path, state.stats
    for offset, line in enumerate(text.split("\n")[:-1]):
        number = first_line + offset
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if state.awaiting is not None:
                raise TraceError("the sample has no IP (no line after it)", path,
                                 state.awaiting[1])  # fmt: skip
            state.in_callchain = False
            continue
        if line[0] in " \t" and _CALLCHAIN.fullmatch(line) and (state.awaiting or
                                                               state.in_callchain):
            if state.awaiting is not None:  # the leaf: where the sample was taken
                leaf = int(stripped.split()[0], 16)
                if leaf >> 64:
                    raise TraceError(f"an IP wider than 64 bits: {shown_line(line.encode())}",
                                     path, number)
                cpus.append(state.awaiting[0])
                pcs.append(leaf)
                sizes.append(INSN_BYTES)
                lines.append(number)
                state.awaiting = None
                state.in_callchain = True
            continue  # a caller: not executed at the sample
        if state.awaiting is not None:
            raise TraceError("the sample has no IP (no callchain line after it)", path,
                             state.awaiting[1])  # fmt: skip
        state.in_callchain = False
        cpu_match = _CPU_FIELD.search(line)
        if cpu_match is None:
            raise TraceError("perf script line without a [cpu] field (record with -a and "
                             f"print -F with cpu): {shown_line(line.encode())}", path, number)
        cpu = int(cpu_match[1])
        if cpu >= MAX_CPU:
            raise TraceError(f"CPU {cpu} is beyond any machine: {shown_line(line.encode())}",
                             path, number)
        rest = line[cpu_match.end():]
        branches = _BRSTACK.findall(rest)
        if branches and any((int(src, 16) | int(dst, 16)) >> 64 for src, dst in branches):
            raise TraceError(f"a branch address wider than 64 bits: {shown_line(line.encode())}",
                             path, number)
        if branches:
            _brstack_ranges(branches, cpu, number, stats, cpus, pcs, sizes, lines)
            continue
        ip = _sample_ip(rest)
        if ip is None:
            if rest.rstrip().endswith(":"):  # -g: the IP is the callchain's first line
                state.awaiting = (cpu, number)
                continue
            raise TraceError(f"perf script sample without an IP: {shown_line(line.encode())}", path,
                             number)  # fmt: skip
        if ip >> 64:
            raise TraceError(f"an IP wider than 64 bits: {shown_line(line.encode())}", path, number)
        cpus.append(cpu)
        pcs.append(ip)
        sizes.append(INSN_BYTES)
        lines.append(number)
    return Records(np.array(cpus, np.int64), np.array(pcs, np.uint64),
                   np.array(sizes, np.int64), np.array(lines, np.int64))  # fmt: skip


def _ends_with_newline(path: str | Path) -> bool:
    with open_trace(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return True
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


# More CPUs than any machine has (topology caps them far lower): refused
# before numpy's int64 could overflow.
MAX_CPU = 1 << 31


def _sample_ip(rest: str) -> int | None:
    """The IP of a sample line after its ``[cpu]``: the token after the last
    ``time:``/``event:`` field, else the first token."""
    head = rest.split("(", 1)[0].split()
    start = 0
    for index, token in enumerate(head):
        if token.endswith(":"):
            start = index + 1
    if start >= len(head) or not _HEXTOKEN.fullmatch(head[start]) or len(head[start]) > 18:
        return None
    return int(head[start], 16)


def _brstack_ranges(branches: list[tuple[str, str]], cpu: int, number: int, stats: TraceStats,
                    cpus: list[int], pcs: list[int], sizes: list[int],
                    lines: list[int]) -> None:  # fmt: skip
    """perf lists branches newest first: between the target of branch i and
    the source of the newer branch i - 1 the CPU ran straight-line code."""
    entries = [(int(src, 16), int(dst, 16)) for src, dst in branches]
    for newer, older in itertools.pairwise(entries):
        start, end = older[1], newer[0]
        length = end - start + INSN_BYTES
        if start < KERNEL_SPACE or end < KERNEL_SPACE or not 0 < length <= MAX_BRANCH_RANGE:
            stats.brstack_ranges_dropped += 1
            continue
        cpus.append(cpu)
        pcs.append(start)
        sizes.append(length)
        lines.append(number)
