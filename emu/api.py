"""The in-process run API: ``run_comparison(options) -> Report`` boots the
machine and runs the workload once per replication setting (off and on, or
the one asked for) exactly as ``ktext-emu run`` does, and returns the runs,
their timings and whether every run finished.  It prints nothing and writes
no file: the CLI (emu/cli/run.py) prints, writes --json and --plot; a sweep
point (emu/sweep_executors.py) makes its row; tests call it directly.

Named ``api`` rather than ``run``: it is the library entry point that every
front end shares, and ``run`` would read as the ``run`` command's module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from unicorn.arm64_const import UC_ARM64_REG_PC

from emu.blob.disasm import disassemble_block
from emu.blob.footprint_data import footprint_with
from emu.blob.synth import Footprint
from emu.config import MachineConfig, machine_config
from emu.errors import BlobError, ConfigError, GuestFault, LimitReached, UsageError
from emu.hw.accounting import compiled_extension_status
from emu.hw.band import band_and_sanity
from emu.hw.cachemodel import attach_cache_model
from emu.hw.cost import CostReport, cost_of_run, gain, speedup
from emu.hw.cpu import PowerState
from emu.hw.machine import StopReason
from emu.kernel.cmdline import ktext_enabled, parse_cmdline
from emu.report import make_report
from emu.run_options import DEFAULT_WORKLOAD, RunOptions, parse_syscall_hooks
from emu.system import RunSpec, System
from emu.verdict import add_verdict
from emu.workloads import workload_defaults

__all__ = ["DEFAULT_WORKLOAD", "Progress", "Report", "RunOptions", "Session", "run_comparison"]

DEFAULT_ITERATIONS = 1000  # for a workload the registry does not know

# Called with a run's label ("ktext off"/"ktext on"); the context it returns
# yields the callback System.run reports its instruction count to, or None.
Progress = Callable[[str], AbstractContextManager[Callable[[int], None] | None]]


@dataclass
class Report:
    """A comparison's results so far: one RUN object per finished (or failed)
    run in order, one timing per finished run, and whether all finished."""

    runs: list[dict] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    costs: list[CostReport] = field(default_factory=list)
    complete: bool = False
    host: dict = field(default_factory=compiled_extension_status)

    def to_json(self) -> dict:
        """The ``{"runs": [...], "timings": [...], "host": {...}}`` document of ``--json``."""
        return make_report(self.runs, self.timings, complete=self.complete, host=self.host)


def ktext_modes(options: RunOptions) -> list[bool]:
    """The replication setting of each run, in order."""
    if options.ktext == "on":
        return [True]
    if options.ktext == "off":
        return [False]
    if options.ktext is None and "ktext" in parse_cmdline(options.cmdline):
        return [ktext_enabled(options.cmdline)]
    return [False, True]


def config_for(options: RunOptions, ktext: bool) -> MachineConfig:
    """The machine of one run: the options' machine, with the ``ktext=`` boot
    parameter of ``ktext`` after the options' command line (as in Linux, the
    boot parameter is what turns replication on)."""
    cmdline = (options.cmdline + " " + f"ktext={'1' if ktext else '0'}").strip()
    return machine_config(
        options.machine, options.nodes, options.cpus_per_node, ram_mib=options.ram_mib,
        granule=options.granule, va_bits=options.va_bits, cmdline=cmdline,
    )


def run_spec(options: RunOptions, ktext: bool) -> RunSpec:
    features = tuple(f.strip() for f in options.cpu_features.split(",") if f.strip())
    known = workload_defaults(options.workload)
    iterations = options.iterations
    if iterations is None:
        iterations = known.default_iterations if known else DEFAULT_ITERATIONS
    migrate_every = options.migrate_every
    if migrate_every is None:
        migrate_every = known.migrate_every if known else 0
    return RunSpec(
        ktext=ktext,
        workload=options.workload,
        iterations=iterations,
        max_instructions=options.max_instructions,
        quantum=options.quantum,
        migrate_every=migrate_every,
        kernel=options.kernel,
        cpu_features=features,
        extra_sources=options.add,
        user_sources=options.add_user,
        syscalls=parse_syscall_hooks(options.syscall),
        user_memory=options.user_memory,
        data_accesses=True,  # the cost model charges data accesses too
        is_domain=options.is_domain,
        ro_replicas=options.ro_replicas,
        warmup=options.warmup,
        footprint=footprint_of(options),
    )


FOOTPRINT_KNOBS = ("kernel_text_per_iter", "functions_per_path", "instructions_per_path",
                   "user_code", "user_data", "rows_per_query", "plans")


def footprint_of(options: RunOptions) -> Footprint | None:
    """The Footprint the options ask for; None (the default) when no knob is given."""
    overrides = {name: getattr(options, name) for name in FOOTPRINT_KNOBS
                 if getattr(options, name) is not None}
    if options.footprint_seed is not None:
        overrides["seed"] = options.footprint_seed
    if not overrides:
        return None
    try:
        return footprint_with(overrides)
    except BlobError as err:  # a knob out of its range is the user's configuration
        raise ConfigError(str(err)) from None


def check_options(options: RunOptions) -> None:
    """Refuse combinations no run can have, before anything boots."""
    if options.kernel is not None and (options.add or options.add_user):
        raise UsageError("--kernel and --add/--add-user cannot be combined: they link into the "
                         "shipped kernel")


def run_report(system: System) -> dict:
    """The RUN of the report, with the bounds the run had."""
    run = system.report()
    firmware = system.machine.firmware
    run["limits"] = {"max_instructions": system.spec.max_instructions,
                     "watchdog": system.machine.watchdog,
                     "max_firmware_calls": firmware.max_calls,
                     "max_console_bytes": firmware.max_console_bytes}
    return run


def check_finished(system: System) -> None:
    """A run the instruction limit stopped while tasks that were meant to
    finish (``iterations`` > 0) still ran is not a measurement of the
    workload: LimitReached, naming where the first unfinished CPU was."""
    result = system.result
    if result is None or result.reason is not StopReason.INSTRUCTION_LIMIT:
        return
    if system.spec.iterations == 0:
        return  # runs until the limit by design
    machine = system.machine
    running = [cpu for cpu in machine.cpus if cpu.power is PowerState.ON]
    if not running:
        return
    first = running[0]
    numbers = ", ".join(str(cpu.index) for cpu in running[:8])
    more = f" and {len(running) - 8} more" if len(running) > 8 else ""
    report = machine.fault_report(
        first, first.context.reg_read(UC_ARM64_REG_PC),
        f"instruction limit ({system.spec.max_instructions:,}) reached before the tasks "
        f"finished: CPU(s) {numbers}{more} still running (raise --max-instructions, or "
        "the guest spins)")  # fmt: skip
    raise LimitReached(report.message(), report)


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
        "recent_blocks": recent_blocks_json(system, report.recent_blocks),
    }


def recent_blocks_json(system: System, starts: list[int]) -> list[dict]:
    """Each block's VA, symbol and instructions as the image has them.  A
    block ends at its first branch or exception instruction, or where the next
    block starts when that is just after it (Unicorn also ends blocks at
    system-register writes and page ends)."""
    blocks = []
    for index, va in enumerate(starts):
        limit = 8
        if index + 1 < len(starts) and va < starts[index + 1] <= va + 4 * limit:
            limit = (starts[index + 1] - va) // 4
        insns = [{"va": f"{line.address:#x}", "text": line.text.replace("\t", " "),
                  **({"target": line.target} if line.target else {})}
                 for line in disassemble_block(system.image.elf, va, limit)]
        blocks.append({"va": f"{va:#x}", "symbol": system.kernel.symbolize(va), "insns": insns})
    return blocks


@contextlib.contextmanager
def _no_progress(label: str) -> Iterator[None]:
    yield None


# Called with a booted System and its run's label; the context it returns is
# entered around the run (a GDB session, emu/gdb/server.py's debug_session).
Session = Callable[[System, str], AbstractContextManager[None]]


def run_comparison(options: RunOptions, *, progress: Progress | None = None,
                   report: Report | None = None, session: Session | None = None) -> Report:
    """Run ``options`` once per replication setting and return the Report.

    The runs go into ``report`` (a fresh one if None) as they finish, so a
    caller that passes its own still has what was measured when an EmuError
    or KeyboardInterrupt comes out of here (a guest fault's or Ctrl-C's run
    is in it, with its ``fault`` or ``stop_reason``; ``complete`` stays
    False).  The machine configuration is built per run, inside, because the
    ``ktext=`` boot parameter is part of it.  ``session`` (None: none) is
    entered around each run, after boot.
    """
    check_options(options)
    report = Report() if report is None else report
    progress = progress or _no_progress
    for ktext in ktext_modes(options):
        config = config_for(options, ktext)
        started = time.perf_counter()
        system = System(config, run_spec(options, config.ktext))
        system.machine.watchdog = options.watchdog
        system.machine.firmware.max_calls = options.max_firmware_calls
        system.machine.firmware.max_console_bytes = options.max_console_bytes
        model = attach_cache_model(system, detail=options.detail)
        booted = time.perf_counter()
        label = "ktext " + ("on" if config.ktext else "off")
        around = session(system, label) if session is not None else contextlib.nullcontext()
        with progress(label) as update, around:
            try:
                system.run(progress=update)
                check_finished(system)
            except GuestFault as fault:
                run = run_report(system)
                run["fault"] = fault_json(fault, system)
                report.runs.append(run)
                raise
            except KeyboardInterrupt:
                # The machine stopped cleanly at the end of a quantum: counts are exact.
                run = run_report(system)
                run["stop_reason"] = StopReason.INTERRUPTED.value
                run["instructions"] = system.machine.total_instructions
                report.runs.append(run)
                raise
        finished = time.perf_counter()
        run = run_report(system)
        run["iterations"] = system.spec.iterations
        cost = cost_of_run(system, model)
        report.costs.append(cost)
        run["cost"] = cost.to_json()
        report.runs.append(run)
        failed = [(cpu["cpu"], cpu["exit_status"]) for cpu in run["cpus"]
                  if cpu["exit_status"] not in (None, 0)]
        if failed:
            cpu, status = failed[0]
            raise GuestFault(f"workload {options.workload}: the task on CPU {cpu} exited "
                             f"with status {status} ({len(failed)} task(s) failed)")
        instructions = run["instructions"]
        report.timings.append({
            "ktext": run["ktext"],
            "boot_seconds": round(booted - started, 6),
            "run_seconds": round(finished - booted, 6),
            "instructions_per_second": round(instructions / max(finished - booted, 1e-9)),
            "kernel_path": str(system.image.path),  # where it was: not compared
        })  # fmt: skip
        system.close()
    add_speedup(report.runs, report.costs)
    add_band(report.runs, report.costs)
    report.complete = True
    return report


def add_band(runs: list[dict], costs: list[CostReport],
             not_applicable: dict[str, str] | None = None) -> None:  # fmt: skip
    """Sanity figures for every run; the speed-up band and the fast/detailed
    agreement for the ``on`` run (emu/hw/band.py); the verdict (emu/verdict.py),
    leaving the figures of ``not_applicable`` unchecked."""
    off = [cost for run, cost in zip(runs, costs, strict=True) if not run["ktext"]]
    for run, cost in zip(runs, costs, strict=True):
        if cost.hierarchy is not None:
            run["cost"].update(band_and_sanity(off[0] if run["ktext"] and off else None, cost))
    add_verdict(runs, costs, not_applicable=not_applicable)


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

