"""``ktext-emu verify`` and ``ktext-emu storm``: the text-patching commands.

``verify`` boots a machine (replication on unless ``--ktext off``), runs a
short workload that patches kernel text from every node (static keys
toggled through the guest's own patch routine), and checks every node's
copy against node 0 (emu/checks/verify.py): the first differing address per
node with both disassemblies and the nearest symbol.  Exit status 0 when
every copy checks out, 1 when one does not.

``storm`` flips a static key from a CPU on every node while the other CPUs
run its site, watching every execution of the site and every step of the
guest's cache maintenance (emu/checks/icache.py).  Exit status 0 when
nothing was wrong, 1 otherwise.

Each ``add_*_parser(sub)`` adds one subparser; emu/cli.py registers them.
Both write ``{"runs": [RUN]}`` with ``--json``, RUN being the machine's
usual report plus a ``verify`` (and for ``storm`` a ``storm``) section.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emu.checks.icache import IcacheChecker, JumpSiteObserver
from emu.checks.verify import verify
from emu.cli_args import GRANULES
from emu.config import MachineConfig, add_machine_arguments, machine_config_from_args
from emu.errors import UsageError
from emu.fileio import check_writable
from emu.hw.machine import DEFAULT_QUANTUM
from emu.kernel import cpufeature, jump_label
from emu.report import write_json
from emu.system import DEFAULT_MAX_INSTRUCTIONS, RunSpec, System

VERIFY_WORKLOAD = "static_keys"
VERIFY_ITERATIONS = 50
STORM_WORKLOAD = "key_storm"
STORM_KEY = "storm_key"
STORM_QUANTUM = 1000


def _count(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_machine_arguments(parser)
    layout = parser.add_argument_group("layout and kernel")
    layout.add_argument("--granule", choices=list(GRANULES), default="4k",
                        help="translation granule (default 4k)")  # fmt: skip
    layout.add_argument("--va-bits", type=int, default=48, metavar="N",
                        help="virtual address bits (default 48)")  # fmt: skip
    layout.add_argument("--ktext", choices=("on", "off"), default="on",
                        help="kernel text replication (default on)")  # fmt: skip
    layout.add_argument("--cpu-features", default="", metavar="LIST",
                        help="comma-separated emulated CPU capabilities, e.g. "
                        "ARM64_HAS_CACHE_DIC,ARM64_WORKAROUND_CLEAN_CACHE")  # fmt: skip
    layout.add_argument("--add", type=Path, action="append", default=[], metavar="FILE.S",
                        help="link a user source into the shipped kernel (repeatable)")
    layout.add_argument("--kernel", type=Path, metavar="ELF", help="boot this kernel ELF")
    work = parser.add_argument_group("run")
    work.add_argument("--max-instructions", type=_count, default=DEFAULT_MAX_INSTRUCTIONS,
                      metavar="N", help=f"stop after N instructions (default "
                      f"{DEFAULT_MAX_INSTRUCTIONS:,})")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def add_verify_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "verify",
        help="check every node's copy of the kernel text against node 0's",
        description="Boot the machine with replication on, run a short workload that patches "
        "kernel text from every node, and compare every node's copy of [_stext, __end_rodata) "
        "with node 0's. Exit status 1 if a copy differs.",
    )
    _add_common(parser)
    work = parser.add_argument_group("workload")
    work.add_argument("--workload", default=VERIFY_WORKLOAD, metavar="NAME",
                      help=f"workload_<NAME> to run first (default {VERIFY_WORKLOAD}: every "
                      "task toggles a static key through the guest)")  # fmt: skip
    work.add_argument("--iterations", type=int, default=VERIFY_ITERATIONS, metavar="N",
                      help=f"iterations per task (default {VERIFY_ITERATIONS})")  # fmt: skip
    work.add_argument("--quantum", type=_count, default=DEFAULT_QUANTUM, metavar="N",
                      help=f"instructions per CPU turn (default {DEFAULT_QUANTUM:,})")
    parser.set_defaults(run=verify_command)


def add_storm_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "storm",
        help="flip a static key from every node while all CPUs run its site",
        description="Even CPUs (one or more per node) toggle storm_key through the guest's "
        "static_key_update while odd CPUs run its site; every execution of the site and every "
        "step of the cache maintenance is checked. Exit status 1 on any anomaly.",
    )
    _add_common(parser)
    parser.add_argument("--flips", type=_count, default=1000, metavar="N",
                        help="key flips in all (default 1000), spread over the flipping CPUs")
    parser.add_argument("--quantum", type=_count, default=STORM_QUANTUM, metavar="N",
                        help=f"instructions per CPU turn (default {STORM_QUANTUM})")
    parser.add_argument("--no-cache-check", action="store_true",
                        help="skip the cache-maintenance checker (faster)")
    parser.set_defaults(run=storm_command)


def _config(args: argparse.Namespace) -> MachineConfig:
    if args.kernel is not None and args.add:
        raise UsageError("--kernel and --add cannot be combined: --add links into the shipped kernel")
    namespace = argparse.Namespace(**vars(args))
    namespace.granule = GRANULES[args.granule]
    namespace.cmdline = f"ktext={'1' if args.ktext == 'on' else '0'}"
    return machine_config_from_args(namespace)


def _system(args: argparse.Namespace, workload: str, iterations: int,
            config: MachineConfig | None = None) -> System:  # fmt: skip
    config = config or _config(args)
    features = tuple(f.strip() for f in args.cpu_features.split(",") if f.strip())
    spec = RunSpec(
        ktext=config.ktext,
        workload=workload,
        iterations=iterations,
        max_instructions=args.max_instructions,
        quantum=args.quantum,
        kernel=args.kernel,
        cpu_features=features,
        extra_sources=tuple(args.add),
    )
    return System(config, spec)


def _report(system: System) -> dict:
    run = system.report()
    image = system.image
    run.setdefault("cpu_caps", cpufeature.system_cpucaps(system.physmem, image))
    run["static_keys"] = {
        name: {"enabled": key["enabled"], "sites": len(key["sites"])}
        for name, key in jump_label.static_keys(system).items()
    }
    return run


def _write_json(path: Path, runs: list[dict]) -> None:
    write_json(path, {"runs": runs})


def verify_command(args: argparse.Namespace) -> int:
    if args.iterations < 0:
        raise UsageError(f"--iterations {args.iterations}: must not be negative")
    if args.json is not None:
        check_writable(args.json)
    started = time.perf_counter()
    system = _system(args, args.workload, args.iterations)
    try:
        result_run = system.run()
        result = verify(system)
        run = _report(system)
        run["verify"] = result.to_dict()
        if args.json is not None:
            _write_json(args.json, [run])
        if not args.quiet:
            print(result.format())
            print(f"{args.workload}: {result_run.instructions:,} instructions, "
                  f"{time.perf_counter() - started:.2f} s", file=sys.stderr)  # fmt: skip
        return 0 if result.ok else 1
    finally:
        system.close()


def storm_command(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_writable(args.json)
    config = _config(args)
    flippers = (config.topology.n_cpus + 1) // 2
    per_flipper = max(1, -(-args.flips // flippers))
    system = None
    try:
        system = _system(args, STORM_WORKLOAD, per_flipper, config)
        checker = None if args.no_cache_check else IcacheChecker(
            system, watch=_key_sites(system))  # fmt: skip
        observer = JumpSiteObserver(system, _key_entries(system))
        started = time.perf_counter()
        outcome = system.run()
        elapsed = time.perf_counter() - started
        flips = system.physmem.read_u64(system.image.pa_of(system.image.sym("static_key_flips")))
        result = verify(system)
        storm = {
            "flips": flips,
            "flipping_cpus": flippers,
            "site_executions": observer.total_executions(),
            "executions_by_node": _merge_by_node(observer),
            "executions_during_update": sum(s.during_update for s in observer.stats.values()),
            "anomalies": [a.message() for a in observer.anomalies],
            "cache_check": checker.summary() if checker else None,
            "stop_reason": outcome.reason.value,
            "seconds": round(elapsed, 3),
        }
        run = _report(system)
        run["verify"] = result.to_dict()
        run["storm"] = storm
        if args.json is not None:
            _write_json(args.json, [run])
        problems = list(storm["anomalies"]) + (checker.summary()["violations"] if checker else [])
        problems += result.messages()
        if not args.quiet:
            print(f"storm on {config.topology.nodes} node(s): {flips} flips by {flippers} CPU(s), "
                  f"{storm['site_executions']} site executions "
                  f"({storm['executions_during_update']} during an update), "
                  f"{elapsed:.2f} s: " + ("OK" if not problems else "PROBLEMS"))  # fmt: skip
            for line in problems[:20]:
                print(f"  {line}")
        return 0 if not problems else 1
    finally:
        if system is not None:
            system.close()


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


def add_patch_commands(sub: argparse._SubParsersAction) -> None:
    """Both commands, for emu/cli.py's COMMAND_GROUPS."""
    add_verify_parser(sub)
    add_storm_parser(sub)
