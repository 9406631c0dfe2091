"""The A64 generators of emu.kernel.insn against three independent implementations.

Every generated word is decoded by capstone at its own address (mnemonic,
registers, condition and absolute target must match), encoded again by
keystone through the guarded worker of emu.blob.ksworker (which assembles at
address 0, so the text names the target relative to the site; for ADRP the
page distance), and executed by Unicorn at the real addresses. The immediate
ranges are drawn whole with hypothesis; the exact edges (max forward, max
backward, one past each) and misaligned sites and targets are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import capstone
import pytest
from capstone import arm64 as cs_arm64
from hypothesis import example, given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
from unicorn import arm64_const as uc_arm64

from emu.blob.ksworker import KeystoneWorker
from emu.errors import PatchError
from emu.kernel.insn import (
    CONDITIONS,
    aarch64_get_branch_offset,
    aarch64_insn_adrp_get_offset,
    aarch64_insn_gen_adr,
    aarch64_insn_gen_branch_imm,
    aarch64_insn_gen_comp_branch_imm,
    aarch64_insn_gen_cond_branch_imm,
    aarch64_insn_gen_nop,
    aarch64_insn_is_nop,
    aarch64_insn_to_bytes,
)

MASK64 = (1 << 64) - 1
CS_REG_ALIASES = {"fp": "x29", "lr": "x30"}
MIB = 1 << 20
PAGE = 4096
SETTINGS = settings(max_examples=200, deadline=None)
EXEC_SETTINGS = settings(max_examples=60, deadline=None)
CODE_NAMES = ["eq", "ne", "hs", "lo", "mi", "pl", "vs", "vc",
              "hi", "ls", "ge", "lt", "gt", "le", "al", "nv"]  # fmt: skip

# Sites anywhere in the 64-bit space (offsets wrap modulo 2**64 as in the C code),
# with the kernel image's neighbourhood and both ends of the space drawn often.
SITES = st.one_of(
    st.integers(0, MASK64 >> 2).map(lambda w: w << 2),
    st.integers(-(1 << 20), 1 << 20).map(lambda w: (0xFFFF_8000_1000_0000 + 4 * w) & MASK64),
    st.integers(0, 1 << 20).map(lambda w: 4 * w),
    st.integers(1, 1 << 20).map(lambda w: (-4 * w) & MASK64),
)
REGS = st.integers(0, 31)


def word_offsets(reach: int) -> st.SearchStrategy[int]:
    """Every 4-byte-aligned offset in [-reach, reach)."""
    return st.integers(-reach // 4, reach // 4 - 1).map(lambda w: 4 * w)


def shex(value: int) -> str:
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def page(addr: int) -> int:
    return addr & ~(PAGE - 1)


def xreg(n: int, is64: bool = True) -> str:
    if n == 31:
        return "xzr" if is64 else "wzr"
    return f"{'x' if is64 else 'w'}{n}"


@pytest.fixture(scope="module")
def disasm() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    return md


@pytest.fixture(scope="module")
def keystone() -> Iterator[Callable[[str], int]]:
    worker = KeystoneWorker()

    def encode(text: str) -> int:
        result = worker.encode(text)
        assert result.error is None, f"keystone refused {text!r}: {result.error}"
        assert result.data is not None and len(result.data) == 4, (text, result.data)
        return int.from_bytes(result.data, "little")

    yield encode
    worker.close()


def decode(md: capstone.Cs, word: int, pc: int) -> capstone.CsInsn:
    insns = list(md.disasm(word.to_bytes(4, "little"), pc))
    assert len(insns) == 1, f"capstone cannot decode {word:#010x}"
    return insns[0]


def operands(insn: capstone.CsInsn) -> list[str | int]:
    """Register names and immediates (immediates as unsigned 64-bit values)."""
    out: list[str | int] = []
    for op in insn.operands:
        if op.type == cs_arm64.ARM64_OP_REG:
            name = insn.reg_name(op.reg)
            out.append(CS_REG_ALIASES.get(name, name))
        else:
            assert op.type == cs_arm64.ARM64_OP_IMM
            out.append(op.imm & MASK64)
    return out


# ---------------------------------------------------------------------------
# NOP


def test_nop_is_hint_zero(disasm: capstone.Cs) -> None:
    assert aarch64_insn_gen_nop() == 0xD503201F
    assert aarch64_insn_is_nop(aarch64_insn_gen_nop())
    assert decode(disasm, aarch64_insn_gen_nop(), 0).mnemonic == "nop"


# ---------------------------------------------------------------------------
# Whole ranges against capstone and keystone


@SETTINGS
@given(pc=SITES, offset=word_offsets(128 * MIB), link=st.booleans())
def test_branch_imm(disasm, keystone, pc: int, offset: int, link: bool) -> None:
    addr = (pc + offset) & MASK64
    word = aarch64_insn_gen_branch_imm(pc, addr, link)
    mnemonic = "bl" if link else "b"
    insn = decode(disasm, word, pc)
    assert (insn.mnemonic, operands(insn)) == (mnemonic, [addr])
    assert keystone(f"{mnemonic} #{shex(offset)}") == word
    assert aarch64_get_branch_offset(word) == offset


@SETTINGS
@given(pc=SITES, offset=word_offsets(MIB), code=st.integers(0, 15), by_name=st.booleans())
def test_cond_branch_imm(disasm, keystone, pc: int, offset: int, code: int, by_name: bool) -> None:
    addr = (pc + offset) & MASK64
    name = CODE_NAMES[code]
    word = aarch64_insn_gen_cond_branch_imm(pc, addr, name if by_name else code)
    insn = decode(disasm, word, pc)
    assert insn.mnemonic == f"b.{name}"
    # capstone numbers its condition codes from 1 (ARM64_CC_EQ == 1 ... ARM64_CC_NV == 16)
    assert insn.cc == code + 1
    assert operands(insn) == [addr]
    assert keystone(f"b.{name} #{shex(offset)}") == word
    assert aarch64_get_branch_offset(word) == offset


@SETTINGS
@given(pc=SITES, offset=word_offsets(MIB), reg=REGS, is64=st.booleans(), nonzero=st.booleans())
def test_comp_branch_imm(disasm, keystone, pc, offset, reg, is64, nonzero) -> None:
    addr = (pc + offset) & MASK64
    word = aarch64_insn_gen_comp_branch_imm(pc, addr, reg, is64, nonzero)
    mnemonic = "cbnz" if nonzero else "cbz"
    insn = decode(disasm, word, pc)
    assert (insn.mnemonic, operands(insn)) == (mnemonic, [xreg(reg, is64), addr])
    assert keystone(f"{mnemonic} {xreg(reg, is64)}, #{shex(offset)}") == word
    assert aarch64_get_branch_offset(word) == offset


@SETTINGS
@given(pc=SITES, offset=st.integers(-MIB, MIB - 1), reg=REGS)
def test_adr(disasm, keystone, pc: int, offset: int, reg: int) -> None:
    addr = (pc + offset) & MASK64
    word = aarch64_insn_gen_adr(pc, addr, reg, page=False)
    insn = decode(disasm, word, pc)
    assert (insn.mnemonic, operands(insn)) == ("adr", [xreg(reg), addr])
    assert keystone(f"adr {xreg(reg)}, #{shex(offset)}") == word


@SETTINGS
@given(pc=SITES, pages=st.integers(-MIB, MIB - 1), in_page=st.integers(0, PAGE - 1), reg=REGS)
def test_adrp(disasm, keystone, pc: int, pages: int, in_page: int, reg: int) -> None:
    addr = (page(pc) + pages * PAGE + in_page) & MASK64
    word = aarch64_insn_gen_adr(pc, addr, reg, page=True)
    insn = decode(disasm, word, pc)
    assert (insn.mnemonic, operands(insn)) == ("adrp", [xreg(reg), page(addr)])
    assert keystone(f"adrp {xreg(reg)}, #{shex(pages * PAGE)}") == word
    assert aarch64_insn_adrp_get_offset(word) == pages * PAGE


# ---------------------------------------------------------------------------
# Range edges and alignment


@dataclass(frozen=True)
class Kind:
    name: str
    gen: Callable[[int, int], int]
    reach: int  # offsets in [-reach, reach)
    align: int  # required alignment of the target


KINDS = [
    Kind("b", lambda pc, addr: aarch64_insn_gen_branch_imm(pc, addr, False), 128 * MIB, 4),
    Kind("bl", lambda pc, addr: aarch64_insn_gen_branch_imm(pc, addr, True), 128 * MIB, 4),
    Kind("b.cond", lambda pc, addr: aarch64_insn_gen_cond_branch_imm(pc, addr, "ne"), MIB, 4),
    Kind(
        "cbz", lambda pc, addr: aarch64_insn_gen_comp_branch_imm(pc, addr, 3, True, False), MIB, 4
    ),
    Kind(
        "cbnz", lambda pc, addr: aarch64_insn_gen_comp_branch_imm(pc, addr, 7, False, True), MIB, 4
    ),
    Kind("adr", lambda pc, addr: aarch64_insn_gen_adr(pc, addr, 5, False), MIB, 1),
]
EDGE_SITES = [0x0, 0x8_0000, 0xFFFF_8000_1000_0000, 0xFFFF_FFFF_FFFF_FFFC]


@pytest.mark.parametrize("pc", EDGE_SITES, ids=hex)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_range_edges(disasm, kind: Kind, pc: int) -> None:
    last_forward = kind.reach - kind.align
    for offset in (last_forward, -kind.reach):
        addr = (pc + offset) & MASK64
        insn = decode(disasm, kind.gen(pc, addr), pc)
        assert operands(insn)[-1] == addr, (kind.name, offset)
    for offset in (kind.reach, -kind.reach - kind.align):
        addr = (pc + offset) & MASK64
        with pytest.raises(
            PatchError, match=rf"{kind.name} from {pc:#x} to {addr:#x} out of range"
        ):
            kind.gen(pc, addr)


@pytest.mark.parametrize("pc", EDGE_SITES, ids=hex)
def test_adrp_range_edges(disasm, pc: int) -> None:
    base = page(pc)
    ok = [base + (MIB - 1) * PAGE + PAGE - 1, base - MIB * PAGE, base + (MIB - 1) * PAGE]
    for addr in ok:
        addr &= MASK64
        insn = decode(disasm, aarch64_insn_gen_adr(pc, addr, 0, True), pc)
        assert operands(insn)[-1] == page(addr)
    for addr in (base + MIB * PAGE, base - MIB * PAGE - 1):
        addr &= MASK64
        with pytest.raises(PatchError, match=rf"adrp from {pc:#x} to {addr:#x} out of range"):
            aarch64_insn_gen_adr(pc, addr, 0, True)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.align == 4], ids=lambda k: k.name)
@pytest.mark.parametrize("skew", [1, 2, 3])
def test_misaligned_target(kind: Kind, skew: int) -> None:
    pc = 0xFFFF_8000_1000_0000
    with pytest.raises(PatchError, match=r"target 0x[0-9a-f]+ is not 4-byte aligned"):
        kind.gen(pc, pc + 0x100 + skew)


@pytest.mark.parametrize(
    "kind",
    [*KINDS, Kind("adrp", lambda pc, addr: aarch64_insn_gen_adr(pc, addr, 0, True), 0, 1)],
    ids=lambda k: k.name,
)
@pytest.mark.parametrize("skew", [1, 2, 3])
def test_misaligned_site(kind: Kind, skew: int) -> None:
    pc = 0xFFFF_8000_1000_0000 + skew
    with pytest.raises(PatchError, match=r"site 0x[0-9a-f]+ is not 4-byte aligned"):
        kind.gen(pc, 0xFFFF_8000_1000_0100)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: aarch64_insn_gen_cond_branch_imm(0, 8, "zz"), "condition 'zz' is not one of"),
        (lambda: aarch64_insn_gen_cond_branch_imm(0, 8, 16), "condition code 16 is not in 0..15"),
        (lambda: aarch64_insn_gen_cond_branch_imm(0, 8, -1), "condition code -1"),
        (lambda: aarch64_insn_gen_comp_branch_imm(0, 8, 32, True, False), "register number 32"),
        (lambda: aarch64_insn_gen_comp_branch_imm(0, 8, -1, True, False), "register number -1"),
        (lambda: aarch64_insn_gen_adr(0, 8, 40, False), "register number 40"),
        (lambda: aarch64_insn_gen_branch_imm(-4, 8, False), "b site -4 is not a 64-bit"),
        (lambda: aarch64_insn_gen_branch_imm(0, 1 << 64, True), "bl target 18446744073709551616"),
        (lambda: aarch64_insn_gen_adr(0, -1, 0, True), "adrp target -1 is not a 64-bit"),
    ],
)
def test_bad_operands(call: Callable[[], int], message: str) -> None:
    with pytest.raises(PatchError, match=message):
        call()


def test_condition_aliases() -> None:
    assert aarch64_insn_gen_cond_branch_imm(0, 8, "cs") == aarch64_insn_gen_cond_branch_imm(
        0, 8, "HS"
    )
    assert aarch64_insn_gen_cond_branch_imm(0, 8, "cc") == aarch64_insn_gen_cond_branch_imm(
        0, 8, "lo"
    )
    assert sorted(set(CONDITIONS.values())) == list(range(16))


# ---------------------------------------------------------------------------
# Execution on Unicorn at the real addresses


def xreg_id(n: int) -> int:
    # Unicorn's register ids are not contiguous (X29 and X30 sit apart from X0..X28).
    return getattr(uc_arm64, f"UC_ARM64_REG_X{n}")


def run_one(word: int, pc: int, regs: dict[int, int], extra_pages: tuple[int, ...] = ()) -> Uc:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    # Unicorn translates past the instruction, so the next word's page is mapped too.
    for base in {page(pc), page(pc + 4), *(page(a) for a in extra_pages)}:
        uc.mem_map(base, PAGE)
    uc.mem_write(pc, aarch64_insn_to_bytes(word))
    for reg, value in regs.items():
        uc.reg_write(reg, value)
    uc.emu_start(pc, 0, count=1)
    return uc


def condition_holds(code: int, nzcv: int) -> bool:
    n, z, c, v = (nzcv >> 3) & 1, (nzcv >> 2) & 1, (nzcv >> 1) & 1, nzcv & 1
    base = [z, c, n, v, c and not z, n == v, n == v and not z, True][code >> 1]
    return bool(base) != bool(code & 1 and code != 15)


EXEC_SITES = st.integers(1, (1 << 46) - 1).map(lambda w: w << 2)


@EXEC_SETTINGS
@given(pc=EXEC_SITES, offset=word_offsets(128 * MIB), link=st.booleans())
def test_branch_executes(pc: int, offset: int, link: bool) -> None:
    addr = (pc + offset) & MASK64
    uc = run_one(
        aarch64_insn_gen_branch_imm(pc, addr, link), pc, {uc_arm64.UC_ARM64_REG_X30: 0}, (addr,)
    )
    assert uc.reg_read(uc_arm64.UC_ARM64_REG_PC) == addr
    assert uc.reg_read(uc_arm64.UC_ARM64_REG_X30) == (pc + 4 if link else 0)


@EXEC_SETTINGS
@given(pc=EXEC_SITES, offset=word_offsets(MIB), code=st.integers(0, 15), nzcv=st.integers(0, 15))
def test_cond_branch_executes(pc: int, offset: int, code: int, nzcv: int) -> None:
    addr = (pc + offset) & MASK64
    word = aarch64_insn_gen_cond_branch_imm(pc, addr, code)
    uc = run_one(word, pc, {uc_arm64.UC_ARM64_REG_NZCV: nzcv << 28}, (addr, pc + 4))
    expected = addr if condition_holds(code, nzcv) else pc + 4
    assert uc.reg_read(uc_arm64.UC_ARM64_REG_PC) == expected


@EXEC_SETTINGS
@given(
    pc=EXEC_SITES,
    offset=word_offsets(MIB),
    reg=st.integers(0, 30),
    is64=st.booleans(),
    nonzero=st.booleans(),
    value=st.sampled_from([0, 1, 1 << 32, 1 << 63, MASK64]),
)
def test_comp_branch_executes(pc, offset, reg, is64, nonzero, value) -> None:
    addr = (pc + offset) & MASK64
    word = aarch64_insn_gen_comp_branch_imm(pc, addr, reg, is64, nonzero)
    uc = run_one(word, pc, {xreg_id(reg): value}, (addr, pc + 4))
    tested = value if is64 else value & 0xFFFF_FFFF
    taken = (tested != 0) == nonzero
    assert uc.reg_read(uc_arm64.UC_ARM64_REG_PC) == (addr if taken else pc + 4)


@example(pc=PAGE - 4, offset=0, distance=0, reg=0)  # the last word of a page
@EXEC_SETTINGS
@given(
    pc=EXEC_SITES,
    offset=st.integers(-MIB, MIB - 1),
    distance=st.integers(-(1 << 32), (1 << 32) - 1),
    reg=st.integers(0, 30),
)
def test_adr_adrp_execute(pc: int, offset: int, distance: int, reg: int) -> None:
    near = (pc + offset) & MASK64
    far = (page(pc) + distance) & MASK64
    uc = run_one(aarch64_insn_gen_adr(pc, near, reg, False), pc, {})
    assert uc.reg_read(xreg_id(reg)) == near
    uc = run_one(aarch64_insn_gen_adr(pc, far, reg, True), pc, {})
    assert uc.reg_read(xreg_id(reg)) == page(far)


def test_condition_helper_matches_arm_arm() -> None:
    # Spot values of the ConditionHolds() pseudocode, so the executor test's
    # oracle cannot be wrong in the same way as the code under test.
    z_set, c_set, n_set, v_set = 0b0100, 0b0010, 0b1000, 0b0001
    assert condition_holds(CONDITIONS["eq"], z_set)
    assert not condition_holds(CONDITIONS["ne"], z_set)
    assert condition_holds(CONDITIONS["hi"], c_set)
    assert not condition_holds(CONDITIONS["hi"], c_set | z_set)
    assert condition_holds(CONDITIONS["lt"], n_set)
    assert not condition_holds(CONDITIONS["lt"], n_set | v_set)
    assert condition_holds(CONDITIONS["le"], z_set)
    assert condition_holds(CONDITIONS["al"], 0) and condition_holds(CONDITIONS["nv"], 0)
