"""The ``ktext-emu`` command line: parses options, runs a subcommand, and turns
every ``EmuError`` into one ``ktext-emu: error: ...`` line and its exit status.

Subcommands register themselves through ``COMMANDS``: each entry adds its
parser and names the function that runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from emu import __version__
from emu.errors import EXIT_STATUS_DOC, EmuError, UsageError

Runner = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _add_build(sub: argparse._SubParsersAction) -> None:
    from emu.blob import commands

    commands.add_build_parser(sub)
    commands.add_disasm_parser(sub)
    commands.add_symbols_parser(sub)


def _add_run(sub: argparse._SubParsersAction) -> None:
    from emu import compare, run

    run.add_run_parser(sub)
    compare.add_compare_parser(sub)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from emu import sweep

    sweep.add_sweep_parser(sub)


def _add_scenarios(sub: argparse._SubParsersAction) -> None:
    from emu import scenario_commands

    scenario_commands.add_scenarios_parser(sub)


def _add_patching(sub: argparse._SubParsersAction) -> None:
    from emu import patch_commands

    patch_commands.add_patch_commands(sub)


COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_sweep, _add_patching, _add_scenarios, _add_build
]


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status: 0 ok, " + ", ".join(
        f"{code} {name}" for name, code in EXIT_STATUS_DOC.items()
    )
    parser = _Parser(
        prog="ktext-emu",
        description="Emulate arm64 NUMA kernel text replication, instruction by instruction.",
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"ktext-emu {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="print the Python traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add_group in COMMAND_GROUPS:
        add_group(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args_list
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            args = parser.parse_args([*args_list, "run"]) if "run" in _commands(parser) else None
            if args is None:
                parser.print_help()
                return 0
        runner: Runner = args.run
        return runner(args)
    except EmuError as err:
        if show_traceback:
            traceback.print_exc()
        print(f"ktext-emu: error: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("ktext-emu: interrupted", file=sys.stderr)
        return EXIT_STATUS_DOC["interrupted"]
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
        print(f"ktext-emu: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_STATUS_DOC["I/O"]
    except Exception as err:  # a bug in ktext-emu: say so in one line, details on request
        if show_traceback:
            traceback.print_exc()
        print(f"ktext-emu: internal error: {type(err).__name__}: {err} (a bug in ktext-emu; "
              "--traceback shows where)", file=sys.stderr)
        return EXIT_STATUS_DOC["internal error"]


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()
