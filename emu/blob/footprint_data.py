"""The default Footprint and where each figure comes from.

Kernel figures come from the measurement of Debian's 6.1 arm64 kernel
committed in ``emu/data/footprint/debian-6.1-arm64.json`` (written by
benchmarks/realkernel; its ``provenance`` says how): per syscall of a query
the distinct text, functions and median instructions per call, and the size
distribution of the functions executed.  Without that file
the ranges issue 12 quotes from the same kind of measurement are used, each
default the geometric middle of its range (the ranges span a decade or
more, so the arithmetic middle would sit near the top).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

from emu.blob.synth import Footprint

MEASURED = Path(__file__).resolve().parent.parent / "data" / "footprint" / "debian-6.1-arm64.json"

ISSUE_12 = ("issue 12 (Debian 6.1 arm64 under QEMU): 400-8,000 instructions and 1.5-36 KiB of "
            "distinct text over 13-200 functions per common syscall")  # fmt: skip
FALLBACK_PER_CALL = {
    "instructions_per_call": math.sqrt(400 * 8000),  # 1,789
    "text_bytes_per_call": math.sqrt(1.5 * 36) * 1024,  # 7.3 KiB
    "functions_per_call": math.sqrt(13 * 200),  # 51
}

# The syscalls a database server makes per query, as the measured file names
# its loops, in order of preference: the request read from a socket-like pipe,
# a read of data, the reply written back (a PostgreSQL backend recv()s a
# query, pread()s relation pages, send()s the result; the measurement has no
# socket or file-page read, so a pipe and /dev/zero stand in), then a waiter
# woken.  The first SYSCALLS_PER_QUERY present are used.
DB_SYSCALLS = ("pipe_read", "read_devzero", "pipe_write", "futex_wake", "read", "write")

SYSCALLS_PER_QUERY = 3  # request in, data read, reply out (the three steps above)
USER_CODE = 256 * 1024  # "hundreds of KiB" of a database's own code per query mix (issue 12); a range: 100 KiB - 1 MiB
USER_DATA = 16 * 1024 * 1024  # MBs: 16x a Neoverse N1 L2 (1 MiB max, Arm 100616 TRM), half Altra's 32 MiB SLC
PLANS = 5  # TPC-C's five transaction types (TPC Benchmark C, clause 2): one plan each
ROWS_PER_QUERY = 100  # sysbench oltp's range selects: --range_size default 100 rows


def load_measured(path: Path = MEASURED) -> dict | None:
    """The measured footprint document, or None when it is not there."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def default_footprint(measured: dict | None = None, seed: int = 1) -> Footprint:
    """The shipped Footprint: measured per-syscall figures for DB_SYSCALLS when
    the file is there, else issue 12's ranges."""
    if measured is None:
        measured = load_measured()
    chosen: list[tuple[str, dict]] = []
    source = ISSUE_12
    if measured is not None:
        calls = measured.get("syscalls", {})
        chosen = [(name, calls[name]) for name in DB_SYSCALLS if name in calls][:SYSCALLS_PER_QUERY]
        prov = measured.get("provenance", {})
        source = f"{MEASURED.name} ({prov.get('kernel_release', 'measured')}, {prov.get('date', '')})"
    if len(chosen) < SYSCALLS_PER_QUERY:
        chosen = [(f"syscall{i}", FALLBACK_PER_CALL) for i in range(SYSCALLS_PER_QUERY)]
        source = ISSUE_12
    text = sum(int(figures["text_bytes_per_call"]) for _, figures in chosen)
    functions = round(sum(figures["functions_per_call"] for _, figures in chosen) / len(chosen))
    # The median call: the mean includes the timer interrupts QEMU's slow TCG
    # clock lands in a syscall far more often than hardware would.
    instructions = round(sum(figures.get("instructions_per_call_median",
                                         figures["instructions_per_call"])
                             for _, figures in chosen) / len(chosen))  # fmt: skip
    sizes: tuple[tuple[float, int], ...] = ()
    executed = (measured or {}).get("function_sizes", {}).get("executed", {}) if source != ISSUE_12 else {}
    if executed:
        sizes = tuple((int(key[1:]) / 100, round(executed[key]))
                      for key in ("p10", "p25", "p50", "p75", "p90", "p99") if key in executed)
    return Footprint(
        kernel_text_per_iter=text,
        functions_per_path=max(1, functions),
        instructions_per_path=max(1, instructions),
        user_code=USER_CODE,
        user_data=USER_DATA,
        syscalls_per_iter=SYSCALLS_PER_QUERY,
        plans=PLANS,
        rows_per_query=ROWS_PER_QUERY,
        function_sizes=sizes,
        path_shares=tuple(float(figures["text_bytes_per_call"]) for _, figures in chosen),
        seed=seed,
        syscall_names=tuple(name for name, _ in chosen),
        sources=(
            ("kernel_text_per_iter", source), ("functions_per_path", source),
            ("instructions_per_path", source + ", median call"),
            ("function_sizes", source + ", functions executed" if sizes else "log-normal, sigma 1"),
            ("path_shares", source + ", text per call of each syscall"),
            ("user_code", "issue 12: hundreds of KiB of a database's own code (range 100 KiB-1 MiB)"),
            ("user_data", "16x the Neoverse N1 L2 (Arm 100616 TRM), half the Altra 32 MiB SLC"),
            ("plans", "TPC-C's five transaction types"),
            ("rows_per_query", "sysbench oltp range selects: range_size default 100"),
        ),
    )  # fmt: skip


KNOBS = ("kernel_text_per_iter", "functions_per_path", "instructions_per_path", "user_code",
         "user_data", "syscalls_per_iter", "plans", "rows_per_query", "seed")  # fmt: skip


def footprint_with(overrides: Mapping[str, int], base: Footprint | None = None) -> Footprint:
    """``base`` (default: the shipped default) with some knobs set, e.g. from
    command-line flags; those knobs' source becomes "set by the user".  A
    knob that changes the number of paths drops the per-path shares."""
    base = base or default_footprint()
    known = {f.name for f in fields(Footprint)}
    for name in overrides:
        if name not in known:
            raise ValueError(f"no footprint knob {name!r}")
    sources = dict(base.sources)
    sources.update({name: "set by the user" for name in overrides})
    extra: dict[str, object] = {}
    if overrides.get("syscalls_per_iter", base.syscalls_per_iter) != base.syscalls_per_iter:
        extra = {"path_shares": (), "syscall_names": ()}
    return replace(base, **overrides, **extra, sources=tuple(sources.items()))


def footprint_json(fp: Footprint) -> dict:
    """The knobs and their sources, for a report."""
    knobs = {f.name: getattr(fp, f.name) for f in fields(Footprint) if f.name != "sources"}
    knobs["function_sizes"] = [list(point) for point in fp.function_sizes]
    knobs["path_shares"] = list(fp.path_shares)
    knobs["syscall_names"] = list(fp.syscall_names)
    return {**knobs, "sources": dict(fp.sources)}
