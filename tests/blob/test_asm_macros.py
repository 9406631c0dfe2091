"""Macros, loops, conditionals and .include."""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.blob.asm import assemble_file, assemble_source, split_macro_args
from emu.errors import AsmError


def data(source: str, section: str = ".text") -> bytes:
    return bytes(assemble_source(source).sections[section].data)


# Measured with GNU as 2.40: blanks separate arguments unless next to an operator.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 2 3", ["1", "2", "3"]),
        ("1, 2, 3", ["1", "2", "3"]),
        ("1 + 2, 3", ["1 + 2", "3"]),
        ("1+2 5", ["1+2", "5"]),
        ("1 +2 6", ["1 +2", "6"]),
        ("1 - 2 3", ["1 - 2", "3"]),
        ("1, , 9", ["1", "", "9"]),
        ("c=4, a=5", ["c=4", "a=5"]),
        ('"1 + 2" 3 "x y"', ["1 + 2", "3", "x y"]),
        ("(1 + 2), 4", ["(1 + 2)", "4"]),
        ("1 (2) 3", ["1 (2)", "3"]),
        ("", []),
    ],
)
def test_macro_argument_splitting(text, expected):
    assert split_macro_args(text) == expected


def test_macro_parameters_defaults_keywords():
    source = (
        ".macro show a, b=7, c\n.byte \\a\n.byte \\b\n.ascii \"[\\c]\"\n.endm\n"
        "show 1 2 3\nshow 1 + 2, 3\nshow 1, , 9\nshow c=4, a=5\n"
    )
    assert data(source) == b"\x01\x02[3]" + b"\x03\x03[]" + b"\x01\x07[9]" + b"\x05\x07[4]"


def test_required_and_vararg_parameters():
    source = ".macro m first:req, rest:vararg\n.byte \\first, \\rest\n.endm\nm 1, 2, 3, 4\n"
    assert data(source) == b"\x01\x02\x03\x04"
    with pytest.raises(AsmError, match="missing value for required parameter 'first'"):
        assemble_source(".macro m first:req\n.byte \\first\n.endm\nm\n")


def test_counter_and_concatenation():
    source = (
        ".macro lbl name\n\\name\\()_\\@: .byte \\@\n.endm\n"
        "lbl foo\nlbl foo\n.word foo_1 - foo_0\n"
    )
    obj = assemble_source(source)
    assert bytes(obj.sections[".text"].data) == b"\x00\x01\x01\x00\x00\x00"
    assert {"foo_0", "foo_1"} <= set(obj.symbols)


def test_register_parameters_in_instructions():
    source = ".macro zero reg\nmov \\reg, xzr\n.endm\nzero x3\nzero x4\n"
    assert data(source) == data("mov x3, xzr\nmov x4, xzr")


def test_exitm_and_nested_definitions():
    source = (
        ".macro outer n\n.if \\n > 2\n.byte 0xee\n.exitm\n.endif\n.byte \\n\n.endm\n"
        "outer 1\nouter 5\nouter 2\n"
        ".macro maker\n.macro made\n.byte 0x42\n.endm\n.endm\nmaker\nmade\n"
    )
    assert data(source) == b"\x01\xee\x02\x42"


def test_macro_names_shadow_instructions_and_purgem():
    source = ".macro nop\n.byte 9\n.endm\nnop\n.purgem nop\nnop\n"
    assert data(source) == b"\x09\0\0\0\x1f\x20\x03\xd5"


def test_rept_irp_irpc():
    source = (
        ".rept 3\n.byte 1\n.endr\n.rept 0\n.byte 2\n.endr\n"
        ".irp r, 4, 5, 6\n.byte \\r\n.endr\n.irpc c, 789\n.byte \\c\n.endr\n"
        ".rept 2\n.irp x, 1, 2\n.byte \\x\n.endr\n.endr\n"
    )
    assert data(source) == bytes([1, 1, 1, 4, 5, 6, 7, 8, 9, 1, 2, 1, 2])


@pytest.mark.parametrize(
    ("condition", "taken"),
    [
        (".if 1", True),
        (".if 0", False),
        (".if 2 > 1", True),
        (".ifne 0", False),
        (".ifeq 0", True),
        (".ifgt -1", False),
        (".ifge 0", True),
        (".iflt -1", True),
        (".ifle 1", False),
        (".ifdef defined_sym", True),
        (".ifdef undefined_sym", False),
        (".ifndef undefined_sym", True),
        (".ifnotdef defined_sym", False),
        (".ifc abc, abc", True),
        (".ifc abc,abd", False),
        (".ifc 'a b', 'a b'", True),
        (".ifnc x0, x1", True),
        (".ifb", True),
        (".ifb x", False),
        (".ifnb x", True),
        ('.ifeqs "a", "a"', True),
        ('.ifnes "a", "a"', False),
    ],
)
def test_conditionals(condition, taken):
    source = f"defined_sym: .byte 0\n{condition}\n.byte 1\n.else\n.byte 2\n.endif\n"
    assert data(source)[1:] == (b"\x01" if taken else b"\x02")


def test_elseif_chain_and_nesting():
    source = (
        ".set V, 2\n.if V == 1\n.byte 1\n.elseif V == 2\n.byte 2\n.if 0\n.byte 0xff\n.elseif 1\n.byte 0x22\n.endif\n"
        ".elseif V == 2\n.byte 3\n.else\n.byte 4\n.endif\n"
        ".if 0\n.if 1\n.byte 0xee\n.else\n.byte 0xef\n.endif\n.macro never\n.endif\n"
    )
    assert data(source) == b"\x02\x22"


def test_conditionals_inside_macros_see_arguments():
    source = ".macro pick a\n.ifc \\a, yes\n.byte 1\n.else\n.byte 0\n.endif\n.endm\npick yes\npick no\n"
    assert data(source) == b"\x01\x00"


def test_include_searches_beside_the_file_then_include_dirs(tmp_path: Path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "local.inc").write_text(".byte 1\n.include \"deeper.inc\"\n")
    (tmp_path / "deeper.inc").write_text(".macro two\n.byte 2\n.endm\n")
    (tmp_path / "inc" / "other.inc").write_text(".byte 3\nbad_instruction_here\n")
    main = tmp_path / "main.S"
    main.write_text('.include "local.inc"\ntwo\n.include "other.inc"\n')
    with pytest.raises(AsmError) as err:
        assemble_file(main, [tmp_path / "inc"])
    assert str(err.value).startswith(f"{tmp_path / 'inc' / 'other.inc'}:2: ")
    main.write_text('.include "local.inc"\ntwo\n.include "other.inc"\n'.replace('.include "other.inc"\n', ""))
    assert bytes(assemble_file(main).sections[".text"].data) == b"\x01\x02"


def test_include_loop_is_an_error(tmp_path: Path):
    (tmp_path / "a.S").write_text('.include "b.S"\n')
    (tmp_path / "b.S").write_text('.include "a.S"\n')
    with pytest.raises(AsmError, match="include nested more than 32 deep"):
        assemble_file(tmp_path / "a.S")


def test_guarded_double_include(tmp_path: Path):
    (tmp_path / "h.inc").write_text(".ifndef H_INC\n.set H_INC, 1\n.byte 7\n.endif\n")
    (tmp_path / "m.S").write_text('.include "h.inc"\n.include "h.inc"\n')
    assert bytes(assemble_file(tmp_path / "m.S").sections[".text"].data) == b"\x07"


def test_incbin(tmp_path: Path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(10)))
    (tmp_path / "m.S").write_text('.incbin "blob.bin", 2, 3\n')
    assert bytes(assemble_file(tmp_path / "m.S").sections[".text"].data) == b"\x02\x03\x04"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (".macro m\nnop\n", r"<string>:1: .macro without .endm"),
        (".rept 2\nnop\n", r"<string>:1: .rept without .endr"),
        (".irp x, 1\nnop\n", r"<string>:1: .irp without .endr"),
        ("nop\n.if 1\nnop\n", r"<string>:2: .if without .endif"),
        (".endif\n", r"<string>:1: .endif without .if"),
        (".else\n", r"<string>:1: .else without .if"),
        (".if 1\n.else\n.else\n.endif", r"<string>:3: a second .else"),
        (".endm\n", r"<string>:1: .endm without .macro"),
        (".endr\n", r"<string>:1: .endr without .rept"),
        (".exitm\n", r"<string>:1: .exitm outside a macro"),
        ("undefined_macro a, b\n", r"<string>:1: unknown instruction 'undefined_macro'"),
        (".macro m a\n.endm\nm 1, 2\n", r"<string>:3: too many arguments"),
        (".macro m\nm\n.endm\nm\n", r"<string>:4: macros nested more than 100 deep \(recursive macro 'm'\?\)"),
        (".macro m\n.if 1\n.endm\nm\n", r"<string>:2: .if without .endif at the end of a macro"),
        (".macro m a\nbogus \\a\n.endm\nnop\nm x1\n", r"<string>:5: unknown instruction 'bogus' .* \(in macro 'm' at <string>:2\)"),
        (".rept 0x7fffffff\nnop\n.endr\n", "more than 250000 statements"),
        (".rept 1000\n.rept 1000\nnop\n.endr\n.endr\n", "more than 250000 statements"),
        (".macro d a\nd \\a\\a\n.endm\nd x\n", "expands to a line longer than 65536"),
        (".if undefined_symbol\n.endif\n", "symbol 'undefined_symbol' is not defined"),
        (".purgem nothing\n", "macro 'nothing' is not defined"),
        ('.include "does-not-exist.inc"\n', "cannot find include file"),
        (".error \"custom message\"\n", r"<string>:1: custom message$"),
        (".err\n", r"<string>:1: .err encountered"),
    ],
)
def test_macro_and_conditional_errors(source, message):
    with pytest.raises(AsmError, match=message):
        assemble_source(source)
