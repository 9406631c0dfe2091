"""The debugger options commands that boot a machine share (``--gdb``,
``--gdb-on-fault``, ``--gdb-allow-remote``) and the session they make.
They are not run options (emu/run_options.py): they change how a run is
watched, never what it computes, so a sweep has no use for them.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from emu.errors import UsageError
from emu.gdb.server import GdbServer, debug_session, parse_endpoint
from emu.system import System

DEBUG_DESTS = ("gdb", "gdb_on_fault", "gdb_allow_remote")


def add_gdb_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("debugging")
    group.add_argument("--gdb", metavar="[HOST:]PORT",
                       help="wait for GDB (target remote HOST:PORT) before the first "
                       "instruction; HOST defaults to 127.0.0.1, PORT 0 picks a free one")
    group.add_argument("--gdb-on-fault", metavar="[HOST:]PORT", nargs="?", const="",
                       help="on a guest fault, stop and wait for GDB instead of exiting "
                       "(at --gdb's address, else this one)")
    group.add_argument("--gdb-allow-remote", action="store_true",
                       help="let --gdb listen on an address other than loopback")


@contextlib.contextmanager
def gdb_server(args: argparse.Namespace
               ) -> Iterator[Callable[[System, str], AbstractContextManager[None]] | None]:
    """The session factory the parsed options ask for (None: no debugger);
    the socket is bound before anything boots and closed at the end."""
    address = args.gdb
    if address is None and args.gdb_on_fault is not None:
        address = args.gdb_on_fault or None
        if address is None:
            raise UsageError("--gdb-on-fault needs [HOST:]PORT unless --gdb gives one")
    if address is None:
        yield None
        return
    server = GdbServer(parse_endpoint(address, args.gdb_allow_remote))
    on_start, on_fault = args.gdb is not None, args.gdb_on_fault is not None

    def session(system: System, label: str) -> AbstractContextManager[None]:
        return debug_session(server, system, on_start, on_fault, label,
                             symbols=str(system.image.path))

    try:
        yield session
    finally:
        server.close()
