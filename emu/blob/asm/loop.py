"""The statement loop, like read_a_source_file in GNU as's read.c.

Owns ``Reader``, the input side of an AsmState: pushing a file as a frame,
the loop over the frames' statements, and the dispatch of each statement to
a label, an assignment, a ``.req``, a macro, a pseudo-op of read.py's
``PSEUDO_OPS`` or the back end's instruction parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.blob.asm.common import MAX_INCLUDE_DEPTH, MAX_LINE, MAX_STATEMENTS, Fail
from emu.blob.asm.read import (
    ASSIGN,
    LABEL,
    PSEUDO_OPS,
    WORD,
    Frame,
    Stmt,
    directive_word,
    read_lines,
    split_statements,
)
from emu.blob.asm.state import Cond
from emu.blob.expr import ExprError
from emu.errors import AsmError

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState

class Reader:
    """The input side of an AsmState: frames of statements and the loop over them."""

    filename: str
    frames: list[Frame]
    cond: list[Cond]
    statements: int
    stmt: Stmt | None
    ended: bool

    def push_file(self: AsmState, text: str, filename: str) -> None:
        if len(self.frames) and sum(f.kind == "file" for f in self.frames) >= MAX_INCLUDE_DEPTH:
            raise Fail(f".include nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)")
        stmts: list[Stmt] = []
        for line, loc in read_lines(text, filename):
            if len(line) > MAX_LINE:
                raise AsmError(f"line longer than {MAX_LINE} characters", loc)
            for piece in split_statements(line):
                stmts.append(Stmt(piece, loc, loc))
            # More statements than an assembly may run: refused now, not
            # after holding every line of a huge file.
            if len(stmts) > MAX_STATEMENTS:
                raise AsmError(f"more than {MAX_STATEMENTS} statements in {filename}", loc)
        self.frames.append(Frame(stmts, "file", len(self.cond), filename))

    def run(self: AsmState) -> None:
        while self.frames and not self.ended:
            frame = self.frames[-1]
            if frame.pos >= len(frame.stmts):
                self.pop_frame()
                continue
            stmt = frame.stmts[frame.pos]
            frame.pos += 1
            self.statements += 1
            if self.statements > MAX_STATEMENTS:
                raise self.error_at(f"more than {MAX_STATEMENTS} statements (runaway .rept or macro?)", stmt)
            self.stmt = stmt
            try:
                self.statement(stmt)
            except Fail as fail:
                raise self.error_at(str(fail), stmt) from None
            except ExprError as fail:
                raise self.error_at(str(fail), stmt) from None
        if not self.ended:
            self.stmt = None

    def pop_frame(self: AsmState) -> None:
        frame = self.frames.pop()
        if len(self.cond) > frame.cond_depth:
            if frame.kind == "file":
                raise AsmError(".if without .endif at the end of the file", self.cond[-1].loc)
            raise AsmError(".if without .endif at the end of a macro or loop body", self.cond[-1].loc)
        if len(self.cond) < frame.cond_depth:
            raise self.error_at(".endif closes a conditional opened outside this macro or loop", self.stmt)

    def collect(self: AsmState, opener: Stmt, openers: set[str], closer: str) -> list[Stmt]:
        """The statements up to the matching closer, taken from the current frame."""
        frame = self.frames[-1]
        body: list[Stmt] = []
        depth = 1
        while frame.pos < len(frame.stmts):
            stmt = frame.stmts[frame.pos]
            frame.pos += 1
            word = directive_word(stmt.text)
            if word in openers:
                depth += 1
            elif word == closer:
                depth -= 1
                if depth == 0:
                    return body
            body.append(stmt)
        what = directive_word(opener.text) or "block"
        raise self.error_at(f"{what} without {closer}", opener)

    def statement(self: AsmState, stmt: Stmt) -> None:
        text = stmt.text
        if not text.strip():
            return
        if self.cond and not self.cond[-1].active:
            self.skipped(text)
            return
        while True:
            m = LABEL.match(text)
            if not m:
                break
            self.define_label(m.group(1), stmt)
            text = text[m.end() :]
        if not text.strip():
            return
        assign = ASSIGN.match(text)
        if assign:
            self.set_symbol(assign.group(1), assign.group(2), stmt)
            return
        if self.target.register_alias_statement(text):
            return
        word = WORD.match(text)
        if not word:
            raise Fail(f"junk at the start of the statement: {text.strip()[:40]!r}")
        name, rest = word.group(1), word.group(2)
        low = name.lower()
        if low in self.macros:
            self.invoke_macro(self.macros[low], rest, stmt)
            return
        if name.startswith("."):
            handler = PSEUDO_OPS.get(low)
            if handler is None:
                raise Fail(f"unknown directive {name}")
            handler(self, low, rest.strip(), stmt)
            return
        self.instruction(low, rest, stmt)
