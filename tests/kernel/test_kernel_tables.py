"""The descriptors Linux (v6.7 with the series, rodata=full) builds, and the
TLB reach they give: PTE_CONT on node 0's text (a 64K-aligned group), not on a
page-aligned copy; no hint on rodata; the linear map in pages, without the
hint, under table descriptors with PXNTable; the walk reporting the hint and
the TLB counting a contiguous group as one entry."""

from __future__ import annotations

import pytest
from ktext_testlib import REPLICATED_LAYOUTS

from emu.hw.accounting import KIND_KERNEL_TEXT
from emu.hw.pagetable import (
    DESC_CONT,
    TABLE_PXN,
    TABLE_UXN,
    Access,
    Geometry,
    make_ttbr,
    walk,
)
from emu.hw.tlb import Tlb as TlbModel
from emu.hw.tlb import TlbEntry, decode_tlbi

IDS = [Geometry(g, v).name for g, v in REPLICATED_LAYOUTS]


def _walk(system, root: int, va: int, access=Access.READ):
    return walk(system.physmem.read_u64, system.kernel.tcr, 0, make_ttbr(root), va, access, 1)


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS, ids=IDS)
def test_linear_map_is_pages_under_pxn_tables(make_system, granule, va_bits):
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits, ktext=True)
    layout, physmem = system.kernel.layout, system.physmem
    phys_offset = physmem.banks[0].base
    for bank in physmem.banks:
        for pa in (bank.base, bank.base + bank.size // 2, bank.base + bank.size - granule):
            for root in system.kernel.replication.pgd_phys:
                found = _walk(system, root, layout.linear_va(pa, phys_offset))
                assert found.pa == pa and found.level == 3 and found.size == granule
                assert not found.descriptor & DESC_CONT and not found.contiguous
                tables = [desc for _lvl, _t, _i, _dpa, desc in found.chain[:-1]]
                assert tables and all(d & TABLE_PXN and d & TABLE_UXN for d in tables)
                assert not found.executable


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS, ids=IDS)
def test_contiguous_hint_where_linux_sets_it(make_system, granule, va_bits):
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits, ktext=True)
    image, geometry = system.image, system.geometry
    repl = system.kernel.replication
    stext, etext = image.sym("_stext"), image.sym("_etext")
    group = geometry.cont_entries(3) * granule
    for node, root in enumerate(repl.pgd_phys):
        text_pa = repl.node_text_pa(node, image)
        # the hint exactly where a whole aligned group of text has VA == PA mod group
        for va in range(stext, etext, granule):
            found = _walk(system, root, va, Access.FETCH)
            base = va & ~(group - 1)
            whole = base >= stext and base + group <= etext
            congruent = (text_pa - stext) % group == 0
            assert found.contiguous == (whole and congruent), (node, hex(va))
            assert found.tlb_span == (group if found.contiguous else granule)
        # never on rodata (NO_CONT_MAPPINGS), on any node
        for va in range(image.sym("__start_rodata"), image.sym("__inittext_begin"), granule):
            assert not _walk(system, root, va).descriptor & DESC_CONT
    if granule == 4096:
        # 64 KiB of text at a 64K-aligned PA on node 0; the copy is only
        # page-aligned, so it gets the hint only where memblock's earlier
        # allocations happened to leave it 64K-aligned
        assert _walk(system, repl.pgd_phys[0], stext, Access.FETCH).contiguous
        copy_found = _walk(system, repl.pgd_phys[1], stext, Access.FETCH)
        assert copy_found.contiguous == (repl.text_copies[1] % group == 0)


def test_tlb_reach_asymmetry_between_node0_and_a_copy(make_system):
    """4K pages: node 0's CPUs cache the workload's kernel text in one
    contiguous entry, a copy's CPUs need one per page."""
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, iterations=5)
    system.run()
    cpus = system.machine.cpus
    node0 = [c.tlb.translations(KIND_KERNEL_TEXT) for c in cpus if c.node == 0 and c.index]
    node1 = [c.tlb.translations(KIND_KERNEL_TEXT) for c in cpus if c.node == 1]
    pages = {len({key for key, entry in c.tlb.items() if entry.kind == KIND_KERNEL_TEXT})
             for c in cpus if c.index}
    assert pages == {2}  # the same two pages of text everywhere
    assert node0 == [1] and node1 == [2, 2]


def test_tlbi_by_va_removes_the_whole_contiguous_group():
    tlb = TlbModel()
    group = 16 * 4096
    for page in range(16):
        tlb.insert(0xFFFF_8000_0001_0000 + page * 4096,
                   TlbEntry(0x4001_0000 + page * 4096, 7, 7, 0, 0, -1, 3, group, contiguous=True))
    tlb.insert(0xFFFF_8000_0002_0000, TlbEntry(0x4002_0000, 7, 7, 0, 0, -1, 3, 4096))
    assert tlb.translations() == 2 and len(tlb) == 17
    # tlbi vaae1, page 5 of the group: VA[55:12] in the operand
    op = decode_tlbi(7, 3, (0xFFFF_8000_0001_5000 >> 12) & ((1 << 44) - 1))
    removed = tlb.invalidate(op)
    assert len(removed) == 16 and len(tlb) == 1 and tlb.translations() == 1
