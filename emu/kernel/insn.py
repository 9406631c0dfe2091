"""A64 instruction encode/decode helpers for text patching (arch/arm64/lib/insn.c, asm/insn.h).

Owns the subset of the kernel's insn helpers that text patching, jump labels and
alternatives need: the instruction classes (B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ,
ADR/ADRP, PC-relative literal loads, NOP), the generators for NOP, B/BL,
B.cond, CBZ/CBNZ and ADR/ADRP, the get/set pairs for branch and ADRP offsets,
and ``relocate_alt_insn``, the per-instruction step of alternative.c's
get_alt_insn(). Instructions are little-endian u32 words held as ints.

Where Linux returns AARCH64_BREAK_FAULT, BUG()s, or silently masks an
immediate that does not fit, these functions raise ``PatchError`` naming the
value and the rule it breaks. The immediate fields are written by the pure
encoders of ``emu.blob.reloc``, so the linker and the patcher encode alike;
the range and alignment checks are done here first so the messages speak of
patching, not of relocations.
"""

from __future__ import annotations

import functools

from emu.blob import reloc
from emu.errors import PatchError

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
SZ_4K = 1 << 12

AARCH64_INSN_NOP = 0xD503201F

# (mask, value) pairs of asm/insn.h's __AARCH64_INSN_FUNCS; the encodings are the ARM ARM's.
_B = (0xFC000000, 0x14000000)
_BL = (0xFC000000, 0x94000000)
_CBZ = (0x7F000000, 0x34000000)
_CBNZ = (0x7F000000, 0x35000000)
_TBZ = (0x7F000000, 0x36000000)
_TBNZ = (0x7F000000, 0x37000000)
_BCOND = (0xFF000010, 0x54000000)
_ADR = (0x9F000000, 0x10000000)
_ADRP = (0x9F000000, 0x90000000)
_LDR_LIT = (0xBF000000, 0x18000000)  # LDR Wt/Xt, label
_LDRSW_LIT = (0xFF000000, 0x98000000)
_PRFM_LIT = (0xFF000000, 0xD8000000)
_LDR_SIMD_LIT = (0x3F000000, 0x1C000000)  # LDR St/Dt/Qt, label (opc 11 is unallocated)

# Condition codes of the ARM ARM (C1.2.4), with the HS/LO aliases of CS/CC.
CONDITIONS = {
    "eq": 0x0, "ne": 0x1, "cs": 0x2, "hs": 0x2, "cc": 0x3, "lo": 0x3,
    "mi": 0x4, "pl": 0x5, "vs": 0x6, "vc": 0x7, "hi": 0x8, "ls": 0x9,
    "ge": 0xA, "lt": 0xB, "gt": 0xC, "le": 0xD, "al": 0xE, "nv": 0xF,
}  # fmt: skip

# Branch reach per immediate width: offsets lie in [-reach, +reach).
_REACH_26 = 1 << 27
_REACH_19 = 1 << 20
_REACH_14 = 1 << 15
_ADRP_PAGES = 1 << 20


def _size(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} bytes"


def _hex(value: int) -> str:
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def _matches(insn: int, pair: tuple[int, int]) -> bool:
    return insn & pair[0] == pair[1]


def _word(insn: int) -> int:
    if isinstance(insn, bool) or not isinstance(insn, int) or not 0 <= insn <= MASK32:
        raise PatchError(f"instruction word {insn!r} is not a 32-bit unsigned value")
    return insn


def _address(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MASK64:
        raise PatchError(f"{what} {value!r} is not a 64-bit unsigned address")
    return value


def _signed64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def _register(reg: int) -> int:
    if isinstance(reg, bool) or not isinstance(reg, int) or not 0 <= reg <= 31:
        raise PatchError(f"register number {reg!r} is not in 0..31 (31 is xzr/wzr)")
    return reg


def _condition(cond: str | int) -> int:
    if isinstance(cond, str):
        code = CONDITIONS.get(cond.lower())
        if code is None:
            raise PatchError(f"condition {cond!r} is not one of {', '.join(CONDITIONS)}")
        return code
    if isinstance(cond, bool) or not isinstance(cond, int) or not 0 <= cond <= 15:
        raise PatchError(f"condition code {cond!r} is not in 0..15")
    return cond


def _label_offset(pc: int, addr: int, reach: int, what: str) -> int:
    """addr - pc for a word-aligned PC-relative label, as label_imm_common() checks it."""
    _address(pc, f"{what} site")
    _address(addr, f"{what} target")
    if pc & 3:
        raise PatchError(f"{what} site {pc:#x} is not 4-byte aligned")
    if addr & 3:
        raise PatchError(f"{what} target {addr:#x} is not 4-byte aligned")
    offset = _signed64(addr - pc)
    if not -reach <= offset < reach:
        raise PatchError(
            f"{what} from {pc:#x} to {addr:#x} out of range (+-{_size(reach)}, offset {_hex(offset)})"
        )
    return offset


# ---------------------------------------------------------------------------
# Instruction classes


def aarch64_insn_is_nop(insn: int) -> bool:
    """Exactly HINT #0; the other hints (YIELD, WFE, BTI...) are not NOPs for patching."""
    return _word(insn) == AARCH64_INSN_NOP


def aarch64_insn_is_b(insn: int) -> bool:
    return _matches(_word(insn), _B)


def aarch64_insn_is_bl(insn: int) -> bool:
    return _matches(_word(insn), _BL)


def aarch64_insn_is_bcond(insn: int) -> bool:
    return _matches(_word(insn), _BCOND)


def aarch64_insn_is_cbz(insn: int) -> bool:
    return _matches(_word(insn), _CBZ)


def aarch64_insn_is_cbnz(insn: int) -> bool:
    return _matches(_word(insn), _CBNZ)


def aarch64_insn_is_tbz(insn: int) -> bool:
    return _matches(_word(insn), _TBZ)


def aarch64_insn_is_tbnz(insn: int) -> bool:
    return _matches(_word(insn), _TBNZ)


def aarch64_insn_is_comp_branch(insn: int) -> bool:
    return aarch64_insn_is_cbz(insn) or aarch64_insn_is_cbnz(insn)


def aarch64_insn_is_tst_branch(insn: int) -> bool:
    return aarch64_insn_is_tbz(insn) or aarch64_insn_is_tbnz(insn)


def aarch64_insn_is_branch_imm(insn: int) -> bool:
    """B, BL, B.cond, CBZ/CBNZ or TBZ/TBNZ: the branches whose target is PC-relative."""
    return (
        aarch64_insn_is_b(insn)
        or aarch64_insn_is_bl(insn)
        or aarch64_insn_is_bcond(insn)
        or aarch64_insn_is_comp_branch(insn)
        or aarch64_insn_is_tst_branch(insn)
    )


def aarch64_insn_is_adr(insn: int) -> bool:
    return _matches(_word(insn), _ADR)


def aarch64_insn_is_adrp(insn: int) -> bool:
    return _matches(_word(insn), _ADRP)


def aarch64_insn_is_adr_adrp(insn: int) -> bool:
    return aarch64_insn_is_adr(insn) or aarch64_insn_is_adrp(insn)


def aarch64_insn_is_ldr_lit(insn: int) -> bool:
    """LDR Wt/Xt, label (general registers only, as insn.h defines it)."""
    return _matches(_word(insn), _LDR_LIT)


def aarch64_insn_is_ldrsw_lit(insn: int) -> bool:
    return _matches(_word(insn), _LDRSW_LIT)


def aarch64_insn_is_prfm_lit(insn: int) -> bool:
    return _matches(_word(insn), _PRFM_LIT)


def aarch64_insn_is_ldr_simd_lit(insn: int) -> bool:
    """LDR St/Dt/Qt, label."""
    word = _word(insn)
    return _matches(word, _LDR_SIMD_LIT) and word >> 30 != 0b11


def aarch64_insn_uses_literal(insn: int) -> bool:
    """Whether the instruction computes an address from its own PC other than as a branch.

    Linux's list is LDR (literal), LDRSW (literal), PRFM (literal), ADR and ADRP;
    the SIMD&FP LDR (literal) forms are added here because moving one of them
    breaks it just the same.
    """
    return (
        aarch64_insn_is_ldr_lit(insn)
        or aarch64_insn_is_ldrsw_lit(insn)
        or aarch64_insn_is_prfm_lit(insn)
        or aarch64_insn_is_ldr_simd_lit(insn)
        or aarch64_insn_is_adr_adrp(insn)
    )


# ---------------------------------------------------------------------------
# Generators


def aarch64_insn_gen_nop() -> int:
    return AARCH64_INSN_NOP


def aarch64_insn_gen_branch_imm(pc: int, addr: int, link: bool) -> int:
    """B (link False) or BL (link True) at ``pc`` to ``addr``: +-128 MiB, both word aligned."""
    what = "bl" if link else "b"
    offset = _label_offset(pc, addr, _REACH_26, what)
    return reloc.encode_branch26(_BL[1] if link else _B[1], offset)


def aarch64_insn_gen_cond_branch_imm(pc: int, addr: int, cond: str | int) -> int:
    """B.cond at ``pc`` to ``addr``: +-1 MiB; ``cond`` a name ("eq".."nv", "hs", "lo") or 0..15."""
    code = _condition(cond)
    offset = _label_offset(pc, addr, _REACH_19, "b.cond")
    return reloc.encode_imm19(_BCOND[1] | code, offset)


def aarch64_insn_gen_comp_branch_imm(
    pc: int, addr: int, reg: int, is64: bool, nonzero: bool
) -> int:
    """CBZ (nonzero False) or CBNZ (nonzero True) of Wn/Xn at ``pc`` to ``addr``: +-1 MiB."""
    rt = _register(reg)
    what = "cbnz" if nonzero else "cbz"
    offset = _label_offset(pc, addr, _REACH_19, what)
    base = (_CBNZ[1] if nonzero else _CBZ[1]) | (int(bool(is64)) << 31) | rt
    return reloc.encode_imm19(base, offset)


def aarch64_insn_gen_adr(pc: int, addr: int, reg: int, page: bool) -> int:
    """ADR Xd (page False, +-1 MiB of ``pc``) or ADRP Xd (page True, +-4 GiB of ``pc``'s 4 KiB page).

    ADR reaches any byte; ADRP yields the 4 KiB page holding ``addr``, as
    aarch64_insn_gen_adr() computes it from (addr - ALIGN_DOWN(pc, SZ_4K)) >> 12.
    """
    rd = _register(reg)
    what = "adrp" if page else "adr"
    _address(pc, f"{what} site")
    _address(addr, f"{what} target")
    if pc & 3:
        raise PatchError(f"{what} site {pc:#x} is not 4-byte aligned")
    if page:
        pages = _signed64((addr & ~(SZ_4K - 1)) - (pc & ~(SZ_4K - 1))) >> 12
        if not -_ADRP_PAGES <= pages < _ADRP_PAGES:
            raise PatchError(
                f"adrp from {pc:#x} to {addr:#x} out of range (+-4 GiB in 4 KiB pages, "
                f"{_hex(pages)} pages)"
            )
        return reloc.encode_adrp(_ADRP[1] | rd, pages)
    offset = _signed64(addr - pc)
    if not -_REACH_19 <= offset < _REACH_19:
        raise PatchError(
            f"adr from {pc:#x} to {addr:#x} out of range (+-1 MiB, offset {_hex(offset)})"
        )
    return reloc.encode_adr(_ADR[1] | rd, offset)


# ---------------------------------------------------------------------------
# Offsets of existing instructions


def _branch_field(insn: int) -> tuple[str, int]:
    """The class name and reach of an immediate branch; PatchError for anything else."""
    if aarch64_insn_is_b(insn) or aarch64_insn_is_bl(insn):
        return "b/bl", _REACH_26
    if aarch64_insn_is_bcond(insn) or aarch64_insn_is_comp_branch(insn):
        return "b.cond/cbz/cbnz", _REACH_19
    if aarch64_insn_is_tst_branch(insn):
        return "tbz/tbnz", _REACH_14
    raise PatchError(f"{insn:#010x} ({decode_insn(insn)}) is not an immediate branch")


def aarch64_get_branch_offset(insn: int) -> int:
    """The signed byte offset of B, BL, B.cond, CBZ/CBNZ or TBZ/TBNZ."""
    _, reach = _branch_field(_word(insn))
    if reach == _REACH_26:
        return reloc.decode_branch26(insn)
    if reach == _REACH_19:
        return reloc.decode_imm19(insn)
    return reloc.decode_tbz14(insn)


def aarch64_set_branch_offset(insn: int, offset: int) -> int:
    """``insn`` with its branch offset replaced; the rest of the word is kept.

    Linux masks an offset that does not fit; here it is a PatchError.
    """
    what, reach = _branch_field(_word(insn))
    if offset & 3:
        raise PatchError(f"{what} offset {_hex(offset)} is not a multiple of 4")
    if not -reach <= offset < reach:
        raise PatchError(f"{what} offset {_hex(offset)} out of range (+-{_size(reach)})")
    if reach == _REACH_26:
        return reloc.encode_branch26(insn, offset)
    if reach == _REACH_19:
        return reloc.encode_imm19(insn, offset)
    return reloc.encode_tbz14(insn, offset)


def _require_adrp(insn: int) -> None:
    if not aarch64_insn_is_adrp(insn):
        raise PatchError(f"{insn:#010x} ({decode_insn(insn)}) is not an adrp")


def aarch64_insn_adrp_get_offset(insn: int) -> int:
    """The signed byte distance between the ADRP's page and its target page (+-4 GiB).

    Linux returns an s32 and so wraps beyond +-2 GiB; this returns the full value.
    """
    _require_adrp(_word(insn))
    return reloc.decode_adrp(insn) << 12


def aarch64_insn_adrp_set_offset(insn: int, offset: int) -> int:
    """``insn`` (an ADRP) with its page distance set to ``offset`` bytes, a multiple of 4 KiB."""
    _require_adrp(_word(insn))
    if offset & (SZ_4K - 1):
        raise PatchError(f"adrp offset {_hex(offset)} is not a multiple of 4 KiB")
    pages = offset >> 12
    if not -_ADRP_PAGES <= pages < _ADRP_PAGES:
        raise PatchError(f"adrp offset {_hex(offset)} out of range (+-4 GiB)")
    return reloc.encode_adrp(insn, pages)


# ---------------------------------------------------------------------------
# Alternatives


def relocate_alt_insn(insn: int, alt_pc: int, site_pc: int, repl_start: int, repl_len: int) -> int:
    """The word to write at ``site_pc`` for replacement instruction ``insn`` found at ``alt_pc``.

    Mirrors get_alt_insn() in arch/arm64/kernel/alternative.c: an immediate
    branch whose target lies outside the replacement sequence
    [repl_start, repl_start + repl_len] (end inclusive, as Linux has it) is
    re-pointed to keep that target from the new site; an ADRP keeps its target
    page; ADR and literal loads cannot be moved (Linux BUG()s) and raise
    PatchError; anything else is copied unchanged.
    """
    word = _word(insn)
    for value, what in (
        (alt_pc, "replacement address"),
        (site_pc, "patch site"),
        (repl_start, "replacement start"),
    ):
        _address(value, what)
    if isinstance(repl_len, bool) or not isinstance(repl_len, int) or repl_len < 0:
        raise PatchError(f"replacement length {repl_len!r} is not a byte count")
    if aarch64_insn_is_branch_imm(word):
        target = (alt_pc + aarch64_get_branch_offset(word)) & MASK64
        if repl_start <= target <= repl_start + repl_len:
            return word
        offset = _signed64(target - site_pc)
        try:
            return aarch64_set_branch_offset(word, offset)
        except PatchError as err:
            raise PatchError(
                f"alternative branch {word:#010x} at {alt_pc:#x} to {target:#x} cannot be "
                f"moved to {site_pc:#x}: {err}"
            ) from None
    if aarch64_insn_is_adrp(word):
        target = ((alt_pc & ~(SZ_4K - 1)) + aarch64_insn_adrp_get_offset(word)) & MASK64
        offset = _signed64(target - (site_pc & ~(SZ_4K - 1)))
        try:
            return aarch64_insn_adrp_set_offset(word, offset)
        except PatchError as err:
            raise PatchError(
                f"alternative adrp {word:#010x} at {alt_pc:#x} to page {target:#x} cannot be "
                f"moved to {site_pc:#x}: {err}"
            ) from None
    if aarch64_insn_uses_literal(word):
        raise PatchError(
            f"alternative instruction {word:#010x} ({decode_insn(word, alt_pc)}) at {alt_pc:#x} "
            "uses a PC-relative literal and cannot be moved to the patch site"
        )
    return word


# ---------------------------------------------------------------------------
# Bytes and text


def aarch64_insn_to_bytes(insn: int) -> bytes:
    """The little-endian bytes of an instruction word."""
    return _word(insn).to_bytes(4, "little")


def aarch64_insn_from_bytes(data: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The instruction word stored little-endian at ``data[offset:offset + 4]``."""
    chunk = bytes(data[offset : offset + 4])
    if offset < 0 or len(chunk) != 4:
        raise PatchError(f"no 4-byte instruction at offset {offset:#x} of {len(data)} bytes")
    return int.from_bytes(chunk, "little")


@functools.lru_cache(maxsize=1)
def _disassembler():  # type: ignore[no-untyped-def]
    import capstone

    return capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def decode_insn(insn: int, pc: int = 0) -> str:
    """Capstone's text for ``insn`` at ``pc`` (for messages); ``.inst 0x...`` when undecodable."""
    if isinstance(insn, bool) or not isinstance(insn, int):
        return repr(insn)
    word = insn & MASK32
    try:
        for decoded in _disassembler().disasm_lite(word.to_bytes(4, "little"), pc & MASK64, 1):
            return f"{decoded[2]} {decoded[3]}".strip()
    except Exception:  # a message helper must never raise
        pass
    return f".inst {word:#010x}"
