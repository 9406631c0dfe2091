"""Expressions: GNU as precedence and 64-bit arithmetic, symbolic values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.blob.expr import (
    MAX_TOKENS,
    Evaluator,
    ExprError,
    LocalRef,
    Sym,
    Value,
    parse_expression,
    wrap64,
)


def evaluate(text: str, symbols: dict[str, Value] | None = None) -> Value:
    table = symbols or {}
    return Evaluator(table.get)(parse_expression(text))


def const(text: str) -> int:
    value = evaluate(text)
    assert value.is_absolute
    return value.const


# Values measured with GNU as 2.40 (.byte/.quad of each expression).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4 + 1 & 1", 5),
        ("1 << 2 + 1", 5),
        ("2 == 1 + 1", -1),
        ("3 == 1 + 2", -1),
        ("3 | 1 + 1", 4),
        ("6 & 3 * 2", 6),
        ("2 * 3 & 1", 0),
        ("1 | 1 << 1", 3),
        ("5 ^ 1 + 1", 5),
        ("8 >> 1 + 1", 5),
        ("2 < 3 == 1", 0),
        ("1 || 0 && 0", 1),
        ("1 == 1 && 0", 0),
        ("(1 == 1)", -1),
        ("1 != 2", -1),
        ("1 <> 2", -1),
        ("3 >= 3", -1),
        ("3 <= 2", 0),
        ("2 && 3", 1),
        ("!5", 0),
        ("!0", 1),
        ("~0", -1),
        ("-(-3)", 3),
        ("-7 / 2", -3),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("1 ! 2", -3),
        ("-1 >> 1", 0x7FFFFFFFFFFFFFFF),
        ("(-8) >> 1", 0x7FFFFFFFFFFFFFFC),
        ("0x8000000000000000 >> 63", 1),
        ("0xffffffffffffffff", -1),
        ("'a'", 97),
        ("'\\n'", 10),
        ("'z", 122),
        ("0b101", 5),
        ("010", 8),
        ("0x1F", 31),
        ("6 - 1 - 1", 4),
    ],
)
def test_gnu_arithmetic(text, expected):
    assert const(text) == expected


def test_local_label_references_and_dot():
    node = parse_expression("1f - 0b + .")
    assert node.left.left == LocalRef(1, True)  # type: ignore[union-attr]
    assert node.left.right == LocalRef(0, False)  # type: ignore[union-attr]
    names = {(1, True): "one", (0, False): "zero"}
    ev = Evaluator(
        {"one": Value.base("s", 8), "zero": Value.base("s", 2)}.get,
        dot=Value.base("s", 100),
        local=lambda n, fwd: names[(n, fwd)],
    )
    value = ev(node)
    assert value.const == 106 and value.term_map() == {"s": 1}


def test_symbolic_values():
    table = {"a": Value.base("sec", 16, "a", 16), "b": Value.base("sec", 4, "b", 4), "ext": Value.base("ext")}
    assert evaluate("a - b", table) == Value(12)
    assert evaluate("(a - b) / 4", table) == Value(3)
    v = evaluate("ext + 8", table)
    assert v.term_map() == {"ext": 1} and v.const == 8
    v = evaluate("a + 4", table)
    assert v.hint("sec") == ("a", 16) and v.const == 20
    assert evaluate("a < b", table) == Value(0)
    v = evaluate("ext - a", table)
    assert v.term_map() == {"ext": 1, "sec": -1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing expression"),
        ("1 +", "ends too early"),
        ("(1", "ends too early"),
        ("(1 2", "missing"),
        ("1 2", "junk"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("09", "bad octal"),
        ("0x10000000000000000", "does not fit in 64 bits"),
        ("@", "unexpected character"),
        ("sym * sym", "cannot multiply"),
        ("sym / 2", "absolute"),
        ("~sym", "absolute"),
        ("undefined_thing", "not defined"),
        ("(" * 150 + "1" + ")" * 150, "nested too deeply"),
        ("+".join(["1"] * (MAX_TOKENS // 2 + 1)), "longer than"),
    ],
)
def test_expression_errors(text, message):
    table = {"sym": Value.base("ext")}
    with pytest.raises(ExprError, match=message):
        evaluate(text, table)


def test_symbols_are_names():
    assert parse_expression("foo.bar$1") == Sym("foo.bar$1")


small = st.integers(min_value=-(1 << 62), max_value=(1 << 62))


@settings(max_examples=200, deadline=None)
@given(small, small, st.sampled_from(["+", "-", "*", "&", "|", "^"]))
def test_binary_operators_wrap_like_64_bit_integers(a, b, op):
    result = const(f"({a}) {op} ({b})")
    python = {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op]
    assert result == wrap64(python)


@settings(max_examples=200, deadline=None)
@given(small, st.integers(min_value=0, max_value=63))
def test_shifts(a, n):
    assert const(f"({a}) << {n}") == wrap64(a << n)
    assert const(f"({a}) >> {n}") == wrap64((a & (2**64 - 1)) >> n)
