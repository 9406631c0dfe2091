"""``ktext-emu replay TRACE``: a real kernel's instruction trace through the
replication and cost model of ``ktext-emu run``, with the same report.

Registering the subcommand is one call: ``add_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emu.config import add_machine_arguments, machine_config_from_args
from emu.errors import UsageError
from emu.fileio import check_writable
from emu.replay.blocks import ImageBlocks, load_image_blocks
from emu.replay.errors import TraceError
from emu.replay.formats import FORMAT_QEMU, FORMATS, detect_format, parse_trace
from emu.replay.player import cache_sinks, cpu_map, play, replay_runs
from emu.replay.symbols import load_system_map
from emu.report import format_cost, local_kernel_share, make_report, write_json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``replay`` and its options to ``sub``; the handler is ``args.run``."""
    parser = sub.add_parser(
        "replay",
        help="play a real kernel's instruction trace through the replication and cost model",
        description="Replay a QEMU -d exec[,nochain][,in_asm] log or perf script output "
        "(IP samples or -F brstack) of kernel addresses: kernel text on node 0 (ktext off) "
        "or on each CPU's node (ktext on), and the modelled cost of each.",
    )
    parser.add_argument("trace", type=Path, metavar="TRACE", help="the trace file")
    parser.add_argument("--system-map", type=Path, metavar="FILE", required=True,
                        help="the kernel's System.map (_stext, _etext, __end_rodata)")
    parser.add_argument("--kernel-image", type=Path, metavar="FILE",
                        help="vmlinux or arm64 Image: block sizes for a QEMU log without in_asm")
    parser.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                        help="trace format (default: detected)")
    add_machine_arguments(parser)
    parser.add_argument("--cpu-node", action="append", default=[], metavar="CPU=NODE",
                        help="put trace CPU on NODE (repeatable, or comma-separated); "
                        "default: CPU // cpus_per_node")
    parser.add_argument("--ktext", choices=("on", "off", "both"), default="both",
                        help="replication for the run(s) (default both: off, then on)")
    parser.add_argument("--detail", choices=("fast", "cache"), default="fast",
                        help="cost model: fast (counts x latency, default) or cache "
                        "(L1I and LLC simulation of every fetched line; slower)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=replay_command)
    return parser


def parse_cpu_nodes(items: list[str]) -> dict[int, int]:
    """``["0=1", "2=0,3=0"]`` -> {0: 1, 2: 0, 3: 0}."""
    mapping: dict[int, int] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            cpu, sep, node = part.partition("=")
            if not sep or not cpu.strip().isdigit() or not node.strip().isdigit():
                raise UsageError(f"--cpu-node {part!r}: expected CPU=NODE, e.g. 0=1")
            if int(cpu) in mapping:
                raise UsageError(f"--cpu-node: CPU {int(cpu)} given twice")
            mapping[int(cpu)] = int(node)
    return mapping


def replay_command(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_writable(args.json)
    config = machine_config_from_args(args)
    topology = config.topology
    explicit = parse_cpu_nodes(args.cpu_node)
    mapping = cpu_map(topology, explicit)
    kernel = load_system_map(args.system_map)
    fmt = detect_format(args.trace) if args.format == "auto" else args.format
    image: ImageBlocks | None = None
    if args.kernel_image is not None:
        image = load_image_blocks(args.kernel_image, kernel)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.ktext]
    started = time.perf_counter()
    chunks, stats = parse_trace(args.trace, fmt)
    sinks, feeds = [], None
    if args.detail == "cache":
        import numpy as np

        cpu_nodes = np.array([topology.cpu_to_node(c) for c in range(topology.n_cpus)])
        sinks, feeds = cache_sinks(topology, cpu_nodes)
        sinks = [sink for sink, ktext in zip(sinks, (False, True), strict=True) if ktext in modes]
    counts, sizer = play(chunks, kernel, mapping, topology.n_cpus, str(args.trace), image, sinks)
    elapsed = time.perf_counter() - started
    if counts.records_played == 0:
        raise TraceError(f"no kernel-space records among {stats.records:,} (kernel addresses "
                         "have the top bit set)", str(args.trace))  # fmt: skip
    source = source_json(args, fmt, stats, counts, sizer, image, explicit)
    runs, _ = replay_runs(config, kernel, counts, stats, source, modes, feeds)
    timings = [{"seconds": round(elapsed, 6),
                "records_per_second": round(stats.records / max(elapsed, 1e-9))}]
    report = make_report(runs, timings)
    if args.json is not None:
        write_json(args.json, report)
    if not args.quiet:
        print(format_replay(report))
        print(f"replay: {stats.records:,} records in {elapsed:.2f} s, "
              f"{stats.records / max(elapsed, 1e-9) / 1e6:.2f} M records/s", file=sys.stderr)
    return 0


def source_json(args: argparse.Namespace, fmt: str, stats, counts, sizer,
                image: ImageBlocks | None, explicit: dict[int, int]) -> dict:  # fmt: skip
    """The RUN's ``source``: what was read and every assumption made."""
    assumptions = []
    if fmt == FORMAT_QEMU:
        if stats.chained:
            assumptions.append("the log was recorded without -d nochain: blocks entered by "
                               "direct chaining are missing, so counts are a lower bound")
        if stats.translations:
            assumptions.append("block sizes from the log's in_asm translations")
        if image is not None:
            assumptions.append("blocks without a logged translation: sized by decoding the "
                               "kernel image (QEMU's block-ending rules; unpatched text)")
        if sizer.guessed_next or sizer.guessed_one:
            assumptions.append(
                f"{sizer.guessed_next:,} blocks sized up to the same CPU's next record (a "
                f"forward branch within the page over-counts), {sizer.guessed_one:,} given "
                "one instruction (a lower bound)")
        assumptions.append("a block whose execution an exception cut short counts in full")
    else:
        assumptions.append("each IP sample is one instruction fetch (a sampled profile, "
                           "not the whole stream); each pair of branch records, the "
                           "straight-line code between them")
    assumptions.append("data accesses are not in the trace: data counts are absent, and the "
                       "cost counts instruction fetches only")
    return {
        "trace": str(args.trace),
        "format": fmt,
        "system_map": str(args.system_map),
        "kernel_image": None if image is None else image.path,
        "lines": stats.lines,
        "records": stats.records,
        "records_played": counts.records_played,
        "records_outside_kernel": counts.records_outside_kernel,
        "trace_cpus": sorted(counts.trace_cpus),
        "cpu_node": {str(k): v for k, v in sorted(explicit.items())} or None,
        "translations": stats.translations,
        "stopped_records_dropped": stats.dropped_stopped,
        "brstack_ranges_dropped": stats.brstack_ranges_dropped,
        "chained": stats.chained,
        "blocks_sized_by_next_record": sizer.guessed_next,
        "blocks_given_one_instruction": sizer.guessed_one,
        "assumptions": assumptions,
    }


def _label(run: dict) -> str:
    return "ktext on" if run["ktext"] else "ktext off"


def format_replay(report: dict) -> str:
    """The table of ``ktext-emu run``, for a replayed trace."""
    runs = report["runs"]
    first = runs[0]
    machine = first["machine"]
    source = first["source"]
    lines = [
        f"machine {machine['name']}: {machine['nodes']} nodes x {machine['cpus_per_node']} CPUs; "
        f"trace {source['trace']} ({source['format']}, {source['records']:,} records, "
        f"{source['records_played']:,} kernel blocks played on CPUs "
        f"{','.join(map(str, source['trace_cpus']))})"
    ]
    labels = [_label(run) for run in runs]
    for run, label in zip(runs, labels, strict=True):
        lines.append(f"  {label}: {run['instructions']:,} kernel instructions, "
                     f"{run['stop_reason']}")  # fmt: skip
    header = f"{'node':>4}  {'CPUs':>4}  " + "  ".join(
        f"{'local kernel fetches (' + label + ')':>32}" for label in labels
    )
    lines += ["", header]
    for node in range(machine["nodes"]):
        cpus = sum(1 for cpu in first["cpus"] if cpu["node"] == node)
        shares = "  ".join(
            f"{_pct(local_kernel_share(run, node)):>32}" for run in runs
        )
        lines.append(f"{node:>4}  {cpus:>4}  {shares}")
    lines += ["", *format_cost(runs, labels)]
    lines.append("modelled cycles: " + ", ".join(
        f"{label} {run['cost']['total_cycles']:,.0f}" for run, label in zip(runs, labels,
                                                                         strict=True)))
    lines.append("")
    lines += [f"note: {text}" for text in source["assumptions"]]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.1f}%"


__all__ = ["add_parser", "format_replay", "replay_command"]
