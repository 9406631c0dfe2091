"""AArch64 relocation encoders and range checks, decoded back with capstone."""

from __future__ import annotations

import capstone
import pytest
from capstone import arm64_const
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.blob import reloc
from emu.blob.objfile import RelocType
from emu.blob.reloc import FieldRangeError, apply_relocation

M64 = (1 << 64) - 1
_CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
_CS.detail = True

# (kind, instruction template, range lo, range hi, alignment)
BRANCHES = [
    (RelocType.CALL26, 0x94000000, -(1 << 27), 1 << 27, 4),  # bl
    (RelocType.JUMP26, 0x14000000, -(1 << 27), 1 << 27, 4),  # b
    (RelocType.CONDBR19, 0x54000000, -(1 << 20), 1 << 20, 4),  # b.eq
    (RelocType.CONDBR19, 0xB4000000, -(1 << 20), 1 << 20, 4),  # cbz x0
    (RelocType.LD_PREL_LO19, 0x58000000, -(1 << 20), 1 << 20, 4),  # ldr x0, literal
    (RelocType.TSTBR14, 0x36000000, -(1 << 15), 1 << 15, 4),  # tbz w0, #0
    (RelocType.ADR_PREL_LO21, 0x10000000, -(1 << 20), 1 << 20, 1),  # adr x0
]
LDST = [
    (RelocType.LDST8_ABS_LO12_NC, 0x39400000, 1),  # ldrb w0, [x0]
    (RelocType.LDST16_ABS_LO12_NC, 0x79400000, 2),  # ldrh w0, [x0]
    (RelocType.LDST32_ABS_LO12_NC, 0xB9400000, 4),  # ldr w0, [x0]
    (RelocType.LDST64_ABS_LO12_NC, 0xF9400000, 8),  # ldr x0, [x0]
    (RelocType.LDST128_ABS_LO12_NC, 0x3DC00000, 16),  # ldr q0, [x0]
]
MOVW = [
    # kind, template (hw matches the group), shift, checked bound
    (RelocType.MOVW_UABS_G0, 0xD2800000, 0, 1 << 16),
    (RelocType.MOVW_UABS_G0_NC, 0xF2800000, 0, None),
    (RelocType.MOVW_UABS_G1, 0xD2A00000, 16, 1 << 32),
    (RelocType.MOVW_UABS_G1_NC, 0xF2A00000, 16, None),
    (RelocType.MOVW_UABS_G2, 0xD2C00000, 32, 1 << 48),
    (RelocType.MOVW_UABS_G2_NC, 0xF2C00000, 32, None),
    (RelocType.MOVW_UABS_G3, 0xD2E00000, 48, None),
]
DATA = [
    (RelocType.ABS64, 8, False, None),
    (RelocType.ABS32, 4, False, (-(1 << 31), 1 << 32)),
    (RelocType.ABS16, 2, False, (-(1 << 15), 1 << 16)),
    (RelocType.PREL64, 8, True, None),
    (RelocType.PREL32, 4, True, (-(1 << 31), 1 << 32)),
    (RelocType.PREL16, 2, True, (-(1 << 15), 1 << 16)),
]


def test_every_reloc_type_is_covered() -> None:
    covered = {k for k, *_ in BRANCHES} | {k for k, *_ in LDST} | {k for k, *_ in MOVW}
    covered |= {k for k, *_ in DATA}
    covered |= {RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC}
    covered |= {RelocType.ADD_ABS_LO12_NC}
    assert covered == set(RelocType)


def decode(word: int, address: int) -> capstone.CsInsn:
    insns = list(_CS.disasm(word.to_bytes(4, "little"), address))
    assert len(insns) == 1, f"capstone cannot decode {word:#010x}"
    return insns[0]


def imm_operand(insn: capstone.CsInsn) -> int:
    imms = [op.imm for op in insn.operands if op.type == arm64_const.ARM64_OP_IMM]
    return imms[-1] & M64


def relocate(kind: RelocType, word: int, s: int, a: int, p: int) -> int:
    data = bytearray(word.to_bytes(4, "little"))
    apply_relocation(kind, data, 0, s, a, p)
    return int.from_bytes(data, "little")


_ADDR = st.integers(0, (1 << 64) - 4).map(lambda v: v & ~3)


@pytest.mark.parametrize(("kind", "template", "lo", "hi", "align"), BRANCHES)
@settings(max_examples=150, deadline=None)
@given(p=_ADDR, delta=st.integers(-(1 << 29), 1 << 29), addend=st.integers(-64, 64), data=st.data())
def test_pc_relative_instructions(kind, template, lo, hi, align, p, delta, addend, data) -> None:
    # Concentrate half the cases near the edges of the range.
    if data.draw(st.booleans()):
        delta = data.draw(st.sampled_from([lo, lo - 4, hi - 4, hi, lo - 1, hi - 1, 0, -4]))
    s = (p + delta - addend) & M64
    in_range = lo <= delta < hi and delta % align == 0
    if not in_range:
        with pytest.raises(FieldRangeError) as err:
            relocate(kind, template, s, addend, p)
        assert ("out of range" in err.value.detail) or ("multiple of" in err.value.detail)
        return
    word = relocate(kind, template, s, addend, p)
    assert word & ~_field_mask(kind) == template  # opcode bits untouched
    insn = decode(word, p)
    assert imm_operand(insn) == (p + delta) & M64


def _field_mask(kind: RelocType) -> int:
    return {
        RelocType.CALL26: 0x03FFFFFF,
        RelocType.JUMP26: 0x03FFFFFF,
        RelocType.CONDBR19: 0x7FFFF << 5,
        RelocType.LD_PREL_LO19: 0x7FFFF << 5,
        RelocType.TSTBR14: 0x3FFF << 5,
        RelocType.ADR_PREL_LO21: (0x7FFFF << 5) | (3 << 29),
    }[kind]


@pytest.mark.parametrize("kind", [RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC])
@settings(max_examples=200, deadline=None)
@given(p=_ADDR, delta=st.integers(-(1 << 34), 1 << 34), addend=st.integers(-8192, 8192))
def test_adrp(kind: RelocType, p: int, delta: int, addend: int) -> None:
    s = (p + delta) & M64
    target = (s + addend) & M64
    # Address arithmetic wraps modulo 2^64.
    byte_delta = ((target & ~0xFFF) - (p & ~0xFFF)) & M64
    page_delta = (byte_delta - (1 << 64) if byte_delta >> 63 else byte_delta) >> 12
    fits = -(1 << 20) <= page_delta < 1 << 20
    if kind == RelocType.ADR_PREL_PG_HI21 and not fits:
        with pytest.raises(FieldRangeError, match="adrp page delta"):
            relocate(kind, 0x90000000, s, addend, p)
        return
    word = relocate(kind, 0x90000000, s, addend, p)
    got = imm_operand(decode(word, p))
    if fits:
        assert got == target & ~0xFFF
    else:  # _NC keeps the low 21 bits of the page delta
        wrapped = page_delta & 0x1FFFFF
        wrapped -= (1 << 21) if wrapped >> 20 else 0
        assert got == ((p & ~0xFFF) + (wrapped << 12)) & M64


@settings(max_examples=200, deadline=None)
@given(s=st.integers(0, M64), addend=st.integers(-4096, 4096))
def test_add_lo12(s: int, addend: int) -> None:
    word = relocate(RelocType.ADD_ABS_LO12_NC, 0x91000000, s, addend, 0)
    insn = decode(word, 0)
    assert insn.mnemonic == "add"
    assert imm_operand(insn) == (s + addend) & 0xFFF


@pytest.mark.parametrize(("kind", "template", "size"), LDST)
@settings(max_examples=100, deadline=None)
@given(s=st.integers(0, M64), addend=st.integers(-64, 64))
def test_ldst_lo12(kind: RelocType, template: int, size: int, s: int, addend: int) -> None:
    lo12 = (s + addend) & 0xFFF
    if lo12 % size:
        with pytest.raises(FieldRangeError, match=f"not a multiple of {size}"):
            relocate(kind, template, s, addend, 0)
        return
    word = relocate(kind, template, s, addend, 0)
    mem = [op.mem for op in decode(word, 0).operands if op.type == arm64_const.ARM64_OP_MEM]
    assert mem[0].disp == lo12


@pytest.mark.parametrize(("kind", "template", "shift", "bound"), MOVW)
@settings(max_examples=100, deadline=None)
@given(s=st.integers(0, M64) | st.integers(0, 1 << 50), addend=st.integers(-8, 8))
def test_movw(kind, template, shift, bound, s, addend) -> None:
    x = (s + addend) & M64
    if bound is not None and x >= bound:
        with pytest.raises(FieldRangeError, match="out of range"):
            relocate(kind, template, s, addend, 0)
        return
    word = relocate(kind, template, s, addend, 0)
    assert word & ~(0xFFFF << 5) == template
    insn = decode(word, 0)
    assert insn.mnemonic in ("mov", "movz", "movk")
    expected = (x >> shift) & 0xFFFF
    shifts = [op.shift.value for op in insn.operands if op.type == arm64_const.ARM64_OP_IMM]
    value = imm_operand(insn)
    if insn.mnemonic == "mov":  # capstone shows movz as mov with the shifted immediate
        assert value == expected << shift
    else:
        assert (value, shifts[-1]) == (expected, shift)


@pytest.mark.parametrize(("kind", "size", "pcrel", "bounds"), DATA)
@settings(max_examples=100, deadline=None)
@given(
    p=st.integers(0, M64 - 8),
    s=st.integers(0, M64),
    near=st.integers(-(1 << 33), 1 << 33),
    addend=st.integers(-(1 << 20), 1 << 20),
    use_near=st.booleans(),
)
def test_data_relocations(kind, size, pcrel, bounds, p, s, near, addend, use_near) -> None:
    if use_near:
        s = (p + near) & M64 if pcrel else near & M64
    x = (s + addend - (p if pcrel else 0)) & M64
    signed = x - (1 << 64) if x >> 63 else x
    data = bytearray(b"\xaa" * (size + 4))
    if bounds is not None and not bounds[0] <= signed < bounds[1]:
        with pytest.raises(FieldRangeError, match=f"{size * 8}-bit value"):
            apply_relocation(kind, data, 2, s, addend, p)
        assert data == bytearray(b"\xaa" * (size + 4))  # nothing written on failure
        return
    apply_relocation(kind, data, 2, s, addend, p)
    assert int.from_bytes(data[2 : 2 + size], "little") == x & ((1 << (size * 8)) - 1)
    assert data[:2] == b"\xaa\xaa" and data[2 + size :] == b"\xaa\xaa"


def test_field_outside_section_and_unaligned_instruction() -> None:
    with pytest.raises(FieldRangeError, match="outside the section"):
        apply_relocation(RelocType.ABS64, bytearray(8), 4, 0, 0, 0)
    with pytest.raises(FieldRangeError, match="unaligned offset"):
        apply_relocation(RelocType.CALL26, bytearray(8), 2, 0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(-(1 << 27), (1 << 27) - 1).map(lambda v: v & ~3))
def test_branch_encoder_round_trip(offset: int) -> None:
    assert reloc.decode_branch26(reloc.encode_branch26(0x94000000, offset)) == offset


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(-(1 << 20), (1 << 20) - 1))
def test_adr_and_imm19_round_trip(offset: int) -> None:
    assert reloc.decode_adr(reloc.encode_adr(0x10000000, offset)) == offset
    assert reloc.decode_adrp(reloc.encode_adrp(0x90000000, offset)) == offset
    aligned = offset & ~3
    assert reloc.decode_imm19(reloc.encode_imm19(0x54000000, aligned)) == aligned
    short = aligned >> 5
    assert reloc.decode_tbz14(reloc.encode_tbz14(0x36000000, short & ~3)) == short & ~3
