"""Argument types and option groups the commands' parsers share, and the
MachineConfig of parsed machine options.  The run options' own declaration
and value types live in emu/run_options.py (a sweep grid reads them too) and
are re-exported here for the other commands.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from emu.config import MachineConfig, machine_config
from emu.run_options import (
    GRANULES,
    OptionParser,
    add_machine_arguments,
    non_negative_int,
    positive_int,
)

__all__ = ["GRANULES", "OptionParser", "add_machine_arguments", "input_files",
           "machine_config_from_args", "non_negative_int", "positive_int"]


def machine_config_from_args(args: argparse.Namespace) -> MachineConfig:
    """The MachineConfig for parsed options (granule/va_bits/cmdline if the parser has them)."""
    return machine_config(
        args.machine, args.nodes, args.cpus_per_node, ram_mib=args.ram_mib,
        granule=getattr(args, "granule", 4096), va_bits=getattr(args, "va_bits", 48),
        cmdline=getattr(args, "cmdline", "") or "",
    )


def input_files(machine: str | None, kernel: Path | None, add: Iterable[Path],
                add_user: Iterable[Path] = ()) -> list[tuple[str, Path | None]]:
    """The files a run reads, named by option, for ``check_outputs``: the
    machine file (a --machine value that names an existing file), the
    kernel and every --add and --add-user source."""
    named: list[tuple[str, Path | None]] = [("--kernel", kernel)]
    if machine is not None and os.path.exists(machine):
        named.append(("--machine", Path(machine)))
    named += [("--add", Path(path)) for path in add]
    named += [("--add-user", Path(path)) for path in add_user]
    return named
