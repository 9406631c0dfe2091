"""Instructions: encodings checked through capstone, relocations, local resolution, literal pools."""

from __future__ import annotations

import pytest
from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.blob.asm import assemble_source
from emu.blob.objfile import RelocType
from emu.errors import AsmError

CS = Cs(CS_ARCH_ARM64, CS_MODE_ARM)


def text_of(source: str) -> bytes:
    return bytes(assemble_source(source).sections[".text"].data)


def disasm(data: bytes, address: int = 0) -> list[str]:
    return [f"{m} {o}".strip() for _a, _s, m, o in CS.disasm_lite(data, address)]


def word(source: str) -> int:
    data = text_of(source)
    assert len(data) == 4
    return int.from_bytes(data, "little")


# (source as GNU as / GCC write it, what capstone prints for our encoding)
BY_CLASS = {
    "add/sub immediate": [
        ("add x0, x1, #16", "add x0, x1, #0x10"),
        ("add x0, x1, 16", "add x0, x1, #0x10"),
        ("sub sp, sp, #0x10, lsl #12", "sub sp, sp, #0x10, lsl #12"),
        ("adds w3, w4, #4095", "adds w3, w4, #0xfff"),
        ("add x0, x1, #-4096", "sub x0, x1, #1, lsl #12"),
        ("cmp x0, #-5", "cmn x0, #5"),
        ("cmn w0, -1", "cmp w0, #1"),
        ("add x29, sp, 32", "add x29, sp, #0x20"),
    ],
    "move wide / mov immediate": [
        ("mov x0, #0x10000", "mov x0, #0x10000"),
        ("mov x0, -1", "mov x0, #-1"),
        ("mov w0, 0xffffffff", "mov w0, #-1"),
        ("mov x0, 0xffff0000ffff", "mov x0, #0xffff0000ffff"),
        ("movk x0, 0x1234, lsl 16", "movk x0, #0x1234, lsl #16"),
        ("movz x1, #7, lsl #48", "mov x1, #0x7000000000000"),
        ("movn w2, #0", "mov w2, #-1"),
        ("mov x29, sp", "mov x29, sp"),
    ],
    "logical": [
        ("and w0, w0, 255", "and w0, w0, #0xff"),
        ("and x0, x0, #0xffffffff00000000", "and x0, x0, #0xffffffff00000000"),
        ("tst w0, 0x80000000", "tst w0, #0x80000000"),
        ("eor w3, w3, #-2", "eor w3, w3, #0xfffffffe"),
        ("orr x0, x1, x2, lsl 3", "orr x0, x1, x2, lsl #3"),
        ("bic x0, x1, x2", "bic x0, x1, x2"),
        ("mvn w0, w1", "mvn w0, w1"),
    ],
    "shifts, bitfields, extends": [
        ("lsl x0, x1, 3", "lsl x0, x1, #3"),
        ("asr w0, w1, 31", "asr w0, w1, #0x1f"),
        ("ubfx x0, x1, 3, 4", "ubfx x0, x1, #3, #4"),
        ("bfi x0, x1, #8, #8", "bfi x0, x1, #8, #8"),
        ("sxtw x0, w1", "sxtw x0, w1"),
        ("uxtw x0, w1", "mov w0, w1"),
        ("add x0, x1, w2, sxtw 2", "add x0, x1, w2, sxtw #2"),
        ("cmp x0, x1, sxtw", "cmp x0, w1, sxtw"),
    ],
    "conditional": [
        ("csel x0, x1, x2, eq", "csel x0, x1, x2, eq"),
        ("csinc w0, w1, w2, HS", "csinc w0, w1, w2, hs"),
        ("cset w0, ne", "cset w0, ne"),
        ("ccmp x0, 3, 2, le", "ccmp x0, #3, #2, le"),
        ("cneg x0, x1, mi", "cneg x0, x1, mi"),
    ],
    "multiply and divide": [
        ("mul x0, x1, x2", "mul x0, x1, x2"),
        ("madd w0, w1, w2, w3", "madd w0, w1, w2, w3"),
        ("umull x0, w1, w2", "umull x0, w1, w2"),
        ("sdiv x0, x1, x2", "sdiv x0, x1, x2"),
    ],
    "loads and stores": [
        ("ldr x0, [x0, 8]", "ldr x0, [x0, #8]"),
        ("str w1, [sp, 28]", "str w1, [sp, #0x1c]"),
        ("ldr x0, [x1, #-8]", "ldur x0, [x1, #-8]"),
        ("ldrb w1, [x0, 1]", "ldrb w1, [x0, #1]"),
        ("ldrsw x2, [x3, x4, lsl 2]", "ldrsw x2, [x3, x4, lsl #2]"),
        ("ldr w0, [x1, w2, uxtw 2]", "ldr w0, [x1, w2, uxtw #2]"),
        ("str x0, [sp, -16]!", "str x0, [sp, #-0x10]!"),
        ("ldr x0, [sp], 16", "ldr x0, [sp], #0x10"),
        ("stp x29, x30, [sp, -32]!", "stp x29, x30, [sp, #-0x20]!"),
        ("ldp x29, x30, [sp], 32", "ldp x29, x30, [sp], #0x20"),
        ("ldxr w0, [x1]", "ldxr w0, [x1]"),
        ("stlxr w2, x0, [x1]", "stlxr w2, x0, [x1]"),
        ("ldar x0, [x1]", "ldar x0, [x1]"),
        ("prfm pldl1keep, [x2, #8]", "prfm pldl1keep, [x2, #8]"),
        ("prfm pldl1keep, [x2, #1]", "prfum pldl1keep, [x2, #1]"),
        ("ldaprb w0, [x1]", "ldaprb w0, [x1]"),
        ("ldapr x2, [sp]", "ldapr x2, [sp]"),
    ],
    "register branches": [
        ("br x16", "br x16"),
        ("blr x1", "blr x1"),
        ("ret", "ret"),
        ("ret x1", "ret x1"),
        ("eret", "eret"),
    ],
    "system": [
        ("mrs x0, ttbr1_el1", "mrs x0, ttbr1_el1"),
        ("msr ttbr0_el1, x1", "msr ttbr0_el1, x1"),
        ("mrs x0, pan", "mrs x0, pan"),
        ("mrs x1, id_aa64mmfr2_el1", "mrs x1, id_aa64mmfr2_el1"),
        ("msr sctlr_el12, x2", "msr sctlr_el12, x2"),
        ("mrs x4, s3_0_c15_c2_0", "mrs x4, s3_0_c15_c2_0"),
        ("msr daifset, #0xf", "msr daifset, #0xf"),
        ("msr pan, #1", "msr pan, #1"),
        ("msr uao, #0", "msr uao, #0"),
        ("tlbi vae1is, x4", "tlbi vae1is, x4"),
        ("tlbi vmalle1", "tlbi vmalle1"),
        ("dc civac, x0", "dc civac, x0"),
        ("dc cvap, x1", "dc cvap, x1"),
        ("ic ivau, x3", "ic ivau, x3"),
        ("at s1e1r, x0", "at s1e1r, x0"),
        ("dsb ish", "dsb ish"),
        ("dmb ishld", "dmb ishld"),
        ("isb", "isb"),
        ("sys #3, c7, c5, #1, x1", "ic ivau, x1"),
        ("svc 0", "svc #0"),
        ("hvc #0x12", "hvc #0x12"),
        ("brk #0x800", "brk #0x800"),
        ("udf #0x1234", "udf #0x1234"),
    ],
    "hints, pointer authentication, speculation barriers": [
        ("nop", "nop"),
        ("yield", "yield"),
        ("wfi", "wfi"),
        ("paciasp", "paciasp"),
        ("autiasp", "autiasp"),
        ("bti c", "bti c"),
        ("bti", "bti"),
        ("csdb", "csdb"),
        ("esb", "esb"),
        ("psb csync", "psb csync"),
        ("xpaclri", "xpaclri"),
        ("sb", "sb"),
        ("ssbb", "ssbb"),
        ("pssbb", "pssbb"),
        ("retaa", "retaa"),
        ("pacia x0, x1", "pacia x0, x1"),
        ("autdb x3, sp", "autdb x3, sp"),
        ("paciza x5", "paciza x5"),
        ("pacga x0, x1, x2", "pacga x0, x1, x2"),
        ("braa x1, x2", "braa x1, x2"),
        ("blraaz x3", "blraaz x3"),
    ],
    "floating point and SIMD (a few)": [
        ("fmov d0, xzr", "fmov d0, xzr"),
        ("fmov d1, #1.5", "fmov d1, #1.50000000"),
        ("fcmp d0, #0", "fcmp d0, #0.0"),
        ("ldr q0, [x0, 16]", "ldr q0, [x0, #0x10]"),
        ("mov v0.16b, v1.16b", "mov v0.16b, v1.16b"),
        ("ld1 {v0.16b, v1.16b}, [x0]", "ld1 {v0.16b, v1.16b}, [x0]"),
    ],
}
CASES = [(cls, src, dis) for cls, rows in BY_CLASS.items() for src, dis in rows]


@pytest.mark.parametrize(("cls", "source", "expected"), CASES, ids=[f"{c}:{s}" for c, s, _ in CASES])
def test_encoding_decodes_as_expected(cls, source, expected):
    assert disasm(text_of(source)) == [expected]


@pytest.mark.parametrize(("cls", "source", "expected"), CASES, ids=[f"{c}:{s}" for c, s, _ in CASES])
def test_capstone_round_trip(cls, source, expected):
    """Capstone's rendering of our word assembles back to the same word."""
    data = text_of(source)
    assert text_of(disasm(data)[0]) == data


def test_upper_case_and_register_aliases():
    assert text_of("MOV X2, X3\nLDR X0, [SP, #8]") == text_of("mov x2, x3\nldr x0, [sp, #8]")
    assert text_of("mov x0, ip0\nmov ip1, lr\nmov fp, sp") == text_of("mov x0, x16\nmov x17, x30\nmov x29, sp")


def test_register_aliases_with_req():
    source = "tmp .req x2\nwtmp .req w3\nmov tmp, #1\nldr wtmp, [tmp, #8]\n.unreq tmp\n"
    assert text_of(source) == text_of("mov x2, #1\nldr w3, [x2, #8]")
    with pytest.raises(AsmError, match=r"must be an absolute"):
        assemble_source(source + "mov tmp, #2\n")


# ---------------------------------------------------------------------------
# Branches and addresses resolved at assembly time


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("b 1f\nnop\n1: nop", "b #8"),
        ("bl 1f\n1: nop\n1: bl 1b", "bl #4"),
        ("b.ne 2f\n.skip 0x100\n2:", "b.ne #0x104"),
        ("bne 2f\n.skip 0x100\n2:", "b.ne #0x104"),
        ("cbz w1, .+0x40", "cbz w1, #0x40"),
        ("tbnz x3, 40, 3f\n3:", "tbnz x3, #0x28, #4"),
        ("adr x0, . + 0x1235", "adr x0, #0x1235"),
        ("ldr x0, lit\nlit: .quad 1", "ldr x0, #4"),
        ("prfm pldl1keep, lit\nlit: .quad 1", "prfm pldl1keep, #4"),
        ("b .", "b #0"),
        ("b #8", "b #8"),
    ],
)
def test_local_targets_are_resolved(source, expected):
    obj = assemble_source(source)
    text = obj.sections[".text"]
    assert text.relocations == []
    assert disasm(bytes(text.data[:4]))[0] == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("b .+0x8000000", "branch offset 0x8000000 out of range"),
        ("b.eq .+0x100000", "out of range"),
        ("tbz x0, 1, .+0x8000", "out of range"),
        ("adr x0, .+0x100000", "adr offset 0x100000 out of range"),
        ("b .+2", "not a multiple of 4"),
        ("ldr x0, .+6", "not a multiple of 4"),
    ],
)
def test_local_targets_out_of_range(source, message):
    with pytest.raises(AsmError, match=message):
        assemble_source(source)


# ---------------------------------------------------------------------------
# Relocations: every kind, at the right offset, with the right addend


@pytest.mark.parametrize(
    ("line", "kind", "symbol", "addend"),
    [
        ("b ext", RelocType.JUMP26, "ext", 0),
        ("bl ext + 8", RelocType.CALL26, "ext", 8),
        ("b.eq ext", RelocType.CONDBR19, "ext", 0),
        ("cbnz x1, ext - 4", RelocType.CONDBR19, "ext", -4),
        ("tbz w2, 3, ext", RelocType.TSTBR14, "ext", 0),
        ("ldr x0, ext", RelocType.LD_PREL_LO19, "ext", 0),
        ("ldrsw x0, ext + 12", RelocType.LD_PREL_LO19, "ext", 12),
        ("adr x0, ext + 3", RelocType.ADR_PREL_LO21, "ext", 3),
        ("adrp x0, ext + 0x1000", RelocType.ADR_PREL_PG_HI21, "ext", 0x1000),
        ("adrp x0, :pg_hi21:ext", RelocType.ADR_PREL_PG_HI21, "ext", 0),
        ("adrp x0, :pg_hi21_nc:ext", RelocType.ADR_PREL_PG_HI21_NC, "ext", 0),
        ("add x0, x0, :lo12:ext + 16", RelocType.ADD_ABS_LO12_NC, "ext", 16),
        ("add x0, x0, #:lo12:ext", RelocType.ADD_ABS_LO12_NC, "ext", 0),
        ("ldrb w0, [x0, :lo12:ext]", RelocType.LDST8_ABS_LO12_NC, "ext", 0),
        ("strb w0, [x0, #:lo12:ext+1]", RelocType.LDST8_ABS_LO12_NC, "ext", 1),
        ("ldrsh x0, [x0, :lo12:ext]", RelocType.LDST16_ABS_LO12_NC, "ext", 0),
        ("strh w0, [x0, :lo12:ext]", RelocType.LDST16_ABS_LO12_NC, "ext", 0),
        ("ldr w0, [x0, :lo12:ext]", RelocType.LDST32_ABS_LO12_NC, "ext", 0),
        ("ldrsw x0, [x0, :lo12:ext]", RelocType.LDST32_ABS_LO12_NC, "ext", 0),
        ("str wzr, [x0, :lo12:ext]", RelocType.LDST32_ABS_LO12_NC, "ext", 0),
        ("ldr x0, [x0, #:lo12:ext+8]", RelocType.LDST64_ABS_LO12_NC, "ext", 8),
        ("str xzr, [x0, :lo12:ext]", RelocType.LDST64_ABS_LO12_NC, "ext", 0),
        ("prfm pldl1keep, [x0, :lo12:ext]", RelocType.LDST64_ABS_LO12_NC, "ext", 0),
        ("ldr q0, [x0, :lo12:ext]", RelocType.LDST128_ABS_LO12_NC, "ext", 0),
        ("movz x0, #:abs_g0:ext", RelocType.MOVW_UABS_G0, "ext", 0),
        ("movk x0, #:abs_g0_nc:ext", RelocType.MOVW_UABS_G0_NC, "ext", 0),
        ("movz x0, #:abs_g1:ext", RelocType.MOVW_UABS_G1, "ext", 0),
        ("movk x0, #:abs_g1_nc:ext", RelocType.MOVW_UABS_G1_NC, "ext", 0),
        ("movz x0, #:abs_g2:ext + 4", RelocType.MOVW_UABS_G2, "ext", 4),
        ("movk x0, #:abs_g2_nc:ext", RelocType.MOVW_UABS_G2_NC, "ext", 0),
        ("movz x0, :abs_g3:ext", RelocType.MOVW_UABS_G3, "ext", 0),
        (".quad ext", RelocType.ABS64, "ext", 0),
        (".xword ext - 8", RelocType.ABS64, "ext", -8),
        (".word ext + 4", RelocType.ABS32, "ext", 4),
        (".hword ext", RelocType.ABS16, "ext", 0),
        (".quad ext - .", RelocType.PREL64, "ext", 0),
        (".word ext - . + 4", RelocType.PREL32, "ext", 4),
        (".hword ext - .", RelocType.PREL16, "ext", 0),
    ],
)
@pytest.mark.parametrize("pad", [0, 8])
def test_relocation_kinds(line, kind, symbol, addend, pad):
    source = f".skip {pad}\n{line}\n" if line.startswith(".") else f".rept {pad // 4}\nnop\n.endr\n{line}\n"
    obj = assemble_source(source)
    relocs = obj.sections[".text"].relocations
    assert len(relocs) == 1
    rel = relocs[0]
    assert (rel.offset, rel.kind, rel.symbol, rel.addend) == (pad, kind, symbol, addend)
    assert rel.loc is not None and rel.loc.line == (2 if line.startswith(".") else 4)
    assert symbol in obj.undefined


def test_movw_relocations_keep_their_shift():
    data = text_of("movz x0, #:abs_g1:ext\nmovk x0, #:abs_g2_nc:ext\nmovk x0, #:abs_g3:ext")
    assert disasm(data) == ["movz x0, #0, lsl #16", "movk x0, #0, lsl #32", "movk x0, #0, lsl #48"]


def test_relocations_name_labels_of_other_sections():
    obj = assemble_source("adrp x0, msg\nadd x0, x0, :lo12:msg + 2\n.data\n.word 0\nmsg: .ascii \"hi\"\n")
    relocs = obj.sections[".text"].relocations
    assert [(r.kind, r.symbol, r.addend) for r in relocs] == [
        (RelocType.ADR_PREL_PG_HI21, "msg", 0),
        (RelocType.ADD_ABS_LO12_NC, "msg", 2),
    ]
    assert obj.symbols["msg"].section == ".data" and obj.symbols["msg"].value == 4
    assert obj.undefined == set()


def test_adrp_to_an_absolute_address():
    obj = assemble_source(".equ UART, 0x9000000\nadrp x0, UART\nldr w1, [x0, :lo12:UART + 4]\n")
    (rel,) = obj.sections[".text"].relocations
    assert (rel.kind, rel.symbol, rel.addend) == (RelocType.ADR_PREL_PG_HI21, "*ABS*", 0x9000000)
    assert obj.symbols["*ABS*"].section is None and obj.symbols["*ABS*"].value == 0
    assert disasm(bytes(obj.sections[".text"].data[4:])) == ["ldr w1, [x0, #4]"]


def test_adrp_to_a_local_label_is_relocated():
    """The page delta depends on where the linker puts the section."""
    obj = assemble_source("adrp x0, 1f\nnop\n1: nop")
    (rel,) = obj.sections[".text"].relocations
    assert rel.kind == RelocType.ADR_PREL_PG_HI21 and obj.symbols[rel.symbol].value == 8


def test_branches_to_global_symbols_stay_relocations():
    """GNU as keeps these for symbol preemption; local labels are resolved."""
    obj = assemble_source(".globl g\n.weak w\ng: nop\nw: nop\nl: nop\nb g\nbl w\nb l\n")
    relocs = obj.sections[".text"].relocations
    assert [(r.offset, r.kind, r.symbol) for r in relocs] == [(12, RelocType.JUMP26, "g"), (16, RelocType.CALL26, "w")]
    assert disasm(bytes(obj.sections[".text"].data[20:24]), 20) == ["b #8"]


def test_constants_through_relocation_operators():
    data = text_of(
        ".equ BIG, 0x123456789abc\n"
        "movz x0, #:abs_g2:BIG\nmovk x0, #:abs_g1_nc:BIG\nmovk x0, #:abs_g0_nc:BIG\n"
        "movz x1, :abs_g1_s:-0x20000\n"
        "add x2, x2, :lo12:0x12345\n"
        "ldr x3, [x3, :lo12:0x12348]\n"
    )
    assert disasm(data) == [
        "mov x0, #0x123400000000",
        "movk x0, #0x5678, lsl #16",
        "movk x0, #0x9abc",
        "mov x1, #-0x10001",  # movn: the low half comes from the :abs_g0_nc: movk that follows
        "add x2, x2, #0x345",
        "ldr x3, [x3, #0x348]",
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("movz x0, #:abs_g0:0x10000", "does not fit :abs_g0:"),
        ("ldr x3, [x3, :lo12:0x12341]", "not a multiple of the access size 8"),
        ("add x0, x0, :got:sym", ":got: is not supported"),
        ("movz x0, :abs_g1_s:sym", "MOVW_SABS"),
        ("ldp x0, x1, [x2, :lo12:sym]", ":lo12: cannot be used with ldp"),
        ("mov x0, :abs_g0:sym", "needs movz or movk"),
        ("add x0, x0, sym", "must be an absolute expression"),
        (".byte sym", "no 8-bit relocation"),
        (".quad sym * 2", "too complex"),
        (".text\na: nop\n.data\nb: .word b - a", "difference of symbols in different sections"),
    ],
)
def test_operand_errors(source, message):
    with pytest.raises(AsmError, match=message):
        assemble_source(source)


# ---------------------------------------------------------------------------
# Literal pools (placement, alignment and sharing measured against GNU as)


def test_literal_pool_layout():
    obj = assemble_source(
        "ldr x0, =0x123456789\nldr w1, =0x12345\nldr x2, =0x123456789\nldr x3, =sym\n"
        "ldr w4, =0x12345\nldr x5, =sym + 4 + 4\nldr x6, =sym + 8\nnop\n"
    )
    text = obj.sections[".text"]
    data = bytes(text.data)
    # 8 instructions, then the 4-byte pool at 0x20, then the 8-byte pool aligned to 0x28.
    assert data[0x20:0x24] == (0x12345).to_bytes(4, "little")
    assert data[0x28:0x30] == (0x123456789).to_bytes(8, "little")
    assert len(data) == 0x40
    assert disasm(data[:0x1C]) == [
        "ldr x0, #0x28",
        "ldr w1, #0x20",
        "ldr x2, #0x28",
        "ldr x3, #0x30",
        "ldr w4, #0x20",
        "ldr x5, #0x38",
        "ldr x6, #0x38",
    ]
    assert [(r.offset, r.kind, r.symbol, r.addend) for r in text.relocations] == [
        (0x30, RelocType.ABS64, "sym", 0),
        (0x38, RelocType.ABS64, "sym", 8),
    ]


def test_ltorg_places_the_pool_and_starts_a_new_one():
    data = text_of("ldr x0, =1\n.ltorg\nldr x1, =1\n")
    assert data[8:16] == (1).to_bytes(8, "little")
    assert disasm(data[16:20], 16) == ["ldr x1, #0x18"]
    assert data[24:32] == (1).to_bytes(8, "little")


def test_pools_belong_to_their_section():
    obj = assemble_source("ldr x0, =7\n.data\n.word 3\nldr w1, =9\n")
    assert bytes(obj.sections[".text"].data) == bytes.fromhex("40000058 00000000 0700000000000000".replace(" ", ""))
    assert bytes(obj.sections[".data"].data)[8:12] == (9).to_bytes(4, "little")


def test_pool_literal_of_a_local_label_is_an_abs64_relocation():
    obj = assemble_source("ldr x0, =here\nhere: nop\n")
    (rel,) = obj.sections[".text"].relocations
    assert rel.kind == RelocType.ABS64 and rel.symbol == "here" and rel.offset == 8


# ---------------------------------------------------------------------------
# Immediate ranges keystone would truncate silently


@pytest.mark.parametrize(
    "source",
    [
        "mov w0, #0x100000000",
        "mov w0, #0x1ffffffff",
        "lsl x0, x1, #64",
        "movz x0, #1, lsl #0x100000010",
        "add x0, x1, x2, lsl #0x100000010",
        "prfm #0x100000010, [x0]",
        "ldr x0, [x1, #0x100000010]",
        "orn x0, x1, #1",
    ],
)
def test_out_of_range_immediates_are_errors(source):
    with pytest.raises(AsmError):
        assemble_source(source)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 16) - 1), st.sampled_from([0, 16, 32, 48]))
def test_movz_field_round_trip(imm, shift):
    value = int.from_bytes(text_of(f"movz x3, #{imm}, lsl #{shift}"), "little")
    assert value & 0x1F == 3
    assert (value >> 5) & 0xFFFF == imm
    assert (value >> 21) & 3 == shift // 16


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(1 << 18), max_value=(1 << 18) - 1).map(lambda n: n * 4))
def test_conditional_branch_offsets(offset):
    source = f"b.lt . + {offset}" if offset >= 0 else f"b.lt . - {-offset}"
    value = word(source)
    imm19 = (value >> 5) & 0x7FFFF
    assert (imm19 - (1 << 19) if imm19 >> 18 else imm19) * 4 == offset
    assert value & 0xFF00001F == 0x5400000B
