"""``ktext-emu run``: boot a machine, run a workload with kernel text
replication off and on, and report per node where kernel instructions were
fetched from.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emu.config import (
    MachineConfig,
    add_machine_arguments,
    ktext_enabled,
    machine_config_from_args,
    parse_cmdline,
)
from emu.errors import EmuError, GuestFault, UsageError
from emu.hw.machine import DEFAULT_QUANTUM
from emu.report import format_report, make_report, write_json
from emu.system import DEFAULT_MAX_INSTRUCTIONS, RunSpec, System
from emu.workloads import workload_defaults

GRANULES = {"4k": 4096, "16k": 16384, "64k": 65536}
DEFAULT_WORKLOAD = "dbsim"
DEFAULT_ITERATIONS = 1000  # for a workload the registry does not know


def _non_negative(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="boot a NUMA machine and compare kernel text replication off and on",
        description="Boot the machine, run a workload on every CPU, and report per node the "
        "share of kernel instruction fetches served by the CPU's own node.",
    )
    add_machine_arguments(parser)
    layout = parser.add_argument_group("layout and kernel")
    layout.add_argument("--granule", choices=sorted(GRANULES), default="4k",
                        help="translation granule (default 4k)")
    layout.add_argument("--va-bits", type=int, default=48, metavar="N",
                        help="virtual address bits (default 48)")
    layout.add_argument("--cmdline", default="", metavar="STR",
                        help="kernel command line, e.g. 'ktext=1'")
    layout.add_argument("--ktext", choices=("on", "off", "both"), default=None,
                        help="replication for the run(s); default: ktext= from --cmdline, "
                        "else both (run twice and compare)")
    layout.add_argument("--kernel", type=Path, metavar="ELF", help="boot this kernel ELF")
    layout.add_argument("--add", type=Path, action="append", default=[], metavar="FILE.S",
                        help="link a user source (e.g. defining workload_<name>) into the "
                        "shipped kernel (repeatable)")
    layout.add_argument("--cpu-features", default="", metavar="LIST",
                        help="comma-separated emulated CPU capabilities")
    work = parser.add_argument_group("workload")
    work.add_argument("--workload", default=DEFAULT_WORKLOAD, metavar="NAME",
                      help=f"workload_<NAME> in the kernel (default {DEFAULT_WORKLOAD})")
    work.add_argument("--iterations", type=_non_negative, default=None, metavar="N",
                      help="iterations per task (0: until the instruction limit; default: "
                      "the workload's own)")
    work.add_argument("--migrate-every", type=_non_negative, default=None, metavar="N",
                      help="move every task to the next node after each CPU ran N more "
                      "instructions (0: never; default: the workload's own)")
    work.add_argument("--max-instructions", type=_positive, default=DEFAULT_MAX_INSTRUCTIONS,
                      metavar="N", help="stop after N instructions in all "
                      f"(default {DEFAULT_MAX_INSTRUCTIONS:,})")
    work.add_argument("--quantum", type=_positive, default=DEFAULT_QUANTUM, metavar="N",
                      help=f"instructions per CPU turn (default {DEFAULT_QUANTUM:,})")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=run_command)


def ktext_modes(args: argparse.Namespace) -> list[bool]:
    """The replication setting of each run, in order."""
    if args.ktext == "on":
        return [True]
    if args.ktext == "off":
        return [False]
    if args.ktext is None and "ktext" in parse_cmdline(args.cmdline):
        return [ktext_enabled(args.cmdline)]
    return [False, True]


def _config_for(args: argparse.Namespace, extra_cmdline: str) -> MachineConfig:
    namespace = argparse.Namespace(**vars(args))
    namespace.granule = GRANULES[args.granule]
    namespace.cmdline = (args.cmdline + " " + extra_cmdline).strip()
    return machine_config_from_args(namespace)


def run_spec(args: argparse.Namespace, ktext: bool) -> RunSpec:
    features = tuple(f.strip() for f in args.cpu_features.split(",") if f.strip())
    known = workload_defaults(args.workload)
    iterations = args.iterations
    if iterations is None:
        iterations = known.default_iterations if known else DEFAULT_ITERATIONS
    migrate_every = args.migrate_every
    if migrate_every is None:
        migrate_every = known.migrate_every if known else 0
    return RunSpec(
        ktext=ktext,
        workload=args.workload,
        iterations=iterations,
        max_instructions=args.max_instructions,
        quantum=args.quantum,
        migrate_every=migrate_every,
        kernel=args.kernel,
        cpu_features=features,
        extra_sources=tuple(args.add),
    )


def fault_json(fault: GuestFault, system: System) -> dict:
    """The report's ``fault`` object: where the CPU was and what it ran last."""
    report = fault.report
    if report is None:
        return {"message": str(fault)}
    return {
        "message": str(fault),
        "what": report.what,
        "cpu": report.cpu,
        "node": report.node,
        "pc": f"{report.pc:#x}",
        "symbol": report.symbol,
        "esr": None if report.esr is None else f"{report.esr:#x}",
        "far": None if report.far is None else f"{report.far:#x}",
        "recent_blocks": [
            {"va": f"{va:#x}", "symbol": system.kernel.symbolize(va)}
            for va in report.recent_blocks
        ],
    }


def run_command(args: argparse.Namespace) -> int:
    if args.kernel is not None and args.add:
        raise UsageError("--kernel and --add cannot be combined: --add links into the shipped kernel")
    runs: list[dict] = []
    timings: list[dict] = []
    try:
        for ktext in ktext_modes(args):
            # The boot parameter is what turns replication on, as in Linux.
            config = _config_for(args, f"ktext={'1' if ktext else '0'}")
            started = time.perf_counter()
            system = System(config, run_spec(args, config.ktext))
            booted = time.perf_counter()
            try:
                system.run()
            except GuestFault as fault:
                run = system.report()
                run["fault"] = fault_json(fault, system)
                runs.append(run)
                raise
            finished = time.perf_counter()
            runs.append(system.report())
            failed = [(cpu["cpu"], cpu["exit_status"]) for cpu in runs[-1]["cpus"]
                      if cpu["exit_status"] not in (None, 0)]
            if failed:
                cpu, status = failed[0]
                raise GuestFault(f"workload {args.workload}: the task on CPU {cpu} exited "
                                 f"with status {status} ({len(failed)} task(s) failed)")
            instructions = runs[-1]["instructions"]
            timings.append({
                "ktext": runs[-1]["ktext"],
                "boot_seconds": round(booted - started, 6),
                "run_seconds": round(finished - booted, 6),
                "instructions_per_second": round(instructions / max(finished - booted, 1e-9)),
            })  # fmt: skip
            system.close()
    except (EmuError, KeyboardInterrupt):
        if args.json is not None and runs:
            write_json(args.json, make_report(runs, timings, complete=False))
        raise
    report = make_report(runs, timings)
    if args.json is not None:
        write_json(args.json, report)
    if not args.quiet:
        print(format_report(report))
        for timing in timings:
            state = "on" if timing["ktext"] else "off"
            print(f"ktext {state}: boot {timing['boot_seconds']:.2f} s, run "
                  f"{timing['run_seconds']:.2f} s, "
                  f"{timing['instructions_per_second'] / 1e6:.1f} M instructions/s",
                  file=sys.stderr)
    return 0
