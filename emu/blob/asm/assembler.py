"""One assembly, like GNU as's as.c: the state of the parts, and the entry points.

Owns the ``Assembler``, which puts together the parts GNU as keeps in
separate files (each a mixin here, owning its own state, written against
state.py's AsmState): the statement loop (loop.py, over read.py's
statements), conditionals (cond.py), macros and loops
(macro.py), symbols (symbols.py), sections and literal pools (subsegs.py)
and finishing the object (write.py), with the pseudo-op handlers of
directives.py. The AArch64 back end (tc_aarch64.py) is not a mixin but an
object, ``target``, reached only through its narrow interface: operands
while reading (``instruction`` below), plans and words at the end.

``assemble_source`` and ``assemble_file`` are the public API. A user error
is ``AsmError("FILE:LINE: message")``; inside a macro expansion the place is
the line that invoked the outermost macro, and the message says where in
the macro body the statement came from. Any other exception is a bug in the
assembler and surfaces as such (the CLI's internal error, exit 70).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import emu.blob.asm.directives  # noqa: F401  (its pseudo-ops register themselves)
from emu.blob.asm.common import MAX_INCLUDE_BYTES, Fail, printable
from emu.blob.asm.cond import Conditionals
from emu.blob.asm.loop import Reader
from emu.blob.asm.macro import Macros
from emu.blob.asm.read import Frame, Stmt, kept
from emu.blob.asm.state import (
    Chunk,
    Cond,
    DataFix,
    Equate,
    InsnRec,
    LabelDef,
    Macro,
    SectionState,
    SymAttrs,
)
from emu.blob.asm.subsegs import Sections
from emu.blob.asm.symbols import Symbols
from emu.blob.asm.tc_aarch64 import AArch64
from emu.blob.asm.write import Writer
from emu.blob.expr import ExprError, Value
from emu.blob.ksworker import KeystoneWorker
from emu.blob.objfile import ObjectFile
from emu.errors import AsmError, SourceLoc
from emu.fileio import read_input_file

_MNEMONIC = re.compile(r"[a-z][a-z0-9]*(?:\.[a-z0-9]+)?")


class Assembler(Reader, Conditionals, Macros, Symbols, Sections, Writer):
    """One assembly: feed it a file or text with ``push_file`` and ``run``, then ``finish`` for the ObjectFile."""

    def __init__(
        self,
        filename: str,
        include_dirs: Sequence[Path] = (),
        worker: KeystoneWorker | None = None,
    ) -> None:
        self.filename = filename
        self.include_dirs = [Path(p) for p in include_dirs]
        self.target = AArch64(worker)
        # loop.py
        self.frames: list[Frame] = []
        self.statements = 0
        self.stmt: Stmt | None = None
        self.ended = False
        # cond.py, macro.py
        self.cond: list[Cond] = []
        self.macros: dict[str, Macro] = {}
        self.macro_count = 0
        # subsegs.py
        self.seq = 0
        self.sections: dict[str, SectionState] = {}
        self.section_stack: list[tuple[Chunk, Chunk | None]] = []
        self.chunk: Chunk = self._chunk(self._section(".text", "ax", ""), 0)
        self.previous: Chunk | None = None
        self.records: list[InsnRec] = []
        self.datafix: list[DataFix] = []
        self.pool_count = 0
        self.output_bytes = 0  # contents of every section so far (MAX_OUTPUT_BYTES)
        # symbols.py
        self.labels: dict[str, LabelDef] = {}
        self.equates: dict[str, Equate] = {}
        self.equate_values: dict[str, Value] = {}
        self.attrs: dict[str, SymAttrs] = {}
        self.local_counts: dict[int, int] = {}
        self.internal: set[str] = set()
        # write.py
        self.absolute_symbol_used = False

    def error_at(self, message: str, stmt: Stmt | None) -> AsmError:
        # Messages quote the source: its line breaks and control codes are shown escaped,
        # so the error stays one line and a terminal printing it does not act on them.
        if stmt is not None:
            message += stmt.note
        message = printable(message)
        if stmt is None:
            return AsmError(message, SourceLoc(self.filename, 0))
        return AsmError(message, stmt.where)

    def instruction(self, mnemonic: str, rest: str, stmt: Stmt) -> None:
        """An instruction statement: four bytes now, the word when the object is finished."""
        if not _MNEMONIC.fullmatch(mnemonic):
            raise Fail(f"unknown instruction '{mnemonic}' (and no macro of that name)")
        if self.chunk.section.flags.nobits:
            raise Fail(f"instruction in nobits section {self.chunk.section.name}")
        self.code_align()

        def pool(register: str, node: object) -> str:
            return self.pool_literal(register, node, stmt)  # type: ignore[arg-type]

        operands = self.target.parse_operands(mnemonic, rest, self.pre, pool)
        self.records.append(InsnRec(self.chunk, self.chunk.offset, mnemonic, operands, kept(stmt), self.next_seq()))
        self.emit(bytes(4))


def _assemble(text: str, filename: str, include_dirs: Sequence[Path], worker: KeystoneWorker | None) -> ObjectFile:
    asm = Assembler(filename, include_dirs, worker)
    try:
        asm.push_file(text, filename)
        asm.run()
        return asm.finish()
    except (Fail, ExprError) as fail:
        raise asm.error_at(str(fail), asm.stmt) from None
    except (RecursionError, MemoryError) as err:
        raise asm.error_at(f"input too complex ({type(err).__name__})", asm.stmt) from None


def assemble_source(
    text: str,
    filename: str = "<string>",
    include_dirs: Sequence[Path] = (),
    worker: KeystoneWorker | None = None,
) -> ObjectFile:
    """Assemble GNU as source text for AArch64 into an ObjectFile (AsmError on bad input)."""
    if not isinstance(text, str):
        raise AsmError("assembly source must be text", SourceLoc(filename, 0))
    return _assemble(text, filename, include_dirs, worker)


def assemble_file(
    path: Path,
    include_dirs: Sequence[Path] = (),
    worker: KeystoneWorker | None = None,
) -> ObjectFile:
    """Assemble one source file; ``.include`` looks beside it first, then in include_dirs."""
    path = Path(path)
    try:
        text = read_input_file(path, MAX_INCLUDE_BYTES).decode("utf-8", "surrogateescape")
    except OSError as err:
        raise AsmError(f"cannot read {path}: {err.strerror}", SourceLoc(str(path), 0)) from None
    return _assemble(text, str(path), include_dirs, worker)
