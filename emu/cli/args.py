"""Argument types and option groups the commands' parsers share, and the
MachineConfig of parsed machine options.  The run options' own declaration
and value types live in emu/run_options.py (a sweep grid reads them too) and
are re-exported here for the other commands.
"""

from __future__ import annotations

import argparse

from emu.config import MachineConfig, machine_config
from emu.run_options import (
    GRANULES,
    OptionParser,
    add_machine_arguments,
    non_negative_int,
    positive_int,
)

__all__ = ["GRANULES", "OptionParser", "add_machine_arguments", "machine_config_from_args",
           "non_negative_int", "positive_int"]


def machine_config_from_args(args: argparse.Namespace) -> MachineConfig:
    """The MachineConfig for parsed options (granule/va_bits/cmdline if the parser has them)."""
    return machine_config(
        args.machine, args.nodes, args.cpus_per_node, ram_mib=args.ram_mib,
        granule=getattr(args, "granule", 4096), va_bits=getattr(args, "va_bits", 48),
        cmdline=getattr(args, "cmdline", "") or "",
    )
