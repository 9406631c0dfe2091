"""Reading source, like GNU as's read.c (with input-scrub.c): text to statements.

Owns comments and logical lines (``read_lines``), splitting a line into
statements and operands, string literals, the input frames (files, macro
expansions, loop bodies) and the statement loop that dispatches each
statement to a label, an assignment, a ``.req``, a macro, a pseudo-op of the
table ``PSEUDO_OPS`` (read.c's potable; handlers register with
``@pseudo_op``) or the back end's instruction parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emu.blob.asm.common import MAX_INCLUDE_DEPTH, MAX_LINE, MAX_STATEMENTS, Fail
from emu.blob.expr import ExprError
from emu.errors import AsmError, SourceLoc

if TYPE_CHECKING:
    from emu.blob.asm.assembler import Assembler
    from emu.blob.asm.cond import Cond

SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
LABEL = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*|[0-9]+)\s*:(?!:)")
_ASSIGN = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)(.*)", re.S)
WORD = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)(.*)", re.S)

# ---------------------------------------------------------------------------
# Reading text: comments, logical lines, statements

_LEX = re.compile(
    r"""
    (?P<hash>^[ \t]*\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\\n])*"?)
  | (?P<chr>'(?:\\.|[^\\\n])'?)
  | (?P<line>//[^\n]*)
  | (?P<block>/\*[\s\S]*?(?:\*/|\Z))
  | (?P<nl>\n)
  | (?P<text>[^"'/\n]+|/|')
    """,
    re.M | re.X,
)
_CPP_MARKER = re.compile(r'[ \t]*#[ \t]*(?:line[ \t]+)?(\d+)[ \t]+"((?:\\.|[^"\\])*)"')

def read_lines(text: str, filename: str) -> Iterator[tuple[str, SourceLoc]]:
    """Logical lines with comments removed, each with the place it starts,
    one at a time (a caller that stops early never holds the rest).

    ``//`` and ``/* */`` comments go (a block comment joins the lines it
    spans, like GNU as); a line whose first non-blank is ``#`` is a comment,
    and a cpp line marker (``# 12 "file.S"``) renames the lines after it.
    A line longer than MAX_LINE is refused as soon as it gets there, before
    its pieces pile up.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    parts: list[str] = []
    length = 0
    physical = 1
    start = 1
    name, delta = filename, 0
    for m in _LEX.finditer(text):
        kind = m.lastgroup
        tok = m.group()
        if kind == "nl":
            yield "".join(parts), SourceLoc(name, start + delta)
            parts = []
            length = 0
            physical += 1
            start = physical
        elif kind == "hash":
            marker = _CPP_MARKER.match(tok)
            if marker:
                name = marker.group(2)
                delta = int(marker.group(1)) - (physical + 1)
        elif kind == "line":
            pass
        elif kind == "block":
            if not tok.endswith("*/") or len(tok) < 4:
                raise AsmError("unterminated /* comment", SourceLoc(name, physical + delta))
            parts.append(" ")
            length += 1
            physical += tok.count("\n")
        else:
            parts.append(tok)
            length += len(tok)
            if length > MAX_LINE:
                raise AsmError(f"line longer than {MAX_LINE} characters",
                               SourceLoc(name, start + delta))
    if parts:
        yield "".join(parts), SourceLoc(name, start + delta)


_SPLIT = re.compile(r""""(?:\\.|[^"\\])*"?|'(?:\\.|[^\\])'?|;|[^"';]+""", re.S)


def split_statements(line: str) -> list[str]:
    if ";" not in line:
        return [line]
    pieces: list[str] = []
    current: list[str] = []
    for m in _SPLIT.finditer(line):
        if m.group() == ";":
            pieces.append("".join(current))
            current = []
        else:
            current.append(m.group())
    pieces.append("".join(current))
    return pieces


_TOP = re.compile(r""""(?:\\.|[^"\\])*"?|'(?:\\.|[^\\])'?|[\[\]{}(),]|[^"'\[\]{}(),]+""", re.S)


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets, parentheses and quotes."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for m in _TOP.finditer(text):
        tok = m.group()
        if tok in "([{" and len(tok) == 1:
            depth += 1
        elif tok in ")]}" and len(tok) == 1:
            depth = max(0, depth - 1)
        elif tok == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(tok)
    items.append("".join(current).strip())
    return items


_STRING_ESCAPES = {"b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "a": 7, "e": 27, '"': 34, "\\": 92}


def parse_string(text: str, pos: int) -> tuple[bytes, int]:
    """A double-quoted GNU as string literal starting at text[pos]; returns bytes and end."""
    if pos >= len(text) or text[pos] != '"':
        raise Fail("expected a string in double quotes")
    out = bytearray()
    i = pos + 1
    while True:
        if i >= len(text):
            raise Fail("unterminated string")
        ch = text[i]
        if ch == '"':
            return bytes(out), i + 1
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        i += 1
        if i >= len(text):
            raise Fail("unterminated string")
        esc = text[i]
        if esc in "01234567":
            j = i
            while j < len(text) and j < i + 3 and text[j] in "01234567":
                j += 1
            out.append(int(text[i:j], 8) & 0xFF)
            i = j
        elif esc in "xX":
            j = i + 1
            while j < len(text) and text[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 1:
                raise Fail("\\x with no hex digits in string")
            out.append(int(text[i + 1 : j], 16) & 0xFF)
            i = j
        else:
            out.append(_STRING_ESCAPES.get(esc, ord(esc) & 0xFF))
            i += 1


def parse_strings(text: str) -> list[bytes]:
    """One or more string literals separated by commas and/or blanks."""
    out: list[bytes] = []
    pos = 0
    text = text.strip()
    if not text:
        raise Fail("expected a string")
    while pos < len(text):
        data, pos = parse_string(text, pos)
        out.append(data)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos >= len(text):
                raise Fail("expected a string after ','")
    return out


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return parse_string(text, 0)[0].decode("utf-8", "surrogateescape")
    return text


# ---------------------------------------------------------------------------
# Statements, input frames, macros



# ---------------------------------------------------------------------------
# Statements and input frames


@dataclass(frozen=True)
class Stmt:
    text: str
    loc: SourceLoc  # where the text physically is
    where: SourceLoc  # what errors report: the outermost line of a real file
    note: str = ""  # macro context, appended to error messages


@dataclass
class Frame:
    stmts: list[Stmt]
    kind: str  # "file", "macro" or "loop"
    cond_depth: int
    name: str = ""
    pos: int = 0


def kept(stmt: Stmt) -> Stmt:
    """The statement as records keep it until the end: enough text for a message."""
    if len(stmt.text) <= 200:
        return stmt
    return Stmt(stmt.text.strip()[:200], stmt.loc, stmt.where, stmt.note)


def directive_word(text: str) -> str | None:
    """The pseudo-op a statement starts with (after its labels), lower case, or None."""
    while True:
        m = LABEL.match(text)
        if not m:
            break
        text = text[m.end() :]
    m = WORD.match(text)
    if not m or not m.group(1).startswith("."):
        return None
    return m.group(1).lower()


# ---------------------------------------------------------------------------
# The pseudo-op table

Handler = Callable[["Assembler", str, str, Stmt], None]
PSEUDO_OPS: dict[str, Handler] = {}


def pseudo_op(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler ``(asm, name, args, stmt)`` for the pseudo-ops ``names``."""

    def register(fn: Handler) -> Handler:
        for name in names:
            PSEUDO_OPS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------
# The statement loop


class Reader:
    """The input side of an Assembler: frames of statements and the loop over them."""

    filename: str
    frames: list[Frame]
    cond: list[Cond]
    statements: int
    stmt: Stmt | None
    ended: bool

    def push_file(self: Assembler, text: str, filename: str) -> None:
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

    def run(self: Assembler) -> None:
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

    def pop_frame(self: Assembler) -> None:
        frame = self.frames.pop()
        if len(self.cond) > frame.cond_depth:
            if frame.kind == "file":
                raise AsmError(".if without .endif at the end of the file", self.cond[-1].loc)
            raise AsmError(".if without .endif at the end of a macro or loop body", self.cond[-1].loc)
        if len(self.cond) < frame.cond_depth:
            raise self.error_at(".endif closes a conditional opened outside this macro or loop", self.stmt)

    def collect(self: Assembler, opener: Stmt, openers: set[str], closer: str) -> list[Stmt]:
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

    def statement(self: Assembler, stmt: Stmt) -> None:
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
        assign = _ASSIGN.match(text)
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
