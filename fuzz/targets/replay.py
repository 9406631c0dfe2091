"""Fuzz target ``replay``: the traces ``ktext-emu replay`` reads (emu.replay):
QEMU exec/in_asm logs and perf script output.

An input's first byte says which the rest is (even: a QEMU log, odd: perf
script). Seeds are the heads of the committed real excerpts
(tests/replay/data), damaged at the line and token level with the fields'
sharp values, and cut anywhere. Properties: only TraceError (a ConfigError)
comes out, naming the trace; for a QEMU log the C scanner (when built), the
numpy path and the line-by-line reference give the same records or the same
error; a replayed report's instructions are the sum of its CPUs'.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from emu.errors import ConfigError
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_bytes, damaged_text, utf8

_DATA = Path(__file__).resolve().parents[2] / "tests" / "replay" / "data"
QEMU_SEEDS = ("debian61-boot-inasm-exec-nochain.log", "debian61-boot-exec-nochain.log")
PERF_SEEDS = ("x86-host-perf-samples.txt", "x86-host-perf-samples-callchain.txt",
              "x86-host-perf-samples-F-cpu-ip-sym.txt")  # fmt: skip
FRAGMENTS = [
    "Trace ", "Trace 0: ", "Trace 99999: ", "Trace 1:", "0x7fcab0c7e240", " [", "]", "/", "//",
    "0000000000007001", "ffff8000081f9930", "ffffffffffffffff", "00000021", "ff080200",
    "ff080203", "ff0801ff", "00000000", "IN: ", "IN:", "----------------", "\n", "\n\n",
    "0xffff800008cda26c:  d50323bf  hint     #0x1d", "0x:  ", "Stopped execution of TB chain "
    "before 0x7fcab0c7e240 [ffff8000081f9930] ", "cpu_io_recompile: rewound execution of TB to "
    "ffff8000081f9930", "Linking TBs 0x1 index 0 -> 0x2", "[000]", "[99999]", "[]", "cpu-clock:",
    ":", " ffffffff8225295b ", "0xffffffff81000000/0xffffffff81000010/P/-/-/0", "\t", " ", "#",
    "(", "([kernel.kallsyms])", "\x1b[2J", "\r",
]  # fmt: skip


def _head(name: str, lines: int) -> str:
    return "".join((_DATA / name).read_text().splitlines(keepends=True)[:lines])


@functools.lru_cache(maxsize=1)
def _seed_texts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (tuple(_head(name, 120) for name in QEMU_SEEDS),
            tuple(_head(name, 60) for name in PERF_SEEDS))  # fmt: skip


def strategy() -> st.SearchStrategy[bytes]:
    qemu, perf = _seed_texts()
    texts = [st.sampled_from(qemu).flatmap(lambda t: damaged_text(t, FRAGMENTS)).map(
                 lambda t: ("q", t)),
             st.sampled_from(perf).flatmap(lambda t: damaged_text(t, FRAGMENTS)).map(
                 lambda t: ("p", t))]  # fmt: skip
    as_text = st.one_of(texts).flatmap(
        lambda kind_text: utf8(st.just(kind_text[1])).map(
            lambda b, k=kind_text[0]: bytes([0 if k == "q" else 1]) + b))
    raw = st.sampled_from(seeds()).flatmap(lambda s: damaged_bytes(s, max_edits=4))
    return st.one_of(as_text, as_text, raw)


def seeds() -> list[bytes]:
    qemu, perf = _seed_texts()
    return [b"\0" + t.encode() for t in qemu] + [b"\1" + t.encode() for t in perf]


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ktext-fuzz-replay-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _parse_all(trace: Path, backend: str):
    from emu.replay.errors import TraceError
    from emu.replay.qemu_log import parse_qemu
    from emu.replay.records import Records

    try:
        chunks, _ = parse_qemu(trace, 1 << 12, backend)
        records = Records.concat(list(chunks))
    except TraceError as err:
        return str(err)
    return tuple(tuple(getattr(records, name).tolist()) for name in ("cpu", "pc", "size", "line"))


def run(data: bytes) -> str:
    from emu.replay import qemu_log
    from emu.replay.api import ReplayOptions, replay_trace
    from emu.replay.records import FORMAT_PERF, FORMAT_QEMU

    mode, body = (data[0], data[1:]) if data else (0, b"")
    trace = _scratch() / ("trace.log" if mode % 2 == 0 else "perf.txt")
    trace.write_bytes(body)
    system_map = _DATA / ("debian61-System.map-excerpt" if mode % 2 == 0
                          else "x86-host-kallsyms-excerpt")  # fmt: skip
    fmt = FORMAT_QEMU if mode % 2 == 0 else FORMAT_PERF
    if fmt == FORMAT_QEMU:
        backends = ["python", "numpy"] + (["c"] if qemu_log._SCAN is not None else [])
        results = {backend: _parse_all(trace, backend) for backend in backends}
        if len(set(results.values())) != 1:
            raise PropertyViolation(f"the QEMU log parsers disagree: {sorted(results)} give "
                                    f"{[str(r)[:80] for r in results.values()]}")  # fmt: skip
    try:
        result = replay_trace(ReplayOptions(trace=trace, system_map=system_map, format=fmt,
                                            nodes=2, cpus_per_node=64))  # fmt: skip
    except ConfigError as err:
        if str(trace) not in str(err):
            raise PropertyViolation(f"a trace error that does not name the trace: {err}") from None
        raise
    for run_json in result.runs:
        if run_json["instructions"] != sum(cpu["instructions"] for cpu in run_json["cpus"]):
            raise PropertyViolation("a run's instructions are not the sum of its CPUs'")
    return f"replayed {result.records} records"


TARGET = Target(
    name="replay",
    summary="QEMU exec/in_asm logs and perf script output through `ktext-emu replay`",
    documented=(ConfigError,),
    run=run,
    strategy=strategy,
    seeds=seeds,
)
