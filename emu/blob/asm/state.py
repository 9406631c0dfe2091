"""The state of one assembly, like the structs of GNU as's as.h,
struc-symbol.h and subsegs.h: the structures the parts share and ``AsmState``, the whole as
each part sees it.

Owns the conditional stack's entries (``Cond``), macro definitions
(``Macro``, ``MacroParam``), labels, equates and symbol attributes
(``LabelDef``, ``Equate``, ``SymAttrs``), sections, their subsections and the
records kept until the end (``SectionState``, ``Chunk``, ``PoolEntry``,
``DataFix``, ``InsnRec``), and ``AsmState``: every attribute and method of
an ``Assembler`` (assembler.py). The parts (loop.py, cond.py, macro.py,
symbols.py, subsegs.py, write.py, directives.py) are written against
``AsmState``, not against one another, so none imports another part and the
imports run one way: read.py and tc_aarch64.py, then this module, then the
parts, then assembler.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from emu.blob.asm.read import Frame, Stmt
from emu.blob.asm.tc_aarch64 import AArch64, Operand
from emu.blob.expr import Node, Value
from emu.blob.objfile import Binding, ObjectFile, Relocation, SectionFlags, Symbol, SymbolType
from emu.errors import AsmError, SourceLoc


@dataclass
class Cond:
    active: bool
    taken: bool
    outer_active: bool
    loc: SourceLoc
    seen_else: bool = False

@dataclass
class MacroParam:
    name: str
    default: str = ""
    required: bool = False
    vararg: bool = False


@dataclass
class Macro:
    name: str
    params: list[MacroParam]
    body: list[Stmt]
    loc: SourceLoc

@dataclass
class LabelDef:
    chunk: Chunk
    offset: int
    loc: SourceLoc


@dataclass
class Equate:
    node: Node
    size: int
    loc: SourceLoc


@dataclass
class SymAttrs:
    binding: Binding | None = None
    type: SymbolType | None = None
    size: Node | None = None
    size_stmt: Stmt | None = None

@dataclass
class SectionState:
    name: str
    flags: SectionFlags
    order: int
    chunks: dict[int, Chunk] = field(default_factory=dict)
    data_size: int = 0  # bytes of contents in all its chunks (MAX_SECTION_BYTES)

    @property
    def key(self) -> str:
        return "\x00" + self.name

    @property
    def code(self) -> bool:
        return self.flags.execute


@dataclass
class PoolEntry:
    size: int
    node: Node
    label: str
    stmt: Stmt
    seq: int


@dataclass
class Chunk:
    """One subsection of a section: its own bytes until the sections are laid out."""

    section: SectionState
    sub: int
    data: bytearray = field(default_factory=bytearray)
    nobits_size: int = 0
    align: int = 1
    start: int = 0
    pool: list[PoolEntry] = field(default_factory=list)
    pool_index: dict[tuple[int, object], PoolEntry] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"\x00{self.section.name}\x00{self.sub}"

    @property
    def offset(self) -> int:
        return self.nobits_size if self.section.flags.nobits else len(self.data)


@dataclass
class DataFix:
    chunk: Chunk
    offset: int
    size: int
    node: Node
    stmt: Stmt
    seq: int
    inst: bool = False


@dataclass
class InsnRec:
    chunk: Chunk
    offset: int
    mnemonic: str
    operands: list[Operand]
    stmt: Stmt
    seq: int


class AsmState(Protocol):
    """One assembly as its parts see it: the state each part owns (the
    comments name the part) and every part's methods. ``Assembler`` is the
    one implementation."""

    # assembler.py
    filename: str
    include_dirs: list[Path]
    target: AArch64
    # loop.py
    frames: list[Frame]
    statements: int
    stmt: Stmt | None
    ended: bool
    # cond.py, macro.py
    cond: list[Cond]
    macros: dict[str, Macro]
    macro_count: int
    # subsegs.py
    seq: int
    sections: dict[str, SectionState]
    section_stack: list[tuple[Chunk, Chunk | None]]
    chunk: Chunk
    previous: Chunk | None
    records: list[InsnRec]
    datafix: list[DataFix]
    pool_count: int
    output_bytes: int
    # symbols.py
    labels: dict[str, LabelDef]
    equates: dict[str, Equate]
    equate_values: dict[str, Value]
    attrs: dict[str, SymAttrs]
    local_counts: dict[int, int]
    internal: set[str]
    # write.py
    absolute_symbol_used: bool

    # loop.py
    def push_file(self, text: str, filename: str) -> None: ...
    def run(self) -> None: ...
    def pop_frame(self) -> None: ...
    def collect(self, opener: Stmt, openers: set[str], closer: str) -> list[Stmt]: ...
    def statement(self, stmt: Stmt) -> None: ...

    # cond.py
    def skipped(self, text: str) -> None: ...

    # macro.py
    def invoke_macro(self, macro: Macro, rest: str, stmt: Stmt) -> None: ...
    def push_loop(self, body: list[Stmt], kind: str = "loop") -> None: ...

    # symbols.py
    def check_name(self, name: str) -> str: ...
    def define_label(self, name: str, stmt: Stmt) -> None: ...
    def local_ref(self, number: int, forward: bool) -> str: ...
    def dot(self) -> Value: ...
    def prepare(self, text: str) -> tuple[Node, int]: ...
    def pre(self, text: str) -> Node: ...
    def value_now(self, node: Node) -> Value: ...
    def absolute(self, text: str, what: str) -> int: ...
    def set_symbol(self, name: str, text: str, stmt: Stmt, redefine: bool = True) -> None: ...
    def attrs_of(self, name: str) -> SymAttrs: ...
    def value_final(self, node: Node) -> Value: ...
    def symbol_name_for(self, value: Value, key: str) -> tuple[str, int]: ...
    def is_global(self, name: str) -> bool: ...
    def absolute_final(self, node: Node | None, what: str) -> int: ...
    def symbol_table(self, errors: list[tuple[int, AsmError]]) -> dict[str, Symbol]: ...

    # subsegs.py
    def _section(self, name: str, flags: str, kind: str) -> SectionState: ...
    def _chunk(self, section: SectionState, sub: int) -> Chunk: ...
    def switch(self, chunk: Chunk) -> None: ...
    def parse_section_args(self, args: list[str], allow_subsection: bool) -> tuple[str, int, str, str]: ...
    def enter_section(self, name: str, sub: int, flags: str, kind: str, stmt: Stmt) -> Chunk: ...
    def emit(self, data: bytes | bytearray) -> None: ...
    def emit_fill(self, count: int, pattern: bytes) -> None: ...
    def output_room(self, chunk: Chunk) -> int: ...
    def reserve_output(self, chunk: Chunk, size: int) -> None: ...
    def align_to(self, align: int, fill: bytes | None, max_skip: int | None, fill_size: int = 1) -> None: ...
    def code_align(self) -> None: ...
    def next_seq(self) -> int: ...
    def data_values(self, size: int, args: str, stmt: Stmt, inst: bool = False) -> None: ...
    def pool_literal(self, register: str, node: Node, stmt: Stmt) -> str: ...
    def dump_pool(self, chunk: Chunk) -> None: ...

    # write.py
    def finish(self) -> ObjectFile: ...
    def layout(self) -> None: ...
    def section_value(self, value: Value) -> Value: ...
    def _chunk_by_key(self, key: str) -> Chunk | None: ...
    def finish_data(self, fix: DataFix) -> Relocation | None: ...
    def store(self, chunk: Chunk, offset: int, size: int, value: int, inst: bool = False) -> None: ...
    def build_object(self, relocations: dict[str, list[tuple[int, Relocation]]], symbols: dict[str, Symbol]) -> ObjectFile: ...

    # assembler.py
    def error_at(self, message: str, stmt: Stmt | None) -> AsmError: ...
    def instruction(self, mnemonic: str, rest: str, stmt: Stmt) -> None: ...
