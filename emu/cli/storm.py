"""``ktext-emu storm``: flips a static key from a CPU on every node while
the other CPUs run its site, watching every execution of the site and every
step of the guest's cache maintenance (emu/checks/icache.py).  Exit status
0 when nothing was wrong, 1 when something was, 8 when the instruction limit
stopped the guest mid-update (the copies cannot be compared then) and nothing
else was wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from emu.checks.icache import IcacheChecker, JumpSiteObserver
from emu.checks.verify import verify
from emu.cli.args import input_files
from emu.cli.debugging import add_gdb_arguments, gdb_server
from emu.cli.patching import (
    STORM_KEY,
    STORM_QUANTUM,
    STORM_WORKLOAD,
    add_common_arguments,
    boot_system,
    cut_mid_update,
    cut_short_message,
    patching_config,
    patching_report,
    positive_count,
    write_runs_json,
)
from emu.errors import EXIT_STATUS_DOC
from emu.fileio import STDOUT, check_outputs, printable
from emu.kernel import jump_label
from emu.system import System


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "storm",
        help="flip a static key from every node while all CPUs run its site",
        description="Even CPUs (one or more per node) toggle storm_key through the guest's "
        "static_key_update while odd CPUs run its site; every execution of the site and every "
        "step of the cache maintenance is checked. Exit status 1 on any anomaly.",
    )
    add_common_arguments(parser)
    parser.add_argument("--flips", type=positive_count, default=1000, metavar="N",
                        help="key flips in all (default 1000), spread over the flipping CPUs")
    parser.add_argument("--quantum", type=positive_count, default=STORM_QUANTUM, metavar="N",
                        help=f"instructions per CPU turn (default {STORM_QUANTUM})")
    parser.add_argument("--no-cache-check", action="store_true",
                        help="skip the cache-maintenance checker (faster)")
    add_gdb_arguments(parser)
    parser.set_defaults(run=storm_command)


def storm_command(args: argparse.Namespace) -> int:
    check_outputs([("--json", args.json)], input_files(args.machine, args.kernel, args.add))
    config = patching_config(args)
    flippers = (config.topology.n_cpus + 1) // 2
    per_flipper = max(1, -(-args.flips // flippers))
    system = None
    debugging = contextlib.ExitStack()
    session = debugging.enter_context(gdb_server(args))  # binds --gdb's socket before booting
    try:
        system = boot_system(args, STORM_WORKLOAD, per_flipper, config)
        checker = None if args.no_cache_check else IcacheChecker(
            system, watch=_key_sites(system))  # fmt: skip
        observer = JumpSiteObserver(system, _key_entries(system))
        started = time.perf_counter()
        with session(system, "storm") if session else contextlib.nullcontext():
            outcome = system.run()
        elapsed = time.perf_counter() - started
        flips = system.physmem.read_u64(system.image.pa_of(system.image.sym("static_key_flips")))
        result = verify(system)
        cut_short = cut_mid_update(system, outcome.reason)
        storm = {
            "flips": flips,
            "flipping_cpus": flippers,
            "site_executions": observer.total_executions(),
            "executions_by_node": _merge_by_node(observer),
            "executions_during_update": sum(s.during_update for s in observer.stats.values()),
            "anomalies": [a.message() for a in observer.anomalies],
            "cache_check": checker.summary() if checker else None,
            "stop_reason": outcome.reason.value,
            "cut_short_by_limit": cut_short,
            "seconds": round(elapsed, 3),
        }
        run = patching_report(system)
        run["verify"] = result.to_dict()
        run["storm"] = storm
        if args.json is not None:
            write_runs_json(args.json, [run])
        problems = list(storm["anomalies"]) + (checker.summary()["violations"] if checker else [])
        if not cut_short:
            problems += result.messages()
        verdict = "PROBLEMS" if problems else ("CUT SHORT" if cut_short else "OK")
        if not args.quiet:
            out = sys.stderr if str(args.json) == STDOUT else sys.stdout
            print(f"storm on {config.topology.nodes} node(s): {flips} flips by {flippers} CPU(s), "
                  f"{storm['site_executions']} site executions "
                  f"({storm['executions_during_update']} during an update), "
                  f"{elapsed:.2f} s: " + verdict, file=out)  # fmt: skip
            for line in problems[:20]:
                print(f"  {printable(line)}", file=out)
            if cut_short:
                print(f"  {cut_short_message(args.max_instructions, 'lower --flips')}", file=out)
        if problems:
            return 1
        return EXIT_STATUS_DOC["cut short by the instruction limit"] if cut_short else 0
    finally:
        if system is not None:
            system.close()
        debugging.close()


def _key_entries(system: System) -> list[jump_label.JumpEntry]:
    address = jump_label.key_address(system, STORM_KEY)
    return [entry for entry in jump_label.jump_entries(system) if entry.key == address]


def _key_sites(system: System) -> list[int]:
    return [entry.code for entry in _key_entries(system)]


def _merge_by_node(observer: JumpSiteObserver) -> dict[str, int]:
    merged: dict[int, int] = {}
    for stats in observer.stats.values():
        for node, count in stats.by_node.items():
            merged[node] = merged.get(node, 0) + count
    return {str(node): count for node, count in sorted(merged.items())}
