"""AArch64 relocation arithmetic: the instruction/data field encoders and the
range checks of "ELF for the Arm 64-bit Architecture" for every RelocType.

The field encoders are pure functions on 32-bit instruction words
(``encode_branch26(insn, offset)``, ``encode_adrp(insn, page_delta)``...) so
that code which patches instructions at run time (kernel/insn.py) encodes
them exactly as the linker does.  They raise ``FieldRangeError`` when a value
does not fit or is misaligned; ``apply_relocation`` computes the relocated
value from S, A and P and stores it.
"""

from __future__ import annotations

from emu.blob.objfile import RelocType
from emu.errors import LinkError

MASK64 = (1 << 64) - 1


class FieldRangeError(LinkError):
    """A value that does not fit an instruction or data field (or is misaligned).

    The linker re-raises it with the symbol and site; ``detail`` is the bare reason.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def _hex(v: int) -> str:
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def signed64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def check_range(value: int, lo: int, hi: int, what: str) -> None:
    """Require lo <= value < hi."""
    if not lo <= value < hi:
        raise FieldRangeError(f"{what} {_hex(value)} out of range [{_hex(lo)}, {_hex(hi)})")


def check_aligned(value: int, align: int, what: str) -> None:
    if value % align:
        raise FieldRangeError(f"{what} {_hex(value)} is not a multiple of {align}")


# ---------------------------------------------------------------------------
# Instruction field encoders (insn is a 32-bit A64 word; offsets are in bytes)


def encode_branch26(insn: int, offset: int) -> int:
    """B / BL: imm26 = offset / 4, offset in [-128 MiB, +128 MiB)."""
    check_aligned(offset, 4, "branch offset")
    check_range(offset, -(1 << 27), 1 << 27, "branch offset")
    return (insn & ~0x03FFFFFF & 0xFFFFFFFF) | ((offset >> 2) & 0x03FFFFFF)


def decode_branch26(insn: int) -> int:
    imm = insn & 0x03FFFFFF
    return (imm - (1 << 26) if imm >> 25 else imm) << 2


def encode_imm19(insn: int, offset: int) -> int:
    """B.cond / CBZ / CBNZ / LDR (literal): imm19 = offset / 4, offset in [-1 MiB, +1 MiB)."""
    check_aligned(offset, 4, "offset")
    check_range(offset, -(1 << 20), 1 << 20, "offset")
    return (insn & ~(0x7FFFF << 5) & 0xFFFFFFFF) | (((offset >> 2) & 0x7FFFF) << 5)


def decode_imm19(insn: int) -> int:
    imm = (insn >> 5) & 0x7FFFF
    return (imm - (1 << 19) if imm >> 18 else imm) << 2


def encode_tbz14(insn: int, offset: int) -> int:
    """TBZ / TBNZ: imm14 = offset / 4, offset in [-32 KiB, +32 KiB)."""
    check_aligned(offset, 4, "test-branch offset")
    check_range(offset, -(1 << 15), 1 << 15, "test-branch offset")
    return (insn & ~(0x3FFF << 5) & 0xFFFFFFFF) | (((offset >> 2) & 0x3FFF) << 5)


def decode_tbz14(insn: int) -> int:
    imm = (insn >> 5) & 0x3FFF
    return (imm - (1 << 14) if imm >> 13 else imm) << 2


def _put_adr_imm(insn: int, imm21: int) -> int:
    imm21 &= 0x1FFFFF
    cleared = insn & ~((0x3 << 29) | (0x7FFFF << 5)) & 0xFFFFFFFF
    return cleared | ((imm21 & 0x3) << 29) | ((imm21 >> 2) << 5)


def _get_adr_imm(insn: int) -> int:
    imm = (((insn >> 5) & 0x7FFFF) << 2) | ((insn >> 29) & 0x3)
    return imm - (1 << 21) if imm >> 20 else imm


def encode_adr(insn: int, offset: int) -> int:
    """ADR: a byte offset in [-1 MiB, +1 MiB)."""
    check_range(offset, -(1 << 20), 1 << 20, "adr offset")
    return _put_adr_imm(insn, offset)


def decode_adr(insn: int) -> int:
    return _get_adr_imm(insn)


def encode_adrp(insn: int, page_delta: int) -> int:
    """ADRP: a delta in 4 KiB pages in [-2^20, 2^20), i.e. +-4 GiB."""
    check_range(page_delta, -(1 << 20), 1 << 20, "adrp page delta")
    return _put_adr_imm(insn, page_delta)


def encode_adrp_nc(insn: int, page_delta: int) -> int:
    """ADRP without the overflow check (R_AARCH64_ADR_PREL_PG_HI21_NC)."""
    return _put_adr_imm(insn, page_delta)


def decode_adrp(insn: int) -> int:
    """The page delta (in pages) of an ADRP."""
    return _get_adr_imm(insn)


def encode_imm12(insn: int, imm12: int) -> int:
    """ADD (immediate) / LDR-STR (unsigned offset): the 12-bit field at bit 10."""
    check_range(imm12, 0, 1 << 12, "imm12")
    return (insn & ~(0xFFF << 10) & 0xFFFFFFFF) | (imm12 << 10)


def encode_ldst_lo12(insn: int, lo12: int, size_log2: int) -> int:
    """LDR/STR (unsigned offset) of 1 << size_log2 bytes: lo12 must be a multiple of the size."""
    check_range(lo12, 0, 1 << 12, "low 12 bits")
    check_aligned(lo12, 1 << size_log2, f"{8 << size_log2}-bit access offset")
    return encode_imm12(insn, lo12 >> size_log2)


def encode_movw(insn: int, imm16: int) -> int:
    """MOVZ / MOVK / MOVN: the 16-bit immediate at bit 5 (hw is left as assembled)."""
    check_range(imm16, 0, 1 << 16, "imm16")
    return (insn & ~(0xFFFF << 5) & 0xFFFFFFFF) | (imm16 << 5)


# ---------------------------------------------------------------------------
# Relocation application

_DATA_SIZE = {
    RelocType.ABS64: 8,
    RelocType.ABS32: 4,
    RelocType.ABS16: 2,
    RelocType.PREL64: 8,
    RelocType.PREL32: 4,
    RelocType.PREL16: 2,
}
_LDST_SHIFT = {
    RelocType.LDST8_ABS_LO12_NC: 0,
    RelocType.LDST16_ABS_LO12_NC: 1,
    RelocType.LDST32_ABS_LO12_NC: 2,
    RelocType.LDST64_ABS_LO12_NC: 3,
    RelocType.LDST128_ABS_LO12_NC: 4,
}
_MOVW = {
    # kind: (shift, exclusive upper bound of X checked, or None for _NC)
    RelocType.MOVW_UABS_G0: (0, 1 << 16),
    RelocType.MOVW_UABS_G0_NC: (0, None),
    RelocType.MOVW_UABS_G1: (16, 1 << 32),
    RelocType.MOVW_UABS_G1_NC: (16, None),
    RelocType.MOVW_UABS_G2: (32, 1 << 48),
    RelocType.MOVW_UABS_G2_NC: (32, None),
    RelocType.MOVW_UABS_G3: (48, None),
}
_PC_RELATIVE = {
    RelocType.PREL64,
    RelocType.PREL32,
    RelocType.PREL16,
    RelocType.LD_PREL_LO19,
    RelocType.ADR_PREL_LO21,
    RelocType.TSTBR14,
    RelocType.CONDBR19,
    RelocType.JUMP26,
    RelocType.CALL26,
}


def field_size(kind: RelocType) -> int:
    """Bytes the relocation writes at its offset."""
    return _DATA_SIZE.get(kind, 4)


def is_pc_relative(kind: RelocType) -> bool:
    return kind in _PC_RELATIVE or kind in (
        RelocType.ADR_PREL_PG_HI21,
        RelocType.ADR_PREL_PG_HI21_NC,
    )


def relocated_value(kind: RelocType, s: int, a: int, p: int) -> int:
    """X of the ABI table as a signed integer: S+A, S+A-P, or Page(S+A)-Page(P)."""
    if kind in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
        return signed64(((s + a) & ~0xFFF) - (p & ~0xFFF))
    if kind in _PC_RELATIVE:
        return signed64(s + a - p)
    return signed64(s + a)


def apply_relocation(kind: RelocType, data: bytearray, offset: int, s: int, a: int, p: int) -> None:
    """Store relocation ``kind`` of (S + A) at ``data[offset:]``, P being its address.

    Raises FieldRangeError when the value does not fit or is misaligned.
    """
    size = field_size(kind)
    if offset < 0 or offset + size > len(data):
        raise FieldRangeError(f"field of {size} bytes at offset {offset:#x} is outside the section")
    x = relocated_value(kind, s, a, p)
    if kind in _DATA_SIZE:
        bits = size * 8
        if kind not in (RelocType.ABS64, RelocType.PREL64):
            check_range(x, -(1 << (bits - 1)), 1 << bits, f"{bits}-bit value")
        data[offset : offset + size] = (x & ((1 << bits) - 1)).to_bytes(size, "little")
        return
    if offset % 4:
        raise FieldRangeError(f"instruction relocation at unaligned offset {offset:#x}")
    insn = int.from_bytes(data[offset : offset + 4], "little")
    insn = encode_for_kind(kind, insn, x)
    data[offset : offset + 4] = insn.to_bytes(4, "little")


def encode_for_kind(kind: RelocType, insn: int, x: int) -> int:
    """Encode the relocated value ``x`` (see relocated_value) into instruction ``insn``."""
    if kind in (RelocType.CALL26, RelocType.JUMP26):
        return encode_branch26(insn, x)
    if kind in (RelocType.CONDBR19, RelocType.LD_PREL_LO19):
        return encode_imm19(insn, x)
    if kind == RelocType.TSTBR14:
        return encode_tbz14(insn, x)
    if kind == RelocType.ADR_PREL_LO21:
        return encode_adr(insn, x)
    if kind == RelocType.ADR_PREL_PG_HI21:
        return encode_adrp(insn, x >> 12)
    if kind == RelocType.ADR_PREL_PG_HI21_NC:
        return encode_adrp_nc(insn, x >> 12)
    if kind == RelocType.ADD_ABS_LO12_NC:
        return encode_imm12(insn, x & 0xFFF)
    if kind in _LDST_SHIFT:
        return encode_ldst_lo12(insn, x & 0xFFF, _LDST_SHIFT[kind])
    if kind in _MOVW:
        shift, bound = _MOVW[kind]
        unsigned = x & MASK64
        if bound is not None and unsigned >= bound:
            raise FieldRangeError(
                f"value {unsigned:#x} out of range [0x0, {bound:#x}) for {kind.name}"
            )
        return encode_movw(insn, (unsigned >> shift) & 0xFFFF)
    raise FieldRangeError(f"relocation type {kind!r} is not supported")
