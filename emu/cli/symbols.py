"""``ktext-emu symbols``: list a kernel ELF's symbols (emu/blob/commands.py)."""

from __future__ import annotations

import argparse

from emu.blob import commands


def add_parser(sub: argparse._SubParsersAction) -> None:
    commands.add_symbols_parser(sub)
