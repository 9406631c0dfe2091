"""GNU as expressions for the assembler: parsing, symbolic values, evaluation.

Owns the expression grammar with GNU as's own operator precedence (which is
not C's: ``4 + 1 & 1`` is 5), its 64-bit arithmetic (``>>`` is logical,
comparisons yield -1 for true), and the symbolic ``Value`` an expression
evaluates to: a constant plus a linear combination of relocatable bases
(section chunks and undefined symbols). The assembler decides what a base
means; this module only does the algebra and reports what cannot be
represented.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MASK64 = (1 << 64) - 1


class ExprError(Exception):
    """A malformed or unrepresentable expression; the caller adds FILE:LINE."""


def wrap64(value: int) -> int:
    """Two's-complement 64-bit wrap, returned as a signed integer (GNU's valueT)."""
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


# ---------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Sym:
    name: str


@dataclass(frozen=True)
class LocalRef:
    """A numeric local label reference, ``1b`` (backward) or ``1f`` (forward)."""

    number: int
    forward: bool


@dataclass(frozen=True)
class Dot:
    """The location counter ``.``."""


@dataclass(frozen=True)
class Const:
    """An already evaluated value spliced into a tree (``.`` or an ``.equ`` result)."""

    value: Value


@dataclass(frozen=True)
class Alias:
    """A symbol whose definition (``.set name, node``) was spliced in; the name is kept
    so that a relocation can still be made against it."""

    name: str
    node: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Num | Sym | LocalRef | Dot | Const | Alias | Unary | Binary


# ---------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Value:
    """``const + sum(coef * base)``.

    ``terms`` maps a base key to its (non-zero) coefficient. ``hints`` maps a
    base key to the name and base-relative offset of the first symbol that
    contributed it positively, so that a relocation can name a real symbol
    rather than a bare section.
    """

    const: int = 0
    terms: tuple[tuple[str, int], ...] = ()
    hints: tuple[tuple[str, tuple[str, int]], ...] = ()

    @property
    def is_absolute(self) -> bool:
        return not self.terms

    def term_map(self) -> dict[str, int]:
        return dict(self.terms)

    def hint(self, key: str) -> tuple[str, int] | None:
        for k, h in self.hints:
            if k == key:
                return h
        return None

    @staticmethod
    def base(key: str, offset: int = 0, name: str | None = None, name_offset: int = 0) -> Value:
        hints = ((key, (name, name_offset)),) if name is not None else ()
        return Value(wrap64(offset), ((key, 1),), hints)


def _combine(a: Value, b: Value, sign: int) -> Value:
    terms = dict(a.terms)
    for key, coef in b.terms:
        terms[key] = terms.get(key, 0) + sign * coef
    kept = tuple((k, c) for k, c in terms.items() if c)
    hints = list(a.hints)
    if sign > 0:
        known = {k for k, _ in hints}
        hints += [(k, h) for k, h in b.hints if k not in known]
    live = {k for k, _ in kept}
    return Value(
        wrap64(a.const + sign * b.const), kept, tuple((k, h) for k, h in hints if k in live)
    )


def _scale(a: Value, factor: int) -> Value:
    if factor == 0:
        return Value(0)
    terms = tuple((k, c * factor) for k, c in a.terms)
    hints = a.hints if factor > 0 else ()
    return Value(wrap64(a.const * factor), terms, hints)


def _truthy(v: int) -> int:
    return -1 if v else 0


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ExprError("division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise ExprError("division by zero")
    return a - _div(a, b) * b


_ABSOLUTE_OPS: dict[str, Callable[[int, int], int]] = {
    "/": _div,
    "%": _mod,
    "<<": lambda a, b: a << b if 0 <= b < 64 else 0,
    ">>": lambda a, b: (a & MASK64) >> b if 0 <= b < 64 else 0,
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
    "^": lambda a, b: a ^ b,
    "!": lambda a, b: a | ~b,
    "==": lambda a, b: _truthy(a == b),
    "!=": lambda a, b: _truthy(a != b),
    "<>": lambda a, b: _truthy(a != b),
    "<": lambda a, b: _truthy(a < b),
    ">": lambda a, b: _truthy(a > b),
    "<=": lambda a, b: _truthy(a <= b),
    ">=": lambda a, b: _truthy(a >= b),
    "&&": lambda a, b: int(bool(a) and bool(b)),
    "||": lambda a, b: int(bool(a) or bool(b)),
}


def apply_binary(op: str, a: Value, b: Value) -> Value:
    if op == "+":
        return _combine(a, b, 1)
    if op == "-":
        return _combine(a, b, -1)
    if op == "*":
        if b.is_absolute:
            return _scale(a, b.const)
        if a.is_absolute:
            return _scale(b, a.const)
        raise ExprError("cannot multiply two relocatable values")
    if op in ("==", "!=", "<>", "<", ">", "<=", ">=") and a.terms and a.terms == b.terms:
        # Two locations in the same chunk compare by their offsets.
        a, b = Value(a.const), Value(b.const)
    if not (a.is_absolute and b.is_absolute):
        raise ExprError(f"operator '{op}' needs absolute operands")
    return Value(wrap64(_ABSOLUTE_OPS[op](a.const, b.const)))


def apply_unary(op: str, a: Value) -> Value:
    if op == "+":
        return a
    if op == "-":
        return _scale(a, -1)
    if not a.is_absolute:
        raise ExprError(f"operator '{op}' needs an absolute operand")
    if op == "~":
        return Value(wrap64(~a.const))
    return Value(int(a.const == 0))  # "!"


# ---------------------------------------------------------------------------
# Tokenizer and parser

SYMBOL_START = re.compile(r"[A-Za-z_.$]")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9A-Fa-f]+|0[bB][01]+(?![0-9A-Za-z_$])|[0-9]+[bBfF](?![0-9A-Za-z_$.])|[0-9]+)
  | (?P<sym>[A-Za-z_.$][A-Za-z0-9_.$]*)
  | (?P<char>'(?:\\(?:[0-7]{1,3}|x[0-9A-Fa-f]+|.)|[^\\])'?)
  | (?P<op><<|>>|<=|>=|==|!=|<>|&&|\|\||[-+*/%&|^!~<>()])
    """,
    re.VERBOSE,
)

_CHAR_ESCAPES = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "e": 27, "0": 0}

# GNU as precedence, loosest first (measured against GNU as 2.40: its manual
# lists + and - with the comparisons, but they bind tighter).
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("&&",),
    ("==", "!=", "<>", "<", ">", "<=", ">="),
    ("+", "-"),
    ("|", "&", "^", "!"),
    ("*", "/", "%", "<<", ">>"),
)


def char_value(token: str) -> int:
    body = token[1:]
    if body.endswith("'") and len(body) > 1:
        body = body[:-1]
    if not body.startswith("\\"):
        return ord(body) & 0xFF
    esc = body[1:]
    if esc[0] in "01234567" and esc.isdigit():
        return int(esc, 8) & 0xFF
    if esc[0] in "xX" and len(esc) > 1:
        return int(esc[1:], 16) & 0xFF
    return _CHAR_ESCAPES.get(esc, ord(esc[0]) & 0xFF)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprError(f"unexpected character {text[pos]!r} in expression")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append((kind, m.group()))
    return tokens


def _literal(value: int, tok: str) -> Num:
    if value >> 64:
        raise ExprError(f"number {tok} does not fit in 64 bits")
    return Num(wrap64(value))


def _number(tok: str) -> Node:
    low = tok.lower()
    if low.startswith("0x"):
        return _literal(int(low[2:], 16), tok)
    if low[-1] in "bf" and not low.startswith("0b"):
        return LocalRef(int(low[:-1]), low[-1] == "f")
    if low.startswith("0b"):
        if len(low) == 2:
            return LocalRef(0, False)
        return _literal(int(low[2:], 2), tok)
    if len(low) > 1 and low[0] == "0":
        if any(c in "89" for c in low):
            raise ExprError(f"bad octal number {tok}")
        return _literal(int(low, 8), tok)
    return _literal(int(low), tok)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ExprError("expression ends too early")
        self.pos += 1
        return tok

    def parse(self, level: int = 0) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.parse(level + 1)
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _LEVELS[level]:
                return left
            self.pos += 1
            right = self.parse(level + 1)
            left = Binary(tok[1], left, right)

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > 100:
            raise ExprError("expression nested too deeply")
        try:
            kind, tok = self.take()
            if kind == "op" and tok in ("-", "+", "~", "!"):
                return Unary(tok, self.unary())
            if kind == "op" and tok == "(":
                inner = self.parse()
                if self.take() != ("op", ")"):
                    raise ExprError("missing ')'")
                return inner
            if kind == "num":
                return _number(tok)
            if kind == "char":
                return Num(char_value(tok))
            if kind == "sym":
                return Dot() if tok == "." else Sym(tok)
            raise ExprError(f"unexpected '{tok}' in expression")
        finally:
            self.depth -= 1


MAX_TOKENS = 400


_PLAIN_NUMBER = re.compile(r"\s*(0[xX][0-9A-Fa-f]+|[1-9][0-9]*|0)\s*")


def parse_expression(text: str) -> Node:
    """Parse GNU as expression text into a tree; raises ExprError."""
    plain = _PLAIN_NUMBER.fullmatch(text)
    if plain:  # the common case, without the descent through every precedence level
        return _number(plain.group(1))
    tokens = tokenize(text)
    if not tokens:
        raise ExprError("missing expression")
    if len(tokens) > MAX_TOKENS:
        raise ExprError(f"expression longer than {MAX_TOKENS} tokens")
    parser = _Parser(tokens)
    node = parser.parse()
    if parser.pos != len(tokens):
        raise ExprError(f"junk '{tokens[parser.pos][1]}' after expression")
    return node


# ---------------------------------------------------------------------------
# Evaluation


@dataclass
class Evaluator:
    """Evaluates trees; ``resolve(name)`` gives a symbol's Value (None: undefined).

    ``dot`` is the Value of ``.``; ``local(number, forward)`` names a numeric
    local label instance.
    """

    resolve: Callable[[str], Value | None]
    dot: Value | None = None
    local: Callable[[int, bool], str] | None = None
    alias: Callable[[str, Value], Value] | None = None
    undefined: list[str] = field(default_factory=list)

    def __call__(self, node: Node) -> Value:
        if isinstance(node, Num):
            return Value(node.value)
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Alias):
            value = self(node.node)
            return self.alias(node.name, value) if self.alias else value
        if isinstance(node, Binary):
            return apply_binary(node.op, self(node.left), self(node.right))
        if isinstance(node, Unary):
            return apply_unary(node.op, self(node.operand))
        if isinstance(node, Dot):
            if self.dot is None:
                raise ExprError("'.' is not allowed here")
            return self.dot
        if isinstance(node, LocalRef):
            if self.local is None:
                raise ExprError("local label reference is not allowed here")
            return self(Sym(self.local(node.number, node.forward)))
        value = self.resolve(node.name)
        if value is None:
            self.undefined.append(node.name)
            raise ExprError(f"symbol '{node.name}' is not defined")
        return value


def tree_size(node: Node) -> int:
    if isinstance(node, Binary):
        return 1 + tree_size(node.left) + tree_size(node.right)
    if isinstance(node, Unary):
        return 1 + tree_size(node.operand)
    if isinstance(node, Alias):
        return 1 + tree_size(node.node)
    return 1


def substitute(node: Node, fn: Callable[[Node], Node | None]) -> Node:
    """Rebuild a tree bottom-up, replacing each leaf for which ``fn`` returns a node."""
    if isinstance(node, Binary):
        left, right = substitute(node.left, fn), substitute(node.right, fn)
        if left is node.left and right is node.right:
            return node
        return Binary(node.op, left, right)
    if isinstance(node, Unary):
        operand = substitute(node.operand, fn)
        return node if operand is node.operand else Unary(node.op, operand)
    replaced = fn(node)
    return node if replaced is None else replaced


def fold(node: Node) -> Node:
    """Fold absolute sub-trees to numbers (used to give equal expressions equal keys)."""
    if isinstance(node, Binary | Unary):
        node = (
            Binary(node.op, fold(node.left), fold(node.right))
            if isinstance(node, Binary)
            else Unary(node.op, fold(node.operand))
        )
        leaves = (node.left, node.right) if isinstance(node, Binary) else (node.operand,)
        if all(isinstance(x, Num) or (isinstance(x, Const) and x.value.is_absolute) for x in leaves):
            try:
                value = Evaluator(lambda _n: None)(node)
            except ExprError:
                return node
            return Num(value.const)
    if isinstance(node, Const) and node.value.is_absolute:
        return Num(node.value.const)
    if isinstance(node, Alias):
        return fold(node.node)
    return node
