"""The in-process replay API: ``replay_trace(options) -> ReplayResult`` reads
a trace once, plays it for each replication setting asked for, and returns
the ``{"runs": [...]}`` document of ``ktext-emu run`` with the trace's
``source``.  It prints nothing and writes no file (emu/cli/replay.py does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emu.config import MachineConfig, machine_config
from emu.hw.accounting import compiled_extension_status
from emu.hw.cost import CostReport, resolve_parameters
from emu.replay import qemu_log
from emu.replay.blocks import ImageBlocks, NextRecordSizer, load_image_blocks
from emu.replay.errors import TraceError
from emu.replay.formats import detect_format, parse_trace
from emu.replay.player import (
    FetchCounts,
    FunctionProfile,
    cache_sinks,
    cpu_map,
    play,
    replay_runs,
)
from emu.replay.records import FORMAT_QEMU, TraceStats
from emu.replay.symbols import load_system_map
from emu.report import make_report

__all__ = ["ReplayOptions", "ReplayResult", "replay_trace"]


@dataclass(frozen=True)
class ReplayOptions:
    """What ``ktext-emu replay`` takes; ``machine`` is a preset name or a file."""

    trace: Path
    system_map: Path
    kernel_image: Path | None = None
    format: str | None = None  # None: detected
    machine: str = "default"
    nodes: int | None = None
    cpus_per_node: int | None = None
    ram_mib: int | None = None
    cpu_node: dict[int, int] = field(default_factory=dict)  # trace CPU -> node
    ktext: str = "both"  # "off", "on" or "both"
    detail: str = "fast"  # "fast" or "cache"
    top: int = 0  # kernel functions to list by instructions (0: none)

    def machine_config(self) -> MachineConfig:
        return machine_config(self.machine, self.nodes, self.cpus_per_node, ram_mib=self.ram_mib)

    @property
    def modes(self) -> list[bool]:
        return {"off": [False], "on": [True], "both": [False, True]}[self.ktext]


@dataclass
class ReplayResult:
    runs: list[dict]
    costs: list[CostReport]
    seconds: float  # reading and counting (and the cache model's simulation)
    cpu_seconds: float
    records: int

    def to_json(self) -> dict:
        timings = [{"seconds": round(self.seconds, 6), "cpu_seconds": round(self.cpu_seconds, 6),
                    "records_per_second": round(self.records / max(self.seconds, 1e-9))}]
        host = dict(compiled_extension_status(), replay_scanner=qemu_log._SCAN is not None)
        return make_report(self.runs, timings, host=host)


def replay_trace(options: ReplayOptions) -> ReplayResult:
    """Play ``options.trace`` (see emu/replay/player.py for the model)."""
    config = options.machine_config()
    topology = config.topology
    mapping = cpu_map(topology, options.cpu_node)
    kernel = load_system_map(options.system_map)
    fmt = options.format or detect_format(options.trace)
    image = load_image_blocks(options.kernel_image, kernel) if options.kernel_image else None
    wall, cpu = time.perf_counter(), time.process_time()
    chunks, stats = parse_trace(options.trace, fmt)
    cpu_nodes = np.array([topology.cpu_to_node(c) for c in range(topology.n_cpus)])
    sinks, feeds = cache_sinks(topology, cpu_nodes, options.detail, options.modes)
    profile = FunctionProfile(kernel) if options.top else None
    if profile is not None:
        sinks.append(profile)
    line_bytes = resolve_parameters(topology).line_bytes
    counts, sizer = play(chunks, kernel, mapping, topology.n_cpus, str(options.trace), image, sinks,
                         line_bytes)  # fmt: skip
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if counts.records_played == 0:
        raise TraceError(f"no kernel-space records among {stats.records:,} (kernel addresses "
                         "have the top bit set)", str(options.trace))  # fmt: skip
    source = source_json(options, fmt, stats, counts, sizer, image, topology.cpus_per_node)
    if profile is not None:
        source["top_functions"] = profile.top(options.top)
    runs, costs = replay_runs(config, kernel, counts, source, options.modes, feeds)
    return ReplayResult(runs, costs, wall, cpu, stats.records)


def source_json(options: ReplayOptions, fmt: str, stats: TraceStats, counts: FetchCounts,
                sizer: NextRecordSizer, image: ImageBlocks | None,
                cpus_per_node: int) -> dict:  # fmt: skip
    """The RUN's ``source``: what was read and every assumption made."""
    assumptions = []
    if fmt == FORMAT_QEMU:
        if stats.chained:
            assumptions.append("the log was recorded without -d nochain: blocks entered by "
                               "direct chaining are missing, so counts are a lower bound")
        if stats.translations:
            assumptions.append("block sizes from the log's in_asm translations (the longest "
                               "listing of a PC; a block QEMU cut has its length in CFLAGS)")
        if stats.rewound:
            assumptions.append(f"{stats.rewound:,} blocks rewound for I/O (cpu_io_recompile) "
                               "counted up to the same CPU's next record")
        if image is not None:
            assumptions.append("blocks without a logged translation: sized by decoding the "
                               "kernel image (QEMU's block-ending rules, unpatched text)")
        if sizer.guessed_next or sizer.guessed_one:
            assumptions.append(
                f"{sizer.guessed_next:,} blocks sized by the shortest step ahead to their CPU's "
                f"next record seen from their PC, {sizer.guessed_one:,} given one instruction: "
                "a rough estimate (1.7-2x the true count on Debian 6.1 captures); "
                "--kernel-image or -d in_asm size blocks exactly")
        assumptions.append("a block whose execution an exception cut short counts in full")
    else:
        assumptions.append("each IP sample is one instruction fetch (a sampled profile, "
                           "not the whole stream); each pair of branch records, the "
                           "straight-line code between them")
    assumptions.append("data accesses are not in the trace: data counts are absent, and the "
                       "cost counts instruction fetches only")
    if counts.records_outside_kernel:
        assumptions.append(f"{counts.records_outside_kernel:,} records outside kernel space (user "
                           "code, physical-address boot) are not played: the cycles and the "
                           "speed-up are those of the kernel's instruction fetches alone")
    nodes_used = sorted({int(c) // cpus_per_node for c in counts.machine_cpus})
    if len(nodes_used) == 1:
        assumptions.append(f"every trace CPU is on node {nodes_used[0]}: replication cannot "
                           "move a fetch; --cpu-node CPU=NODE spreads them")
    return {
        "trace": str(options.trace),
        "format": fmt,
        "system_map": str(options.system_map),
        "kernel_image": None if image is None else image.path,
        "lines": stats.lines,
        "records": stats.records,
        "records_played": counts.records_played,
        "records_outside_kernel": counts.records_outside_kernel,
        "trace_cpus": sorted(counts.trace_cpus),
        "cpu_node": {str(k): v for k, v in sorted(options.cpu_node.items())} or None,
        "translations": stats.translations,
        "stopped_records_dropped": stats.dropped_stopped,
        "stopped_lines_unmatched": stats.unmatched_stopped,
        "rewound_records": stats.rewound,
        "brstack_ranges_dropped": stats.brstack_ranges_dropped,
        "chained": stats.chained,
        "blocks_sized_by_next_record": sizer.guessed_next,
        "blocks_given_one_instruction": sizer.guessed_one,
        "assumptions": assumptions,
    }
