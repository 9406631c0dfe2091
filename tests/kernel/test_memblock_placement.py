"""Where boot puts what, as Linux's memblock would: paging_init()'s tables
(early_pgtable_alloc, no node) from the top of RAM, each node's text copy on
its node unless that node is full (memblock_alloc_node() then falls back, the
series does not notice, and the run says so), and the documented maximum of
1024 nodes booting with every node on its root."""

from __future__ import annotations

import pytest

from emu.hw.pagetable import Access, make_ttbr, walk
from emu.hw.topology import MAX_NODES


def _walk(system, root: int, va: int):
    return walk(system.physmem.read_u64, system.kernel.tcr, 0, make_ttbr(root), va,
                Access.FETCH, 1)


def test_early_tables_come_from_the_last_node(make_system) -> None:
    system = make_system(nodes=4, cpus_per_node=1, ktext=True)
    physmem, layout = system.physmem, system.kernel.layout
    last = physmem.banks[-1]
    # the linear map's last page is described by a PTE table in the last node
    found = walk(physmem.read_u64, system.kernel.tcr, 0, make_ttbr(system.kernel.swapper_pa),
                 layout.linear_va(last.end - 4096, physmem.banks[0].base), Access.READ, 1)
    table_pas = [dpa for _lvl, _t, _i, dpa, _desc in found.chain]
    assert physmem.node_of(table_pas[-1]) == len(physmem.banks) - 1
    # ... and the kernel-slot tables of every node's root too (not node-local, patch 13)
    stext = system.image.sym("_stext")
    for node, root in enumerate(system.kernel.replication.pgd_phys[1:], start=1):
        chain = _walk(system, root, stext).chain
        assert physmem.node_of(chain[-1][3]) == len(physmem.banks) - 1, node
    assert not system.kernel.replication.misplaced_copies


@pytest.mark.parametrize(("granule", "va_bits"), [(4096, 48), (65536, 42)], ids=["4K-48", "64K-42"])
def test_the_documented_maximum_boots_and_names_each_copy_off_its_node(
        make_system, granule: int, va_bits: int) -> None:  # fmt: skip
    system = make_system(nodes=MAX_NODES, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         ktext=True)
    repl, physmem, image = system.kernel.replication, system.physmem, system.image
    assert repl.enabled and len(repl.pgd_phys) == MAX_NODES
    homes = {node: physmem.node_of(copy) for node, copy in enumerate(repl.text_copies) if copy}
    misplaced = {node: home for node, home in homes.items() if home != node}
    assert dict(repl.misplaced_copies) == misplaced
    warnings = system.kernel_warnings()
    for node, home in misplaced.items():
        assert any(f"node {node}'s copy of the kernel text is in node {home}'s RAM" in w
                   for w in warnings)
        # memblock fell back because the node really had no room for the copy
        assert physmem.free_bytes(node) < repl.copy_size
    # The last node fills first: with 4K pages the page-granular linear map
    # of 64 GiB takes 128 MiB of tables, with 64K pages the 1023 copies'
    # kernel-slot tables take ~190 MiB (three 64 KiB tables each).
    assert MAX_NODES - 1 in misplaced
    stext = image.sym("_stext")
    for node in (1, MAX_NODES // 2, MAX_NODES - 1):
        found = _walk(system, repl.pgd_phys[node], stext)
        assert found.pa == repl.node_text_pa(node, image)
