"""``ktext-emu compare A.json B.json``: print what differs between two
reports (the comparison itself is emu/compare.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emu import compare
from emu.fileio import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="print the differences between two JSON reports",
        description="Print what differs between two `ktext-emu run --json` reports: runs are "
        "paired in order; for each pair the headline figures side by side (local kernel-fetch "
        "share per node, instructions, modelled cycles, speed-up, traffic balance), then every "
        "other field that differs.  Host timings and console output are ignored.")
    parser.add_argument("first", type=Path, metavar="A.json", help="a report (run --json)")
    parser.add_argument("second", type=Path, metavar="B.json", help="the report to compare with")
    parser.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    a, b = compare.load_report(args.first), compare.load_report(args.second)
    lines, differences = compare.compare(a, b, args.first.name, args.second.name)
    print("\n".join(printable(line) for line in lines))
    print(f"{differences} field(s) differ outside the headline figures" if differences
          else "no other differences")
    return 0
