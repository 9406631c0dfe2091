"""Directives: sections, data, strings, alignment, fill, .org, symbols and their attributes."""

from __future__ import annotations

import pytest

from emu.blob.asm import NOP, assemble_source
from emu.blob.objfile import Binding, SectionFlags, SymbolType
from emu.errors import AsmError

NOP_BYTES = NOP.to_bytes(4, "little")


def data(source: str, section: str = ".text") -> bytes:
    return bytes(assemble_source(source).sections[section].data)


# ---------------------------------------------------------------------------
# Sections


def test_default_section_is_text():
    obj = assemble_source("nop")
    assert list(obj.sections) == [".text"]
    assert obj.sections[".text"].flags == SectionFlags(alloc=True, execute=True)


@pytest.mark.parametrize(
    ("directive", "name", "flags"),
    [
        (".data", ".data", SectionFlags(write=True)),
        (".bss", ".bss", SectionFlags(write=True, nobits=True)),
        (".section .rodata", ".rodata", SectionFlags()),
        (".section .rodata.str1.1,\"aMS\",@progbits,1", ".rodata.str1.1", SectionFlags()),
        (".section .text.hot", ".text.hot", SectionFlags(execute=True)),
        (".section .data.rel", ".data.rel", SectionFlags(write=True)),
        (".section .bss.page_aligned", ".bss.page_aligned", SectionFlags(write=True, nobits=True)),
        (".section .noinit,\"aw\",@nobits", ".noinit", SectionFlags(write=True, nobits=True)),
        (".section .init.text,\"ax\",%progbits", ".init.text", SectionFlags(execute=True)),
        (".section .text.g,\"axG\",@progbits,grp,comdat", ".text.g", SectionFlags(execute=True)),
        (".section \"quoted\", \"a\"", "quoted", SectionFlags()),
        (".section .unknown", ".unknown", SectionFlags(alloc=False)),
        (".pushsection .altinstructions, \"a\"", ".altinstructions", SectionFlags()),
    ],
)
def test_section_flags(directive, name, flags):
    obj = assemble_source(f"{directive}\n.byte 0\n")
    assert obj.sections[name].flags == flags
    if flags.nobits:
        assert obj.sections[name].size == 1 and obj.sections[name].data == bytearray()


def test_section_stack_and_previous():
    obj = assemble_source(
        ".byte 1\n.pushsection .a, \"a\"\n.byte 2\n.pushsection .b, \"a\"\n.byte 3\n.popsection\n"
        ".byte 4\n.popsection\n.byte 5\n.section .c, \"a\"\n.byte 6\n.previous\n.byte 7\n.previous\n.byte 8\n"
    )
    assert {n: bytes(s.data) for n, s in obj.sections.items()} == {
        ".text": b"\x01\x05\x07",
        ".a": b"\x02\x04",
        ".b": b"\x03",
        ".c": b"\x06\x08",
    }


def test_previous_after_switching_to_the_same_section():
    obj = assemble_source(".data\n.text\n.text\n.previous\n.byte 1\n")  # measured with GNU as
    assert bytes(obj.sections[".text"].data) == b"\x01"


def test_subsections_are_concatenated_in_order():
    obj = assemble_source(".text 2\n.byte 3\n.text\n.byte 1\n.subsection 1\n.byte 2\n.text 0\n.byte 1\n")
    assert bytes(obj.sections[".text"].data) == b"\x01\x01\x02\x03"


def test_labels_in_subsections_get_section_offsets():
    obj = assemble_source("nop\n.subsection 1\nlate: nop\n.subsection 0\nb late\nearly: nop\n")
    assert obj.symbols["late"].value == 12 and obj.symbols["early"].value == 8
    assert data("nop\n.subsection 1\nlate: nop\n.subsection 0\nb late\nnop\n")[4:8] == (0x14000002).to_bytes(4, "little")


def test_note_gnu_stack_is_dropped():
    assert ".note.GNU-stack" not in assemble_source('.section .note.GNU-stack,"",@progbits').sections


def test_popsection_without_push():
    with pytest.raises(AsmError, match=r"<string>:2: .popsection without .pushsection"):
        assemble_source("nop\n.popsection")


# ---------------------------------------------------------------------------
# Data and strings


def test_integer_data_little_endian():
    assert data(".byte 1, -1\n.hword 0x1234\n.short -2\n.word 0xdeadbeef\n.long -1\n.quad 0x0123456789abcdef\n") == bytes.fromhex(
        "01ff" "3412" "feff" "efbeadde" "ffffffff" "efcdab8967452301"
    )
    assert data(".2byte 1\n.4byte 2\n.8byte 3\n.int 4\n.xword 5\n.dword 6\n.dc.a 7\n") == (
        b"\x01\0" + (2).to_bytes(4, "little") + (3).to_bytes(8, "little") + (4).to_bytes(4, "little")
        + (5).to_bytes(8, "little") + (6).to_bytes(8, "little") + (7).to_bytes(8, "little")
    )


def test_data_values_are_checked():
    with pytest.raises(AsmError, match="does not fit in 1 byte"):
        assemble_source(".byte 256")
    with pytest.raises(AsmError, match="does not fit in 2 byte"):
        assemble_source(".hword -32769")
    assert data(".byte 255, -128\n.hword 65535") == b"\xff\x80\xff\xff"


def test_forward_references_in_data():
    assert data(".word later - here\nhere: .skip 6\nlater:\n.byte N\n.set N, 9\n") == (6).to_bytes(4, "little") + bytes(6) + b"\x09"


def test_dot_advances_within_one_directive():
    # '.' in data is the location of each value: differences make it visible.
    assert data("a: .word . - a, . - a, . - a") == bytes.fromhex("00000000" "04000000" "08000000")


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ('.ascii "abc"', b"abc"),
        ('.asciz "abc"', b"abc\0"),
        ('.string "abc"', b"abc\0"),
        ('.ascii "a\\n\\t\\"\\\\\\101\\x42"', b'a\n\t"\\AB'),
        ('.ascii "a", "b"', b"ab"),
        ('.ascii "a" "b"', b"ab"),
        ('.string "two", "parts"', b"two\0parts\0"),
        ('.ascii "semi;colon // not a comment"', b"semi;colon // not a comment"),
        ('.ascii "\\0\\377\\b\\f\\r"', b"\0\xff\b\f\r"),
        ('.ascii "caf\u00e9"', "caf\u00e9".encode()),
    ],
)
def test_strings(directive, expected):
    assert data(directive) == expected


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        (".uleb128 0", "00"),
        (".uleb128 127, 128", "7f8001"),
        (".uleb128 624485", "e58e26"),
        (".sleb128 -1", "7f"),
        (".sleb128 63, 64", "3fc000"),
        (".sleb128 -123456", "c0bb78"),
        ("a: .skip 300\nb: .uleb128 b - a", "00" * 300 + "ac02"),
    ],
)
def test_leb128(directive, expected):
    assert data(directive) == bytes.fromhex(expected)


def test_leb128_needs_a_value_known_where_it_stands():
    with pytest.raises(AsmError, match="symbol 'later' is not defined at this point"):
        assemble_source(".uleb128 later\nlater:")


def test_inst_words_are_code():
    assert data(".byte 1\n.inst 0xd503201f, 0xd65f03c0") == b"\x01\0\0\0" + NOP_BYTES + bytes.fromhex("c0035fd6")


# ---------------------------------------------------------------------------
# Alignment, fill, org


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (".byte 1\n.align 3\n.byte 2", b"\x01\0\0\0" + NOP_BYTES + b"\x02"),
        (".byte 1\n.p2align 3\n.byte 2", b"\x01\0\0\0" + NOP_BYTES + b"\x02"),
        (".byte 1\n.balign 8\n.byte 2", b"\x01\0\0\0" + NOP_BYTES + b"\x02"),
        (".byte 1\n.balign 8, 0x11\n.byte 2", b"\x01" + b"\x11" * 7 + b"\x02"),
        (".byte 1\n.p2align 4,,7\n.byte 2", b"\x01\x02"),
        (".byte 1\n.p2align 4,,15\n.byte 2", b"\x01\0\0\0" + NOP_BYTES * 3 + b"\x02"),
        (".byte 1, 2\n.balignw 8, 0x1234\n", b"\x01\x02" + b"\x34\x12" * 3),
        (".word 1\n.balignl 16, 0xaabbccdd\n", b"\x01\0\0\0" + bytes.fromhex("ddccbbaa") * 3),
        (".fill 2, 8, -1", (b"\xff" * 4 + b"\0" * 4) * 2),
        (".fill 1, 3, 0x11223344", b"\x44\x33\x22"),
        (".fill 3", b"\0\0\0"),
        (".skip 3, 0x55\n.space 2\n.zero 1", b"\x55\x55\x55\0\0\0"),
    ],
)
def test_alignment_and_fill_in_code(source, expected):
    assert data(source) == expected


def test_alignment_in_data_pads_with_zeros_and_raises_section_alignment():
    obj = assemble_source(".data\n.byte 1\n.align 4\n.byte 2\n")
    assert bytes(obj.sections[".data"].data) == b"\x01" + bytes(15) + b"\x02"
    assert obj.sections[".data"].align == 16


def test_instructions_are_aligned_in_code_sections_only():
    assert data(".byte 1\nnop") == b"\x01\0\0\0" + NOP_BYTES
    assert data(".data\n.byte 1\nnop", ".data") == b"\x01" + NOP_BYTES


def test_odd_alignment_fill_is_an_error():
    with pytest.raises(AsmError, match="not a multiple of 2"):
        assemble_source(".byte 1\n.balignw 4, 0x1234")
    with pytest.raises(AsmError, match="not a power of 2"):
        assemble_source(".balign 3")


def test_org_moves_forward_with_fill():
    assert data(".byte 1\n.org 4, 0x99\n.byte 2\n.org . + 2\n.byte 3") == b"\x01\x99\x99\x99\x02\0\0\x03"


def test_org_backwards_is_an_alternative_length_mismatch():
    source = (
        "661: nop\nnop\n662:\n.pushsection .altinstr_replacement, \"ax\"\n663: nop\n664:\n"
        ".org . - (664b-663b) + (662b-661b)\n.org . - (662b-661b) + (664b-663b)\n.popsection\n"
    )
    with pytest.raises(AsmError, match=r"<string>:8: .org moves the location backwards.*alternative"):
        assemble_source(source)


def test_org_in_another_section_is_an_error():
    with pytest.raises(AsmError, match="current section"):
        assemble_source("a: nop\n.data\n.org a + 8")


def test_bss_takes_only_zeros():
    obj = assemble_source(".bss\n.skip 16\n.byte 0\n.align 5\n.zero 3")
    assert obj.sections[".bss"].size == 35 and obj.sections[".bss"].align == 32
    with pytest.raises(AsmError, match=r"non-zero data in nobits section \.bss"):
        assemble_source(".bss\n.byte 1")
    with pytest.raises(AsmError, match="instruction in nobits"):
        assemble_source(".bss\nnop")


# ---------------------------------------------------------------------------
# Symbols


def test_symbol_bindings_types_and_sizes():
    obj = assemble_source(
        ".globl f, g\n.weak w\n.local l\n.type f, %function\n.type g, @function\n.type o, %object\n"
        ".type w, STT_FUNC\nf: nop\nnop\n.size f, . - f\ng: nop\nw: nop\nl: nop\n.data\no: .quad 0\n.size o, 8\n"
    )
    s = obj.symbols
    assert (s["f"].binding, s["f"].type, s["f"].size, s["f"].value) == (Binding.GLOBAL, SymbolType.FUNC, 8, 0)
    assert (s["g"].binding, s["g"].type) == (Binding.GLOBAL, SymbolType.FUNC)
    assert (s["w"].binding, s["w"].type, s["w"].value) == (Binding.WEAK, SymbolType.FUNC, 12)
    assert s["l"].binding == Binding.LOCAL
    assert (s["o"].section, s["o"].type, s["o"].size) == (".data", SymbolType.OBJECT, 8)


def test_dot_l_labels_are_local_symbols():
    obj = assemble_source(".L1: nop\n.Lfoo: b .L1\n")
    assert obj.symbols[".L1"].binding == Binding.LOCAL
    assert obj.symbols[".Lfoo"].value == 4


def test_numeric_labels_are_reusable():
    text = data("1: b 1f\n1: b 1b\nb 1b\n1: nop")
    assert text[:4] == (0x14000001).to_bytes(4, "little")  # to the second 1:
    assert text[4:8] == (0x14000000).to_bytes(4, "little")  # to itself
    assert text[8:12] == (0x17FFFFFF).to_bytes(4, "little")  # back to the second 1:


def test_equates():
    obj = assemble_source(
        ".equ A, 4\n.set B, A * 2\nC = B + 1\n.eqv D, C\n.byte A, B, C, D\n.set A, 9\n.byte A\n"
        ".set here, .\n.globl G\nG = 0x4000\n"
    )
    assert bytes(obj.sections[".text"].data) == bytes([4, 8, 9, 9, 9])
    assert obj.symbols["G"].section is None and obj.symbols["G"].value == 0x4000
    assert obj.symbols["G"].binding == Binding.GLOBAL
    assert obj.symbols["here"].section == ".text" and obj.symbols["here"].value == 5


def test_equiv_refuses_redefinition():
    with pytest.raises(AsmError, match="already defined"):
        assemble_source(".equiv A, 1\n.equiv A, 2")


def test_label_redefinition():
    with pytest.raises(AsmError, match=r"<string>:3: symbol 'a' is already defined"):
        assemble_source("a: nop\nnop\na: nop")


def test_recursive_equates_are_errors():
    with pytest.raises(AsmError, match="defined in terms of itself"):
        assemble_source(".word A\n.set A, B\n.set B, A + 1")


def test_equates_cannot_explode():
    source = ".set x, y\n" + ".set x, x + x\n" * 64 + ".word x\n"
    with pytest.raises(AsmError, match="too complex"):
        assemble_source(source)


def test_forward_equate_chains_are_evaluated_once():
    source = ".word e0\n" + "".join(f".set e{i}, e{i + 1} + e{i + 1}\n" for i in range(60)) + ".set e60, 1\n"
    with pytest.raises(AsmError, match="does not fit in 4 byte"):
        assemble_source(source)  # 2**60, computed without walking 2**60 paths


def test_undefined_references_and_declared_globals():
    obj = assemble_source(".globl declared, defined\ndefined: bl called\n.quad data_ref\n")
    assert obj.undefined == {"declared", "called", "data_ref"}
    assert "defined" in obj.symbols and "called" not in obj.symbols


def test_weak_references():
    """Undefined and weak: listed in ``undefined`` with a WEAK symbol entry (the linker's convention)."""
    obj = assemble_source(".weak maybe\nbl maybe\n.weak defined\ndefined: nop\n")
    assert obj.undefined == {"maybe"}
    assert obj.symbols["maybe"].binding == Binding.WEAK and obj.symbols["maybe"].section is None
    assert obj.symbols["defined"].binding == Binding.WEAK and obj.symbols["defined"].section == ".text"


def test_lcomm_and_comm_allocate_bss():
    obj = assemble_source(".lcomm a, 3\n.lcomm b, 24\n.comm c, 100\n.comm d, 4, 8\n")
    s = obj.symbols
    assert (s["a"].section, s["a"].value, s["a"].binding) == (".bss", 0, Binding.LOCAL)
    assert s["b"].value == 8 and s["b"].size == 24
    assert s["c"].value == 32 and s["c"].binding == Binding.GLOBAL and s["c"].type == SymbolType.OBJECT
    assert s["d"].value == 136
    assert obj.sections[".bss"].size == 140


def test_ignored_directives_emit_nothing():
    source = (
        '.file "x.c"\n.ident "GCC"\n.arch armv8-a\n.cpu generic\n.arch_extension crc\n.loc 1 2 3\n'
        ".cfi_startproc\n.cfi_def_cfa_offset 16\n.cfi_offset 29, -16\n.cfi_endproc\n.addrsig\n"
        ".addrsig_sym f\n.variant_pcs f\n.hidden f\n.section .note.GNU-stack,\"\",@progbits\n"
    )
    obj = assemble_source(source)
    assert all(s.size == 0 for s in obj.sections.values())


def test_comments_and_statement_separators():
    source = (
        "// line comment\n# 1 \"cpp-marker.S\"\nnop // trailing\nnop; nop /* block */ ; nop\n"
        "mov x0, /* spanning\n lines */ x1\n  # also a comment\n.ascii \"//;#\"\n"
    )
    assert data(source) == NOP_BYTES * 4 + bytes.fromhex("e00301aa") + b"//;#"


def test_cpp_line_markers_rename_places():
    with pytest.raises(AsmError, match=r"^header\.h:41: "):
        assemble_source('nop\n# 40 "header.h"\nnop\nbogus_insn\n')
