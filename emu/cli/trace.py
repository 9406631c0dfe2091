"""``ktext-emu trace``: boot the machine, run the workload and print a
per-instruction trace of a window of the run (by CPU, by symbol or address
range, by instruction count) as text or JSON Lines (emu/trace.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from emu.api import check_options, config_for, ktext_modes, run_spec
from emu.errors import UsageError
from emu.run_options import RunOptions, add_run_arguments, non_negative_int, positive_int
from emu.system import System
from emu.trace import TraceLine, Tracer, TraceWindow


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trace",
        help="trace a window of a run instruction by instruction (CPU, node, symbol, disassembly)",
        description="Boot the machine and run the workload as `run` does (one run: the last "
        "of the replication settings --ktext asks for), printing one line per instruction "
        "in the window: CPU, the node it was fetched from (* when through a TLB entry "
        "another node's CPU filled), address, symbol and disassembly.",
    )
    add_run_arguments(parser)
    window = parser.add_argument_group("window")
    window.add_argument("--cpu", type=non_negative_int, action="append", default=[],
                        metavar="N", help="trace CPU N (repeatable; default every CPU)")
    window.add_argument("--function", metavar="SYMBOL",
                        help="trace only inside SYMBOL (its ELF size)")
    window.add_argument("--from", dest="start", metavar="SYMBOL|VA",
                        help="trace only at addresses from here ...")
    window.add_argument("--to", dest="end", metavar="SYMBOL|VA", help="... up to here (exclusive)")
    window.add_argument("--skip", type=non_negative_int, default=0, metavar="N",
                        help="run N instructions (all CPUs) untraced first")
    window.add_argument("--count", type=positive_int, default=200, metavar="N",
                        help="stop after N traced instructions (default 200)")
    parser.add_argument("--json", action="store_true", help="JSON Lines, one object a line")
    parser.set_defaults(run=trace_command)


def _address(system: System, text: str) -> int:
    if system.image.has(text):
        return system.image.sym(text)
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"trace: no symbol {text!r} in the kernel (nor a number)") from None


def window_of(args: argparse.Namespace, system: System) -> TraceWindow:
    n_cpus = len(system.machine.cpus)
    for cpu in args.cpu:
        if cpu >= n_cpus:
            raise UsageError(f"trace: --cpu {cpu}: the machine has {n_cpus} CPUs")
    start = end = None
    if args.function is not None:
        if args.start is not None or args.end is not None:
            raise UsageError("trace: --function or --from/--to, not both")
        if not system.image.has(args.function):
            raise UsageError(f"trace: no symbol {args.function!r} in the kernel")
        start = system.image.sym(args.function)
        end = start + max(4, system.image.elf.symbols[args.function].size)
    elif args.start is not None or args.end is not None:
        start = _address(system, args.start) if args.start is not None else 0
        end = _address(system, args.end) if args.end is not None else 1 << 64
        if end <= start:
            raise UsageError("trace: --to must be above --from")
    return TraceWindow(frozenset(args.cpu), start, end, args.count)


def trace_command(args: argparse.Namespace) -> int:
    options = RunOptions.from_args(args)
    check_options(options)
    ktext = ktext_modes(options)[-1]
    config = config_for(options, ktext)
    system = System(config, run_spec(options, config.ktext))
    system.machine.watchdog = options.watchdog
    out = sys.stdout

    def emit(line: TraceLine) -> None:
        out.write((json.dumps(line.to_json()) if args.json else line.text()) + "\n")

    try:
        window = window_of(args, system)
        if args.skip:
            system.run(max_instructions=min(args.skip, options.max_instructions))
        tracer = Tracer(system, window, emit)
        tracer.attach()
        try:
            result = system.run()
        finally:
            tracer.detach()
        out.flush()
        if not args.json:
            print(f"trace: {tracer.traced} instruction(s) traced; the run stopped: "
                  f"{result.reason.value} after {result.instructions:,} instructions",
                  file=sys.stderr)
        return 0
    finally:
        system.close()
