"""The ``ktext-emu`` command line: parses options, runs a subcommand, and turns
every ``EmuError`` into one ``ktext-emu: error: ...`` line and its exit status.

Each command is a module with ``add_parser(subparsers)``, which adds its
parser and sets ``run`` (the function that runs it) as a default; COMMANDS
lists them in the order ``--help`` shows them, so a new command is one line.
The commands call the library (emu/api.py for ``run``) and do the printing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from emu import __version__
from emu.cli import (
    build,
    compare,
    disasm,
    replay,
    run,
    scenarios,
    storm,
    sweep,
    symbols,
    trace,
    verify,
)
from emu.errors import EXIT_STATUS_DOC, EmuError
from emu.fileio import printable
from emu.hw.accounting import compiled_extension_status
from emu.run_options import OptionParser

Runner = Callable[[argparse.Namespace], int]


class Command(Protocol):
    """A command module."""

    def add_parser(self, sub: argparse._SubParsersAction, /) -> None: ...


COMMANDS: tuple[Command, ...] = (
    run, replay, compare, sweep, verify, storm, scenarios, build, disasm, symbols, trace
)


# Commands that boot and run machines: the ones the compiled extension speeds up.
MACHINE_COMMANDS = frozenset({"run", "sweep", "verify", "storm", "scenarios", "trace"})


def warn_if_slow() -> None:
    """One line on stderr when the compiled extension is not in use."""
    status = compiled_extension_status()
    if not status["compiled_extension"]:
        print(f"ktext-emu: note: {status['reason']}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status: 0 ok, " + ", ".join(
        f"{code} {name}" for name, code in EXIT_STATUS_DOC.items()
    )
    parser = OptionParser(
        prog="ktext-emu",
        description="Emulate arm64 NUMA kernel text replication, instruction by instruction.",
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"ktext-emu {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="print the Python traceback of an error"
    )
    _add_commands(parser)
    return parser


def _add_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's subparser, by name."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OptionParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return sub.choices


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM (a `kill`, a job scheduler's stop) ends a command as Ctrl-C
    does: SIGINT's handler is called, so a run stops at the end of a quantum
    and writes its partial report.  Yields a list that holds the
    signal once it came (so the exit status can say which one)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_sigterm(signum: int, frame: object) -> None:
        received.append(signum)
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint):  # Python's default, or the machine's deferral during a run
            on_sigint(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    # A shell starts a background job with SIGINT ignored.  Python's handler
    # is put in (so the machine defers interrupts to the end of a quantum)
    # with SIGINT blocked, so a Ctrl-C still does not reach the job.
    sigint_ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if sigint_ignored:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
        if sigint_ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def main(argv: Sequence[str] | None = None) -> int:
    with sigterm_as_interrupt() as terminated:
        return _main(argv, terminated)


def _main(argv: Sequence[str] | None, terminated: list[int]) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args_list
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            args = parser.parse_args([*args_list, "run"])  # run is the default command
        runner: Runner = args.run
        if args.command in MACHINE_COMMANDS:
            warn_if_slow()
        return runner(args)
    except EmuError as err:
        if show_traceback:
            traceback.print_exc()
        print(f"ktext-emu: error: {printable(str(err))}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        how = "terminated" if terminated else "interrupted"
        print(f"ktext-emu: {how}", file=sys.stderr)
        return EXIT_STATUS_DOC[how]
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:
        # The system refused something no EmuError check foresaw (a full disk,
        # a vanished file): still the user's environment, so one line.
        if show_traceback:
            traceback.print_exc()
        where = f"{err.filename}: " if err.filename else ""
        print(f"ktext-emu: error: {printable(f'{where}{err.strerror or err}')}", file=sys.stderr)
        return EXIT_STATUS_DOC["I/O"]
    except Exception as err:  # a bug in ktext-emu: say so in one line, details on request
        if show_traceback:
            traceback.print_exc()
        print(f"ktext-emu: internal error: {type(err).__name__}: {printable(str(err))} (a bug in ktext-emu; "
              "--traceback shows where)", file=sys.stderr)
        return EXIT_STATUS_DOC["internal error"]


def command_names() -> tuple[str, ...]:
    """The subcommands, in the order ``--help`` lists them."""
    return tuple(_add_commands(OptionParser(prog="ktext-emu")))
