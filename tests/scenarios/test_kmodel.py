"""The kernel operations the scenarios perform after boot: vmalloc's hole
search and module_alloc's windows, vmap with set_swapper_pgd, and
set_memory_ro splitting linear-map blocks (checked with the pure walk on every
root and with guest loads and stores)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import GuestFault
from emu.hw.pagetable import Access, leaf_mappings, make_ttbr, walk
from emu.kernel.pgtable_prot import PAGE_KERNEL
from emu.scenarios.kmodel import (
    SZ_2G,
    SZ_128M,
    Area,
    find_vm_hole,
    flush_every_tlb,
    image_vm_areas,
    module_windows,
    set_memory_ro,
    vmap,
)

PAGE = 4096


def test_find_vm_hole_takes_the_lowest_fit():
    busy = [Area(0x10000, 0x20000, "a"), Area(0x23000, 0x30000, "b")]
    assert find_vm_hole([(0x10000, 0x40000)], busy, PAGE, PAGE, PAGE) == 0x20000
    # three pages and a guard page do not fit in the 3-page gap [0x20000, 0x23000)
    assert find_vm_hole([(0x10000, 0x40000)], busy, 3 * PAGE, PAGE, PAGE) == 0x30000
    assert find_vm_hole([(0x10000, 0x31000)], busy, 3 * PAGE, PAGE, PAGE) is None
    assert find_vm_hole([(0x10000, 0x30000), (0x50000, 0x60000)], busy, 3 * PAGE, PAGE,
                        PAGE) == 0x50000


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 8)), max_size=8),
       st.integers(1, 4), st.integers(0, 2))
def test_find_vm_hole_against_brute_force(spans, pages, guard_pages):
    busy = [Area(start * PAGE, (start + length) * PAGE, "x") for start, length in spans]
    window = (0, 64 * PAGE)
    size, guard = pages * PAGE, guard_pages * PAGE
    expected = next((a for a in range(0, 64 * PAGE, PAGE)
                     if a + size + guard <= window[1]
                     and not any(b.overlaps(a, a + size + guard) for b in busy)), None)
    assert find_vm_hole([window], busy, size, PAGE, guard) == expected


@pytest.fixture
def system(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, iterations=3)
    system.run()
    return system


def test_module_windows_and_image_areas(system):
    image, layout = system.image, system.kernel.layout
    end = image.sym("_end")
    assert module_windows(system, layout, bounded=False) == [(end - SZ_128M, end),
                                                            (end - SZ_2G, end)]
    assert module_windows(system, layout, bounded=True) == [
        (end - SZ_128M, layout.modules_end), (end - SZ_2G, layout.modules_end)]
    areas = image_vm_areas(system)
    assert areas[0].start == image.sym("_stext") and areas[-1].end == end
    assert all(a.end <= b.start for a, b in itertools.pairwise(areas))  # ordered, disjoint


def roots_mapping(system, va):
    tcr = system.kernel.tcr
    return [node for node, root in enumerate(system.kernel.replication.pgd_phys)
            if walk(system.physmem.read_u64, tcr, 0, make_ttbr(root), va, Access.READ, 1).ok]


@pytest.mark.parametrize("hook", [True, False])
def test_vmap_new_top_level_entry(system, hook):
    layout, physmem = system.kernel.layout, system.physmem
    va = layout.vmalloc_start
    pa = physmem.memblock_alloc_node(PAGE, PAGE, 1)
    physmem.write_u64(pa, 0xABCD)
    changed = vmap(system, va, pa, PAGE, PAGE_KERNEL, hook=hook)
    assert changed == [system.geometry.pgd_index(va)]
    assert roots_mapping(system, va) == ([0, 1] if hook else [0])
    reads = []
    for cpu in range(4):
        try:
            reads.append(system.call(cpu, "scenario_read_u64", va)["x0"])
        except GuestFault:
            reads.append(None)
    assert reads == ([0xABCD] * 4 if hook else [0xABCD, 0xABCD, None, None])


@pytest.mark.parametrize("granule,va_bits", [(4096, 48), (4096, 39), (16384, 36), (65536, 42)])
def test_set_memory_ro_splits_blocks_and_protects_only_the_range(make_system, granule, va_bits):
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         ktext=True, iterations=3)
    system.run()
    layout, physmem = system.kernel.layout, system.physmem
    base = physmem.banks[1].base
    pa = physmem.memblock_alloc_node(3 * granule, granule, 1)
    va = layout.linear_va(pa, physmem.banks[0].base)
    changed = set_memory_ro(system, va, 2 * granule)
    assert changed == 2
    flush_every_tlb(system)
    tcr = system.kernel.tcr
    for root in system.kernel.replication.pgd_phys:
        for offset, writable in ((0, False), (granule, False), (2 * granule, True)):
            result = walk(physmem.read_u64, tcr, 0, make_ttbr(root), va + offset, Access.WRITE, 1)
            assert result.pa == pa + offset
            assert (result.fault is None) == writable
    # the rest of the linear map keeps its mapping and stays writable
    start = layout.linear_va(base, physmem.banks[0].base)
    mapped = [m for m in leaf_mappings(physmem, system.geometry,
                                       system.kernel.replication.pgd_phys[0])
              if start <= m.va < start + physmem.bank_size]
    assert sum(m.size for m in mapped) == physmem.bank_size
    assert sum(m.size for m in mapped if m.prot.ap & 2) == 2 * granule
    # the guest sees it: a store faults, a load works, on both nodes
    for cpu in (0, 1):
        assert system.call(cpu, "scenario_read_u64", va)["x0"] == physmem.read_u64(pa)
        with pytest.raises(GuestFault):
            system.call(cpu, "scenario_write_u64", va, 1)
        system.call(cpu, "scenario_write_u64", va + 2 * granule, 1)
