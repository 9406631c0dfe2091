"""``ktext-emu replay TRACE``: a real kernel's instruction trace through the
replication and cost model of ``ktext-emu run`` (emu/replay/api.py), printed
as run's table and written as run's JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emu.cli.args import add_machine_arguments, non_negative_int
from emu.errors import UsageError
from emu.fileio import check_writable
from emu.replay.format_names import FORMATS
from emu.report import cpu_ranges, format_cost, format_local_shares, format_verdict, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "replay",
        help="play a real kernel's instruction trace through the replication and cost model",
        description="Replay a QEMU -d exec[,nochain][,in_asm] log or perf script output "
        "(IP samples or -F brstack) of kernel addresses: kernel text on node 0 (ktext off) "
        "or on each CPU's node (ktext on), and the modelled cost of each.",
    )
    parser.add_argument("trace", type=Path, metavar="TRACE", help="the trace file")
    kernel = parser.add_argument_group("kernel")
    kernel.add_argument("--system-map", type=Path, metavar="FILE", required=True,
                        help="the traced kernel's System.map (_stext, _etext, __end_rodata)")
    kernel.add_argument("--kernel-image", type=Path, metavar="FILE",
                        help="its vmlinux or arm64 Image: block sizes for a QEMU log "
                        "without in_asm")
    kernel.add_argument("--format", choices=FORMATS, default=None,
                        help="trace format (default: detected)")
    add_machine_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--cpu-node", action="append", default=[], metavar="CPU=NODE",
                       help="put trace CPU on NODE (repeatable or comma-separated; the trace "
                       "CPUs of a node take its CPUs in order); default CPU // cpus_per_node")
    model.add_argument("--ktext", choices=("on", "off", "both"), default="both",
                       help="replication for the run(s) (default both: off, then on)")
    model.add_argument("--detail", choices=("fast", "cache"), default="fast",
                       help="cost model: fast (counts x latency, default) or cache (L1I and "
                       "LLC simulation of every fetched line; about 1 M records/s)")
    out = parser.add_argument_group("output")
    out.add_argument("--top", type=non_negative_int, default=0, metavar="N",
                     help="list the N kernel functions with the most instructions (System.map)")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=replay_command)


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
    # Imported here, not with the CLI: numpy starts its BLAS threads at import,
    # and a SIGINT that a background job blocks in its main thread would be
    # delivered to one of them (every other command would lose that guard).
    from emu.replay.api import ReplayOptions, replay_trace

    if args.json is not None:
        check_writable(args.json)
    options = ReplayOptions(
        trace=args.trace, system_map=args.system_map, kernel_image=args.kernel_image,
        format=args.format, machine=args.machine, nodes=args.nodes,
        cpus_per_node=args.cpus_per_node, ram_mib=args.ram_mib,
        cpu_node=parse_cpu_nodes(args.cpu_node), ktext=args.ktext, detail=args.detail,
        top=args.top,
    )  # fmt: skip
    result = replay_trace(options)
    document = result.to_json()
    if args.json is not None:
        write_json(args.json, document)
    if not args.quiet:
        print(format_replay(document))
        print(f"replay: {result.records:,} records in {result.seconds:.2f} s "
              f"({result.cpu_seconds:.2f} s CPU), "
              f"{result.records / max(result.seconds, 1e-9) / 1e6:.2f} M records/s",
              file=sys.stderr)
    return 0


def format_replay(report: dict) -> str:
    """The table of ``ktext-emu run`` for a replayed trace."""
    runs = report["runs"]
    first = runs[0]
    machine = first["machine"]
    source = first["source"]
    labels = ["ktext on" if run["ktext"] else "ktext off" for run in runs]
    lines = [
        f"machine {machine['name']}: {machine['nodes']} nodes x {machine['cpus_per_node']} CPUs; "
        f"trace {source['trace']} ({source['format']}, {source['records']:,} records, "
        f"{source['records_played']:,} kernel blocks played, trace CPUs "
        f"{cpu_ranges(source['trace_cpus'], ',')})"
    ]
    for run, label in zip(runs, labels, strict=True):
        lines.append(f"  {label}: {run['instructions']:,} kernel instructions, "
                     f"{run['stop_reason']}")  # fmt: skip
    lines += ["", *format_local_shares(runs, labels, machine["nodes"])]
    lines += ["", *format_cost(runs, labels)]
    lines.append("modelled cycles: " + ", ".join(
        f"{label} {run['cost']['total_cycles']:,.0f}"
        for run, label in zip(runs, labels, strict=True)))  # fmt: skip
    if source.get("top_functions"):
        lines += ["", f"{'kernel function':<40} {'instructions':>14} {'share':>7}"]
        lines += [f"{entry['symbol'][:40]:<40} {entry['instructions']:>14,} "
                  f"{100 * entry['share']:>6.1f}%" for entry in source["top_functions"]]
    verdict = format_verdict(runs)
    if verdict:
        lines += ["", *verdict]
    lines.append("")
    lines += [f"note: {text}" for text in source["assumptions"]]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.1f}%"
