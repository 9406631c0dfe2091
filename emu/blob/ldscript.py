"""GNU ld linker-script subset: parser, AST, and the expression evaluator.

Owns the syntax (ENTRY, SECTIONS, output sections with address / AT / ALIGN,
input-section patterns with KEEP, /DISCARD/, assignments, PROVIDE, ASSERT,
OUTPUT_ARCH/OUTPUT_FORMAT) and the meaning of expressions.  Expression values
follow GNU ld's model: a value is a plain number, an absolute value, or an
offset relative to an output section, and the kind decides what an assignment
inside an output section means (``. = 0x10`` there is an offset).  Placement
of sections is the linker's business (emu/blob/link.py); it evaluates
expressions through an ``EvalContext`` it implements.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from emu.errors import LinkError, SourceLoc
from emu.fileio import read_input_file

MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Num:
    value: int
    loc: SourceLoc


@dataclass(frozen=True)
class Name:
    """A symbol reference, or the location counter when ``name == "."``."""

    name: str
    loc: SourceLoc


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Expr
    loc: SourceLoc


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    loc: SourceLoc


@dataclass(frozen=True)
class Ternary:
    cond: Expr
    then: Expr
    otherwise: Expr
    loc: SourceLoc


@dataclass(frozen=True)
class Call:
    """ALIGN(e), ALIGN(e, a), ABSOLUTE(e), MAX(a, b), MIN(a, b)."""

    func: str
    args: tuple[Expr, ...]
    loc: SourceLoc


@dataclass(frozen=True)
class SectionQuery:
    """ADDR, LOADADDR, SIZEOF or ALIGNOF of an output section."""

    func: str
    section: str
    loc: SourceLoc


@dataclass(frozen=True)
class Defined:
    symbol: str
    loc: SourceLoc


@dataclass(frozen=True)
class Constant:
    """CONSTANT(MAXPAGESIZE) / CONSTANT(COMMONPAGESIZE)."""

    name: str
    loc: SourceLoc


Expr = Num | Name | Unary | Binary | Ternary | Call | SectionQuery | Defined | Constant


@dataclass(frozen=True)
class Assignment:
    """``target op expr;`` or ``PROVIDE(target = expr)``; target "." moves the counter."""

    target: str
    expr: Expr
    loc: SourceLoc
    provide: bool = False
    hidden: bool = False


@dataclass(frozen=True)
class Assert:
    expr: Expr
    message: str
    loc: SourceLoc


@dataclass(frozen=True)
class InputSpec:
    """``FILEPATTERN(SECTIONPATTERN ...)``, optionally wrapped in KEEP()."""

    file_pattern: str
    section_patterns: tuple[str, ...]
    loc: SourceLoc
    keep: bool = False

    def matches(self, file_path: str, section_name: str) -> bool:
        if not _file_matches(self.file_pattern, file_path):
            return False
        return any(fnmatch.fnmatchcase(section_name, pat) for pat in self.section_patterns)


OutputItem = Assignment | Assert | InputSpec


@dataclass(frozen=True)
class OutputSectionDef:
    name: str
    address: Expr | None
    lma: Expr | None
    align: Expr | None
    items: tuple[OutputItem, ...]
    loc: SourceLoc

    @property
    def discard(self) -> bool:
        return self.name == "/DISCARD/"


Command = Assignment | Assert | OutputSectionDef


@dataclass
class Script:
    """A parsed script: the entry symbol and the commands in order of appearance.

    Commands outside SECTIONS and inside it share one list; ``in_sections``
    tells which commands may assign the location counter.
    """

    path: str
    entry: str | None = None
    commands: list[Command] = field(default_factory=list)
    in_sections: list[bool] = field(default_factory=list)
    output_arch: str | None = None

    def output_sections(self) -> Iterator[OutputSectionDef]:
        for cmd in self.commands:
            if isinstance(cmd, OutputSectionDef):
                yield cmd

    def referenced_symbols(self) -> set[str]:
        """Every symbol name an expression reads (DEFINED() does not count as a read)."""
        names: set[str] = set()
        for cmd in self.commands:
            if isinstance(cmd, OutputSectionDef):
                for expr in (cmd.address, cmd.lma, cmd.align):
                    if expr is not None:
                        names |= expr_symbols(expr)
                for item in cmd.items:
                    if isinstance(item, Assignment | Assert):
                        names |= expr_symbols(item.expr)
            else:
                names |= expr_symbols(cmd.expr)
        if self.entry:
            names.add(self.entry)
        names.discard(".")
        return names


def _file_matches(pattern: str, file_path: str) -> bool:
    if fnmatch.fnmatchcase(file_path, pattern):
        return True
    # A pattern without a directory part also matches the file's base name.
    return "/" not in pattern and fnmatch.fnmatchcase(Path(file_path).name, pattern)


def _subexpressions(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, without recursion (an operator chain can be very long)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Binary):
            stack += (node.rhs, node.lhs)
        elif isinstance(node, Ternary):
            stack += (node.otherwise, node.then, node.cond)
        elif isinstance(node, Call):
            stack += reversed(node.args)


def expr_symbols(expr: Expr) -> set[str]:
    return {node.name for node in _subexpressions(expr) if isinstance(node, Name)}


def uses_dot(expr: Expr) -> bool:
    return any(
        (isinstance(node, Name) and node.name == ".")
        or (isinstance(node, Call) and node.func == "ALIGN" and len(node.args) == 1)
        for node in _subexpressions(expr)
    )


# ---------------------------------------------------------------------------
# Lexer

_SYMBOL_RE = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
# Section names and input patterns: GNU allows far more than symbol characters.
_SECNAME_RE = re.compile(r"[A-Za-z0-9_.$/\-]+")
_PATTERN_RE = re.compile(r"[A-Za-z0-9_.$/\-*?\[\]^!~+]+")
_NUMBER_RE = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)([KkMm]?)(?![A-Za-z0-9_.$])")
_OPERATORS = (
    "<<=", ">>=", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
    "+=", "-=", "*=", "/=", "&=", "|=",
    "+", "-", "*", "/", "%", "&", "|", "^", "~", "!", "<", ">",
    "?", ":", "(", ")", "{", "}", ",", ";", "=",
)  # fmt: skip
_ASSIGN_OPS = ("=", "+=", "-=", "*=", "/=", "<<=", ">>=", "&=", "|=")


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "name", "str", "op", "eof"
    text: str
    value: int
    line: int


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.line = 1

    # -- low level ---------------------------------------------------------
    def error(self, message: str, line: int | None = None) -> LinkError:
        return LinkError(f"{self.filename}:{self.line if line is None else line}: {message}")

    def loc(self, line: int | None = None) -> SourceLoc:
        return SourceLoc(self.filename, self.line if line is None else line)

    def skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n":
                self.line += 1
                self.pos += 1
            elif ch in " \t\r\f\v":
                self.pos += 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated comment")
                self.line += text.count("\n", self.pos, end)
                self.pos = end + 2
            else:
                break

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek_char(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def peek_op(self, op: str) -> bool:
        self.skip_space()
        if not self.text.startswith(op, self.pos):
            return False
        # "=" must not be the start of "=="; "<" not of "<<" etc. when asking for the short one.
        longer = [o for o in _OPERATORS if len(o) > len(op) and o.startswith(op)]
        return not any(self.text.startswith(o, self.pos) for o in longer)

    def accept_op(self, op: str) -> bool:
        if self.peek_op(op):
            self.pos += len(op)
            return True
        return False

    def expect_op(self, op: str, what: str = "") -> None:
        if not self.accept_op(op):
            found = self.describe_next()
            raise self.error(f"expected '{op}'{' ' + what if what else ''}, found {found}")

    def describe_next(self) -> str:
        self.skip_space()
        if self.pos >= len(self.text):
            return "end of file"
        snippet = self.text[self.pos : self.pos + 20].split("\n")[0]
        return repr(snippet)

    def match_re(self, regex: re.Pattern[str]) -> str | None:
        self.skip_space()
        m = regex.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0)

    def peek_symbol(self) -> str | None:
        self.skip_space()
        m = _SYMBOL_RE.match(self.text, self.pos)
        return m.group(0) if m else None

    def accept_keyword(self, word: str) -> bool:
        self.skip_space()
        m = _SYMBOL_RE.match(self.text, self.pos)
        if m and m.group(0) == word:
            self.pos = m.end()
            return True
        return False

    def string(self) -> str:
        self.skip_space()
        if self.peek_char() != '"':
            raise self.error(f"expected a quoted string, found {self.describe_next()}")
        end = self.text.find('"', self.pos + 1)
        if end < 0 or "\n" in self.text[self.pos : end]:
            raise self.error("unterminated string")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def symbol(self, what: str = "a symbol name") -> str:
        name = self.match_re(_SYMBOL_RE)
        if name is None:
            raise self.error(f"expected {what}, found {self.describe_next()}")
        return name

    def lookahead_assignment(self) -> bool:
        """True when the text at the cursor is ``SYMBOL <assign-op>``."""
        self.skip_space()
        m = _SYMBOL_RE.match(self.text, self.pos)
        if not m:
            return False
        save = (self.pos, self.line)
        self.pos = m.end()
        found = any(self.peek_op(op) for op in _ASSIGN_OPS)
        self.pos, self.line = save
        return found

    # -- script structure --------------------------------------------------
    def parse_script(self) -> Script:
        script = Script(path=self.filename)
        while not self.at_end():
            if self.accept_op(";"):
                continue
            if self.accept_keyword("SECTIONS"):
                self.expect_op("{", "after SECTIONS")
                while not self.accept_op("}"):
                    if self.at_end():
                        raise self.error("missing '}' at end of SECTIONS")
                    if self.accept_op(";"):
                        continue
                    cmd = self.parse_sections_command(script)
                    if cmd is not None:
                        script.commands.append(cmd)
                        script.in_sections.append(True)
                continue
            cmd = self.parse_toplevel_command(script)
            if cmd is not None:
                script.commands.append(cmd)
                script.in_sections.append(False)
        return script

    def parse_toplevel_command(self, script: Script) -> Command | None:
        line = self.line
        if self.accept_keyword("ENTRY"):
            self.skip_space()
            line = self.line
            self.expect_op("(")
            if script.entry is not None:
                raise self.error("ENTRY given twice", line)
            script.entry = self.symbol("the entry symbol")
            self.expect_op(")")
            return None
        if self.accept_keyword("OUTPUT_ARCH"):
            self.expect_op("(")
            script.output_arch = self.symbol("an architecture name")
            self.expect_op(")")
            return None
        if self.accept_keyword("OUTPUT_FORMAT"):
            self.expect_op("(")
            self.string()
            while self.accept_op(","):
                self.string()
            self.expect_op(")")
            return None
        stmt = self.parse_common_statement()
        if stmt is not None:
            return stmt
        raise self.error(f"unexpected {self.describe_next()}", line)

    def parse_common_statement(self) -> Assignment | Assert | None:
        """PROVIDE/PROVIDE_HIDDEN/HIDDEN/ASSERT or a plain assignment; None if neither."""
        self.skip_space()
        line = self.line
        for keyword, provide, hidden in (
            ("PROVIDE", True, False),
            ("PROVIDE_HIDDEN", True, True),
            ("HIDDEN", False, True),
        ):
            if self.peek_symbol() == keyword:
                self.accept_keyword(keyword)
                self.expect_op("(", f"after {keyword}")
                target = self.symbol()
                if target == ".":
                    raise self.error(f"{keyword} cannot assign the location counter", line)
                self.expect_op("=", f"in {keyword}")
                expr = self.parse_expr()
                self.expect_op(")", f"to close {keyword}")
                self.accept_op(";")
                return Assignment(target, expr, self.loc(line), provide=provide, hidden=hidden)
        if self.peek_symbol() == "ASSERT":
            self.accept_keyword("ASSERT")
            self.expect_op("(", "after ASSERT")
            expr = self.parse_expr()
            self.expect_op(",", "between the ASSERT expression and its message")
            message = self.string()
            self.expect_op(")", "to close ASSERT")
            self.accept_op(";")
            return Assert(expr, message, self.loc(line))
        if self.lookahead_assignment():
            target = self.symbol()
            op = next(op for op in _ASSIGN_OPS if self.accept_op(op))
            expr = self.parse_expr()
            if op != "=":
                expr = Binary(op[:-1], Name(target, self.loc(line)), expr, self.loc(line))
            self.expect_op(";", f"after the assignment to {target}")
            return Assignment(target, expr, self.loc(line))
        return None

    def parse_sections_command(self, script: Script) -> Command | None:
        self.skip_space()
        line = self.line
        if self.peek_symbol() == "ENTRY":
            self.parse_toplevel_command(script)
            return None
        stmt = self.parse_common_statement()
        if stmt is not None:
            return stmt
        name = self.match_re(_SECNAME_RE)
        if name is None:
            raise self.error(f"expected an output section, found {self.describe_next()}")
        return self.parse_output_section(name, line)

    def parse_output_section(self, name: str, line: int) -> OutputSectionDef:
        address = None
        if not self.peek_op(":"):
            address = self.parse_expr()
        self.expect_op(":", f"after output section {name}")
        lma = align = None
        while True:
            if self.peek_symbol() == "AT" and self._followed_by_paren("AT"):
                self.accept_keyword("AT")
                self.expect_op("(")
                lma = self.parse_expr()
                self.expect_op(")", "to close AT")
            elif self.peek_symbol() == "ALIGN" and self._followed_by_paren("ALIGN"):
                self.accept_keyword("ALIGN")
                self.expect_op("(")
                align = self.parse_expr()
                self.expect_op(")", "to close ALIGN")
            else:
                break
        self.expect_op("{", f"to open output section {name}")
        items: list[OutputItem] = []
        while not self.accept_op("}"):
            if self.at_end():
                raise self.error(f"missing '}}' at end of output section {name}", line)
            if self.accept_op(";"):
                continue
            items.append(self.parse_output_item())
        if self.peek_op(">") or self.peek_op("="):
            raise self.error(f"memory regions and fill values are not supported ({name})")
        return OutputSectionDef(name, address, lma, align, tuple(items), self.loc(line))

    def _followed_by_paren(self, word: str) -> bool:
        save = (self.pos, self.line)
        self.accept_keyword(word)
        found = self.peek_char() == "("
        self.pos, self.line = save
        return found

    def parse_output_item(self) -> OutputItem:
        self.skip_space()
        line = self.line
        if self.peek_symbol() == "KEEP" and self._followed_by_paren("KEEP"):
            self.accept_keyword("KEEP")
            self.expect_op("(")
            spec = self.parse_input_spec(keep=True)
            self.expect_op(")", "to close KEEP")
            return spec
        if self.peek_symbol() in ("SORT", "SORT_BY_NAME", "SORT_BY_ALIGNMENT", "EXCLUDE_FILE"):
            raise self.error(f"{self.peek_symbol()} is not supported", line)
        stmt = self.parse_common_statement()
        if stmt is not None:
            return stmt
        return self.parse_input_spec(keep=False)

    def parse_input_spec(self, keep: bool) -> InputSpec:
        self.skip_space()
        line = self.line
        file_pattern = self.match_re(_PATTERN_RE)
        if file_pattern is None:
            raise self.error(f"expected an input section description, found {self.describe_next()}")
        self.expect_op("(", f"after file pattern {file_pattern}")
        patterns: list[str] = []
        while not self.accept_op(")"):
            if self.at_end():
                raise self.error("missing ')' in input section description", line)
            if self.accept_op(","):
                continue
            if self.peek_symbol() in ("SORT", "SORT_BY_NAME", "EXCLUDE_FILE"):
                raise self.error(f"{self.peek_symbol()} is not supported")
            pat = self.match_re(_PATTERN_RE)
            if pat is None:
                raise self.error(f"expected a section name pattern, found {self.describe_next()}")
            patterns.append(pat)
        if not patterns:
            raise self.error(f"no section pattern in {file_pattern}()", line)
        return InputSpec(file_pattern, tuple(patterns), self.loc(line), keep=keep)

    # -- expressions -------------------------------------------------------
    _BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("|",),
        ("^",),
        ("&",),
        ("==", "!="),
        ("<", "<=", ">", ">="),
        ("<<", ">>"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def parse_expr(self) -> Expr:
        self.skip_space()
        line = self.line
        cond = self.parse_binary(0)
        if self.accept_op("?"):
            then = self.parse_expr()
            self.expect_op(":", "in a conditional expression")
            otherwise = self.parse_expr()
            return Ternary(cond, then, otherwise, self.loc(line))
        return cond

    def parse_binary(self, level: int) -> Expr:
        if level == len(self._BINARY_LEVELS):
            return self.parse_unary()
        self.skip_space()
        line = self.line
        lhs = self.parse_binary(level + 1)
        while True:
            op = next((o for o in self._BINARY_LEVELS[level] if self.peek_op(o)), None)
            if op is None:
                return lhs
            self.accept_op(op)
            rhs = self.parse_binary(level + 1)
            lhs = Binary(op, lhs, rhs, self.loc(line))

    def parse_unary(self) -> Expr:
        self.skip_space()
        line = self.line
        for op in ("-", "!", "~", "+"):
            if self.peek_op(op):
                self.accept_op(op)
                operand = self.parse_unary()
                return operand if op == "+" else Unary(op, operand, self.loc(line))
        return self.parse_primary()

    def parse_primary(self) -> Expr:
        self.skip_space()
        line = self.line
        loc = self.loc(line)
        if self.accept_op("("):
            inner = self.parse_expr()
            self.expect_op(")", "to close '('")
            return inner
        m = _NUMBER_RE.match(self.text, self.pos)
        if m:
            if m.group(1)[0] == "0" and m.group(1)[1:2].isdigit() and set("89") & set(m.group(1)):
                raise self.error(f"malformed octal number {m.group(0)}")
            self.pos = m.end()
            return Num(_number_value(m.group(1), m.group(2)), loc)
        if self.peek_char().isdigit():
            raise self.error(f"malformed number {self.describe_next()}")
        name = self.peek_symbol()
        if name is None:
            raise self.error(f"expected an expression, found {self.describe_next()}")
        if name in ("ADDR", "LOADADDR", "SIZEOF", "ALIGNOF") and self._followed_by_paren(name):
            self.accept_keyword(name)
            self.expect_op("(")
            section = self.match_re(_SECNAME_RE)
            if section is None:
                raise self.error(f"expected a section name in {name}()")
            self.expect_op(")", f"to close {name}")
            return SectionQuery(name, section, loc)
        if name == "DEFINED" and self._followed_by_paren(name):
            self.accept_keyword(name)
            self.expect_op("(")
            symbol = self.symbol()
            self.expect_op(")", "to close DEFINED")
            return Defined(symbol, loc)
        if name == "CONSTANT" and self._followed_by_paren(name):
            self.accept_keyword(name)
            self.expect_op("(")
            which = self.symbol("MAXPAGESIZE or COMMONPAGESIZE")
            if which not in ("MAXPAGESIZE", "COMMONPAGESIZE"):
                raise self.error(f"unknown constant {which}")
            self.expect_op(")")
            return Constant(which, loc)
        arity = {"ALIGN": (1, 2), "ABSOLUTE": (1, 1), "MAX": (2, 2), "MIN": (2, 2)}
        if name in arity and self._followed_by_paren(name):
            self.accept_keyword(name)
            self.expect_op("(")
            args = [self.parse_expr()]
            while self.accept_op(","):
                args.append(self.parse_expr())
            self.expect_op(")", f"to close {name}")
            lo, hi = arity[name]
            if not lo <= len(args) <= hi:
                raise self.error(
                    f"{name} takes {lo if lo == hi else f'{lo} or {hi}'} arguments", line
                )
            return Call(name, tuple(args), loc)
        if self._followed_by_paren(name) and name.isupper():
            raise self.error(f"unknown function {name}()")
        self.accept_keyword(name)
        return Name(name, loc)


def _number_value(digits: str, suffix: str) -> int:
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    value *= {"": 1, "k": 1 << 10, "m": 1 << 20}[suffix.lower()]
    return value & MASK64


def parse_script(text: str, filename: str = "<script>") -> Script:
    """Parse linker-script text; errors are LinkError("FILE:LINE: ...")."""
    parser = _Parser(text, filename)
    try:
        return parser.parse_script()
    except RecursionError:
        raise parser.error("expression nested too deeply") from None


MAX_SCRIPT_BYTES = 4 << 20


def load_script(path: str | Path) -> Script:
    try:
        text = read_input_file(path, MAX_SCRIPT_BYTES).decode("utf-8")
    except OSError as err:
        raise LinkError(f"cannot read linker script {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise LinkError(f"cannot read linker script {path}: {err}") from None
    return parse_script(text, str(path))


def parse_expression(text: str, filename: str = "<expr>") -> Expr:
    parser = _Parser(text, filename)
    try:
        expr = parser.parse_expr()
    except RecursionError:
        raise parser.error("expression nested too deeply") from None
    if not parser.at_end():
        raise parser.error(f"unexpected {parser.describe_next()} after expression")
    return expr


# ---------------------------------------------------------------------------
# Evaluation

ABS = "*ABS*"
"""The section of an absolute value; ``None`` is GNU ld's "plain number"."""


@dataclass(frozen=True)
class Value:
    """``value`` relative to ``section`` (an output section name, ABS, or None for a number)."""

    value: int
    section: str | None

    def absolute(self, ctx: EvalContext) -> int:
        if self.section is None or self.section == ABS:
            return self.value & MASK64
        return (self.value + ctx.section_vma(self.section)) & MASK64


class EvalContext(Protocol):
    """What an expression may ask of the linker while it is being evaluated."""

    dot: int
    current_section: str | None  # output section being laid out, None at top level

    def symbol_value(self, name: str, loc: SourceLoc) -> tuple[int, str | None]:
        """(absolute value, output section or None if absolute); LinkError if undefined."""
        ...

    def is_defined(self, name: str) -> bool: ...

    def section_vma(self, name: str) -> int: ...

    def section_lma(self, name: str, loc: SourceLoc) -> int: ...

    def section_size(self, name: str, loc: SourceLoc) -> int: ...

    def section_align(self, name: str, loc: SourceLoc) -> int: ...

    def check_section(self, name: str, loc: SourceLoc) -> None: ...


def _signed(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def _align_up(value: int, align: int) -> int:
    if align <= 1:
        return value & MASK64
    return (((value + align - 1) // align) * align) & MASK64


def evaluate(expr: Expr, ctx: EvalContext) -> Value:
    """Evaluate ``expr`` with GNU ld's number / absolute / section-relative rules."""
    try:
        return _evaluate(expr, ctx)
    except RecursionError:
        # A long operator chain parses in a loop but evaluates recursively.
        raise LinkError(f"{expr.loc}: expression nested too deeply") from None


def _evaluate(expr: Expr, ctx: EvalContext) -> Value:
    inside = ctx.current_section is not None
    if isinstance(expr, Num):
        # Outside output sections a literal is absolute, inside it is a plain number.
        return Value(expr.value, None if inside else ABS)
    if isinstance(expr, Name):
        if expr.name == ".":
            return _rel_from_abs(ctx.dot, ctx)
        value, section = ctx.symbol_value(expr.name, expr.loc)
        if section is None:
            return Value(value, None if inside else ABS)
        return Value((value - ctx.section_vma(section)) & MASK64, section)
    if isinstance(expr, SectionQuery):
        ctx.check_section(expr.section, expr.loc)
        if expr.func == "ADDR":
            return Value(0, expr.section)
        if expr.func == "LOADADDR":
            return Value(ctx.section_lma(expr.section, expr.loc), ABS)
        if expr.func == "SIZEOF":
            return Value(ctx.section_size(expr.section, expr.loc), None)
        return Value(ctx.section_align(expr.section, expr.loc), None)
    if isinstance(expr, Defined):
        return Value(int(ctx.is_defined(expr.symbol)), None)
    if isinstance(expr, Constant):
        return Value(0x10000 if expr.name == "MAXPAGESIZE" else 0x1000, None)
    if isinstance(expr, Ternary):
        cond = _evaluate(expr.cond, ctx)
        return _evaluate(expr.then if cond.value & MASK64 else expr.otherwise, ctx)
    if isinstance(expr, Unary):
        v = _evaluate(expr.operand, ctx)
        if expr.op == "-":
            return Value(-v.value & MASK64, v.section)
        if expr.op == "~":
            return Value(~v.value & MASK64, v.section)
        return Value(int(not v.value & MASK64), v.section)
    if isinstance(expr, Call):
        if expr.func == "ABSOLUTE":
            return Value(_evaluate(expr.args[0], ctx).absolute(ctx), ABS)
        if expr.func == "ALIGN" and len(expr.args) == 1:
            align = _evaluate(expr.args[0], ctx).value
            return _rel_from_abs(_align_up(ctx.dot, align), ctx)
        lhs = _evaluate(expr.args[0], ctx)
        rhs = _evaluate(expr.args[1], ctx)
        lhs, rhs, section = _common_section(lhs, rhs, ctx)
        if expr.func == "ALIGN":
            return Value(_align_up(lhs.value, rhs.value), section)
        pick = max if expr.func == "MAX" else min
        return Value(pick(lhs.value, rhs.value), section)
    if isinstance(expr, Binary):
        return _binary(expr, ctx)
    raise TypeError(f"not an expression node: {expr!r}")


def _rel_from_abs(address: int, ctx: EvalContext) -> Value:
    if ctx.current_section is None:
        return Value(address & MASK64, ABS)
    return Value((address - ctx.section_vma(ctx.current_section)) & MASK64, ctx.current_section)


def _common_section(lhs: Value, rhs: Value, ctx: EvalContext) -> tuple[Value, Value, str | None]:
    """Bring two operands to one section the way GNU ld does; returns the result section.

    Operands of different sections become absolute unless one is a plain
    number, in which case the other's section carries over.
    """
    if lhs.section == rhs.section:
        return lhs, rhs, lhs.section
    if lhs.section is not None and rhs.section is not None:
        return Value(lhs.absolute(ctx), ABS), Value(rhs.absolute(ctx), ABS), ABS
    return lhs, rhs, lhs.section if rhs.section is None else rhs.section


def _binary(expr: Binary, ctx: EvalContext) -> Value:
    lhs = _evaluate(expr.lhs, ctx)
    rhs = _evaluate(expr.rhs, ctx)
    both_same_section = lhs.section == rhs.section and lhs.section is not None
    lhs, rhs, section = _common_section(lhs, rhs, ctx)
    if both_same_section or (lhs.section == ABS and rhs.section == ABS):
        # Arithmetic between two values of one section loses the section.
        section = ABS if ctx.current_section is None else None
    a, b = lhs.value & MASK64, rhs.value & MASK64
    op = expr.op
    if op in ("==", "!=", "<", "<=", ">", ">=", "&&", "||"):
        result = {
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
            "&&": bool(a) and bool(b),
            "||": bool(a) or bool(b),
        }[op]
        return Value(int(result), None)
    if op in ("/", "%"):
        if b == 0:
            raise LinkError(f"{expr.loc}: {'division' if op == '/' else 'modulo'} by zero")
        sa, sb = _signed(a), _signed(b)
        quotient = abs(sa) // abs(sb) * (1 if (sa < 0) == (sb < 0) else -1)
        result_value = quotient if op == "/" else sa - quotient * sb
        return Value(result_value & MASK64, section)
    if op == "<<":
        result_value = a << b if b < 64 else 0
    elif op == ">>":
        result_value = a >> b if b < 64 else 0
    else:
        result_value = {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "&": a & b,
            "|": a | b,
            "^": a ^ b,
        }[op]
    return Value(result_value & MASK64, section)
