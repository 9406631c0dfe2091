"""``ktext-emu verify``: boots a machine (replication on unless ``--ktext
off``), runs a short workload that patches kernel text from every node
(static keys toggled through the guest's own patch routine), and checks every
node's copy against node 0 (emu/checks/verify.py): the first differing
address per node with both disassemblies and the nearest symbol.  Exit status
0 when every copy checks out, 1 when one does not, 8 when the instruction
limit stopped the guest in the middle of a key update (nothing compared).
"""

from __future__ import annotations

import argparse
import sys
import time

from emu.checks.verify import verify
from emu.cli.args import input_files
from emu.cli.patching import (
    VERIFY_ITERATIONS,
    VERIFY_WORKLOAD,
    add_common_arguments,
    boot_system,
    cut_mid_update,
    cut_short_message,
    patching_report,
    positive_count,
    write_runs_json,
)
from emu.errors import EXIT_STATUS_DOC, UsageError
from emu.fileio import STDOUT, check_outputs, printable
from emu.hw.machine import DEFAULT_QUANTUM


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "verify",
        help="check every node's copy of the kernel text against node 0's",
        description="Boot the machine with replication on, run a short workload that patches "
        "kernel text from every node, and compare every node's copy of [_stext, __end_rodata) "
        "with node 0's. Exit status 1 if a copy differs.",
    )
    add_common_arguments(parser)
    work = parser.add_argument_group("workload")
    work.add_argument("--workload", default=VERIFY_WORKLOAD, metavar="NAME",
                      help=f"workload_<NAME> to run first (default {VERIFY_WORKLOAD}: every "
                      "task toggles a static key through the guest)")  # fmt: skip
    work.add_argument("--iterations", type=int, default=VERIFY_ITERATIONS, metavar="N",
                      help=f"iterations per task (default {VERIFY_ITERATIONS})")  # fmt: skip
    work.add_argument("--quantum", type=positive_count, default=DEFAULT_QUANTUM, metavar="N",
                      help=f"instructions per CPU turn (default {DEFAULT_QUANTUM:,})")
    parser.set_defaults(run=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    if args.iterations < 0:
        raise UsageError(f"--iterations {args.iterations}: must not be negative")
    check_outputs([("--json", args.json)], input_files(args.machine, args.kernel, args.add))
    started = time.perf_counter()
    system = boot_system(args, args.workload, args.iterations)
    try:
        result_run = system.run()
        result = verify(system)
        cut_short = cut_mid_update(system, result_run.reason)
        run = patching_report(system)
        run["verify"] = {**result.to_dict(), "cut_short_by_limit": cut_short}
        if args.json is not None:
            write_runs_json(args.json, [run])
        if not args.quiet:
            out = sys.stderr if str(args.json) == STDOUT else sys.stdout
            if cut_short:
                print(f"verify on {result.nodes} node(s): CUT SHORT: "
                      + cut_short_message(args.max_instructions, "lower --iterations"), file=out)
            else:
                print("\n".join(printable(line) for line in result.format().split("\n")),
                      file=out)
            print(f"{printable(args.workload)}: {result_run.instructions:,} instructions, "
                  f"{time.perf_counter() - started:.2f} s", file=sys.stderr)  # fmt: skip
        if cut_short:
            return EXIT_STATUS_DOC["cut short by the instruction limit"]
        return 0 if result.ok else 1
    finally:
        system.close()
