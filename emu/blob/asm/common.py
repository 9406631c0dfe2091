"""What every part of the assembler shares, like GNU as's as.h: the input
limits and ``Fail``, a user error still without its place.

A ``Fail`` raised anywhere while a statement is processed becomes
``AsmError("FILE:LINE: message")`` in the statement loop (loop.py) or in
the final pass (write.py); any other exception is a bug in the assembler and
is left to surface as one.
"""

from __future__ import annotations

NOP = 0xD503201F  # the AArch64 NOP: code-section padding
MAX_MACRO_DEPTH = 100
MAX_INCLUDE_DEPTH = 32
MAX_STATEMENTS = 250_000
MAX_SECTION_BYTES = 64 << 20
# All sections' contents together (sections are capped one by one above, and
# an object of 80 full sections would need 5 GiB); the linker caps its
# output image the same way (emu/blob/link.py).
MAX_OUTPUT_BYTES = 128 << 20
MAX_NOBITS_BYTES = 1 << 32
MAX_ALIGN_LOG2 = 16
MAX_EQUATE_NODES = 10_000
MAX_LINE = 64 * 1024
MAX_INCLUDE_BYTES = 16 << 20


class Fail(Exception):
    """An error message without a place; turned into AsmError by the statement loop."""


def hex_text(v: int) -> str:
    """A signed value in hex, as messages show it (-0x10, not 0xfff...f0)."""
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def printable(message: str) -> str:
    """One line on the user's terminal: line breaks and control codes are shown, not sent."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
