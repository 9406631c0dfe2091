"""``ktext-emu disasm``: disassemble a kernel ELF (emu/blob/commands.py)."""

from __future__ import annotations

import argparse

from emu.blob import commands


def add_parser(sub: argparse._SubParsersAction) -> None:
    commands.add_disasm_parser(sub)
