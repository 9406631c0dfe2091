"""Linker-script parser and expression evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.blob import ldscript
from emu.blob.build import default_script
from emu.blob.ldscript import (
    ABS,
    Assert,
    Assignment,
    InputSpec,
    OutputSectionDef,
    Value,
    evaluate,
    parse_expression,
    parse_script,
)
from emu.errors import LinkError, SourceLoc

M64 = (1 << 64) - 1
KERNEL_LD = default_script()


@dataclass
class Ctx:
    """A minimal EvalContext: named sections at fixed addresses, a symbol table."""

    dot: int = 0
    current_section: str | None = None
    symbols: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    sections: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # vma lma size al

    def symbol_value(self, name: str, loc: SourceLoc) -> tuple[int, str | None]:
        if name not in self.symbols:
            raise LinkError(f"{loc}: undefined symbol {name}")
        return self.symbols[name]

    def is_defined(self, name: str) -> bool:
        return name in self.symbols

    def section_vma(self, name: str) -> int:
        return self.sections[name][0]

    def section_lma(self, name: str, loc: SourceLoc) -> int:
        return self.sections[name][1]

    def section_size(self, name: str, loc: SourceLoc) -> int:
        return self.sections[name][2]

    def section_align(self, name: str, loc: SourceLoc) -> int:
        return self.sections[name][3]

    def check_section(self, name: str, loc: SourceLoc) -> None:
        if name not in self.sections:
            raise LinkError(f"{loc}: undefined section {name}")


def value_of(text: str, ctx: Ctx | None = None) -> int:
    ctx = ctx or Ctx()
    return evaluate(parse_expression(text), ctx).absolute(ctx)


# --------------------------------------------------------------------------- parsing


def test_shipped_kernel_script_parses() -> None:
    script = ldscript.load_script(KERNEL_LD)
    assert script.entry == "_text"
    assert script.output_arch == "aarch64"
    names = [s.name for s in script.output_sections()]
    assert names[:3] == [".head.text", ".text", ".rodata"]
    assert names[-1] == "/DISCARD/"
    provides = {c.target for c in script.commands if isinstance(c, Assignment) and c.provide}
    assert provides == {"KIMAGE_VADDR", "PHYS_OFFSET_LOAD", "USER_BASE", "PAGE_SIZE"}
    asserts = [c for c in script.commands if isinstance(c, Assert)]
    assert len(asserts) >= 8
    for osec in script.output_sections():
        # The user sections after .user.text keep its LMA - VMA difference.
        if not osec.discard and osec.name not in (".user.rodata", ".user.data", ".user.bss"):
            assert osec.lma is not None, f"{osec.name} has no AT()"


def test_every_construct() -> None:
    text = """/* header
   comment over lines */
OUTPUT_FORMAT("elf64-littleaarch64")
ENTRY(start)
PROVIDE(BASE = 16M);
PROVIDE_HIDDEN(hid = 1);
top = 3K;
SECTIONS {
  . = BASE;
  .a : { KEEP(*(.a .a.*)) x = .; }
  .b 0x2000 : AT(0x100) ALIGN(0x40) { foo.o(.b) *crt?.o(.b[0-9]) }
  .c : { y += 4; y -= 1; y *= 3; y /= 2; y <<= 1; y >>= 1; y &= 0xff; y |= 1; }
  ASSERT(DEFINED(x) ? 1 : 0, "x is defined");
  /DISCARD/ : { *(.comment) }
}
"""
    script = parse_script(text, "t.ld")
    assert script.entry == "start"
    cmds = script.commands
    assert [type(c).__name__ for c in cmds] == [
        "Assignment", "Assignment", "Assignment",
        "Assignment", "OutputSectionDef", "OutputSectionDef", "OutputSectionDef",
        "Assert", "OutputSectionDef",
    ]  # fmt: skip
    assert script.in_sections == [False, False, False, True, True, True, True, True, True]
    base, hid, top = cmds[0], cmds[1], cmds[2]
    assert isinstance(base, Assignment) and base.provide and base.loc == SourceLoc("t.ld", 5)
    assert isinstance(hid, Assignment) and hid.provide and hid.hidden
    assert isinstance(top, Assignment) and value_of_expr(top.expr) == 3 * 1024
    sec_a, sec_b, sec_c = cmds[4], cmds[5], cmds[6]
    assert isinstance(sec_a, OutputSectionDef)
    spec = sec_a.items[0]
    assert isinstance(spec, InputSpec) and spec.keep and spec.section_patterns == (".a", ".a.*")
    assert spec.matches("dir/x.o", ".a.hot") and not spec.matches("x.o", ".ab")
    assert isinstance(sec_b, OutputSectionDef) and sec_b.address is not None
    assert value_of_expr(sec_b.lma) == 0x100 and value_of_expr(sec_b.align) == 0x40
    explicit, wild = sec_b.items
    assert isinstance(explicit, InputSpec) and explicit.matches("build/foo.o", ".b")
    assert not explicit.matches("build/bar.o", ".b")
    assert isinstance(wild, InputSpec) and wild.matches("crt1.o", ".b7")
    assert not wild.matches("crt1.o", ".bx")
    assert isinstance(sec_c, OutputSectionDef)
    ops = [item.expr.op for item in sec_c.items if isinstance(item, Assignment)]
    assert ops == ["+", "-", "*", "/", "<<", ">>", "&", "|"]
    assert isinstance(cmds[7], Assert) and cmds[7].message == "x is defined"
    assert isinstance(cmds[8], OutputSectionDef) and cmds[8].discard
    assert script.referenced_symbols() >= {"BASE", "y", "start"}
    assert "x" not in script.referenced_symbols()  # only DEFINED(x) mentions it


def value_of_expr(expr) -> int:
    ctx = Ctx()
    return evaluate(expr, ctx).absolute(ctx)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("SECTIONS {\n  .a : { *(.a) \n", 2, "missing '}'"),
        ("SECTIONS {\n .a : {\n  x = 1 +;\n } }", 3, "expected an expression"),
        ("ENTRY(a)\nENTRY(b)\n", 2, "ENTRY given twice"),
        ("x = 1\ny = 2;", 2, "expected ';'"),
        ("/* never closed\n\n", 1, "unterminated comment"),
        ("SECTIONS {\n\n .a : { *() } }", 3, "no section pattern"),
        ("SECTIONS { .a : { SORT(*)(.a) } }", 1, "SORT is not supported"),
        ("ASSERT(1, unquoted)", 1, "quoted string"),
        ("\n\nx = FOO(1);", 3, "unknown function FOO"),
        ("x = 09;", 1, "malformed octal"),
        ("x = 12ab;", 1, "malformed number"),
        ("\nPROVIDE(. = 4);", 2, "cannot assign the location counter"),
        ("SECTIONS {\n .a : > ram { } }", 2, "expected '{'"),
        ("x = ALIGN(1, 2, 3);", 1, "ALIGN takes 1 or 2 arguments"),
        ("bogus", 1, "unexpected"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(LinkError) as err:
        parse_script(text, "bad.ld")
    message = str(err.value)
    assert message.startswith(f"bad.ld:{line}:"), message
    assert fragment in message
    assert "\n" not in message


def test_load_script_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match="cannot read linker script"):
        ldscript.load_script(tmp_path / "none.ld")


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64K", 0x10000),
        ("2M + 1k", 0x200400),
        ("010", 8),
        ("0x10 | 0X1", 0x11),
        ("-8 / 3", (-2) & M64),
        ("-8 % 3", (-2) & M64),
        ("-1 > 1", 1),  # unsigned comparison, as GNU ld
        ("-16 >> 2", ((-16) & M64) >> 2),  # logical shift
        ("1 << 64", 0),
        ("~0", M64),
        ("!5 + !0", 1),
        ("MAX(3, 9) + MIN(3, 9)", 12),
        ("ALIGN(0x1001, 0x1000)", 0x2000),
        ("1 ? 2 : 3", 2),
        ("0 ? 2 : 0 ? 3 : 4", 4),
        ("1 + 2 * 3 - 4 / 2", 5),
        ("1 | 2 ^ 3 & 4", 1 | (2 ^ (3 & 4))),
        ("1 < 2 == 1", 1),
        ("0 || 3 && 4", 1),
        ("CONSTANT(MAXPAGESIZE)", 0x10000),
        ("DEFINED(nothing)", 0),
        ("ABSOLUTE(7)", 7),
        ("0xffffffffffffffff + 2", 1),
    ],
)
def test_constant_expressions(text: str, expected: int) -> None:
    assert value_of(text) == expected


def test_division_by_zero_is_an_error() -> None:
    with pytest.raises(LinkError, match="division by zero"):
        value_of("1 / (2 - 2)")
    with pytest.raises(LinkError, match="modulo by zero"):
        value_of("1 % 0")


def test_section_functions_and_dot() -> None:
    ctx = Ctx(
        dot=0x1234,
        symbols={"sym": (0x5008, ".data"), "absym": (0x77, None)},
        sections={".data": (0x5000, 0x9000, 0x40, 16)},
    )
    assert value_of("ALIGN(0x100)", ctx) == 0x1300
    assert value_of(". + 1", ctx) == 0x1235
    assert value_of("ADDR(.data)", ctx) == 0x5000
    assert value_of("LOADADDR(.data)", ctx) == 0x9000
    assert value_of("SIZEOF(.data) + ALIGNOF(.data)", ctx) == 0x50
    assert value_of("sym - ADDR(.data)", ctx) == 8
    assert value_of("DEFINED(sym) + DEFINED(absym) + DEFINED(none)", ctx) == 2
    with pytest.raises(LinkError, match=r"undefined section \.nope"):
        value_of("ADDR(.nope)", ctx)


def test_gnu_value_kinds_inside_an_output_section() -> None:
    """Inside a section, numbers and absolute symbols are offsets; ADDR is relative."""
    ctx = Ctx(
        dot=0x5010,
        current_section=".data",
        symbols={"K": (0x100, None)},
        sections={".data": (0x5000, 0x5000, 0x40, 16)},
    )
    assert evaluate(parse_expression("0x10"), ctx) == Value(0x10, None)
    assert evaluate(parse_expression("K"), ctx) == Value(0x100, None)
    assert evaluate(parse_expression("."), ctx) == Value(0x10, ".data")
    assert evaluate(parse_expression(". + 4"), ctx) == Value(0x14, ".data")
    assert evaluate(parse_expression("ALIGN(0x100)"), ctx) == Value(0x100, ".data")
    # Two values of one section lose it (a plain number inside a section).
    assert evaluate(parse_expression(". - ADDR(.data)"), ctx) == Value(0x10, None)
    assert evaluate(parse_expression("ABSOLUTE(.)"), ctx) == Value(0x5010, ABS)
    # At top level the same arithmetic yields an absolute value.
    ctx.current_section = None
    assert evaluate(parse_expression("0x10"), ctx) == Value(0x10, ABS)


# Expression trees rendered twice: as ld syntax and as Python over explicit helpers with
# 64-bit unsigned semantics (C division truncates, comparisons are unsigned).


def _c_div(a: int, b: int) -> int:
    sa, sb = _s(a), _s(b)
    q = abs(sa) // abs(sb)
    return (q if (sa < 0) == (sb < 0) else -q) & M64


def _c_mod(a: int, b: int) -> int:
    sa, sb = _s(a), _s(b)
    return (sa - _s(_c_div(a, b)) * sb) & M64


def _s(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


_PY_ENV = {"D": _c_div, "R": _c_mod, "M": M64}


def _literal() -> st.SearchStrategy[tuple[str, str]]:
    def render(v: int, form: str) -> tuple[str, str]:
        if form == "hex":
            return f"0x{v:x}", str(v)
        if form == "oct" and v:
            return f"0{v:o}", str(v)
        if form == "k":
            return f"{v}K", str(v * 1024)
        if form == "m":
            return f"{v}M", str(v << 20)
        return str(v), str(v)

    return st.builds(
        render,
        st.integers(0, (1 << 64) - 1) | st.integers(0, 300),
        st.sampled_from(["dec", "hex", "oct", "k", "m"]),
    ).filter(lambda pair: int(pair[1]) <= M64)


def _combine(children: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    binary = st.sampled_from(
        ["+", "-", "*", "&", "|", "^", "/", "%", "<", "<=", ">", ">=", "==", "!=", "&&", "||"]
    )

    def bin_node(op: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
        la, pa = a
        lb, pb = b
        ld = f"({la} {op} {lb})"
        if op == "/":
            return ld, f"D({pa}, {pb})"
        if op == "%":
            return ld, f"R({pa}, {pb})"
        # GNU ld folds both operands of && and || (no short-circuit):
        # `X = 0 && (0/0);` fails with "/ by zero" in aarch64-linux-gnu-ld 2.40,
        # so the reference evaluates both sides too (& and | on bools do).
        if op == "&&":
            return ld, f"int(bool({pa}) & bool({pb}))"
        if op == "||":
            return ld, f"int(bool({pa}) | bool({pb}))"
        if op in ("<", "<=", ">", ">=", "==", "!="):
            return ld, f"int({pa} {op} {pb})"
        return ld, f"(({pa} {op} {pb}) & M)"

    def shift(a: tuple[str, str], n: int, left: bool) -> tuple[str, str]:
        op = "<<" if left else ">>"
        return f"({a[0]} {op} {n})", f"(({a[1]} {op} {n}) & M)"

    def unary(op: str, a: tuple[str, str]) -> tuple[str, str]:
        if op == "!":
            return f"(!{a[0]})", f"int(not {a[1]})"
        return f"({op}{a[0]})", f"(({op}{a[1]}) & M)"

    def ternary(c, a, b) -> tuple[str, str]:
        return f"({c[0]} ? {a[0]} : {b[0]})", f"({a[1]} if {c[1]} else {b[1]})"

    return st.one_of(
        st.builds(bin_node, binary, children, children),
        st.builds(shift, children, st.integers(0, 63), st.booleans()),
        st.builds(unary, st.sampled_from(["-", "~", "!"]), children),
        st.builds(ternary, children, children, children),
    )


_EXPRESSIONS = st.recursive(_literal(), _combine, max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(_EXPRESSIONS)
def test_evaluator_matches_python_reference(pair: tuple[str, str]) -> None:
    ld_text, py_text = pair
    try:
        expected = eval(py_text, dict(_PY_ENV))
    except ZeroDivisionError:
        with pytest.raises(LinkError, match="by zero"):
            value_of(ld_text)
        return
    assert value_of(ld_text) == expected


@pytest.mark.parametrize("text", ["0 && (0/0)", "1 || (1 % 0)"])
def test_logical_operators_fold_both_sides_as_gnu_ld_does(text: str) -> None:
    # aarch64-linux-gnu-ld 2.40: `X = 0 && (0/0);` is "/ by zero", not 0.
    with pytest.raises(LinkError, match="by zero"):
        value_of(text)


_FLAT_OPS = st.sampled_from(["+", "-", "*", "&", "|", "^"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=8), st.data())
def test_precedence_of_arithmetic_matches_c(numbers: list[int], data) -> None:
    ops = [data.draw(_FLAT_OPS) for _ in numbers[1:]]
    text = str(numbers[0]) + "".join(f" {op} {n}" for op, n in zip(ops, numbers[1:], strict=True))
    # C and Python agree on the relative precedence of these operators.
    assert value_of(text) == eval(text) & M64
