"""What ``ktext-emu verify`` (emu/cli/verify.py) and ``ktext-emu storm``
(emu/cli/storm.py), the text-patching commands, share: their machine and
kernel options, the machine they boot, and the RUN they report (the
machine's usual report plus the CPU capabilities and static keys).
Both write ``{"runs": [RUN]}`` with ``--json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emu.cli.args import GRANULES, add_machine_arguments, machine_config_from_args
from emu.config import MachineConfig
from emu.errors import UsageError
from emu.hw.machine import StopReason
from emu.kernel import cpufeature, jump_label
from emu.report import write_json
from emu.system import DEFAULT_MAX_INSTRUCTIONS, RunSpec, System

VERIFY_WORKLOAD = "static_keys"
VERIFY_ITERATIONS = 50
STORM_WORKLOAD = "key_storm"
STORM_KEY = "storm_key"
STORM_QUANTUM = 1000


def positive_count(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
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
    work.add_argument("--max-instructions", type=positive_count, default=DEFAULT_MAX_INSTRUCTIONS,
                      metavar="N", help=f"stop after N instructions (default "
                      f"{DEFAULT_MAX_INSTRUCTIONS:,})")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="write the report as JSON (- for standard output)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def patching_config(args: argparse.Namespace) -> MachineConfig:
    if args.kernel is not None and args.add:
        raise UsageError("--kernel and --add cannot be combined: --add links into the shipped kernel")
    namespace = argparse.Namespace(**vars(args))
    namespace.granule = GRANULES[args.granule]
    namespace.cmdline = f"ktext={'1' if args.ktext == 'on' else '0'}"
    return machine_config_from_args(namespace)


def boot_system(args: argparse.Namespace, workload: str, iterations: int,
            config: MachineConfig | None = None) -> System:  # fmt: skip
    config = config or patching_config(args)
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


def patching_report(system: System) -> dict:
    run = system.report()
    image = system.image
    run.setdefault("cpu_caps", cpufeature.system_cpucaps(system.physmem, image))
    run["static_keys"] = {
        name: {"enabled": key["enabled"], "sites": len(key["sites"])}
        for name, key in jump_label.static_keys(system).items()
    }
    return run


def write_runs_json(path: Path, runs: list[dict]) -> None:
    write_json(path, {"runs": runs})


def cut_mid_update(system: System, reason: StopReason) -> bool:
    """Whether the instruction limit stopped the guest between the first and
    last write of a key update: the copies then differ only because the guest
    had not finished writing them, which is not a finding."""
    return reason is StopReason.INSTRUCTION_LIMIT and jump_label.update_in_progress(system)


def cut_short_message(max_instructions: int, remedy: str) -> str:
    """What storm and verify print when ``cut_mid_update``."""
    return (f"the instruction limit ({max_instructions:,}) stopped the guest in the middle "
            f"of a key update, so the copies were not compared; raise --max-instructions "
            f"or {remedy}")

