"""``ktext-emu scenarios [NAME ...] [--json PATH]``: run the scenario auditor
(emu/scenarios/) and print, per scenario, what the v3 series does, the hazard
seen (counts and addresses), each remedy and the result with it.  The exit
status is 1 when a remedy does not remove its hazard.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from emu.cli.args import positive_int
from emu.hw.pagetable import Geometry
from emu.report import write_json
from emu.scenarios import SCENARIOS, ScenarioResult, Setup, run_scenarios
from emu.scenarios.base import DEFAULT_CPUS_PER_NODE, DEFAULT_NODES, Role

SCENARIO_REPORT_VERSION = 1
REMEDY_FAILS_STATUS = 1
COLUMNS = (("scenario", 21), ("what v3 does", 28), ("hazard seen", 36), ("remedy", 28),
           ("with the remedy", 22))  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scenarios",
        help="run the replication design's hazards with the v3 behaviour and with remedies",
        description="Execute each hazard of the REPLICATE_KTEXT v3 series on the emulated "
        "machine, with the series' behaviour and with a remedy, and report what was seen. "
        "Exit status 1 if a remedy does not remove its hazard.",
        epilog="scenarios: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="scenarios to run (default: all)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON (- for standard output)")
    parser.add_argument("--layout", default="4k-48", metavar="NAME",
                        help="granule and VA bits of the machine, e.g. 16k-36 (default 4k-48; "
                        "the layouts scenario checks every layout)")
    parser.add_argument("--nodes", type=positive_int, default=DEFAULT_NODES, metavar="N",
                        help=f"NUMA nodes (default {DEFAULT_NODES})")
    parser.add_argument("--cpus-per-node", type=positive_int, default=DEFAULT_CPUS_PER_NODE,
                        metavar="N", help=f"CPUs per node (default {DEFAULT_CPUS_PER_NODE})")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=scenarios_command)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def format_table(results: list[ScenarioResult]) -> list[str]:
    widths = [width for _, width in COLUMNS]
    lines = [" | ".join(name.ljust(width) for name, width in COLUMNS).rstrip(),
             "-+-".join("-" * width for width in widths)]
    for result in results:
        hazard = result.hazard_outcome
        seen = hazard.summary if hazard.hazard else f"not seen: {hazard.summary}"
        rows = [o for o in result.outcomes if o.role is not Role.HAZARD] or [None]
        for number, other in enumerate(rows):
            first = number == 0
            if other is None:
                remedy, outcome = "none", ""
            else:
                prefix = "" if other.role is Role.REMEDY else "(note) "
                remedy = prefix + other.label
                if other.role is Role.NOTE:
                    outcome = other.summary
                else:
                    outcome = ("REMEDY FAILS: " if other.hazard else "removed: ") + other.summary
            cells = [result.name if first else "", result.v3 if first else "",
                     f"{hazard.label}: {seen}" if first else "", remedy, outcome]
            wrapped = [_wrap(cell, width) for cell, width in zip(cells, widths, strict=True)]
            for index in range(max(map(len, wrapped))):
                parts = [(column[index] if index < len(column) else "").ljust(width)
                         for column, width in zip(wrapped, widths, strict=True)]
                lines.append(" | ".join(parts).rstrip())
        lines.append("-+-".join("-" * width for width in widths))
    return lines


def format_details(results: list[ScenarioResult]) -> list[str]:
    lines = []
    for result in results:
        lines.append(f"{result.name}: {result.title} [{result.verdict}, {result.setup}]")
        for outcome in result.outcomes:
            lines.append(f"  {outcome.role.value}: {outcome.label}")
            lines += [f"    {detail}" for detail in outcome.details]
    return lines


def scenarios_json(results: list[ScenarioResult], setup: Setup) -> dict:
    return {
        "ktext_emu_scenarios": SCENARIO_REPORT_VERSION,
        "setup": {"nodes": setup.nodes, "cpus_per_node": setup.cpus_per_node,
                  "granule": setup.granule, "va_bits": setup.va_bits},
        "all_remedies_hold": all(result.remedies_hold for result in results),
        "scenarios": [result.to_json() for result in results],
        "timings": [{"scenario": result.name, "seconds": round(result.seconds, 3)}
                    for result in results],
    }  # fmt: skip


def scenarios_command(args: argparse.Namespace) -> int:
    from emu.fileio import STDOUT, check_outputs
    from emu.scenarios import select

    select(args.names)  # unknown names fail before anything runs
    geometry = Geometry.from_name(args.layout)
    check_outputs([("--json", args.json)])
    setup = Setup(args.nodes, args.cpus_per_node, geometry.granule, geometry.va_bits)
    results = run_scenarios(args.names, setup)
    if args.json is not None:
        write_json(args.json, scenarios_json(results, setup))
    failing = [result.name for result in results if not result.remedies_hold]
    if not args.quiet:
        out = sys.stderr if str(args.json) == STDOUT else sys.stdout
        print(f"ktext-emu scenarios on {setup.describe()}", file=out)
        print("\n".join(format_table(results)), file=out)
        print("\n".join(format_details(results)), file=out)
        unseen = [result.name for result in results if not result.hazard_seen]
        if unseen:
            print(f"hazard not seen: {', '.join(unseen)}", file=out)
        print(f"remedy fails: {', '.join(failing)}" if failing
              else f"{len(results)} scenarios: every remedy removes its hazard", file=out)
    return REMEDY_FAILS_STATUS if failing else 0
