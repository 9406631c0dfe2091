"""The decode side of emu.kernel.insn: instruction classes, branch and ADRP offsets,
alternative re-pointing (get_alt_insn), bytes and text helpers.

Known words come from the ARM ARM encodings and were assembled/disassembled by
GNU as and objdump; the classes are also checked against capstone over random
words of every class, and the get/set pairs over their whole ranges.
"""

from __future__ import annotations

import capstone
import pytest
from capstone import arm64 as cs_arm64
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import PatchError
from emu.kernel import insn as ki

MASK64 = (1 << 64) - 1
MIB = 1 << 20
PAGE = 4096
SETTINGS = settings(max_examples=200, deadline=None)
CS_REG_ALIASES = {"fp": "x29", "lr": "x30"}

PREDICATES = {
    "nop": ki.aarch64_insn_is_nop,
    "b": ki.aarch64_insn_is_b,
    "bl": ki.aarch64_insn_is_bl,
    "bcond": ki.aarch64_insn_is_bcond,
    "cbz": ki.aarch64_insn_is_cbz,
    "cbnz": ki.aarch64_insn_is_cbnz,
    "tbz": ki.aarch64_insn_is_tbz,
    "tbnz": ki.aarch64_insn_is_tbnz,
    "adr": ki.aarch64_insn_is_adr,
    "adrp": ki.aarch64_insn_is_adrp,
    "ldr_lit": ki.aarch64_insn_is_ldr_lit,
    "ldrsw_lit": ki.aarch64_insn_is_ldrsw_lit,
    "prfm_lit": ki.aarch64_insn_is_prfm_lit,
    "ldr_simd_lit": ki.aarch64_insn_is_ldr_simd_lit,
}
BRANCHES = {"b", "bl", "bcond", "cbz", "cbnz", "tbz", "tbnz"}
LITERALS = {"adr", "adrp", "ldr_lit", "ldrsw_lit", "prfm_lit", "ldr_simd_lit"}

# word, GNU objdump's mnemonic (None: undefined), class, byte offset (ADRP: page distance)
KNOWN = [
    (0xD503201F, "nop", "nop", None),
    (0x14000000, "b", "b", 0),
    (0x14000001, "b", "b", 4),
    (0x17FFFFFF, "b", "b", -4),
    (0x15FFFFFF, "b", "b", 0x7FFFFFC),
    (0x16000000, "b", "b", -0x8000000),
    (0x94000400, "bl", "bl", 0x1000),
    (0x54000040, "b.eq", "bcond", 8),
    (0x54FFFFE1, "b.ne", "bcond", -4),
    (0x5400010E, "b.al", "bcond", 0x20),
    (0x5400080F, "b.nv", "bcond", 0x100),
    (0xB4000040, "cbz", "cbz", 8),
    (0xB4800003, "cbz", "cbz", -0x100000),
    (0x35000081, "cbnz", "cbnz", 0x10),
    (0x357FFFE3, "cbnz", "cbnz", 0xFFFFC),
    (0x36080005, "tbz", "tbz", 0),
    (0x36040000, "tbz", "tbz", -0x8000),
    (0xB7080043, "tbnz", "tbnz", 8),
    (0x3703FFE0, "tbnz", "tbnz", 0x7FFC),
    (0x10000000, "adr", "adr", 0),
    (0x30000001, "adr", "adr", 1),
    (0x707FFFE2, "adr", "adr", 0xFFFFF),
    (0x10800003, "adr", "adr", -0x100000),
    (0xB0000000, "adrp", "adrp", 0x1000),
    (0xF0FFFFF0, "adrp", "adrp", -0x1000),
    (0x90800002, "adrp", "adrp", -0x100000000),
    (0xF07FFFE2, "adrp", "adrp", 0xFFFFF000),
    (0x58000040, "ldr", "ldr_lit", None),
    (0x18000040, "ldr", "ldr_lit", None),
    (0x98000040, "ldrsw", "ldrsw_lit", None),
    (0xD8000040, "prfm", "prfm_lit", None),
    (0x9C000040, "ldr", "ldr_simd_lit", None),
    (0x5C000040, "ldr", "ldr_simd_lit", None),
    (0x1C000040, "ldr", "ldr_simd_lit", None),
    (0xDC000040, None, None, None),  # LDR (literal, SIMD&FP) with opc 11: unallocated
    (0x54000050, "bc.eq", None, None),  # FEAT_HBC BC.cond is not B.cond
    (0xD65F03C0, "ret", None, None),
    (0xD61F0200, "br", None, None),
    (0xD63F0000, "blr", None, None),
    (0xD503203F, "yield", None, None),
    (0xD503245F, "bti", None, None),
    (0x91000400, "add", None, None),
    (0xF9400020, "ldr", None, None),
    (0xD4200000, "brk", None, None),
]


def classes_of(word: int) -> set[str]:
    return {name for name, pred in PREDICATES.items() if pred(word)}


@pytest.fixture(scope="module")
def disasm() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    return md


def decode(md: capstone.Cs, word: int, pc: int = 0) -> capstone.CsInsn | None:
    insns = list(md.disasm(word.to_bytes(4, "little"), pc))
    return insns[0] if insns else None


def target(md: capstone.Cs, word: int, pc: int) -> int:
    insn = decode(md, word, pc)
    assert insn is not None, f"capstone cannot decode {word:#010x}"
    return insn.operands[-1].imm & MASK64


# ---------------------------------------------------------------------------
# Known words


@pytest.mark.parametrize("word, mnemonic, cls, offset", KNOWN, ids=[f"{k[0]:#010x}" for k in KNOWN])
def test_known_words(
    disasm, word: int, mnemonic: str | None, cls: str | None, offset: int | None
) -> None:
    assert classes_of(word) == ({cls} if cls else set())
    assert ki.aarch64_insn_is_branch_imm(word) == (cls in BRANCHES)
    assert ki.aarch64_insn_uses_literal(word) == (cls in LITERALS)
    assert ki.aarch64_insn_is_comp_branch(word) == (cls in ("cbz", "cbnz"))
    assert ki.aarch64_insn_is_tst_branch(word) == (cls in ("tbz", "tbnz"))
    assert ki.aarch64_insn_is_adr_adrp(word) == (cls in ("adr", "adrp"))
    if cls in BRANCHES:
        assert ki.aarch64_get_branch_offset(word) == offset
    if cls == "adrp":
        assert ki.aarch64_insn_adrp_get_offset(word) == offset
    text = ki.decode_insn(word, 0x10000)
    if mnemonic is None:
        assert text == f".inst {word:#010x}"
    else:
        assert text.split()[0] == mnemonic
    if offset is not None and cls != "adrp":
        assert target(disasm, word, 0x10000) == (0x10000 + offset) & MASK64


# ---------------------------------------------------------------------------
# Classes against capstone

CLASS_PATTERNS = [
    (0xFC000000, 0x14000000), (0xFC000000, 0x94000000), (0xFF000010, 0x54000000),
    (0xFF000000, 0x54000000), (0x7F000000, 0x34000000), (0x7F000000, 0x35000000),
    (0x7F000000, 0x36000000), (0x7F000000, 0x37000000), (0x9F000000, 0x10000000),
    (0x9F000000, 0x90000000), (0xBF000000, 0x18000000), (0xFF000000, 0x98000000),
    (0xFF000000, 0xD8000000), (0x3F000000, 0x1C000000), (0x3F000000, 0x18000000),
    (0xFFFFF01F, 0xD503201F), (0xFFFFFFFF, 0xD503201F), (0x00000000, 0x00000000),
]  # fmt: skip
WORDS = st.builds(
    lambda pattern, fill: pattern[1] | (fill & ~pattern[0] & 0xFFFFFFFF),
    st.sampled_from(CLASS_PATTERNS),
    st.integers(0, 0xFFFFFFFF),
)


def capstone_classes(insn: capstone.CsInsn | None) -> set[str]:
    if insn is None:
        return set()
    m = insn.mnemonic
    ops = insn.operands
    literal = bool(ops) and ops[-1].type == cs_arm64.ARM64_OP_IMM
    first = insn.reg_name(ops[0].reg) if ops and ops[0].type == cs_arm64.ARM64_OP_REG else ""
    first = CS_REG_ALIASES.get(first, first)
    found = set()
    if m in ("b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr", "adrp", "nop"):
        found.add(m)
    if m.startswith("b.") and len(m) == 4:
        found.add("bcond")
    if m == "ldr" and literal:
        found.add("ldr_lit" if first[0] in "xw" else "ldr_simd_lit")
    if m == "ldrsw" and literal:
        found.add("ldrsw_lit")
    if m == "prfm" and literal:
        found.add("prfm_lit")
    return found


@SETTINGS
@given(word=WORDS)
def test_classes_agree_with_capstone(disasm, word: int) -> None:
    assert classes_of(word) == capstone_classes(decode(disasm, word))


# ---------------------------------------------------------------------------
# Branch offsets: get/set over whole ranges

# class: (mask, value) of the class, immediate field mask, reach
BRANCH_FIELDS = {
    "b": ((0xFC000000, 0x14000000), 0x03FFFFFF, 1 << 27),
    "bl": ((0xFC000000, 0x94000000), 0x03FFFFFF, 1 << 27),
    "bcond": ((0xFF000010, 0x54000000), 0x7FFFF << 5, 1 << 20),
    "cbz": ((0x7F000000, 0x34000000), 0x7FFFF << 5, 1 << 20),
    "cbnz": ((0x7F000000, 0x35000000), 0x7FFFF << 5, 1 << 20),
    "tbz": ((0x7F000000, 0x36000000), 0x3FFF << 5, 1 << 15),
    "tbnz": ((0x7F000000, 0x37000000), 0x3FFF << 5, 1 << 15),
}


@st.composite
def branch_and_offset(draw: st.DrawFn) -> tuple[str, int, int]:
    cls = draw(st.sampled_from(sorted(BRANCH_FIELDS)))
    (mask, value), _, reach = BRANCH_FIELDS[cls]
    word = value | (draw(st.integers(0, 0xFFFFFFFF)) & ~mask & 0xFFFFFFFF)
    offset = 4 * draw(st.integers(-reach // 4, reach // 4 - 1))
    return cls, word, offset


@SETTINGS
@given(case=branch_and_offset(), pc=st.integers(0, MASK64 >> 2).map(lambda w: w << 2))
def test_branch_offset_round_trip(disasm, case: tuple[str, int, int], pc: int) -> None:
    cls, word, offset = case
    _, field, _ = BRANCH_FIELDS[cls]
    assert classes_of(word) == {cls}
    assert ki.aarch64_set_branch_offset(word, ki.aarch64_get_branch_offset(word)) == word
    new = ki.aarch64_set_branch_offset(word, offset)
    assert ki.aarch64_get_branch_offset(new) == offset
    assert (new ^ word) & ~field == 0, "bits outside the immediate changed"
    if cls != "bcond" or decode(disasm, new) is not None:
        assert target(disasm, new, pc) == (pc + offset) & MASK64


@pytest.mark.parametrize("cls", sorted(BRANCH_FIELDS))
def test_set_branch_offset_edges(cls: str) -> None:
    (_, value), _, reach = BRANCH_FIELDS[cls]
    for offset in (reach - 4, -reach):
        assert ki.aarch64_get_branch_offset(ki.aarch64_set_branch_offset(value, offset)) == offset
    for offset in (reach, -reach - 4):
        with pytest.raises(PatchError, match="out of range"):
            ki.aarch64_set_branch_offset(value, offset)
    for offset in (1, 2, -3, reach - 2):
        with pytest.raises(PatchError, match="is not a multiple of 4"):
            ki.aarch64_set_branch_offset(value, offset)


@pytest.mark.parametrize("word", [0xD503201F, 0x10000000, 0x90000000, 0xD65F03C0, 0x54000050])
def test_branch_offset_of_non_branch(word: int) -> None:
    with pytest.raises(PatchError, match=f"{word:#010x} .* is not an immediate branch"):
        ki.aarch64_get_branch_offset(word)
    with pytest.raises(PatchError, match="is not an immediate branch"):
        ki.aarch64_set_branch_offset(word, 0)


# ---------------------------------------------------------------------------
# ADRP offsets

ADRP_WORDS = st.integers(0, 0xFFFFFFFF).map(lambda fill: 0x90000000 | (fill & 0x60FFFFFF))


@SETTINGS
@given(
    word=ADRP_WORDS,
    pages=st.integers(-MIB, MIB - 1),
    pc=st.integers(0, MASK64 >> 2).map(lambda w: w << 2),
)
def test_adrp_offset_round_trip(disasm, word: int, pages: int, pc: int) -> None:
    assert ki.aarch64_insn_adrp_set_offset(word, ki.aarch64_insn_adrp_get_offset(word)) == word
    new = ki.aarch64_insn_adrp_set_offset(word, pages * PAGE)
    assert ki.aarch64_insn_adrp_get_offset(new) == pages * PAGE
    assert (new ^ word) & ~0x60FFFFE0 == 0, "bits outside immhi:immlo changed"
    assert target(disasm, new, pc) == ((pc & ~(PAGE - 1)) + pages * PAGE) & MASK64


def test_adrp_offset_errors() -> None:
    adrp = 0x90000003
    assert ki.aarch64_insn_adrp_get_offset(ki.aarch64_insn_adrp_set_offset(adrp, -(1 << 32))) == -(
        1 << 32
    )
    for offset in (1 << 32, -(1 << 32) - PAGE):
        with pytest.raises(PatchError, match="out of range"):
            ki.aarch64_insn_adrp_set_offset(adrp, offset)
    for offset in (1, 0x800, -4):
        with pytest.raises(PatchError, match="not a multiple of 4 KiB"):
            ki.aarch64_insn_adrp_set_offset(adrp, offset)
    for word in (0x10000000, 0x14000000):
        with pytest.raises(PatchError, match="is not an adrp"):
            ki.aarch64_insn_adrp_get_offset(word)
        with pytest.raises(PatchError, match="is not an adrp"):
            ki.aarch64_insn_adrp_set_offset(word, 0)


# ---------------------------------------------------------------------------
# Alternatives: get_alt_insn

SITE = 0xFFFF_8000_1012_3450  # an alternative site in .text
REPL = 0xFFFF_8000_1190_0000  # its replacement in .altinstr_replacement (about 24 MiB away)
REPL_LEN = 16


@SETTINGS
@given(
    index=st.integers(0, REPL_LEN // 4 - 1),
    site_delta=st.integers(-(1 << 20), 1 << 20).map(lambda w: 4 * w),
    target_delta=st.integers(-(1 << 22), 1 << 22).map(lambda w: 4 * w),
    link=st.booleans(),
)
def test_alt_branch_keeps_its_target(disasm, index, site_delta, target_delta, link) -> None:
    alt_pc, site_pc = REPL + 4 * index, SITE + site_delta + 4 * index
    dest = SITE + target_delta
    word = ki.aarch64_insn_gen_branch_imm(alt_pc, dest, link)
    new = ki.relocate_alt_insn(word, alt_pc, site_pc, REPL, REPL_LEN)
    if REPL <= dest <= REPL + REPL_LEN:
        assert new == word
    else:
        assert target(disasm, new, site_pc) == dest
        assert ki.aarch64_insn_is_bl(new) == link


@pytest.mark.parametrize("dest_index", [0, 1, 4])  # 4: one past the end, inclusive as in Linux
def test_alt_branch_inside_replacement_is_kept(dest_index: int) -> None:
    alt_pc = REPL + 4
    word = ki.aarch64_insn_gen_cond_branch_imm(alt_pc, REPL + 4 * dest_index, "ne")
    assert ki.relocate_alt_insn(word, alt_pc, SITE + 4, REPL, REPL_LEN) == word


def test_alt_branch_just_outside_replacement_is_moved(disasm) -> None:
    alt_pc, site_pc = REPL + 4, REPL - 0x4000 + 4  # a site within CBNZ reach
    for dest in (REPL - 4, REPL + REPL_LEN + 4):
        word = ki.aarch64_insn_gen_comp_branch_imm(alt_pc, dest, 2, True, True)
        new = ki.relocate_alt_insn(word, alt_pc, site_pc, REPL, REPL_LEN)
        assert new != word and target(disasm, new, site_pc) == dest


def test_alt_branch_out_of_reach_from_site() -> None:
    # A CBZ in the replacement reaching +-1 MiB cannot reach its target from a site 24 MiB away.
    word = ki.aarch64_insn_gen_comp_branch_imm(REPL, REPL + 0x1000, 0, False, False)
    with pytest.raises(PatchError, match=r"cannot be moved to 0xffff800010123450: .*out of range"):
        ki.relocate_alt_insn(word, REPL, SITE, REPL, REPL_LEN)


@SETTINGS
@given(
    alt_pc=st.integers(0, (1 << 40) - 1).map(lambda w: 0xFFFF_8000_0000_0000 + 4 * w),
    site_delta=st.integers(-(1 << 31), 1 << 31).map(lambda w: 4 * w),  # +-8 GiB
    pages=st.integers(-MIB, MIB - 1),
)
def test_alt_adrp_keeps_its_page(disasm, alt_pc: int, site_delta: int, pages: int) -> None:
    site_pc = alt_pc + site_delta
    word = ki.aarch64_insn_adrp_set_offset(0x90000011, pages * PAGE)
    dest_page = target(disasm, word, alt_pc)
    distance = dest_page - (site_pc & ~(PAGE - 1))
    if -(1 << 32) <= distance < 1 << 32:
        new = ki.relocate_alt_insn(word, alt_pc, site_pc, alt_pc, 4)
        assert target(disasm, new, site_pc) == dest_page
    else:
        with pytest.raises(PatchError, match=r"adrp .* cannot be moved"):
            ki.relocate_alt_insn(word, alt_pc, site_pc, alt_pc, 4)


@pytest.mark.parametrize("word", [0x10000000, 0x30000001, 0x58000040, 0x18000040, 0x98000040,
                                  0xD8000040, 0x9C000040, 0x5C000040, 0x1C000040])  # fmt: skip
def test_alt_literal_users_are_refused(word: int) -> None:
    with pytest.raises(PatchError, match="uses a PC-relative literal"):
        ki.relocate_alt_insn(word, REPL, SITE, REPL, REPL_LEN)


@pytest.mark.parametrize(
    "word", [0xD503201F, 0x91000400, 0xD65F03C0, 0xD61F0200, 0xF9400020, 0xDC000040]
)
def test_alt_other_instructions_unchanged(word: int) -> None:
    assert ki.relocate_alt_insn(word, REPL, SITE, REPL, REPL_LEN) == word


def test_alt_bad_arguments() -> None:
    with pytest.raises(PatchError, match="replacement length -4"):
        ki.relocate_alt_insn(0xD503201F, REPL, SITE, REPL, -4)
    with pytest.raises(PatchError, match="patch site -8"):
        ki.relocate_alt_insn(0xD503201F, REPL, -8, REPL, 4)


# ---------------------------------------------------------------------------
# Words, bytes and text


@pytest.mark.parametrize("bad", [-1, 1 << 32, True, "0x14000000", 1.0])
def test_words_must_be_u32(bad: object) -> None:
    with pytest.raises(PatchError, match="is not a 32-bit unsigned value"):
        ki.aarch64_insn_is_b(bad)  # type: ignore[arg-type]
    with pytest.raises(PatchError, match="is not a 32-bit unsigned value"):
        ki.aarch64_insn_to_bytes(bad)  # type: ignore[arg-type]


@SETTINGS
@given(word=st.integers(0, 0xFFFFFFFF), pad=st.binary(max_size=8))
def test_bytes_round_trip(word: int, pad: bytes) -> None:
    data = pad + ki.aarch64_insn_to_bytes(word) + pad
    assert ki.aarch64_insn_from_bytes(data, len(pad)) == word
    assert ki.aarch64_insn_to_bytes(word) == word.to_bytes(4, "little")


@pytest.mark.parametrize(
    "data, offset", [(b"\x1f\x20\x03", 0), (b"\x1f\x20\x03\xd5", 1), (b"\x00" * 8, -4)]
)
def test_from_bytes_short(data: bytes, offset: int) -> None:
    with pytest.raises(PatchError, match="no 4-byte instruction"):
        ki.aarch64_insn_from_bytes(data, offset)


def test_decode_insn_text() -> None:
    assert ki.decode_insn(0xD503201F) == "nop"
    assert ki.decode_insn(0x94000400, 0xFFFF_8000_1000_0000) == "bl #0xffff800010001000"
    assert ki.decode_insn(0x00000000) == "udf #0"
    assert ki.decode_insn(0xFFFFFFFF) == ".inst 0xffffffff"
    assert ki.decode_insn("junk") == "'junk'"  # type: ignore[arg-type]
