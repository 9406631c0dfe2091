"""The pure walk: hand-built block and page mappings walked back for every layout,
every fault kind at its level, VA range selection, TBI, EPD, ASIDs, loops in table
pointers and table reads outside RAM."""

from __future__ import annotations

import pytest

from emu.hw.pagetable import (
    DESC_AF,
    Access,
    FaultKind,
    Geometry,
    Prot,
    Walker,
    leaf_descriptor,
    make_tcr,
    make_ttbr,
    table_descriptor,
    walk,
)
from emu.hw.physmem import PhysMem
from emu.kernel.pgtable_prot import PAGE_KERNEL, PAGE_KERNEL_ROX, PAGE_USER, PAGE_USER_EXEC


def hand_index(g: Geometry, va: int, level: int) -> int:
    """VA bits of ``level``, recomputed from the ARM ARM rule, not from Geometry."""
    stride = g.page_shift - 3
    lo = g.page_shift + stride * (3 - level)
    hi = min(g.va_bits, lo + stride)
    return (va >> lo) & ((1 << (hi - lo)) - 1)


class HandTables:
    """Builds a table tree descriptor by descriptor, the way a test author would."""

    def __init__(self, ram, alloc, g: Geometry) -> None:
        self.ram, self.alloc, self.g = ram, alloc, g
        self.root = alloc()

    def table_for(self, va: int, down_to: int, **table_attrs) -> list[int]:
        """Tables from the root to the one holding ``down_to``'s entry; returns them."""
        tables = [self.root]
        for level in range(self.g.start_level, down_to):
            slot = tables[-1] + 8 * hand_index(self.g, va, level)
            desc = self.ram.read_u64(slot)
            if not desc & 1:
                nxt = self.alloc()
                self.ram.write_u64(slot, table_descriptor(nxt, **table_attrs))
            else:
                nxt = desc & ((1 << 48) - 1) & ~(self.g.granule - 1)
            tables.append(nxt)
        return tables

    def map(self, va: int, pa: int, level: int, prot: Prot, **table_attrs) -> list[int]:
        tables = self.table_for(va, level, **table_attrs)
        slot = tables[-1] + 8 * hand_index(self.g, va, level)
        self.ram.write_u64(slot, leaf_descriptor(self.g, level, pa, prot))
        return tables

    def slot(self, va: int, level: int) -> int:
        return self.table_for(va, level)[-1] + 8 * hand_index(self.g, va, level)


def kernel_va(g: Geometry, offset: int) -> int:
    return g.upper_base + offset


@pytest.fixture
def tables(ram, table_allocator, layout_geometry):
    """The TTBR1 (kernel) tree; ``tables.user`` is a separate TTBR0 tree."""
    kernel = HandTables(ram, table_allocator(ram, layout_geometry.granule), layout_geometry)
    kernel.user = HandTables(ram, kernel.alloc, layout_geometry)
    return kernel


def _walk(tables: HandTables, va: int, access=Access.READ, el=1, tcr=None):
    g = tables.g
    return walk(tables.ram.read_u64, tcr if tcr is not None else make_tcr(g),
                make_ttbr(tables.user.root), make_ttbr(tables.root), va, access, el)


def test_page_mapping_walks_back_with_its_chain(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 3 * g.pgdir_size // 2 if g.top_entries > 2 else g.pgdir_size + 5 * g.granule)
    va = va - va % g.granule + 0x18
    pa = 0x8_1234_0000 // g.granule * g.granule
    path = tables.map(va, pa, 3, PAGE_KERNEL)
    r = _walk(tables, va)
    assert r.ok and r.pa == pa + 0x18 and r.level == 3 and r.size == g.granule
    assert not r.block and r.region == 1
    expected_chain = []
    for level, table in zip(range(g.start_level, 4), path, strict=True):
        index = hand_index(g, va, level)
        dpa = table + 8 * index
        expected_chain.append((level, table, index, dpa, tables.ram.read_u64(dpa)))
    assert r.chain == expected_chain
    assert r.descriptor == expected_chain[-1][4]
    assert r.attrs == PAGE_KERNEL
    assert (r.readable, r.writable, r.executable) == (True, True, False)
    # Neighbouring page: not mapped, translation fault at level 3.
    miss = _walk(tables, va + g.granule)
    assert miss.fault.kind == FaultKind.TRANSLATION and miss.fault.level == 3
    assert miss.pa is None


def test_block_mapping_at_every_block_level(tables: HandTables) -> None:
    g = tables.g
    if not g.block_levels:
        pytest.skip(f"{g.name} has no block level")
    for n, level in enumerate(g.block_levels):
        size = g.level_size(level)
        va = kernel_va(g, (n + 1) * max(size, g.pgdir_size if level == g.start_level else size))
        if level > g.start_level:
            va = kernel_va(g, g.pgdir_size * (g.top_entries - 1) + (n + 1) * size)
        pa = 0x40 * size % (1 << 48) or size
        tables.map(va, pa, level, PAGE_KERNEL_ROX)
        probe = va + size - 8
        r = _walk(tables, probe, Access.FETCH)
        assert r.ok, r.fault
        assert (r.pa, r.level, r.size, r.block) == (pa + size - 8, level, size, True)
        assert len(r.chain) == level - g.start_level + 1
        assert (r.readable, r.writable, r.executable) == (True, False, True)
        denied = _walk(tables, probe, Access.WRITE)
        assert denied.fault.kind == FaultKind.PERMISSION and denied.fault.level == level
        assert denied.pa == pa + size - 8


def test_user_mapping_through_ttbr0_at_el0(ram, table_allocator, layout_geometry) -> None:
    g = layout_geometry
    user = HandTables(ram, table_allocator(ram, g.granule), g)
    kernel = HandTables(ram, user.alloc, g)
    va = 0x40_0000 + 3 * g.granule
    user.map(va, 0x9000_0000, 3, PAGE_USER_EXEC)
    tcr = make_tcr(g)
    w = Walker(tcr)
    ttbr0 = make_ttbr(user.root, asid=0x42)
    ttbr1 = make_ttbr(kernel.root, asid=0x17)
    r = w.walk(ram.read_u64, ttbr0, ttbr1, va + 4, Access.FETCH, 0)
    assert r.ok and r.pa == 0x9000_0004 and r.region == 0
    assert r.ng and r.asid == 0x17  # Linux's TCR has A1: the ASID lives in TTBR1
    assert (r.readable, r.writable, r.executable) == (True, False, True)
    assert w.walk(ram.read_u64, ttbr0, ttbr1, va, Access.WRITE, 0).fault.kind == FaultKind.PERMISSION
    # The same VA through TTBR0 of the kernel's empty tables: translation fault.
    r = w.walk(ram.read_u64, ttbr1, ttbr1, va, Access.READ, 0)
    assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == g.start_level
    # A1=0 takes the ASID from TTBR0; AS=0 keeps 8 bits of it.
    r = walk(ram.read_u64, make_tcr(g, a1=False, as16=False), make_ttbr(user.root, asid=0x1242),
             ttbr1, va, Access.READ, 0)
    assert r.asid == 0x42


def test_va_outside_both_halves_is_a_level_0_translation_fault(tables: HandTables) -> None:
    g = tables.g
    hole = 1 << g.va_bits  # first VA above the TTBR0 half
    no_tbi = make_tcr(g, tbi0=False)
    for va, tcr in ((hole, None), (1 << 54, None), (1 << 63, no_tbi),
                    (0x00FF_0000_0000_0000 | (g.upper_base & 0xFFFF_FFFF_FFFF), None)):
        r = _walk(tables, va, tcr=tcr)
        assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 0, hex(va)
        assert r.chain == []
    # With TBI0 (Linux), bit 63 is a tag: the VA is TTBR0's address 0 and gets walked.
    assert _walk(tables, 1 << 63).fault.level == g.start_level


def test_top_byte_ignore(tables: HandTables) -> None:
    g = tables.g
    kva = kernel_va(g, g.granule * 7)
    tables.map(kva, 0x5000_0000, 3, PAGE_KERNEL)
    uva = g.granule * 7
    tables.user.map(uva, 0x6000_0000, 3, PAGE_USER)
    tagged_user = 0x5A00_0000_0000_0000 | uva
    tagged_kernel = (kva & 0x00FF_FFFF_FFFF_FFFF) | 0x3400_0000_0000_0000
    linux = make_tcr(g)  # TBI0 only
    assert _walk(tables, tagged_user, tcr=linux).pa == 0x6000_0000
    r = _walk(tables, tagged_kernel, tcr=linux)
    assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 0
    assert _walk(tables, tagged_kernel, tcr=make_tcr(g, tbi1=True)).pa == 0x5000_0000
    r = _walk(tables, tagged_user, tcr=make_tcr(g, tbi0=False))
    assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 0


def test_epd_disables_walks_of_one_half(tables: HandTables) -> None:
    g = tables.g
    kva = kernel_va(g, 0)
    tables.map(kva, 0x5000_0000, 3, PAGE_KERNEL)
    tables.user.map(0, 0x6000_0000, 3, PAGE_USER)
    tables.ram.reads = 0
    r = _walk(tables, kva, tcr=make_tcr(g, epd1=True))
    assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 0 and tables.ram.reads == 0
    assert _walk(tables, 0, tcr=make_tcr(g, epd1=True)).ok
    assert _walk(tables, 0, tcr=make_tcr(g, epd0=True)).fault.level == 0
    assert _walk(tables, kva, tcr=make_tcr(g, epd0=True)).ok


@pytest.mark.parametrize("t1sz", [0, 12, 15, 40, 63])
def test_unsupported_txsz_faults_at_level_0(ram, t1sz: int) -> None:
    tcr = (make_tcr(Geometry(4096, 39)) & ~(0x3F << 16)) | t1sz << 16
    r = walk(ram.read_u64, tcr, 0, make_ttbr(0x4000_0000), (1 << 64) - 4096, Access.READ, 1)
    assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 0


def test_invalid_entry_faults_at_its_level(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 0)
    for level in range(g.start_level, 4):
        tables.table_for(va, level)
        r = _walk(tables, va)
        assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == level
        assert len(r.chain) == level - g.start_level + 1


def test_reserved_encodings_are_translation_faults(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, g.pgdir_size * (g.top_entries - 1))
    # A block encoding (bits 1:0 = 01) at every level that allows none, and at level 3.
    for level in range(g.start_level, 4):
        if g.block_allowed(level):
            continue
        slot = tables.slot(va, level)
        tables.ram.write_u64(slot, 0x4000_0000 | DESC_AF | 0b01)
        r = _walk(tables, va)
        assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == level, level
        tables.ram.write_u64(slot, 0)


def test_access_flag_fault_at_the_leaf_level(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 0)
    for level in g.leaf_levels:
        no_af = Prot(ap=0, pxn=True, uxn=True, af=False)
        tables.map(va, 0, level, no_af)
        r = _walk(tables, va, Access.WRITE)
        assert r.fault.kind == FaultKind.ACCESS_FLAG and r.fault.level == level
        tables.ram.write_u64(tables.slot(va, level), 0)


def test_address_size_faults(tables: HandTables) -> None:
    g = tables.g
    small = make_tcr(g, ips_bits=32)  # 4 GiB of PA
    va = kernel_va(g, 0)
    path = tables.map(va, 0x1_0000_0000, 3, PAGE_KERNEL)  # OA beyond 32 bits
    r = _walk(tables, va, tcr=small)
    assert r.fault.kind == FaultKind.ADDRESS_SIZE and r.fault.level == 3
    assert _walk(tables, va).pa == 0x1_0000_0000
    if len(path) > 1:
        # A table pointer beyond the OA size faults at the level of the table descriptor.
        top_slot = tables.root + 8 * hand_index(g, va, g.start_level)
        tables.ram.write_u64(top_slot, table_descriptor(0x2_0000_0000))
        r = _walk(tables, va, tcr=small)
        assert r.fault.kind == FaultKind.ADDRESS_SIZE and r.fault.level == g.start_level
    # TTBR itself beyond the OA size: level 0.
    r = walk(tables.ram.read_u64, small, 0, make_ttbr(0x1_0000_0000), va, Access.READ, 1)
    assert r.fault.kind == FaultKind.ADDRESS_SIZE and r.fault.level == 0


def test_table_outside_ram_is_an_external_abort_on_the_walk(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 0)
    r = walk(tables.ram.read_u64, make_tcr(g), 0, make_ttbr(0x10_0000_0000), va, Access.READ, 1)
    assert r.fault.kind == FaultKind.WALK_EXTERNAL_ABORT and r.fault.level == g.start_level
    if g.levels > 1:
        top_slot = tables.root + 8 * hand_index(g, va, g.start_level)
        tables.ram.write_u64(top_slot, table_descriptor(0x10_0000_0000))
        r = _walk(tables, va)
        assert r.fault.kind == FaultKind.WALK_EXTERNAL_ABORT
        assert r.fault.level == g.start_level + 1 and len(r.chain) == 1


def test_self_referencing_tables_terminate(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 0)
    # Every level's entry points back at the root: the walk still ends after
    # `levels` reads, and at level 3 the pointer reads as a page mapping the table.
    for level in range(g.start_level, 4):
        tables.ram.write_u64(tables.root + 8 * hand_index(g, va, level),
                             table_descriptor(tables.root) | DESC_AF)
    r = _walk(tables, va)
    assert len(r.chain) == g.levels
    if g.levels == 1 or hand_index(g, va, 3) == hand_index(g, va, g.start_level):
        assert r.ok and r.pa == tables.root + (va & (g.granule - 1))


def test_ttbr_low_bits_and_cnp_are_ignored(tables: HandTables) -> None:
    g = tables.g
    va = kernel_va(g, 0)
    tables.map(va, 0x7000_0000, 3, PAGE_KERNEL)
    tcr = make_tcr(g)
    # BADDR bits below the top table's size (16 bytes for 16k-48) are RES0 and ignored.
    ttbr = make_ttbr(tables.root, asid=5, cnp=True) | ((g.top_table_size - 1) & ~1)
    r = walk(tables.ram.read_u64, tcr, 0, ttbr, va, Access.READ, 1)
    assert r.ok and r.pa == 0x7000_0000 and r.chain[0][1] == tables.root


def test_walk_on_real_physmem() -> None:
    from emu.kernel.mmu import create_pgd_mapping

    g = Geometry(4096, 48)
    with PhysMem(2, 4 << 20) as mem:
        def alloc() -> int:
            return mem.memblock_alloc_node(g.granule, g.granule, 1)

        pgd = alloc()
        va = g.upper_base + (1 << 39) + 0x20_0000
        create_pgd_mapping(mem, g, pgd, va, 0x4000_0000, 2 << 20, PAGE_KERNEL, alloc)
        read = mem.u64_reader()
        r = walk(read, make_tcr(g), 0, make_ttbr(pgd), va + 0x1238, Access.WRITE, 1)
        assert r.ok and r.pa == 0x4000_1238 and r.level == 2
        r = walk(read, make_tcr(g), 0, make_ttbr(0x7000_0000), va, Access.READ, 1)
        assert r.fault.kind == FaultKind.WALK_EXTERNAL_ABORT and r.fault.level == 0


def test_unknown_access_kind_is_rejected(tables: HandTables) -> None:
    from emu.errors import ConfigError

    g = tables.g
    tables.map(kernel_va(g, 0), 0x4000_0000, 3, PAGE_KERNEL)
    with pytest.raises(ConfigError, match="access 16"):
        _walk(tables, kernel_va(g, 0), access=16)  # a raw UC_MEM_READ is not an Access
