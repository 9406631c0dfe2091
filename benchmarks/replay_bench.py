"""Replay speed: trace records parsed and counted per second (fast model).

    python3 -m benchmarks.replay_bench [--short] [--records N] [TRACE --system-map FILE]

Without a TRACE it writes a QEMU exec log of at least N records (default
5 M, --short 1 M) by repeating the committed real excerpt
(tests/replay/data/debian61-boot-exec-nochain.log, both vCPUs of a Debian 6.1
boot under QEMU 7.2) into a temporary file.  Prints the median wall and CPU
rates of ``--repeat`` runs of replay_trace (parse, size, count, both
replication settings); nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from emu.replay.api import ReplayOptions, replay_trace

DATA = Path(__file__).resolve().parents[1] / "tests" / "replay" / "data"
EXCERPT = DATA / "debian61-boot-exec-nochain.log"
EXCERPT_MAP = DATA / "debian61-System.map-excerpt"


def write_repeated_excerpt(directory: Path, records: int) -> Path:
    """A log of at least ``records`` records: the excerpt again and again."""
    excerpt = EXCERPT.read_bytes()
    per_copy = excerpt.count(b"\nTrace ") + excerpt.startswith(b"Trace ")
    copies = -(-records // per_copy)
    path = directory / "repeated-exec.log"
    with path.open("wb") as handle:  # a scratch input, not an output of ktext-emu
        for _ in range(copies):
            handle.write(excerpt)
    return path


def measure(trace: Path, system_map: Path, repeat: int) -> dict:
    walls, cpus, records = [], [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = replay_trace(ReplayOptions(trace=trace, system_map=system_map,
                                            cpu_node={0: 0, 1: 1}))  # fmt: skip
        walls.append(time.perf_counter() - start)
        cpus.append(result.cpu_seconds)
        records = result.records
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"trace": str(trace), "records": records, "wall_seconds": round(wall, 3),
            "records_per_second_wall": round(records / wall),
            "records_per_second_cpu": round(records / max(cpu, 1e-9))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", nargs="?", type=Path, help="a real trace (default: generated)")
    parser.add_argument("--system-map", type=Path, default=EXCERPT_MAP)
    parser.add_argument("--short", action="store_true", help="1 M records instead of 5 M")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        trace = args.trace
        if trace is None:
            records = args.records or (1_000_000 if args.short else 5_000_000)
            trace = write_repeated_excerpt(Path(directory), records)
        row = measure(trace, args.system_map, args.repeat)
    print(json.dumps(row))
    print(f"replay: {row['records']:,} records, {row['records_per_second_wall'] / 1e6:.2f} M "
          f"records/s wall, {row['records_per_second_cpu'] / 1e6:.2f} M records/s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
