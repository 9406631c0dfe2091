"""Kernel text replication, mirroring arch/arm64/mm/ktext.c of the v3 series:
every replication hook lives here, under the series' name.

* ``ktext_replication_init`` (patch 04) runs at boot after the kernel and
  linear maps exist (bootmem_init): the sanity checks (patch 05), a
  node-local copy of ``[_stext, __end_rodata)`` on every node but 0 (patches
  06 and 14), a node-local root that is node 0's swapper_pg_dir except in the
  kernel's top-level slots (patches 10 and 18), and the per-node kernel
  mapping (patch 13, ``mmu.create_kernel_nid_map``).
* ``ktext_replication_patch`` (patch 07): after aarch64_insn_write() changed
  node 0's image, the same word into every node's copy; patching.py calls it
  as patching.c does.  (The guest's own hook, run when the guest patches
  itself, is in kernel_blob/patching.S.)
* ``ktext_replication_patch_alternative`` (patch 07): after an alternative
  site was written in node 0's image, its words into every copy;
  alternative.py calls it as alternative.c does.
* ``ktext_replication_set_swapper_pgd`` (patch 10): a top-level write to
  swapper_pg_dir copied into every other node's root, refused in the kernel
  slots.  ``set_swapper_pgd`` (mmu.c's caller of the hook) is here too: the
  per-node mapping makes this module import mmu.py, so mmu.py calling back
  into it would be an import cycle.
* ``swapper_pg_dir_node_phys`` (patch 09), and ``node_text_pas`` /
  ``text_copy_pas``, the PA of every copy of a kernel word, which the hooks
  and the checkers share.

With replication off (``ktext=`` absent or false, the series' default), or
refused, every node uses node 0's tables and the image; the hooks still run
and find nothing to do, as in the series.  ``ktext_replication_init_tramp``
(patch 10) copies node 0's KPTI trampoline root to every node; it runs only
where map_entry_trampoline() does (KPTI in use: the kpti-offsets scenario).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emu.hw.pagetable import Geometry, Prot
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage
from emu.kernel.layout import (
    KernelLayout,
    kernel_slot_indices,
    replication_refusal,
    replication_sanity_check,
)
from emu.kernel.mmu import TableAllocator, create_kernel_nid_map, early_pgtable_alloc
from emu.kernel.pgtable_prot import PAGE_KERNEL


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
    # Each node's reserved_pg_dir and tramp_pg_dir (patches 08, 18): node 0's
    # are the linker-placed ones; the others memblock allocations of their own.
    reserved_phys: list[int] = field(default_factory=list)
    tramp_phys: list[int] = field(default_factory=list)
    # (node, node holding its copy) for each copy memblock_alloc_node() could
    # not place on its own node
    misplaced_copies: list[tuple[int, int]] = field(default_factory=list)

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
    reserved0 = image.pa_of(image.sym("reserved_pg_dir"))
    # KPTI's tramp_pg_dir exists with CONFIG_UNMAP_KERNEL_AT_EL0 (a custom
    # kernel may lack it: then the slot is where the offset says)
    tramp0 = (image.pa_of(image.sym("tramp_pg_dir")) if image.has("tramp_pg_dir")
              else swapper_pa - 2 * geometry.granule)  # fmt: skip
    off = Replication(False, None, [swapper_pa] * nodes, [None] * nodes, kidx, copy_size,
                      reserved_phys=[reserved0] * nodes, tramp_phys=[tramp0] * nodes)
    refusal = replication_refusal(layout)
    if refusal is None:
        refusal = replication_sanity_check(layout, image.kimage_vaddr, image.sym("_end"))
    if refusal is not None:
        off.message = refusal if requested else None
        return off
    if not requested or nodes == 1:
        return off

    # Tables below the kernel slot come from early_pgtable_alloc: plain
    # memblock, the top of RAM, not node-local (ktext-series.md patch 13).
    early_tables = early_pgtable_alloc(physmem, geometry)
    stext_pa = image.pa_of(image.sym("_stext"))
    pgd_size = max(geometry.top_table_size, 8)
    repl = Replication(True, None, [swapper_pa], [None], kidx, copy_size, early_tables,
                       reserved_phys=[reserved0], tramp_phys=[tramp0])
    for nid in range(1, nodes):
        copy = physmem.memblock_alloc_node(copy_size, geometry.granule, nid)
        if physmem.node_of(copy) != nid:
            # The series takes whatever memblock_alloc_node() returns; a copy
            # on another node is silent there and costly: say so.
            repl.misplaced_copies.append((nid, physmem.node_of(copy)))
        physmem.write(copy, physmem.read(stext_pa, copy_size))
        # patch 18: swapper, reserved and tramp allocated separately, each
        # PGD_SIZE with PGD_SIZE alignment, in that order (the reserved and
        # tramp dirs stay empty until map_entry_trampoline)
        pgd = physmem.memblock_alloc_node(pgd_size, pgd_size, nid)
        repl.reserved_phys.append(physmem.memblock_alloc_node(pgd_size, pgd_size, nid))
        repl.tramp_phys.append(physmem.memblock_alloc_node(pgd_size, pgd_size, nid))
        physmem.write(pgd, physmem.read(swapper_pa, pgd_size))
        for index in range(kidx[0], kidx[1] + 1):
            physmem.write_u64(pgd + 8 * index, 0)
        create_kernel_nid_map(physmem, geometry, pgd, image, copy, early_tables, rodata_prot)
        repl.pgd_phys.append(pgd)
        repl.text_copies.append(copy)
    return repl


def ktext_replication_init_tramp(repl: Replication, physmem: PhysMem, pgd_size: int) -> None:
    """The hook at the end of map_entry_trampoline() (patch 10; v3 skips only
    node 0): node 0's tramp_pg_dir copied into every other node's."""
    if not repl.enabled:
        return
    tramp0 = physmem.read(repl.tramp_phys[0], pgd_size)
    for tramp in repl.tramp_phys[1:]:
        physmem.write(tramp, tramp0)


def swapper_pg_dir_node_phys(repl: Replication, nid: int) -> int:
    """__swapper_pg_dir_node_phys(nid): the root node ``nid``'s CPUs run on (patch 09)."""
    return repl.pgd_phys[nid]


def text_copy_pas(image: KernelImage, text_copies: Sequence[int | None], va: int
                  ) -> list[tuple[int, int]]:  # fmt: skip
    """(node, PA) of each node's copy of the kernel word at ``va``; none
    unless ``va`` is in [_stext, _etext) (is_kernel_text())."""
    stext, etext = image.sym("_stext"), image.sym("_etext")
    if not stext <= va < etext:
        return []
    return [(node, copy + va - stext) for node, copy in enumerate(text_copies)
            if node and copy is not None]  # fmt: skip


def node_text_pas(image: KernelImage, text_copies: Sequence[int | None], va: int
                  ) -> list[tuple[int, int]]:  # fmt: skip
    """(node, PA) of every copy of the kernel word at ``va``: node 0's image
    first, then each node's copy when ``va`` is in [_stext, _etext)."""
    return [(0, image.pa_of(va)), *text_copy_pas(image, text_copies, va)]


def ktext_replication_patch(
    repl: Replication, physmem: PhysMem, image: KernelImage, va: int, insn: int
) -> list[tuple[int, int]]:
    """The hook aarch64_insn_patch_text_nosync() calls after aarch64_insn_write()
    changed node 0's image: ``insn`` into every node's copy of the word at
    ``va`` (nothing outside [_stext, _etext), is_kernel_text()).  Returns the
    (node, PA) written.  The series' cache maintenance has no host
    counterpart: the caller invalidates translated code (patching.py)."""
    copies = text_copy_pas(image, repl.text_copies, va)
    for _node, pa in copies:
        physmem.write_u32(pa, insn)
    return copies


def ktext_replication_patch_alternative(
    repl: Replication, physmem: PhysMem, image: KernelImage, va: int, nr_inst: int
) -> None:
    """The hook __apply_alternatives() calls after writing a site of ``nr_inst``
    instructions at ``va`` in node 0's image: the site's words into every
    node's copy.  Word by word, so only the part of a site inside
    [_stext, _etext) is copied (the series tests the site's start)."""
    for index in range(nr_inst):
        word_va = va + 4 * index
        copies = text_copy_pas(image, repl.text_copies, word_va)
        if copies:
            word = physmem.read_u32(image.pa_of(word_va))
            for _node, pa in copies:
                physmem.write_u32(pa, word)


def ktext_replication_set_swapper_pgd(
    repl: Replication, physmem: PhysMem, index: int, value: int
) -> bool:
    """The hook set_swapper_pgd() calls before writing swapper_pg_dir[index]
    (patch 10): the entry into every other node's root, except for a kernel
    slot, where it warns once and propagates nothing.  Returns False when
    propagation was refused."""
    kidx_base, kidx_end = repl.kidx
    refused = repl.enabled and kidx_base <= index <= kidx_end
    if refused:
        repl.refused_pgd_writes.append(index)
        repl.warned = True
    elif repl.enabled:
        for pgd in repl.pgd_phys[1:]:
            physmem.write_u64(pgd + 8 * index, value)
    return not refused


def set_swapper_pgd(repl: Replication, physmem: PhysMem, index: int, value: int) -> bool:
    """A top-level write to swapper_pg_dir[index] (set_swapper_pgd in mmu.c):
    the ktext hook, then node 0's entry (the write lands there even when the
    hook refused to propagate it).  Returns the hook's answer."""
    propagated = ktext_replication_set_swapper_pgd(repl, physmem, index, value)
    physmem.write_u64(swapper_pg_dir_node_phys(repl, 0) + 8 * index, value)
    return propagated
