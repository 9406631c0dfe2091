"""The assembler: GNU as syntax for AArch64 in, an ObjectFile out.

Laid out like GNU as itself: read.py (read.c: lines, statements, the
pseudo-op table), loop.py (read.c's read_a_source_file: the statement
loop), state.py (the structs of as.h, struc-symbol.h and subsegs.h, and
AsmState, the interface every part is written against), cond.py (cond.c: .if), macro.py
(macro.c: .macro/.rept/.irp), symbols.py (symbols.c), directives.py (the
s_* pseudo-ops of read.c and obj-elf.c), subsegs.py (subsegs.c: sections,
subsections, literal pools), write.py (write.c: layout, fixups, the
ObjectFile), assembler.py (as.c: the Assembler and the entry points) and
the AArch64 back end tc_aarch64.py (tc-aarch64.c: operands, planning,
keystone through the guarded worker) over aarch64_opc.py (opcodes/: the
operand types and the encodings keystone lacks). common.py holds the limits
and ``Fail``.
"""

from emu.blob.asm.assembler import Assembler, assemble_file, assemble_source
from emu.blob.asm.common import (
    MAX_INCLUDE_BYTES,
    MAX_NOBITS_BYTES,
    MAX_SECTION_BYTES,
    NOP,
)
from emu.blob.asm.macro import split_macro_args

__all__ = [
    "MAX_INCLUDE_BYTES",
    "MAX_NOBITS_BYTES",
    "MAX_SECTION_BYTES",
    "NOP",
    "Assembler",
    "assemble_file",
    "assemble_source",
    "split_macro_args",
]
