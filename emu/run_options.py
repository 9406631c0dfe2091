"""What a ``ktext-emu run`` can be told: the frozen ``RunOptions`` the
in-process API (emu/api.py) takes, and the declaration of the same options as
command-line arguments (``add_run_arguments``) with their value types.

The declaration lives here, not in the CLI package, because two layers read
it: the ``run`` command adds it to its parser, and a sweep grid
(emu/sweep.py, which must not import the CLI) checks and converts its values
with it, so a grid value is refused with the very message ``ktext-emu run``
would print.  ``RunOptions.from_args`` turns parsed arguments into options.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from emu.config import DEFAULT_PRESET, preset_names
from emu.errors import UsageError
from emu.hw.firmware import DEFAULT_MAX_CONSOLE_BYTES, DEFAULT_MAX_FIRMWARE_CALLS
from emu.hw.machine import DEFAULT_QUANTUM, DEFAULT_WATCHDOG
from emu.hw.tlb import IS_DOMAIN_CHOICES
from emu.kernel.boot import USER_MEMORY_CHOICES
from emu.system import DEFAULT_MAX_INSTRUCTIONS

DEFAULT_WORKLOAD = "dbsim"
# --granule spellings and their sizes in bytes
GRANULES = {"4k": 4096, "16k": 16384, "64k": 65536}
KTEXT_CHOICES = ("on", "off", "both")
DETAIL_CHOICES = ("fast", "cache")


@dataclass(frozen=True)
class RunOptions:
    """Every option of ``ktext-emu run`` but its output ones (--json, --plot,
    --quiet), with the same defaults.  ``None`` means "not given": for
    ``ktext`` the kernel command line decides (else both runs), for
    ``iterations``/``migrate_every`` the workload's own figures apply."""

    machine: str = DEFAULT_PRESET  # a preset name or a machine file's path
    nodes: int | None = None
    cpus_per_node: int | None = None
    ram_mib: int | None = None
    granule: int = 4096  # bytes
    va_bits: int = 48
    cmdline: str = ""
    ktext: str | None = None  # "on", "off", "both" or None
    kernel: Path | None = None
    add: tuple[Path, ...] = ()
    add_user: tuple[Path, ...] = ()
    syscall: tuple[str, ...] = ()  # NR=SYMBOL
    user_memory: str = "node0"
    cpu_features: str = ""  # comma-separated
    workload: str = DEFAULT_WORKLOAD
    iterations: int | None = None
    migrate_every: int | None = None
    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS
    watchdog: int = DEFAULT_WATCHDOG
    quantum: int = DEFAULT_QUANTUM
    max_firmware_calls: int = DEFAULT_MAX_FIRMWARE_CALLS
    max_console_bytes: int = DEFAULT_MAX_CONSOLE_BYTES
    is_domain: str = "machine"
    ro_replicas: bool = False
    detail: str = "fast"  # cost model: "fast" (one hierarchy) or "cache" (every variant)
    warmup: int = 0  # iterations per task before its measurement window opens
    # The generated kernel paths' and dbsim's knobs (emu/blob/synth.py
    # Footprint); None: the default, from the measured Debian kernel.
    kernel_text_per_iter: int | None = None
    functions_per_path: int | None = None
    instructions_per_path: int | None = None
    user_code: int | None = None
    user_data: int | None = None
    rows_per_query: int | None = None
    plans: int | None = None
    footprint_seed: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """The options of parsed ``run`` arguments (other attributes are ignored)."""
        values = {field.name: getattr(args, field.name) for field in fields(cls)}
        values["granule"] = GRANULES[values["granule"]]
        values["add"] = tuple(values["add"])
        values["add_user"] = tuple(values["add_user"])
        values["syscall"] = tuple(values["syscall"])
        return cls(**values)


# RunOptions fields an option may give more than once (``--add`` is repeatable).
REPEATABLE = frozenset(f.name for f in fields(RunOptions) if isinstance(f.default, tuple))


# -- value types --------------------------------------------------------------


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def syscall_hook(text: str) -> str:
    """``NR=SYMBOL``, checked here, kept as written (a sweep grid's value too)."""
    number, sep, symbol = text.partition("=")
    if not sep or not symbol.strip() or not number.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected NR=SYMBOL, e.g. 15=my_handler: {text!r}")
    return f"{int(number)}={symbol.strip()}"


def parse_syscall_hooks(values: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """``("15=f", ...)`` as ``((15, "f"), ...)``."""
    return tuple((int(nr), symbol) for nr, _, symbol in (v.partition("=") for v in values))


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


class OptionParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


# -- the arguments ----------------------------------------------------------------


def add_machine_arguments(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``--machine``, ``--nodes``, ``--cpus-per-node`` and ``--ram-mib``."""
    group = parser.add_argument_group("machine")
    actions = [
        group.add_argument(
            "--machine", default=DEFAULT_PRESET, metavar="PRESET|FILE.toml",
            help=f"a preset ({', '.join(preset_names())}) or a machine file; "
            f"default {DEFAULT_PRESET}",
        ),
        group.add_argument("--nodes", type=int, metavar="N",
                           help="override the number of NUMA nodes"),
        group.add_argument("--cpus-per-node", type=int, metavar="M",
                           help="override CPUs per node"),
        group.add_argument("--ram-mib", type=int, metavar="MIB",
                           help="override RAM per node (MiB)"),
    ]  # fmt: skip
    return {action.dest: action for action in actions}


def add_run_arguments(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Add every RunOptions field as ``run`` declares it; return the actions by dest.

    The groups are created in the order ``ktext-emu run --help`` shows them
    (machine, layout and kernel, workload); the caller adds its output group.
    """
    actions = add_machine_arguments(parser)
    layout = parser.add_argument_group("layout and kernel")
    work = parser.add_argument_group("workload")
    added = [
        layout.add_argument("--granule", choices=list(GRANULES), default="4k",
                            help="translation granule (default 4k)"),
        layout.add_argument("--va-bits", type=int, default=48, metavar="N",
                            help="virtual address bits (default 48)"),
        layout.add_argument("--cmdline", default="", metavar="STR",
                            help="kernel command line, e.g. 'ktext=1'"),
        layout.add_argument("--ktext", choices=KTEXT_CHOICES, default=None,
                            help="replication for the run(s); default: ktext= from --cmdline, "
                            "else both (run twice and compare)"),
        layout.add_argument("--kernel", type=Path, metavar="ELF", help="boot this kernel ELF"),
        layout.add_argument("--add", type=Path, action="append", default=[],
                            metavar="FILE.S|FILE.c",
                            help="link a source into the shipped kernel as it is (its sections "
                            "as named; a .c file is compiled first with aarch64-linux-gnu-gcc "
                            "-S, see README) (repeatable)"),
        layout.add_argument("--add-user", type=Path, action="append", default=[],
                            metavar="FILE.s|FILE.c",
                            help="link a source as user code: its .text, .rodata, .data and "
                            ".bss become .user.text, .user.rodata, .user.data and .user.bss, "
                            "so gcc -S output runs at EL0 unedited (repeatable)"),
        layout.add_argument("--syscall", type=syscall_hook, action="append", default=[],
                            metavar="NR=SYMBOL",
                            help="make kernel function SYMBOL (from an --add file) system call "
                            "NR, in a free slot of sys_call_table (repeatable; in assembly: "
                            "SYSCALL_DEFINE NR, SYMBOL from syscall.inc)"),
        layout.add_argument("--user-memory", choices=USER_MEMORY_CHOICES, default="node0",
                            help="where user text and rodata live: node0 (one copy in node 0's "
                            "RAM, default) or local (a copy in each node's RAM, mapped for the "
                            "tasks of that node); user data stays shared in node 0"),
        layout.add_argument("--cpu-features", default="", metavar="LIST",
                            help="comma-separated emulated CPU capabilities"),
        work.add_argument("--workload", default=DEFAULT_WORKLOAD, metavar="NAME",
                          help=f"workload_<NAME> in the kernel (default {DEFAULT_WORKLOAD})"),
        work.add_argument("--iterations", type=non_negative_int, default=None, metavar="N",
                          help="iterations per task (0: until the instruction limit; default: "
                          "the workload's own)"),
        work.add_argument("--migrate-every", type=non_negative_int, default=None, metavar="N",
                          help="move every task to the next node after each CPU ran N more "
                          "instructions (0: never; default: the workload's own)"),
        work.add_argument("--warmup", type=non_negative_int, default=0, metavar="N",
                          help="iterations each task runs before its measurement window opens "
                          "(boot and set-up are never charged; default 0)"),
        work.add_argument("--kernel-text-per-iter", type=positive_int, default=None,
                          metavar="BYTES", help="distinct kernel text one dbsim query runs "
                          "through its generated syscall paths (default: measured, 13,968)"),
        work.add_argument("--functions-per-path", type=positive_int, default=None, metavar="N",
                          help="functions one generated syscall path runs (default: measured)"),
        work.add_argument("--instructions-per-path", type=positive_int, default=None,
                          metavar="N", help="kernel instructions one generated syscall path "
                          "retires (default: measured)"),
        work.add_argument("--user-code", type=positive_int, default=None, metavar="BYTES",
                          help="dbsim's generated EL0 code, all plans (default 256 KiB)"),
        work.add_argument("--user-data", type=positive_int, default=None, metavar="BYTES",
                          help="dbsim's index and rows in shared user memory (default 16 MiB)"),
        work.add_argument("--rows-per-query", type=positive_int, default=None, metavar="N",
                          help="rows one dbsim query scans (default 100, sysbench's range_size)"),
        work.add_argument("--plans", type=positive_int, default=None, metavar="N",
                          help="dbsim query plans, each its own operator code (default 5)"),
        work.add_argument("--footprint-seed", type=non_negative_int, default=None, metavar="N",
                          help="seed of the generated code (default 1)"),
        work.add_argument("--max-instructions", type=positive_int,
                          default=DEFAULT_MAX_INSTRUCTIONS, metavar="N",
                          help="stop after N instructions in all "
                          f"(default {DEFAULT_MAX_INSTRUCTIONS:,})"),
        work.add_argument("--watchdog", type=non_negative_int, default=DEFAULT_WATCHDOG,
                          metavar="N", help="report a CPU that runs N instructions without "
                          "taking any exception as spinning (0: never; default "
                          f"{DEFAULT_WATCHDOG:,})"),
        work.add_argument("--quantum", type=positive_int, default=DEFAULT_QUANTUM, metavar="N",
                          help=f"instructions per CPU turn (default {DEFAULT_QUANTUM:,})"),
        work.add_argument("--max-firmware-calls", type=non_negative_int,
                          default=DEFAULT_MAX_FIRMWARE_CALLS, metavar="N",
                          help="end the run as a guest fault after N firmware calls (smc) "
                          f"(0: no limit; default {DEFAULT_MAX_FIRMWARE_CALLS:,})"),
        work.add_argument("--max-console-bytes", type=non_negative_int,
                          default=DEFAULT_MAX_CONSOLE_BYTES, metavar="N",
                          help="keep at most N bytes of guest console output in the report; "
                          f"the rest is counted as dropped (default {DEFAULT_MAX_CONSOLE_BYTES:,})"),
        layout.add_argument("--is-domain", choices=IS_DOMAIN_CHOICES, default="machine",
                            help="Inner Shareable domains: one for the machine (what Linux "
                            "assumes, default) or one per node, a hypothetical hardware "
                            "configuration Linux cannot run on (its broadcast TLBI ...IS must "
                            "reach every CPU); CnP TLB entries are shared within one"),
        layout.add_argument("--ro-replicas", action="store_true",
                            help="map the rodata copies read-only (a remedy; the series maps "
                            "them PAGE_KERNEL)"),
        layout.add_argument("--detail", choices=DETAIL_CHOICES, default="fast",
                            help="cost model: both simulate per-CPU L1I/L1D/L2 and a per-node "
                            "LLC; fast (default) the preset's first-listed structural variant, "
                            "cache every variant (prefetch on/off ...) for the band"),
    ]  # fmt: skip
    actions.update((action.dest, action) for action in added)
    return actions


def run_options_parser() -> tuple[OptionParser, dict[str, argparse.Action]]:
    """A parser of the run options alone (no output options), named as the command."""
    parser = OptionParser(prog="ktext-emu run", add_help=False)
    return parser, add_run_arguments(parser)


def parse_run_options(argv: Sequence[str]) -> RunOptions:
    """The RunOptions ``ktext-emu run ARGV`` would run with (UsageError as it would)."""
    parser, _ = run_options_parser()
    return RunOptions.from_args(parser.parse_args(list(argv)))
