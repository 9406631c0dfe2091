"""AArch64 encodings, like binutils' opcodes/aarch64-asm.c and aarch64-opc.c:
operand values as the back end hands them to an encoder, and the words
keystone cannot make.

Owns the rendered operand types (``Reg``, ``Kw``, ``Imm``, ``Hex``,
``Float``, ``Shift``, ``Mem``: small frozen dataclasses whose ``str`` is GNU
syntax, which is what keystone is given), ``a64fix`` (every form where
keystone 0.9.2 and GNU as 2.40 part ways: rewritten, or encoded here),
``patch_pc_relative`` (every PC-relative field is filled here, never by
keystone) and capstone's view of a word (``capstone_decodes``, the system
register names).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from emu.blob.asm.common import Fail, hex_text
from emu.blob.objfile import RelocType

_GPR = re.compile(r"(?:([xw])([12]?[0-9]|30)|(xzr|wzr)|(sp|wsp))")


def gpr_number(name: str) -> int | None:
    """The register number of a general register name (31 for xzr/wzr/sp/wsp), or None."""
    m = _GPR.fullmatch(name)
    if not m:
        return None
    if m.group(2):
        return int(m.group(2))
    return 31


# ---------------------------------------------------------------------------
# Rendered operands: what an instruction's operands are once every expression
# has a value; ``str`` gives the GNU syntax keystone assembles.


@dataclass(frozen=True)
class Reg:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Kw:
    """A keyword operand: a condition, a system register or operation, a register list."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Imm:
    value: int

    def __str__(self) -> str:
        return f"#{self.value}"


@dataclass(frozen=True)
class Hex:
    """An immediate written in hex: logical (bitmask) immediates, which keystone reads as unsigned."""

    value: int

    def __str__(self) -> str:
        return f"#{self.value:#x}"


@dataclass(frozen=True)
class Float:
    text: str

    def __str__(self) -> str:
        return f"#{self.text}"


@dataclass(frozen=True)
class Shift:
    """A shift or extend: ``lsl #12``, ``sxtw``, ``uxtw #2``."""

    name: str
    amount: int | None = None

    def __str__(self) -> str:
        return self.name if self.amount is None else f"{self.name} #{self.amount}"


@dataclass(frozen=True)
class Mem:
    """``[base, index, extend]`` with ``!`` for pre-index writeback."""

    base: str
    index: Reg | Imm | None = None
    extend: Shift | None = None
    writeback: bool = False

    def __str__(self) -> str:
        inner = [self.base] + [str(x) for x in (self.index, self.extend) if x is not None]
        return "[" + ", ".join(inner) + "]" + ("!" if self.writeback else "")


ROp = Reg | Kw | Imm | Hex | Float | Shift | Mem


def render(mnemonic: str, ops: Sequence[ROp]) -> str:
    return mnemonic + (" " + ", ".join(str(o) for o in ops) if ops else "")


def register_numbers(op: ROp) -> list[int]:
    """The general registers an operand names (a memory operand's base and index)."""
    if isinstance(op, Reg):
        number = gpr_number(op.name)
        return [number] if number is not None else []
    if isinstance(op, Mem):
        numbers = []
        base = gpr_number(op.base)
        if base is not None:
            numbers.append(base)
        if isinstance(op.index, Reg):
            numbers += register_numbers(op.index)
        return numbers
    return []


_ADDSUB_FLIP = {"add": "sub", "sub": "add", "adds": "subs", "subs": "adds", "cmp": "cmn", "cmn": "cmp"}
_EXTEND_32 = {"uxtb", "uxth", "uxtw", "sxtb", "sxth", "sxtw"}
_LSE = re.compile(
    r"(?:ld|st)(?:add|clr|eor|set|smax|smin|umax|umin)(?:a|al|l)?[bh]?"
    r"|swp(?:a|al|l)?[bh]?|casp?(?:a|al|l)?[bh]?"
)

# ---------------------------------------------------------------------------
# a64fix: where keystone 0.9.2 and GNU as 2.40 part ways, measured by assembling
# generated instruction sets with both (tests/blob/test_asm_oracle.py keeps it so):
# - keystone rejects: the hint-space aliases (bti, paciasp/autiasp/..., csdb, esb,
#   psb/tsb csync, dgh, xpaclri), sb/ssbb/pssbb, retaa/retab/eretaa/eretab, udf, the
#   PAuth data-processing and branch forms, ldapr/ldaprb/ldaprh, "msr pan|uao|dit|ssbs|tco,
#   #imm", about 270 system register names (pan, uao, ttbr1_el2, the *_el12 aliases,
#   id_aa64mmfr2_el1, ...), dc cvap/cvadp, prfm with an unscaled offset (GNU: prfum),
#   add/sub/cmp/cmn with some negative immediates (#-4096), extended-register operands
#   written with an X register (cmp x0, x1, sxtw), fcmp #0, and LSE atomics (left an error).
# - keystone encodes differently: uxtw xD, wN (keystone: ubfx; GNU: mov wD, wN).
# - keystone is silently wrong: values that do not fit are truncated (mov w0, #2**32 is
#   mov w0, #0; shift amounts, prfm operations), branch offsets out of range spill into
#   the opcode (b #0x8000000 becomes another instruction), so immediates are range-checked
#   here and every PC-relative field is filled here, never by keystone.
# - keystone returns no bytes and no error: UNPREDICTABLE register overlaps that GNU only
#   warns about (strb w16, [x16, 220]!; stxr w0, x0, [x1]; ldp x1, x1, [x0]) and dc cvap.
# - keystone accepts what GNU rejects: orn/eon with an immediate (refused here too).

_HINT_ALIASES = {
    "yield": 1, "wfe": 2, "wfi": 3, "sev": 4, "sevl": 5, "dgh": 6, "xpaclri": 7,
    "pacia1716": 8, "pacib1716": 10, "autia1716": 12, "autib1716": 14, "esb": 16,
    "csdb": 20, "paciaz": 24, "paciasp": 25, "pacibz": 26, "pacibsp": 27,
    "autiaz": 28, "autiasp": 29, "autibz": 30, "autibsp": 31,
}  # fmt: skip
_HINT_WITH_OPERAND = {("psb", "csync"): 17, ("tsb", "csync"): 18, ("bti", ""): 32, ("bti", "c"): 34, ("bti", "j"): 36, ("bti", "jc"): 38}
_FIXED_WORDS = {
    "sb": 0xD50330FF, "ssbb": 0xD503309F, "pssbb": 0xD503349F,
    "retaa": 0xD65F0BFF, "retab": 0xD65F0FFF, "eretaa": 0xD69F0BFF, "eretab": 0xD69F0FFF,
}  # fmt: skip
_PAC_TWO = {n: 0xDAC10000 | i << 10 for i, n in enumerate(("pacia", "pacib", "pacda", "pacdb", "autia", "autib", "autda", "autdb"))}
_PAC_ONE = {n: 0xDAC123E0 | i << 10 for i, n in enumerate(("paciza", "pacizb", "pacdza", "pacdzb", "autiza", "autizb", "autdza", "autdzb"))}
_PAC_ONE |= {"xpaci": 0xDAC143E0, "xpacd": 0xDAC147E0}
_PAC_BRANCH_TWO = {"braa": 0xD71F0800, "brab": 0xD71F0C00, "blraa": 0xD73F0800, "blrab": 0xD73F0C00}
_PAC_BRANCH_ONE = {"braaz": 0xD61F081F, "brabz": 0xD61F0C1F, "blraaz": 0xD63F081F, "blrabz": 0xD63F0C1F}
_LDAPR = {"ldaprb": 0, "ldaprh": 1}
# PSTATE fields for "msr <field>, #imm": (op1, op2, largest immediate).
_PSTATE = {
    "spsel": (0, 5, 1), "daifset": (3, 6, 15), "daifclr": (3, 7, 15), "uao": (0, 3, 1),
    "pan": (0, 4, 1), "dit": (3, 2, 1), "ssbs": (3, 1, 1), "tco": (3, 4, 1),
}  # fmt: skip
# "dc" operations keystone does not know: (op1, CRm, op2) of SYS with CRn=7.
_DC_EXTRA = {"cvap": (3, 12, 1), "cvadp": (3, 13, 1)}


@functools.lru_cache(maxsize=1)
def _capstone():  # type: ignore[no-untyped-def]
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

    return Cs(CS_ARCH_ARM64, CS_MODE_ARM)


@functools.lru_cache(maxsize=65536)
def capstone_decodes(word: int) -> bool:
    """True if capstone 5 decodes the 32-bit word as an instruction."""
    return any(True for _ in _capstone().disasm_lite(word.to_bytes(4, "little"), 0))


@functools.lru_cache(maxsize=1)
def system_register_names() -> tuple[dict[str, str], dict[str, str]]:
    """Names capstone gives system registers, for mrs and for msr, as s<op0>_<op1>_c<n>_c<m>_<op2>.

    Keystone lacks many register names GNU as knows (pan, uao, ttbr1_el2, the
    *_el12 aliases...) but encodes the generic form correctly.
    """
    names: tuple[dict[str, str], dict[str, str]] = ({}, {})
    md = _capstone()
    for table, base, reg_index in ((names[0], 0xD5300000, 1), (names[1], 0xD5100000, 0)):
        code = b"".join((base | i << 5).to_bytes(4, "little") for i in range(1 << 15))
        offset = 0
        while offset < len(code):
            decoded = 0
            for address, _size, _mnemonic, op_str in md.disasm_lite(code[offset:], offset):
                decoded += 1
                word = base | (address // 4) << 5
                operands = [x.strip() for x in op_str.split(",")]
                if len(operands) != 2:
                    continue
                name = operands[reg_index].lower()
                if re.fullmatch(r"s\d_\d_c\d+_c\d+_\d", name):
                    continue
                op0 = 2 + (word >> 19 & 1)
                generic = f"s{op0}_{word >> 16 & 7}_c{word >> 12 & 15}_c{word >> 8 & 15}_{word >> 5 & 7}"
                table.setdefault(name, generic)
            offset += 4 * max(decoded, 1)
    return names


def _reg_field(op: ROp, what: str) -> int:
    number = gpr_number(op.name) if isinstance(op, Reg) else None
    if number is None:
        raise Fail(f"{what} must be a general register")
    return number


def a64fix(mnemonic: str, ops: list[ROp]) -> tuple[str, list[ROp]] | int:
    """Make an instruction keystone-safe and GNU-exact: a new (mnemonic, operands),
    or the encoded word when keystone cannot encode the form at all."""
    m = mnemonic
    if m in _FIXED_WORDS and not ops:
        return _FIXED_WORDS[m]
    if m in _HINT_ALIASES and not ops:
        return 0xD503201F | _HINT_ALIASES[m] << 5
    if m in ("psb", "tsb", "bti"):
        key = (m, ops[0].text if ops and isinstance(ops[0], Kw) else "")
        if len(ops) <= 1 and key in _HINT_WITH_OPERAND:
            return 0xD503201F | _HINT_WITH_OPERAND[key] << 5
        raise Fail(f"bad operand for {m}")
    if m == "udf":
        if len(ops) == 1 and isinstance(ops[0], Imm) and 0 <= ops[0].value <= 0xFFFF:
            return ops[0].value
        raise Fail("udf needs an immediate in [0, 0xffff]")
    if m in _PAC_TWO and len(ops) == 2:
        return _PAC_TWO[m] | _reg_field(ops[1], "source") << 5 | _reg_field(ops[0], "destination")
    if m in _PAC_ONE and len(ops) == 1:
        return _PAC_ONE[m] | _reg_field(ops[0], "destination")
    if m == "pacga" and len(ops) == 3:
        return 0x9AC03000 | _reg_field(ops[2], "modifier") << 16 | _reg_field(ops[1], "source") << 5 | _reg_field(ops[0], "destination")
    if m in _PAC_BRANCH_TWO and len(ops) == 2:
        return _PAC_BRANCH_TWO[m] | _reg_field(ops[0], "target") << 5 | _reg_field(ops[1], "modifier")
    if m in _PAC_BRANCH_ONE and len(ops) == 1:
        return _PAC_BRANCH_ONE[m] | _reg_field(ops[0], "target") << 5
    if (m in _LDAPR or m == "ldapr") and len(ops) == 2 and isinstance(ops[1], Mem) and ops[1].extend is None:
        index = ops[1].index
        if index is not None and index != Imm(0):
            raise Fail(f"{m} takes no offset")
        if m == "ldapr":
            size = 3 if isinstance(ops[0], Reg) and ops[0].name.startswith("x") else 2
        else:
            size = _LDAPR[m]
        return 0x38BFC000 | size << 30 | _reg_field(Reg(ops[1].base), "base") << 5 | _reg_field(ops[0], "target")
    if m == "msr" and len(ops) == 2 and isinstance(ops[0], Kw) and isinstance(ops[1], Imm):
        field_ = _PSTATE.get(ops[0].text)
        if field_ is None:
            raise Fail(f"'{ops[0].text}' is not a PSTATE field for msr #imm")
        op1, op2, top = field_
        if not 0 <= ops[1].value <= top:
            raise Fail(f"immediate {ops[1].value} out of range [0, {top}] for msr {ops[0].text}")
        return 0xD500401F | op1 << 16 | ops[1].value << 8 | op2 << 5
    if m == "dc" and len(ops) == 2 and isinstance(ops[0], Kw) and ops[0].text in _DC_EXTRA:
        op1, crm, op2 = _DC_EXTRA[ops[0].text]
        return 0xD5087000 | op1 << 16 | crm << 8 | op2 << 5 | _reg_field(ops[1], "address")
    if m in ("mrs", "msr") and len(ops) == 2:
        position = 1 if m == "mrs" else 0
        named = ops[position]
        if isinstance(named, Kw):
            table = system_register_names()[0 if m == "mrs" else 1]
            if named.text in table:
                ops = list(ops)
                ops[position] = Kw(table[named.text])
        return m, ops
    if _LSE.fullmatch(m):
        raise Fail(f"LSE atomic '{m}' is not supported (keystone 0.9.2 cannot encode it)")
    last = ops[-1] if ops else None
    if m in _ADDSUB_FLIP and isinstance(last, Imm) and last.value < 0:
        return _ADDSUB_FLIP[m], [*ops[:-1], Imm(-last.value)]
    if m in _ADDSUB_FLIP and len(ops) >= 3 and isinstance(last, Shift):
        value = ops[-2]
        if isinstance(value, Imm) and value.value < 0:
            return _ADDSUB_FLIP[m], [*ops[:-2], Imm(-value.value), last]
        if last.name in _EXTEND_32 and isinstance(value, Reg) and value.name.startswith("x") and value.name != "xzr":
            return m, [*ops[:-2], Reg("w" + value.name[1:]), last]
    if m == "uxtw" and len(ops) == 2 and isinstance(ops[0], Reg) and ops[0].name[0] in "xw":
        dest = "wzr" if ops[0].name in ("xzr", "wzr") else "w" + ops[0].name[1:]
        return "mov", [Reg(dest), ops[1]]
    if m == "prfm" and len(ops) == 2 and isinstance(ops[1], Mem) and isinstance(ops[1].index, Imm):
        offset = ops[1].index.value
        if (offset % 8 or offset < 0) and -256 <= offset < 256 and not ops[1].writeback:
            return "prfum", ops
    if m in ("fcmp", "fcmpe") and len(ops) == 2 and ops[1] == Imm(0):
        return m, [ops[0], Float("0.0")]
    return m, ops


# ---------------------------------------------------------------------------
# Field patches for references resolved at assembly time


def patch_pc_relative(word: int, kind: RelocType, offset: int) -> int:
    """Store a PC-relative byte offset in the field ``kind`` relocates; Fail if it cannot."""

    def check(bits: int, scale: int, what: str) -> int:
        if offset % scale:
            raise Fail(f"{what} offset {hex_text(offset)} is not a multiple of {scale}")
        lo, hi = -(1 << (bits - 1)) * scale, (1 << (bits - 1)) * scale
        if not lo <= offset < hi:
            raise Fail(f"{what} offset {hex_text(offset)} out of range [{hex_text(lo)}, {hex_text(hi)})")
        return (offset // scale) & ((1 << bits) - 1)

    if kind in (RelocType.JUMP26, RelocType.CALL26):
        return (word & ~0x03FFFFFF) | check(26, 4, "branch")
    if kind in (RelocType.CONDBR19, RelocType.LD_PREL_LO19):
        return (word & ~(0x7FFFF << 5)) | check(19, 4, "branch" if kind == RelocType.CONDBR19 else "literal") << 5
    if kind == RelocType.TSTBR14:
        return (word & ~(0x3FFF << 5)) | check(14, 4, "test-and-branch") << 5
    if kind == RelocType.ADR_PREL_LO21:
        imm = check(21, 1, "adr")
        return (word & ~(0x7FFFF << 5 | 3 << 29)) | (imm & 3) << 29 | (imm >> 2) << 5
    if kind in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
        imm = check(21, 4096, "adrp")
        return (word & ~(0x7FFFF << 5 | 3 << 29)) | (imm & 3) << 29 | (imm >> 2) << 5
    raise Fail(f"cannot resolve {kind.name} at assembly time")
