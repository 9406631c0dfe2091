"""Kernel text replication, mirroring arch/arm64/mm/ktext.c of the v3 series.

``ktext_replication_init`` runs at boot after the kernel and linear maps
exist (bootmem_init): the sanity checks (patch 05), a node-local copy of
``[_stext, __end_rodata)`` on every node but 0 (patches 06 and 14), a
node-local root that is node 0's swapper_pg_dir except in the kernel's
top-level slots (patches 10 and 18), and the per-node kernel mapping
(patch 13).  ``set_swapper_pgd`` propagates top-level writes outside the
kernel slots and refuses those inside them (patch 10).

With replication off (``ktext=`` absent or false, the series' default), or
refused, every node uses node 0's tables and the image; the hooks still run
and find nothing to do, as in the series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.hw.pagetable import PAGE_KERNEL, Geometry, Prot
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage
from emu.kernel.layout import (
    KernelLayout,
    kernel_slot_indices,
    replication_refusal,
    replication_sanity_check,
)
from emu.kernel.mmu import TableAllocator, create_kernel_nid_map


@dataclass
class Replication:
    """What replication set up; node 0 entries are the original image and swapper_pg_dir."""

    enabled: bool
    message: str | None  # why it is off, when it was asked for and refused
    pgd_phys: list[int]  # __swapper_pg_dir_node_phys(nid)
    text_copies: list[int | None]  # PA of each node's copy; None on node 0
    kidx: tuple[int, int]  # kernel top-level slots, inclusive
    copy_size: int
    early_tables: TableAllocator | None = None
    refused_pgd_writes: list[int] = field(default_factory=list)
    warned: bool = False

    def node_text_pa(self, node: int, image: KernelImage) -> int:
        """Physical address of ``_stext`` as ``node`` fetches it."""
        copy = self.text_copies[node]
        return image.pa_of(image.sym("_stext")) if copy is None else copy


def ktext_replication_init(
    physmem: PhysMem,
    geometry: Geometry,
    layout: KernelLayout,
    image: KernelImage,
    swapper_pa: int,
    requested: bool,
    rodata_prot: Prot = PAGE_KERNEL,
) -> Replication:
    """Replicate kernel text and most rodata onto every node (or explain why not)."""
    nodes = len(physmem.banks)
    kidx = kernel_slot_indices(layout, image.kimage_vaddr, image.sym("_end"))
    copy_size = image.sym("__end_rodata") - image.sym("_stext")
    off = Replication(False, None, [swapper_pa] * nodes, [None] * nodes, kidx, copy_size)
    refusal = replication_refusal(layout)
    if refusal is None:
        refusal = replication_sanity_check(layout, image.kimage_vaddr, image.sym("_end"))
    if refusal is not None:
        off.message = refusal if requested else None
        return off
    if not requested or nodes == 1:
        return off

    # Tables below the kernel slot come from early_pgtable_alloc: plain
    # memblock on node 0, not node-local (ktext-series.md patch 13).
    early_tables = TableAllocator(physmem, geometry, node=0)
    stext_pa = image.pa_of(image.sym("_stext"))
    pgd_size = max(geometry.top_table_size, 8)
    repl = Replication(True, None, [swapper_pa], [None], kidx, copy_size, early_tables)
    for nid in range(1, nodes):
        copy = physmem.memblock_alloc_node(copy_size, geometry.granule, nid)
        physmem.write(copy, physmem.read(stext_pa, copy_size))
        pgd = physmem.memblock_alloc_node(pgd_size, pgd_size, nid)
        physmem.write(pgd, physmem.read(swapper_pa, pgd_size))
        for index in range(kidx[0], kidx[1] + 1):
            physmem.write_u64(pgd + 8 * index, 0)
        create_kernel_nid_map(physmem, geometry, pgd, image, copy, early_tables, rodata_prot)
        repl.pgd_phys.append(pgd)
        repl.text_copies.append(copy)
    return repl


def set_swapper_pgd(repl: Replication, physmem: PhysMem, index: int, value: int) -> bool:
    """A top-level write to swapper_pg_dir[index] (set_swapper_pgd in mmu.c).

    The ktext hook copies the entry into every other node's root, except for
    a kernel slot: there it warns once and propagates nothing, and the write
    still lands in node 0's table (the hook runs before it).  Returns False
    when propagation was refused.
    """
    kidx_base, kidx_end = repl.kidx
    refused = repl.enabled and kidx_base <= index <= kidx_end
    if refused:
        repl.refused_pgd_writes.append(index)
        repl.warned = True
    elif repl.enabled:
        for pgd in repl.pgd_phys[1:]:
            physmem.write_u64(pgd + 8 * index, value)
    physmem.write_u64(repl.pgd_phys[0] + 8 * index, value)
    return not refused
