"""The relocatable object model shared by the assembler and the linker.

One ``ObjectFile`` per assembled source file: named sections of bytes, the
symbols defined in them, and the relocations the linker must apply once every
section has an address. Relocation kinds are the ELF ``R_AARCH64_*`` ones, with
their ELF numbers, so the model can be compared with (and written as) real ELF
relocatable objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from emu.errors import SourceLoc


class RelocType(enum.IntEnum):
    """ELF relocation types for AArch64 (ELF for the Arm 64-bit Architecture)."""

    ABS64 = 257
    ABS32 = 258
    ABS16 = 259
    PREL64 = 260
    PREL32 = 261
    PREL16 = 262
    MOVW_UABS_G0 = 263
    MOVW_UABS_G0_NC = 264
    MOVW_UABS_G1 = 265
    MOVW_UABS_G1_NC = 266
    MOVW_UABS_G2 = 267
    MOVW_UABS_G2_NC = 268
    MOVW_UABS_G3 = 269
    LD_PREL_LO19 = 273
    ADR_PREL_LO21 = 274
    ADR_PREL_PG_HI21 = 275
    ADR_PREL_PG_HI21_NC = 276
    ADD_ABS_LO12_NC = 277
    LDST8_ABS_LO12_NC = 278
    TSTBR14 = 279
    CONDBR19 = 280
    JUMP26 = 282
    CALL26 = 283
    LDST16_ABS_LO12_NC = 284
    LDST32_ABS_LO12_NC = 285
    LDST64_ABS_LO12_NC = 286
    LDST128_ABS_LO12_NC = 299


class SymbolType(enum.Enum):
    NOTYPE = "notype"
    FUNC = "func"
    OBJECT = "object"
    SECTION = "section"


class Binding(enum.Enum):
    LOCAL = "local"
    GLOBAL = "global"
    WEAK = "weak"


@dataclass(frozen=True)
class SectionFlags:
    """The ELF SHF_ALLOC / SHF_WRITE / SHF_EXECINSTR bits and SHT_NOBITS."""

    alloc: bool = True
    write: bool = False
    execute: bool = False
    nobits: bool = False


@dataclass
class Relocation:
    """Patch ``section[offset]`` with ``kind`` of (``symbol`` + ``addend``).

    ``symbol`` names a symbol of the same object file first (locals and
    ``.L`` labels included), then a global of any file.
    """

    offset: int
    kind: RelocType
    symbol: str
    addend: int
    loc: SourceLoc | None = None


@dataclass
class Section:
    name: str
    flags: SectionFlags
    align: int = 1
    data: bytearray = field(default_factory=bytearray)
    nobits_size: int = 0
    relocations: list[Relocation] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.nobits_size if self.flags.nobits else len(self.data)


@dataclass
class Symbol:
    """A label or assignment. ``section`` is None for absolute symbols (``.equ``)."""

    name: str
    section: str | None
    value: int
    binding: Binding = Binding.LOCAL
    type: SymbolType = SymbolType.NOTYPE
    size: int = 0
    loc: SourceLoc | None = None


@dataclass
class ObjectFile:
    """Everything the linker needs from one assembled source file."""

    path: str
    sections: dict[str, Section] = field(default_factory=dict)
    symbols: dict[str, Symbol] = field(default_factory=dict)
    # Names declared .globl but not defined here: references the linker must resolve.
    undefined: set[str] = field(default_factory=set)
