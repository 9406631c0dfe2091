"""Trace parsers on the committed real excerpts: QEMU exec logs (with and
without in_asm) through the C, numpy and reference paths, perf script in
three field layouts, brstack ranges, and one clear line naming the line for
truncated or garbage input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from replay_testdata import PERF_CALLCHAIN, PERF_F, PERF_SAMPLES, QEMU_EXEC, QEMU_INASM

from emu.replay import qemu_log
from emu.replay.blocks import NextRecordSizer
from emu.replay.errors import TraceError
from emu.replay.formats import detect_format, parse_trace
from emu.replay.perf_script import parse_perf
from emu.replay.qemu_log import parse_qemu
from emu.replay.records import CHUNK_BYTES, FORMAT_PERF, FORMAT_QEMU, REWOUND, Records

BACKENDS = ["c", "numpy", "python"]


def _backend(name: str) -> str:
    if name == "c" and qemu_log._SCAN is None:
        pytest.skip("the C scanner (emu.replay._qemulog) is not built")
    return name


def qemu_records(path, backend="auto", chunk_bytes=CHUNK_BYTES):
    chunks, state = parse_qemu(path, chunk_bytes, backend)
    return Records.concat(list(chunks)), state.stats


def perf_records(path, chunk_bytes=CHUNK_BYTES):
    chunks, stats = parse_perf(path, chunk_bytes)
    return Records.concat(list(chunks)), stats


def test_formats_are_detected():
    assert detect_format(QEMU_EXEC) == FORMAT_QEMU
    assert detect_format(QEMU_INASM) == FORMAT_QEMU
    for path in (PERF_SAMPLES, PERF_F, PERF_CALLCHAIN):
        assert detect_format(path) == FORMAT_PERF


@pytest.mark.parametrize("backend", BACKENDS)
def test_qemu_exec_records_point_at_their_lines(backend):
    records, stats = qemu_records(QEMU_EXEC, _backend(backend))
    lines = QEMU_EXEC.read_text().splitlines()
    traces = [line for line in lines if line.startswith("Trace ")]
    stopped = [line for line in lines if line.startswith("Stopped execution")]
    assert stats.lines == len(lines) == 600
    assert len(stopped) == 1 and stats.dropped_stopped == 1
    assert len(records) == len(traces) - 1
    assert set(records.cpu.tolist()) == {0, 1}
    for cpu, pc, number in zip(records.cpu.tolist(), records.pc.tolist(), records.line.tolist(),
                               strict=True):  # fmt: skip
        line = lines[number - 1]
        assert line.startswith(f"Trace {cpu}: ")
        assert f"/{pc:016x}/" in line
    # The dropped record is the one just before the Stopped line, with its PC.
    stop_at = lines.index(stopped[0]) + 1
    pc = int(re.search(r"\[([0-9a-f]+)\]", stopped[0])[1], 16)
    assert stop_at - 1 not in records.line.tolist()
    assert f"/{pc:016x}/" in lines[stop_at - 2]
    assert not stats.chained  # recorded with nochain: every CFLAGS has CF_NO_GOTO_TB


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_asm_sizes_are_the_longest_translation(backend):
    """Each record's size is 4 x the instruction lines of the longest IN: block
    for its PC before it, counted here independently; 0 if none yet."""
    records, stats = qemu_records(QEMU_INASM, _backend(backend))
    expected_sizes, latest, block_pc, block_insns = {}, {}, None, 0
    for number, line in enumerate(QEMU_INASM.read_text().splitlines(), 1):
        if line.startswith("IN:"):
            block_pc, block_insns = None, 0
        elif line.startswith("0x") and block_insns >= 0:
            if block_pc is None:
                block_pc = int(line.split(":")[0], 16)
            block_insns += 1
        elif line == "" and block_pc is not None:
            latest[block_pc] = max(latest.get(block_pc, 0), 4 * block_insns)
            block_pc, block_insns = None, -1
        elif line.startswith("Trace "):
            pc = int(line.split("/")[1], 16)
            expected_sizes[number] = latest.get(pc, 0)
    assert stats.translations == sum(1 for line in QEMU_INASM.read_text().splitlines()
                                     if line.startswith("IN:"))  # fmt: skip
    got = dict(zip(records.line.tolist(), records.size.tolist(), strict=True))
    assert got == expected_sizes
    assert sum(1 for size in got.values() if size) > 100


@pytest.mark.parametrize("path", [QEMU_EXEC, QEMU_INASM])
def test_backends_and_chunk_sizes_agree(path):
    reference, _ = qemu_records(path, "python")
    backends = ["numpy", "python"] + (["c"] if qemu_log._SCAN is not None else [])
    for backend in backends:
        for chunk_bytes in (512, 4096, 1 << 20):
            records, _ = qemu_records(path, backend, chunk_bytes)
            for name in ("cpu", "pc", "size", "line"):
                assert np.array_equal(getattr(records, name), getattr(reference, name)), \
                    (backend, chunk_bytes, name)


def _kernel_lines(path, marker):
    return [line for line in path.read_text().splitlines() if marker in line]


def test_perf_default_fields():
    records, _ = perf_records(PERF_SAMPLES)
    lines = PERF_SAMPLES.read_text().splitlines()
    assert len(records) == len(lines) == 250
    kernel = records.pc >= np.uint64(1 << 63)
    assert kernel.sum() == len(_kernel_lines(PERF_SAMPLES, "[kernel.kallsyms]"))
    for cpu, pc, number in zip(records.cpu.tolist(), records.pc.tolist(), records.line.tolist(),
                               strict=True):  # fmt: skip
        line = lines[number - 1]
        assert f"[{cpu:03d}]" in line and f" {pc:x} " in line
    assert set(records.size.tolist()) == {4}


def test_perf_cpu_ip_sym_fields():
    records, _ = perf_records(PERF_F)
    assert len(records) == 200
    kernel = records.pc >= np.uint64(1 << 63)
    assert kernel.sum() == len(_kernel_lines(PERF_F, "ffffffff"))
    assert set(records.cpu.tolist()) == {0, 1}


def test_perf_callchain_takes_the_leaf():
    records, _ = perf_records(PERF_CALLCHAIN)
    lines = PERF_CALLCHAIN.read_text().splitlines()
    headers = [i for i, line in enumerate(lines) if re.search(r"\[\d{3}\]", line)]
    assert len(records) == len(headers)
    leaves = [int(lines[i + 1].split()[0], 16) for i in headers]
    assert records.pc.tolist() == leaves
    assert records.line.tolist() == [i + 2 for i in headers]


def test_brstack_ranges_by_hand(tmp_path):
    """perf's brstack order is newest first: the code between branch i's
    target and branch i-1's source ran straight."""
    base = 0xFFFF800008010000
    entries = [(base + 0x100, base + 0x400), (base + 0x40, base + 0xF0), (base + 0x10, base + 0x20),
               (0x400123, base + 0x0)]  # fmt: skip
    text = " ".join(f"{src:#x}/{dst:#x}/P/-/-/0" for src, dst in entries)
    trace = tmp_path / "br.txt"
    trace.write_text(f"[003] {text}\n")
    records, stats = perf_records(trace)
    # ranges: [0xf0, 0x100], [0x20, 0x40], [0x0, 0x10] (the last pair's source is user space
    # but its range ends at a kernel source and starts at a kernel target)
    assert records.pc.tolist() == [base + 0xF0, base + 0x20, base + 0x0]
    assert records.size.tolist() == [0x14, 0x24, 0x14]
    assert set(records.cpu.tolist()) == {3}
    assert stats.brstack_ranges_dropped == 0


def _corrupt(tmp_path, source, line_index, replacement):
    lines = source.read_bytes().split(b"\n")
    lines[line_index] = replacement
    path = tmp_path / source.name
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [
    b"garbage in the middle",
    b"Trace 1: 0x7fcab0c7e240 [0000000000007001/ffff8000081f99",  # cut mid-field
    b"Trace x: 0x7fcab0c7e240 [0000000000007001/ffff8000081f9930/00000021/ff080200] ",
    b"Trace 0: 0x7fcab0c7e240 [0000000000007001/ffff80000zz19930/00000021/ff080200] ",
])  # fmt: skip
def test_qemu_bad_line_is_named(tmp_path, backend, bad):
    path = _corrupt(tmp_path, QEMU_EXEC, 299, bad)
    with pytest.raises(TraceError, match=rf"{re.escape(path.name)}:300: "):
        qemu_records(path, _backend(backend), chunk_bytes=4096)


@pytest.mark.parametrize("backend", BACKENDS)
def test_qemu_truncated_last_line(tmp_path, backend):
    data = QEMU_EXEC.read_bytes()
    path = tmp_path / "cut.log"
    path.write_bytes(data[: len(data) - 40])  # the last record loses its end and newline
    with pytest.raises(TraceError, match=r"cut.log:600: truncated or malformed QEMU exec record"):
        qemu_records(path, _backend(backend))


def test_perf_garbage_and_truncation(tmp_path):
    path = _corrupt(tmp_path, PERF_SAMPLES, 9, b"this is not perf output")
    with pytest.raises(TraceError, match=r":10: perf script line without a \[cpu\] field"):
        perf_records(path)
    data = PERF_SAMPLES.read_bytes()
    cut_sample = tmp_path / "cut-sample.txt"
    cut = data[: data.rindex(b"ffffffff") + 11]  # a kernel IP cut short
    cut_sample.write_bytes(cut)
    last = cut.count(b"\n") + 1
    with pytest.raises(TraceError, match=rf"cut-sample.txt:{last}: truncated: the last line"):
        perf_records(cut_sample)
    header = PERF_CALLCHAIN.read_text().splitlines()[0]
    cut = tmp_path / "cut.txt"
    cut.write_text(header + "\n")
    with pytest.raises(TraceError, match=r"cut.txt:1: truncated"):
        perf_records(cut)


@pytest.mark.parametrize("line,message", [
    ("[000]  fffffffff82261179 sym", "an IP wider than 64 bits"),  # found by the replay fuzz target
    ("[99999999999]  ffffffff82261179 sym", "CPU 99999999999 is beyond any machine"),
])
def test_perf_values_beyond_64_bits_are_named(tmp_path, line, message):
    path = tmp_path / "wide.txt"
    path.write_text(f"[000]  ffffffff82261179 sym\n{line}\n")
    with pytest.raises(TraceError, match=rf"wide.txt:2: {message}"):
        perf_records(path)


def test_a_callchain_leaf_beyond_64_bits_is_named(tmp_path):
    # found by the replay fuzz target: the -g leaf is parsed apart from the sample line
    path = tmp_path / "chain.txt"
    path.write_text("python3 1 [000]  1.0:  1 cpu-clock: \n\t  0x7fcab0c7e240b7390 f+0x0 (x)\n\n")
    with pytest.raises(TraceError, match=r"chain.txt:2: an IP wider than 64 bits"):
        perf_records(path)


def test_empty_and_unknown_traces(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("\n\n")
    with pytest.raises(TraceError, match="empty"):
        parse_trace(empty)
    other = tmp_path / "other.txt"
    other.write_text("hello world\n")
    with pytest.raises(TraceError, match=r"other.txt:1: neither a QEMU"):
        parse_trace(other)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewound_block_ends_at_the_next_record(tmp_path, backend):
    """QEMU 7.2's cpu_io_recompile line: the block for that PC ran up to the
    instruction doing I/O, where that CPU's next record starts."""
    lines = QEMU_EXEC.read_text().splitlines(keepends=True)
    pc = lines[99].split("/")[1]
    cpu = lines[99].split(":")[0]
    lines.insert(100, f"cpu_io_recompile: rewound execution of TB to {pc}\n")
    path = tmp_path / "rewound.log"
    path.write_text("".join(lines))
    records, stats = qemu_records(path, _backend(backend))
    assert stats.rewound == 1 and stats.dropped_stopped == 1
    index = records.line.tolist().index(100)
    assert records.size[index] == REWOUND
    sizer = NextRecordSizer()
    sized = Records.concat([sizer.feed(records), sizer.finish()])
    later = [line for line in lines[101:] if line.startswith(cpu + ":")]
    gap = int(later[0].split("/")[1], 16) - int(pc, 16)
    assert 0 < gap <= 2048  # this record is followed by a block further on
    position = sized.line.tolist().index(100)
    assert sized.size[position] == gap and sizer.rewound == 1


def test_rewound_before_its_first_instruction_ran():
    """The I/O instruction first in its block: the record ran nothing."""
    kernel = 0xFFFF800008010134
    records = Records(np.array([0, 0, 0]), np.array([kernel, kernel, kernel + 4], np.uint64),
                      np.array([REWOUND, 4, 8]), np.array([1, 3, 5]))  # fmt: skip
    sizer = NextRecordSizer()
    sized = Records.concat([sizer.feed(records), sizer.finish()])
    assert sized.line.tolist() == [3, 5] and sized.size.tolist() == [4, 8]
    assert sizer.rewound == 1 and sizer.guessed_one == sizer.guessed_next == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cut_block_has_its_length_in_cflags(tmp_path, backend):
    """-icount and I/O cut blocks: CFLAGS & 0x1ff is the instruction count."""
    lines = QEMU_INASM.read_text().splitlines(keepends=True)
    index = max(i for i, line in enumerate(lines) if line.startswith("Trace "))
    lines[index] = lines[index].replace("/ff080200]", "/ff080203]")
    path = tmp_path / "cut.log"
    path.write_text("".join(lines))
    records, _ = qemu_records(path, _backend(backend))
    assert records.size[-1] == 12 and records.line[-1] == index + 1
