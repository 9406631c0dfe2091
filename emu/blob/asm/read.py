"""Reading source, like GNU as's read.c (with input-scrub.c): text to statements.

Owns comments and logical lines (``read_lines``), splitting a line into
statements and operands, string literals, the statements and input frames
(files, macro expansions, loop bodies: ``Stmt``, ``Frame``) and the table of
pseudo-ops ``PSEUDO_OPS`` (read.c's potable; handlers register with
``@pseudo_op``). The loop over the statements is loop.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from emu.blob.asm.common import MAX_LINE, Fail
from emu.errors import AsmError, SourceLoc

SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
LABEL = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*|[0-9]+)\s*:(?!:)")
ASSIGN = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)(.*)", re.S)
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

# The first argument is the assembly (state.py AsmState, which sits above this module).
Handler = Callable[[Any, str, str, Stmt], None]
PSEUDO_OPS: dict[str, Handler] = {}


def pseudo_op(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler ``(asm, name, args, stmt)`` for the pseudo-ops ``names``."""

    def register(fn: Handler) -> Handler:
        for name in names:
            PSEUDO_OPS[name] = fn
        return fn

    return register
