"""``ktext-emu run``: boot a machine, run a workload with kernel text
replication off and on, and report per node where kernel instructions were
fetched from.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from emu.cli_args import GRANULES, non_negative_int, positive_int
from emu.config import (
    MachineConfig,
    add_machine_arguments,
    ktext_enabled,
    machine_config_from_args,
    parse_cmdline,
)
from emu.errors import EmuError, GuestFault, UsageError
from emu.fileio import check_writable
from emu.hw.cachemodel import attach_cache_model
from emu.hw.cost import CostReport, cost_of_run, gain, speedup
from emu.hw.machine import DEFAULT_QUANTUM, DEFAULT_WATCHDOG, StopReason
from emu.hw.tlb import IS_DOMAIN_CHOICES
from emu.plot import require_matplotlib, write_plot
from emu.report import format_report, make_report, write_json
from emu.system import DEFAULT_MAX_INSTRUCTIONS, RunSpec, System
from emu.workloads import workload_defaults

DEFAULT_WORKLOAD = "dbsim"
DEFAULT_ITERATIONS = 1000  # for a workload the registry does not know


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="boot a NUMA machine and compare kernel text replication off and on",
        description="Boot the machine, run a workload on every CPU, and report per node the "
        "share of kernel instruction fetches served by the CPU's own node.",
    )
    add_machine_arguments(parser)
    layout = parser.add_argument_group("layout and kernel")
    layout.add_argument("--granule", choices=list(GRANULES), default="4k",
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
    work.add_argument("--iterations", type=non_negative_int, default=None, metavar="N",
                      help="iterations per task (0: until the instruction limit; default: "
                      "the workload's own)")
    work.add_argument("--migrate-every", type=non_negative_int, default=None, metavar="N",
                      help="move every task to the next node after each CPU ran N more "
                      "instructions (0: never; default: the workload's own)")
    work.add_argument("--max-instructions", type=positive_int, default=DEFAULT_MAX_INSTRUCTIONS,
                      metavar="N", help="stop after N instructions in all "
                      f"(default {DEFAULT_MAX_INSTRUCTIONS:,})")
    work.add_argument("--watchdog", type=non_negative_int, default=DEFAULT_WATCHDOG, metavar="N",
                      help="report a CPU that runs N instructions without taking any exception "
                      f"as spinning (0: never; default {DEFAULT_WATCHDOG:,})")
    work.add_argument("--quantum", type=positive_int, default=DEFAULT_QUANTUM, metavar="N",
                      help=f"instructions per CPU turn (default {DEFAULT_QUANTUM:,})")
    layout.add_argument("--is-domain", choices=IS_DOMAIN_CHOICES, default="machine",
                        help="Inner Shareable domains: one for the machine (what Linux "
                        "assumes, default) or one per node; CnP TLB entries are shared within one")
    layout.add_argument("--ro-replicas", action="store_true",
                        help="map the rodata copies read-only (a remedy; the series maps them "
                        "PAGE_KERNEL)")
    layout.add_argument("--detail", choices=("fast", "cache"), default="fast",
                        help="cost model: fast (counts x latency, default) or cache "
                        "(per-CPU L1I/L1D and per-node LLC simulation)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    out.add_argument("--plot", type=Path, metavar="PATH.png",
                     help="node x node fetch-traffic heat maps and per-CPU cycles (matplotlib)")
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
        data_accesses=True,  # the cost model charges data accesses too
        is_domain=args.is_domain,
        ro_replicas=args.ro_replicas,
    )


def run_report(system: System) -> dict:
    """The RUN of the report, with the bounds the run had."""
    run = system.report()
    run["limits"] = {"max_instructions": system.spec.max_instructions,
                     "watchdog": system.machine.watchdog}
    return run


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
    if args.plot is not None:
        require_matplotlib()
    for output in (args.json, args.plot):
        if output is not None:
            check_writable(output)
    runs: list[dict] = []
    timings: list[dict] = []
    costs: list[CostReport] = []
    try:
        for ktext in ktext_modes(args):
            # The boot parameter is what turns replication on, as in Linux.
            config = _config_for(args, f"ktext={'1' if ktext else '0'}")
            started = time.perf_counter()
            system = System(config, run_spec(args, config.ktext))
            system.machine.watchdog = args.watchdog
            model = attach_cache_model(system) if args.detail == "cache" else None
            booted = time.perf_counter()
            with progress_bar(args, "ktext " + ("on" if config.ktext else "off")) as update:
                try:
                    system.run(progress=update)
                except GuestFault as fault:
                    run = run_report(system)
                    run["fault"] = fault_json(fault, system)
                    runs.append(run)
                    raise
                except KeyboardInterrupt:
                    # The machine stopped cleanly at the end of a quantum: counts are exact.
                    run = run_report(system)
                    run["stop_reason"] = StopReason.INTERRUPTED.value
                    run["instructions"] = system.machine.total_instructions
                    runs.append(run)
                    raise
            finished = time.perf_counter()
            run = run_report(system)
            run["iterations"] = system.spec.iterations
            cost = cost_of_run(system, model)
            costs.append(cost)
            run["cost"] = cost.to_json()
            runs.append(run)
            failed = [(cpu["cpu"], cpu["exit_status"]) for cpu in run["cpus"]
                      if cpu["exit_status"] not in (None, 0)]
            if failed:
                cpu, status = failed[0]
                raise GuestFault(f"workload {args.workload}: the task on CPU {cpu} exited "
                                 f"with status {status} ({len(failed)} task(s) failed)")
            instructions = run["instructions"]
            timings.append({
                "ktext": run["ktext"],
                "boot_seconds": round(booted - started, 6),
                "run_seconds": round(finished - booted, 6),
                "instructions_per_second": round(instructions / max(finished - booted, 1e-9)),
            })  # fmt: skip
            system.close()
        add_speedup(runs, costs)
    except (EmuError, KeyboardInterrupt):
        if args.json is not None:
            # What was measured before the error or Ctrl-C, marked incomplete.
            write_json(args.json, make_report(runs, timings, complete=False))
        raise
    report = make_report(runs, timings)
    if args.json is not None:
        write_json(args.json, report)
    if args.plot is not None:
        write_plot(args.plot, report)
    if not args.quiet:
        print(format_report(report))
        for timing in timings:
            state = "on" if timing["ktext"] else "off"
            print(f"ktext {state}: boot {timing['boot_seconds']:.2f} s, run "
                  f"{timing['run_seconds']:.2f} s, "
                  f"{timing['instructions_per_second'] / 1e6:.1f} M instructions/s",
                  file=sys.stderr)
    return 0


def add_speedup(runs: list[dict], costs: list[CostReport]) -> None:
    """Put the modelled speed-up of replication into the cost of the ``on`` run."""
    off = [cost for run, cost in zip(runs, costs, strict=True) if not run["ktext"]]
    for run, cost in zip(runs, costs, strict=True):
        if run["ktext"] and off:
            run["cost"]["speedup"] = speedup(off[0], cost)
            run["cost"]["gain"] = gain(off[0], cost)
        elif off:
            run["cost"]["speedup"] = 1.0
            run["cost"]["gain"] = 0.0


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, label: str) -> Iterator[Callable[[int], None] | None]:
    """A bar on a terminal for runs longer than a second; nothing otherwise."""
    if args.quiet or not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    bar = tqdm(total=args.max_instructions, desc=label, unit="instr", unit_scale=True,
               delay=1.0, leave=False, file=sys.stderr)
    shown = [0]

    def update(instructions: int) -> None:
        bar.update(instructions - shown[0])
        shown[0] = instructions

    try:
        yield update
    finally:
        bar.close()
