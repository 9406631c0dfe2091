"""Conditional assembly, like GNU as's cond.c: ``.if`` and its family.

Owns the conditions (the stack's entries, ``Cond``, are state.py's)
(``.if``/``.ifeq``/``.ifdef``/``.ifb``/``.ifc``/``.ifeqs``...), ``.elseif``,
``.else``, ``.endif``, and what happens to statements in a false branch
(``Conditionals.skipped``, cond.c's ignore_input: only the nesting counts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.blob.asm.common import Fail
from emu.blob.asm.read import (
    LABEL,
    PSEUDO_OPS,
    WORD,
    Stmt,
    directive_word,
    parse_string,
    pseudo_op,
    split_top,
)
from emu.blob.asm.state import Cond
from emu.errors import SourceLoc

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


class Conditionals:
    """The conditional side of an Assembler (its stack is ``cond``)."""

    cond: list[Cond]

    def skipped(self: AsmState, text: str) -> None:
        while True:
            m = LABEL.match(text)
            if not m:
                break
            text = text[m.end() :]
        word = directive_word(text)
        if word is None:
            return
        if word.startswith(".if"):
            self.cond.append(Cond(False, True, False, self.stmt.loc if self.stmt else SourceLoc(self.filename, 0)))
        elif word in (".else", ".elseif", ".endif"):
            PSEUDO_OPS[word](self, word, WORD.match(text).group(2).strip(), self.stmt)  # type: ignore[union-attr,arg-type]


def _ifc_operands(args: str) -> tuple[str, str]:
    """The two strings of .ifc: blank-trimmed, optionally in single quotes, comma between."""
    strings: list[str] = []
    rest = args.strip()
    for index in range(2):
        if rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise Fail("unterminated quoted string in .ifc")
            strings.append(rest[1:end])
            rest = rest[end + 1 :].strip()
        else:
            comma = rest.find(",") if index == 0 else len(rest)
            if comma < 0:
                raise Fail(".ifc needs two strings separated by a comma")
            strings.append(rest[:comma].strip())
            rest = rest[comma:]
        if index == 0:
            if not rest.startswith(","):
                raise Fail(".ifc needs two strings separated by a comma")
            rest = rest[1:].strip()
        elif rest.strip():
            raise Fail(f"junk after .ifc operands: {rest.strip()!r}")
    return strings[0], strings[1]


def _condition(asm: AsmState, name: str, args: str) -> bool:
    if name in (".if", ".ifne", ".elseif"):
        return asm.absolute(args, "condition") != 0
    if name == ".ifeq":
        return asm.absolute(args, "condition") == 0
    if name in (".ifgt", ".ifge", ".iflt", ".ifle"):
        v = asm.absolute(args, "condition")
        return {"gt": v > 0, "ge": v >= 0, "lt": v < 0, "le": v <= 0}[name[3:]]
    if name in (".ifdef", ".ifndef", ".ifnotdef"):
        sym = args.strip()
        asm.check_name(sym)
        defined = sym in asm.labels or sym in asm.equates
        return defined if name == ".ifdef" else not defined
    if name in (".ifb", ".ifnb"):
        return (not args.strip()) == (name == ".ifb")
    if name in (".ifeqs", ".ifnes"):
        parts = split_top(args)
        if len(parts) != 2:
            raise Fail(f"{name} needs two strings separated by a comma")
        a, b = (parse_string(p, 0)[0] for p in parts)
        return (a == b) == (name == ".ifeqs")
    if name in (".ifc", ".ifnc"):
        a, b = _ifc_operands(args)
        return (a == b) == (name == ".ifc")
    raise Fail(f"unknown conditional {name}")


@pseudo_op(".if", ".ifne", ".ifeq", ".ifgt", ".ifge", ".iflt", ".ifle", ".ifdef", ".ifndef", ".ifnotdef",
           ".ifb", ".ifnb", ".ifc", ".ifnc", ".ifeqs", ".ifnes")  # fmt: skip
def _if(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    value = _condition(asm, name, args)
    asm.cond.append(Cond(value, value, True, stmt.loc))


def _open_here(asm: AsmState) -> bool:
    """True if a conditional opened in the current file, macro or loop body is open."""
    return len(asm.cond) > (asm.frames[-1].cond_depth if asm.frames else 0)


@pseudo_op(".elseif")
def _elseif(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if not _open_here(asm):
        raise Fail(".elseif without .if")
    cond = asm.cond[-1]
    if cond.seen_else:
        raise Fail(".elseif after .else")
    if cond.outer_active and not cond.taken:
        cond.active = _condition(asm, ".elseif", args)
        cond.taken = cond.active
    else:
        cond.active = False


@pseudo_op(".else")
def _else(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if not _open_here(asm):
        raise Fail(".else without .if")
    cond = asm.cond[-1]
    if cond.seen_else:
        raise Fail("a second .else for the same .if")
    cond.seen_else = True
    cond.active = cond.outer_active and not cond.taken
    cond.taken = True


@pseudo_op(".endif")
def _endif(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if not _open_here(asm):
        raise Fail(".endif without .if")
    asm.cond.pop()
