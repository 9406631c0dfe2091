"""``ktext-emu run``: boot a machine, run a workload with kernel text
replication off and on, and report per node where kernel instructions were
fetched from.  The runs are emu/api.py's ``run_comparison``; this module
parses the options and prints the report, writes --json and --plot.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from emu.api import Report, check_options, run_comparison
from emu.cli.args import input_files
from emu.cli.debugging import add_gdb_arguments, gdb_server
from emu.errors import EmuError, GuestFault
from emu.fileio import STDOUT, check_outputs
from emu.plot import require_matplotlib, write_plot
from emu.report import format_console, format_fault_blocks, format_report, run_label, write_json
from emu.run_options import RunOptions, add_run_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="boot a NUMA machine and compare kernel text replication off and on",
        description="Boot the machine, run a workload on every CPU, and report per node the "
        "share of kernel instruction fetches served by the CPU's own node.",
    )
    add_run_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON (- for standard output)")
    out.add_argument("--plot", type=Path, metavar="PATH.png",
                     help="node x node fetch-traffic heat maps and per-CPU cycles (matplotlib; - for "
                     "standard output)")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_gdb_arguments(parser)
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    options = RunOptions.from_args(args)
    check_options(options)
    if args.plot is not None:
        require_matplotlib()
    check_outputs([("--json", args.json), ("--plot", args.plot)],
                  input_files(options.machine, options.kernel, options.add, options.add_user))
    # With the JSON (or the plot) on standard output, the text goes to stderr.
    text_out = sys.stderr if STDOUT in (str(args.json), str(args.plot)) else sys.stdout
    report = Report()
    progress = ProgressBars(args.quiet, options)
    try:
        with gdb_server(args) as session:
            run_comparison(options, progress=progress, report=report, session=session)
    except (EmuError, KeyboardInterrupt) as err:
        if not args.quiet:
            print_console(report.runs, text_out)  # what the guest wrote before it failed
            if isinstance(err, GuestFault) and report.runs and "fault" in report.runs[-1]:
                blocks = format_fault_blocks(report.runs[-1]["fault"])
                if blocks:
                    print("\n".join(blocks), file=sys.stderr, flush=True)
        if args.json is not None:
            # What was measured before the error or Ctrl-C, marked incomplete.
            write_json(args.json, report.to_json())
        raise
    document = report.to_json()
    if args.json is not None:
        write_json(args.json, document)
    if args.plot is not None:
        write_plot(args.plot, document)
    if not args.quiet:
        print_console(report.runs, text_out)
        print(format_report(document), file=text_out)
        for timing in report.timings:
            state = "on" if timing["ktext"] else "off"
            print(f"ktext {state}: boot {timing['boot_seconds']:.2f} s, run "
                  f"{timing['run_seconds']:.2f} s, "
                  f"{timing['instructions_per_second'] / 1e6:.1f} M instructions/s",
                  file=sys.stderr)
    return 0


def print_console(runs: list[dict], out: TextIO = sys.stdout) -> None:
    """Each run's console output (the guest's ``puts``), prefixed with the CPU."""
    for run in runs:
        lines = format_console(run, run_label(run))
        if lines:
            print("\n".join(lines), file=out, flush=True)


class ProgressBars:
    """One bar per run on a terminal, for runs longer than a second.

    Its total is the work the run will do, not --max-instructions: with
    --iterations 0 the run does run to the limit; otherwise the previous run
    of the comparison (same workload, same iterations) did the same work, so
    its instruction count is the total; the first run's total is unknown and
    its bar counts instructions and their rate without a percentage.
    """

    def __init__(self, quiet: bool, options: RunOptions) -> None:
        self.quiet = quiet
        self.max_instructions = options.max_instructions
        self.until_limit = options.iterations == 0
        self.previous: int | None = None  # instructions of the last finished run

    def total(self) -> int | None:
        if self.until_limit:
            return self.max_instructions
        if self.previous:
            return min(self.previous, self.max_instructions)
        return None

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[Callable[[int], None] | None]:
        bar = self._bar(label)
        if bar is None:
            yield None  # no callback at all: nothing runs per scheduling round
            return
        shown = [0]

        def update(instructions: int) -> None:
            if bar.total is not None and instructions > bar.total:
                bar.total = instructions
            bar.update(instructions - shown[0])
            shown[0] = instructions

        try:
            yield update
        finally:
            bar.close()
            self.previous = shown[0] or self.previous

    def _bar(self, label: str):  # -> tqdm | None
        if self.quiet or not sys.stderr.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total(), desc=label, unit="instr", unit_scale=True,
                    delay=1.0, leave=False, file=sys.stderr)
