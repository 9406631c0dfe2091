"""The TLB model on its own: TLBI decoding (against capstone's names), what each
form removes from one TLB (against a reference written from the ARM ARM's
rules), which CPUs a form reaches, and CnP sharing with its remote-fill record."""

from __future__ import annotations

import capstone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.hw.tlb import (
    GLOBAL,
    IS_DOMAIN_MACHINE,
    IS_DOMAIN_NODE,
    REGIME_EL10,
    Shareability,
    Tlb,
    TlbEntry,
    TlbiScope,
    Tlbs,
    canonical_va,
    decode_tlbi,
    is_domains,
)

KERNEL_VA = 0xFFFF_8080_0001_0000
USER_VA = 0x0000_0000_1000_0000
SIZES = (4096, 16384, 65536, 2 << 20, 32 << 20, 1 << 30)


def entry(pa: int = 0x4000_0000, asid: int = GLOBAL, size: int = 4096, node: int = 0,
          filled_by: int = -1, filler_node: int = -1) -> TlbEntry:  # fmt: skip
    return TlbEntry(pa, 7, 7, node, 0, asid, 3, size, filled_by, filler_node)


def tlbi_word(crm: int, op2: int, rt: int = 1) -> int:
    """The A64 SYS encoding of TLBI <op> (op1 0, CRn 8)."""
    return 0xD508_0000 | 8 << 12 | crm << 8 | op2 << 5 | rt


def va_operand(va: int, asid: int = 0) -> int:
    return asid << 48 | (va >> 12) & ((1 << 44) - 1)


# ------------------------------------------------------------------ decoding

_MD = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
EL1_FORMS = [(crm, op2) for crm in (1, 2, 3, 5, 6, 7) for op2 in (0, 1, 2, 3, 5, 7)]


@pytest.mark.parametrize("crm,op2", EL1_FORMS, ids=[f"crm{c}-op2{o}" for c, o in EL1_FORMS])
def test_decode_names_match_capstone(crm, op2):
    op = decode_tlbi(crm, op2, 1 << 46)  # TG 4K, for the range forms
    insn = next(_MD.disasm(tlbi_word(crm, op2).to_bytes(4, "little"), 0), None)
    named = insn is not None and insn.mnemonic == "tlbi"
    if op is None:
        # range forms exist only for the VA scopes
        assert crm in (2, 5, 6) and op2 in (0, 2)
        assert not named or insn.op_str.split(",")[0] not in ("rvmalle1", "raside1")
        return
    assert named, f"capstone does not know {op.name}"
    assert insn.op_str.split(",")[0].strip() == op.name


def test_decode_fields():
    op = decode_tlbi(3, 1, va_operand(KERNEL_VA, 0x1234))
    assert (op.name, op.scope, op.shareability, op.last_level) == (
        "vae1is", TlbiScope.VA, Shareability.INNER, False)
    assert op.asid == 0x1234 and op.va == KERNEL_VA and op.feature is None
    op = decode_tlbi(7, 7, va_operand(USER_VA, 5))
    assert (op.name, op.scope, op.asid, op.va, op.last_level) == (
        "vaale1", TlbiScope.VA_ALL_ASID, None, USER_VA, True)
    assert decode_tlbi(7, 2, 0xABCD << 48, as16=False).asid == 0xCD  # 8-bit ASIDs
    assert decode_tlbi(1, 0, 0).feature == "FEAT_TLBIOS"
    assert decode_tlbi(7, 4, 0) is None  # op2 4 is not an EL1 TLBI
    assert decode_tlbi(0, 0, 0) is None


@pytest.mark.parametrize("tg,shift", [(1, 12), (2, 14), (3, 16)])
def test_decode_range_operand(tg, shift):
    base_va = KERNEL_VA & ~((1 << shift) - 1)
    scale, num = 1, 3
    value = 9 << 48 | tg << 46 | scale << 44 | num << 39 | (base_va >> shift) & ((1 << 37) - 1)
    op = decode_tlbi(2, 1, value)
    assert op.name == "rvae1is" and op.feature == "FEAT_TLBIRANGE"
    assert op.va == base_va  # sign-extended from BaseADDR's top bit
    assert op.va_end == base_va + ((num + 1) << (5 * scale + 1) << shift)
    assert op.asid == 9
    assert decode_tlbi(2, 1, value & ~(3 << 46)) is None  # TG 0 is reserved


def test_canonical_va_follows_bit_55():
    assert canonical_va(0x00FF_0000_0000_1000) == 0xFFFF_0000_0000_1000
    assert canonical_va(0xAB00_0000_0040_0000) == 0x0000_0000_0040_0000  # TBI tag dropped


# ------------------------------------------------------- one TLB, each scope

def reference_removes(op, asid: int, va_page: int, e: TlbEntry) -> bool:
    """The ARM ARM's rules (D8.16), written independently of TlbiOp.matches."""
    if op.scope is TlbiScope.ALL:
        return True
    if op.scope is TlbiScope.ASID:
        return asid != GLOBAL and asid == op.asid
    if op.scope is TlbiScope.VA and not (asid == GLOBAL or asid == op.asid):
        return False
    leaf_lo = va_page - va_page % e.size
    if op.va_end is None:
        return leaf_lo <= op.va < leaf_lo + e.size
    return op.va < leaf_lo + e.size and leaf_lo < op.va_end


_pages = st.integers(0, 0x3FF).map(lambda n: USER_VA + n * 4096) | st.integers(0, 0x3FF).map(
    lambda n: KERNEL_VA + n * 4096)
_entries = st.lists(
    st.tuples(_pages, st.sampled_from([GLOBAL, 1, 2, 300]), st.sampled_from(SIZES[:4])),
    min_size=1, max_size=40,
)
_ops = st.builds(
    lambda crm, op2, page, asid: decode_tlbi(crm, op2, va_operand(page, asid)),
    st.sampled_from([3, 7]), st.sampled_from([0, 1, 2, 3, 5, 7]), _pages,
    st.sampled_from([1, 2, 300, 7]),
)


@settings(max_examples=200, deadline=None)
@given(_entries, _ops)
def test_invalidate_matches_reference(cached, op):
    tlb = Tlb()
    for page, asid, size in cached:
        tlb.insert(page, entry(asid=asid, size=size))
    before = dict(tlb.entries)
    removed = set(tlb.invalidate(op))
    expected = {key for key, e in before.items() if reference_removes(op, key[1], key[2], e)}
    assert removed == expected
    assert set(tlb.entries) == set(before) - expected
    # the leaf index stays consistent: invalidating everything by VA empties it
    for key in list(tlb.entries):
        tlb.invalidate(decode_tlbi(7, 3, va_operand(key[2])))
        assert key not in tlb.entries
    assert len(tlb) == 0


@pytest.mark.parametrize("size", SIZES)
def test_va_invalidation_covers_the_whole_leaf(size):
    tlb = Tlb()
    base = KERNEL_VA & ~(size - 1)
    pages = [base, base + size - 4096, base + (size // 2 & ~4095)]
    for page in pages:
        tlb.insert(page, entry(size=size))
    tlb.insert(base + size, entry(size=size))  # the next leaf stays
    removed = tlb.invalidate(decode_tlbi(7, 1, va_operand(base + size - 4096 + 0x10)))
    assert {key[2] for key in removed} == set(pages)
    assert len(tlb) == 1


def test_lookup_prefers_global_and_matches_asid():
    tlb = Tlb()
    tlb.insert(USER_VA, entry(pa=0x1000, asid=5))
    assert tlb.lookup(USER_VA + 0x123, 5).pa == 0x1000
    assert tlb.lookup(USER_VA, 6) is None
    tlb.insert(USER_VA, entry(pa=0x2000, asid=6))  # a second ASID: a second entry
    assert tlb.lookup(USER_VA, 5).pa == 0x1000 and tlb.lookup(USER_VA, 6).pa == 0x2000
    tlb.insert(KERNEL_VA, entry(pa=0x3000))
    assert tlb.lookup(KERNEL_VA, 1234).pa == 0x3000
    assert tlb.lookup(0xAB00_0000_0000_0000 | USER_VA, 5).pa == 0x1000  # tagged pointer


def test_only_el10_entries_match():
    tlb = Tlb()
    tlb.insert(KERNEL_VA, entry(), regime=REGIME_EL10 + 1)
    assert tlb.invalidate(decode_tlbi(7, 0, 0)) == []
    assert len(tlb) == 1


# ----------------------------------------------------------------- machine

NODES = [0, 0, 1, 1]  # 2 nodes x 2 CPUs


def machine_tlbs(mode: str = IS_DOMAIN_MACHINE) -> Tlbs:
    return Tlbs([Tlb() for _ in NODES], list(NODES), is_domains(NODES, mode))


@pytest.mark.parametrize("mode", [IS_DOMAIN_MACHINE, IS_DOMAIN_NODE])
@pytest.mark.parametrize("crm,share", [(7, ""), (3, "is"), (1, "os")])
def test_forms_reach_the_right_cpus(mode, crm, share):
    tlbs = machine_tlbs(mode)
    tlbs.implemented = frozenset({None, "FEAT_TLBIOS"})
    for cpu in range(4):
        tlbs.insert(cpu, KERNEL_VA, entry(), cnp=False)
    reached = tlbs.tlbi(2, decode_tlbi(crm, 0, 0))
    expected = {"": [2], "os": [0, 1, 2, 3],
                "is": [0, 1, 2, 3] if mode == IS_DOMAIN_MACHINE else [2, 3]}[share]
    assert reached == expected
    assert [len(tlb) == 0 for tlb in tlbs.private] == [cpu in expected for cpu in range(4)]


def test_unimplemented_forms_change_nothing():
    tlbs = machine_tlbs()
    tlbs.insert(0, KERNEL_VA, entry(), cnp=False)
    for crm, op2 in ((1, 0), (2, 1), (5, 3), (6, 5)):
        assert tlbs.tlbi(0, decode_tlbi(crm, op2, 1 << 46)) == []
    assert len(tlbs.private[0]) == 1 and tlbs.invalidations == 0


def test_cnp_shares_within_a_domain_and_records_remote_fills():
    tlbs = machine_tlbs(IS_DOMAIN_MACHINE)
    filled = tlbs.insert(0, KERNEL_VA, entry(pa=0x4000_0000), cnp=True)
    assert (filled.filled_by, filled.filler_node) == (0, 0)
    assert len(tlbs.private[0]) == 0  # a CnP fill goes to the shared TLB
    assert tlbs.lookup(2, KERNEL_VA, 0, cnp=False) is None  # no CnP: private entries only
    assert tlbs.lookup(1, KERNEL_VA, 0, cnp=True).pa == 0x4000_0000  # same node: not remote
    assert tlbs.remote_fills == {}
    for _ in range(3):
        assert tlbs.lookup(3, KERNEL_VA + 8, 0, cnp=True).pa == 0x4000_0000
    (use,) = tlbs.remote_fills.values()
    assert (use.cpu, use.node, use.va, use.filled_by, use.filler_node, use.uses) == (
        3, 1, KERNEL_VA, 0, 0, 3)
    assert tlbs.lookup(3, KERNEL_VA, 0, cnp=True, record=False) is not None
    assert tlbs.remote_fill_summary() == {"translations": 1, "uses": 3, "cpus": 1}
    assert tlbs.lookup(3, KERNEL_VA, 9, cnp=True) is None or filled.asid == GLOBAL


def test_cnp_per_node_domains_do_not_share():
    tlbs = machine_tlbs(IS_DOMAIN_NODE)
    tlbs.insert(0, KERNEL_VA, entry(), cnp=True)
    assert tlbs.lookup(1, KERNEL_VA, 0, cnp=True) is not None
    assert tlbs.lookup(2, KERNEL_VA, 0, cnp=True) is None


def test_local_tlbi_removes_shared_entries_of_the_domain_only():
    tlbs = machine_tlbs(IS_DOMAIN_NODE)
    tlbs.insert(0, KERNEL_VA, entry(), cnp=True)
    tlbs.insert(2, KERNEL_VA, entry(), cnp=True)
    tlbs.tlbi(1, decode_tlbi(7, 1, va_operand(KERNEL_VA)))  # vae1 on node 0's CPU 1
    assert tlbs.lookup(0, KERNEL_VA, 0, cnp=True) is None
    assert tlbs.lookup(3, KERNEL_VA, 0, cnp=True) is not None


def test_asid_of_shared_entries_must_match():
    tlbs = machine_tlbs()
    tlbs.insert(0, USER_VA, entry(asid=4), cnp=True)
    assert tlbs.lookup(1, USER_VA, 4, cnp=True) is not None
    assert tlbs.lookup(1, USER_VA, 5, cnp=True) is None


def test_set_domains_and_errors():
    tlbs = machine_tlbs()
    assert tlbs.mode == IS_DOMAIN_MACHINE
    tlbs.insert(0, KERNEL_VA, entry(), cnp=True)
    tlbs.set_domains(is_domains(NODES, IS_DOMAIN_NODE))
    assert tlbs.mode == IS_DOMAIN_NODE and tlbs.shared == {}
    with pytest.raises(ValueError):
        tlbs.set_domains([0])
    with pytest.raises(ConfigError, match="Inner Shareable domain"):
        is_domains(NODES, "socket")
