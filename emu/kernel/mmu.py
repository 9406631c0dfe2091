"""Kernel page tables as arch/arm64/mm/mmu.c builds them.

Two layers, as in mmu.c: the generic builder (``create_pgd_mapping``, Linux's
__create_pgd_mapping() with alloc_init_pud/pmd/cont_pte, and ``unmap_range``,
its unmap_hotplug_range()/vunmap_range() counterpart), and the mappings the
kernel makes with it: map_kernel(), map_mem() (the linear map), the idmap,
and create_kernel_nid_map() of the ktext series (patches 13/14).  The
builder is here and not in emu/hw/ because which tables get built, with
which table attributes, blocks and contiguous hints, is Linux's choice; the
descriptor formats and the walk are the architecture's (emu/hw/pagetable.py).
The protections the mappings use are in pgtable_prot.py; set_swapper_pgd()
is in ktext.py, next to the hook it calls.

These run on the host at boot, where Linux runs boot-time C; they write real
VMSAv8-64 descriptors into guest RAM.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace

from emu.errors import ConfigError
from emu.hw.pagetable import (
    ADDR_MASK,
    DESC_CONT,
    DESC_DBM,
    DESC_NG,
    DESC_PXN,
    DESC_RDONLY,
    DESC_TABLE,
    DESC_VALID,
    OA_BITS,
    TABLE_PXN,
    TABLE_UXN,
    Geometry,
    Prot,
    TableMemory,
)
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage
from emu.kernel.layout import KernelLayout
from emu.kernel.pgtable_prot import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX

# ---------------------------------------------------------------- the builder

# Linux pgattr_change_is_safe(): what may change in a live entry without break-before-make.
_SAFE_CHANGE_MASK = DESC_PXN | DESC_RDONLY | DESC_DBM | DESC_NG


def _change_is_safe(old: int, new: int) -> bool:
    if not old & DESC_VALID or not new & DESC_VALID or old == new:
        return True
    if (old ^ new) & ADDR_MASK:
        return False
    if (old | new) & DESC_CONT:
        return False
    if old & ~new & DESC_NG:
        return False
    return (old ^ new) & ~_SAFE_CHANGE_MASK == 0


def _check_range(geometry: Geometry, va: int, size: int) -> tuple[int, int]:
    """Page-align [va, va + size) as __create_pgd_mapping does; check it lies in one half."""
    if size <= 0:
        raise ConfigError(f"mapping of VA {va:#x} has non-positive size {size}")
    page = geometry.granule
    start = va & ~(page - 1)
    end = (va + size + page - 1) & ~(page - 1)
    region = geometry.region_of(start)
    if (region == 0 and end > geometry.lower_end) or (region == 1 and end > 1 << 64):
        raise ConfigError(
            f"VA range [{va:#x}, {va + size:#x}) runs past the end of its "
            f"{'TTBR1' if region else 'TTBR0'} half"
        )
    return start, end


def create_pgd_mapping(
    mem: TableMemory,
    geometry: Geometry,
    pgd_pa: int,
    va: int,
    pa: int,
    size: int,
    prot: Prot,
    alloc_table: Callable[[], int],
    block_mappings: bool = True,
    cont_mappings: bool = False,
    no_exec_tables: bool = False,
    kernel_tables: bool = False,
) -> None:
    """Map [va, va + size) to pa in the table tree at ``pgd_pa``, as __create_pgd_mapping().

    Uses blocks where VA, PA and size are aligned and the granule allows them
    (unless ``block_mappings`` is False: NO_BLOCK_MAPPINGS), the contiguous hint on
    fully covered, aligned groups when ``cont_mappings`` (Linux's default; pass False
    for NO_CONT_MAPPINGS), and descends into existing tables rather than replacing
    them. New tables come from ``alloc_table()`` (PA of a zeroed granule). Table
    descriptors get UXNTable in the TTBR1 half (plus PXNTable with ``no_exec_tables``:
    NO_EXEC_MAPPINGS) and PXNTable in the TTBR0 half, as Linux builds kernel and user
    tables; ``kernel_tables`` drops the PXNTable of the TTBR0 half, for kernel-built
    tables there such as the idmap. A live entry may only change in the ways pgattr_change_is_safe() allows;
    anything else raises ConfigError naming the VA. ``prot.contiguous`` is ignored:
    the builder decides the hint.
    """
    if (pa ^ va) & (geometry.granule - 1):
        raise ConfigError(
            f"VA {va:#x} and PA {pa:#x} differ within a {geometry.granule}-byte page"
        )
    start, end = _check_range(geometry, va, size)
    pa &= ~(geometry.granule - 1)
    if pa < 0 or pa + (end - start) > 1 << OA_BITS:
        raise ConfigError(f"PA range at {pa:#x} for VA {va:#x} is beyond 48 bits")
    if pgd_pa & (max(geometry.top_table_size, 8) - 1) or not 0 <= pgd_pa < 1 << OA_BITS:
        raise ConfigError(f"top-level table at {pgd_pa:#x} is not aligned to its size")
    upper = geometry.region_of(start)
    if upper:
        table_bits = TABLE_UXN | (TABLE_PXN if no_exec_tables else 0)
    else:
        table_bits = 0 if kernel_tables else TABLE_PXN
    attrs = prot.bits() & ~DESC_CONT
    _map_level(mem, geometry, pgd_pa, geometry.start_level, start, end, pa, attrs,
               alloc_table, block_mappings, cont_mappings, table_bits)


def _map_level(mem, g, table_pa, level, va, end, pa, attrs, alloc_table, blocks, cont,
               table_bits) -> None:
    shift = g.shifts[level]
    size = 1 << shift
    index_mask = g.entries_at(level) - 1
    can_block = level == 3 or (blocks and g.block_allowed(level))
    leaf_type = DESC_VALID | DESC_TABLE if level == 3 else DESC_VALID
    group = g.cont_entries(level) if cont and can_block else 0
    group_size = group * size
    range_start = va
    cont_ok_group = None  # (group_start, verdict) cache of the current group
    if level == 3 and not group and hasattr(mem, "read") and hasattr(mem, "write"):
        # A run of pages into entries that are all still invalid (the linear
        # map's pages, NO_BLOCK_MAPPINGS): written at once, same result.
        first = table_pa + ((va >> shift) & index_mask) * 8
        count = (end - va) >> shift
        if mem.read(first, 8 * count) == bytes(8 * count):
            # The attributes sit below bit 12 and above bit 47 and the
            # output addresses stay below 2^48, so descriptor i is the
            # first plus i pages: no carry reaches an attribute bit.
            descriptors = array("Q", range(pa | attrs | leaf_type,
                                           (pa | attrs | leaf_type) + (count << shift),
                                           1 << shift))
            if sys.byteorder != "little":
                descriptors.byteswap()
            mem.write(first, descriptors.tobytes())
            return
    while va < end:
        nxt = min(((va >> shift) + 1) << shift, end)
        dpa = table_pa + ((va >> shift) & index_mask) * 8
        old = mem.read_u64(dpa)
        old_is_table = level < 3 and old & 3 == 3
        if can_block and nxt - va == size and not pa & (size - 1) and not old_is_table:
            new = pa | attrs | leaf_type
            if group:
                gstart = va & ~(group_size - 1)
                if cont_ok_group is None or cont_ok_group[0] != gstart:
                    cont_ok_group = (gstart, _group_can_be_cont(
                        mem, g, table_pa, level, gstart, group, range_start, end, va, pa,
                        group_size))
                if cont_ok_group[1]:
                    new |= DESC_CONT
            if old != new:
                if not _change_is_safe(old, new):
                    raise ConfigError(
                        f"refusing to replace the live level-{level} mapping of VA {va:#x} "
                        f"(descriptor {old:#x}) with {new:#x}"
                    )
                mem.write_u64(dpa, new)
        else:
            if not old & DESC_VALID:
                next_table = alloc_table()
                if next_table & (g.granule - 1) or next_table & ~ADDR_MASK:
                    raise ConfigError(
                        f"allocated table at {next_table:#x} is not a {g.granule}-aligned PA"
                    )
                mem.write_u64(dpa, next_table | DESC_VALID | DESC_TABLE | table_bits)
            elif old_is_table:
                next_table = old & ADDR_MASK & ~(g.granule - 1)
            else:
                raise ConfigError(
                    f"VA {va:#x} falls inside the live level-{level} block mapping "
                    f"(descriptor {old:#x}); splitting blocks is not supported"
                )
            _map_level(mem, g, next_table, level + 1, va, nxt, pa, attrs, alloc_table,
                       blocks, cont, table_bits)
        pa += nxt - va
        va = nxt


def _group_can_be_cont(mem, g, table_pa, level, gstart, group, range_start, end, va, pa,
                       group_size) -> bool:
    """Linux sets PTE_CONT when the whole aligned group is in range and VA/PA congruent."""
    if gstart < range_start or gstart + group_size > end:
        return False
    if (pa - (va - gstart)) & (group_size - 1):
        return False
    if level == 3:
        return True
    # A block group is only contiguous if no entry of it is an existing table.
    shift = g.shifts[level]
    first = table_pa + ((gstart >> shift) & (g.entries_at(level) - 1)) * 8
    return all(mem.read_u64(first + 8 * i) & 3 != 3 for i in range(group))


def unmap_range(mem: TableMemory, geometry: Geometry, pgd_pa: int, va: int, size: int) -> int:
    """Clear every leaf entry mapping [va, va + size); return how many were cleared.

    Like vunmap_range() it leaves tables in place and skips holes. A block only
    partly inside the range raises ConfigError before anything is written. When a
    contiguous-hint group is only partly cleared, the rest of the group loses the
    hint, since the architecture requires a group's entries to agree.
    """
    start, end = _check_range(geometry, va, size)
    victims: list[tuple[int, int, int, int]] = []  # (descriptor_pa, level, va, descriptor)
    _collect_leaves(mem, geometry, pgd_pa, geometry.start_level, start, end, victims)
    cleared = {dpa for dpa, _, _, _ in victims}
    for dpa, _, _, _ in victims:
        mem.write_u64(dpa, 0)
    for dpa, level, _, desc in victims:
        if not desc & DESC_CONT:
            continue
        group_bytes = geometry.cont_entries(level) * 8
        first = dpa & ~(group_bytes - 1)
        for other in range(first, first + group_bytes, 8):
            if other in cleared:
                continue
            value = mem.read_u64(other)
            if value & DESC_VALID and value & DESC_CONT:
                mem.write_u64(other, value & ~DESC_CONT)
    return len(victims)


def _collect_leaves(mem, g, table_pa, level, va, end, out) -> None:
    shift = g.shifts[level]
    size = 1 << shift
    index_mask = g.entries_at(level) - 1
    while va < end:
        base = (va >> shift) << shift
        nxt = min(base + size, end)
        dpa = table_pa + ((va >> shift) & index_mask) * 8
        desc = mem.read_u64(dpa)
        if desc & DESC_VALID:
            if level < 3 and desc & DESC_TABLE:
                _collect_leaves(mem, g, desc & ADDR_MASK & ~(g.granule - 1), level + 1, va, nxt,
                                out)
            elif level == 3 or g.block_allowed(level):
                if va != base or nxt != base + size:
                    raise ConfigError(
                        f"unmapping [{va:#x}, {nxt:#x}) would split the level-{level} block "
                        f"mapping of VA {base:#x}"
                    )
                out.append((dpa, level, base, desc))
        va = nxt


# ------------------------------------------------------- the kernel's mappings


@dataclass
class TableAllocator:
    """memblock allocations for translation tables: preferably on ``node``
    (memblock_alloc_node(), which falls back to any node), or with ``node``
    None from the top of RAM whatever its node, as arm64's
    early_pgtable_alloc() takes them (memblock_phys_alloc_range() with no
    node: see early_pgtable_alloc() below)."""

    physmem: PhysMem
    geometry: Geometry
    node: int | None
    tables: int = 0

    def __call__(self) -> int:
        return self._alloc(self.geometry.granule)

    def top_table(self) -> int:
        return self._alloc(max(self.geometry.top_table_size, 8))

    def _alloc(self, size: int) -> int:
        self.tables += 1
        if self.node is None:
            return self.physmem.memblock_phys_alloc(size, size)
        return self.physmem.memblock_alloc_node(size, size, self.node)


def early_pgtable_alloc(physmem: PhysMem, geometry: Geometry) -> TableAllocator:
    """The allocator of paging_init()'s tables and of the series' kernel-slot
    tables (create_kernel_mapping() passes early_pgtable_alloc): plain
    memblock with no node, top-down, so they fill the last node's RAM first.
    With rodata=full the linear map alone needs 2 MiB of tables per GiB of
    RAM: above 512 nodes they fill more than one node, and memblock_alloc_node()
    then places those nodes' text copies on another node (ktext.py reports it)."""
    return TableAllocator(physmem, geometry, node=None)


def _page_down(value: int, geometry: Geometry) -> int:
    return value & ~(geometry.granule - 1)


def _map(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage,
    start: int, end: int, pa: int, prot: Prot, alloc: Callable[[], int], blocks: bool = True,
    cont: bool = True,
) -> None:  # fmt: skip
    if end > start:
        create_pgd_mapping(physmem, geometry, pgd, start, pa, end - start, prot, alloc,
                           block_mappings=blocks, cont_mappings=cont)


def kernel_segments(image: KernelImage) -> list[tuple[str, int, int, Prot, bool]]:
    """map_kernel()'s segments: (name, start VA, end VA, prot, contiguous hint
    allowed) after mark_rodata_ro().

    As v6.7's map_kernel(), text starts at _stext: the head text [_text,
    _stext) is mapped by no root (only the idmap has it, at its PA).  Only
    rodata is mapped NO_CONT_MAPPINGS ("Only rodata will be remapped with
    different permissions later on, all other segments are allowed to use
    contiguous mappings")."""
    sym = image.sym
    segments = [
        ("text", sym("_stext"), sym("_etext"), PAGE_KERNEL_ROX, True),
        ("rodata", sym("__start_rodata"), sym("__inittext_begin"), PAGE_KERNEL_RO, False),
    ]
    init_end = sym("__inittext_end") if image.has("__inittext_end") else sym("__inittext_begin")
    segments.append(("inittext", sym("__inittext_begin"), init_end, PAGE_KERNEL_ROX, True))
    if image.has("__initdata_begin") and image.has("__initdata_end"):
        segments.append(("initdata", sym("__initdata_begin"), sym("__initdata_end"),
                         PAGE_KERNEL, True))
        data_start = sym("_data")
    else:
        data_start = init_end
    segments.append(("data", data_start, sym("_end"), PAGE_KERNEL, True))
    return [seg for seg in segments if seg[2] > seg[1]]


def map_kernel(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage, alloc: Callable[[], int]
) -> None:
    """Map the image at KIMAGE_VADDR into ``pgd`` (map_kernel in mmu.c)."""
    for _name, start, end, prot, cont in kernel_segments(image):
        _map(physmem, geometry, pgd, image, start, end, image.pa_of(start), prot, alloc,
             cont=cont)


def map_mem(
    physmem: PhysMem, geometry: Geometry, pgd: int, layout: KernelLayout,
    alloc: Callable[[], int],
) -> None:  # fmt: skip
    """The linear map of every node's RAM (map_mem in mmu.c), PAGE_KERNEL.

    As with rodata=full (CONFIG_RODATA_FULL_DEFAULT_ENABLED, the arm64
    default), where can_set_direct_map() makes map_mem() add
    NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS: pages only, no contiguous hint.
    map_mem() starts from NO_EXEC_MAPPINGS, so every table descriptor it
    creates carries PXNTable (and UXNTable, as every kernel table)."""
    phys_offset = physmem.banks[0].base
    for bank in physmem.banks:
        va = layout.linear_va(bank.base, phys_offset)
        create_pgd_mapping(physmem, geometry, pgd, va, bank.base, bank.size, PAGE_KERNEL, alloc,
                           block_mappings=False, cont_mappings=False, no_exec_tables=True)


def _leaf_descriptor_pa(mem: TableMemory, g: Geometry, pgd_pa: int, va: int) -> int | None:
    """PA of the level-3 descriptor for ``va`` below existing tables, or None."""
    table = pgd_pa
    for level in range(g.start_level, 4):
        dpa = table + ((va >> g.shifts[level]) & (g.entries_at(level) - 1)) * 8
        if level == 3:
            return dpa
        desc = mem.read_u64(dpa)
        if desc & 3 != 3:
            return None
        table = desc & ADDR_MASK & ~(g.granule - 1)
    return None


def early_fixmap_init(
    physmem: PhysMem, geometry: Geometry, pgd: int, va: int, alloc: Callable[[], int]
) -> int:
    """The tables down to the PTE of the fixmap slot at ``va`` (early_fixmap_init
    and the bm_pte tables), with the PTE itself left invalid; returns its PA.
    Built before the node roots are copied, so every root shares them."""
    create_pgd_mapping(physmem, geometry, pgd, va, 0, geometry.granule, PAGE_KERNEL, alloc,
                       block_mappings=False)
    pte_pa = _leaf_descriptor_pa(physmem, geometry, pgd, va)
    assert pte_pa is not None  # just mapped with pages
    physmem.write_u64(pte_pa, 0)
    return pte_pa


def mark_linear_text_alias_ro(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage, layout: KernelLayout,
    alloc: Callable[[], int],
) -> None:  # fmt: skip
    """update_mapping_prot(__pa_symbol(_stext), lm_alias(_stext), __init_begin -
    _stext, PAGE_KERNEL_RO): node 0's kernel text and rodata become read-only
    through the linear map (smp_cpus_done -> mark_linear_text_alias_ro)."""
    start = image.pa_of(image.sym("_stext"))
    end = image.pa_of(image.sym("__init_begin"))
    va = layout.linear_va(start, physmem.banks[0].base)
    create_pgd_mapping(physmem, geometry, pgd, va, start, end - start, PAGE_KERNEL_RO, alloc,
                       block_mappings=False, cont_mappings=False, no_exec_tables=True)


def map_entry_trampoline(
    physmem: PhysMem, geometry: Geometry, tramp_pgd: int, swapper_pgd: int, tramp_va: int,
    text_pa: int, alloc: Callable[[], int],
) -> None:  # fmt: skip
    """map_entry_trampoline() (KPTI): tramp_pg_dir emptied and given only the
    trampoline text page at TRAMP_VALIAS, and the same page in swapper through
    the fixmap (FIX_ENTRY_TRAMP_TEXT1); global, executable, no blocks."""
    prot = replace(PAGE_KERNEL_ROX, ng=False)  # "always mapped and can therefore be global"
    physmem.write(tramp_pgd, bytes(max(geometry.top_table_size, 8)))
    for pgd in (tramp_pgd, swapper_pgd):
        create_pgd_mapping(physmem, geometry, pgd, tramp_va, text_pa, geometry.granule, prot,
                           alloc, block_mappings=False)


def create_idmap(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage, alloc: Callable[[], int]
) -> None:
    """idmap_pg_dir: the head text identity-mapped, for secondaries turning the MMU on."""
    start = image.pa_of(image.sym("_text"))
    end = image.pa_of(image.sym("_stext"))
    create_pgd_mapping(physmem, geometry, pgd, start, start, end - start, PAGE_KERNEL_ROX, alloc,
                       kernel_tables=True)


def create_kernel_nid_map(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage, copy_pa: int,
    alloc: Callable[[], int], rodata_prot: Prot = PAGE_KERNEL,
) -> None:  # fmt: skip
    """One node's kernel mapping (patches 13 and 14): text and most rodata on
    the node's copy, everything else on the shared original.

    ``rodata_prot`` is what the series uses for the copies (PAGE_KERNEL:
    writable, ktext-series.md section 3 item 4); PAGE_KERNEL_RO is the remedy.
    """
    sym = image.sym
    stext = sym("_stext")

    def copy_of(va: int) -> int:
        return copy_pa + (va - stext)

    ro_cut = _page_down(sym("__start_ro_after_init"), geometry)
    inittext = sym("__inittext_begin")
    # (start, end, PA, prot, blocks, contiguous hint allowed)
    segments = [
        # the head text [_text, _stext) is not mapped, as in map_kernel().
        # Text may use the contiguous hint (flags 0), but the copy is only
        # page-aligned (memblock_alloc_node(size, PAGE_SIZE, nid)), so a
        # group gets it only where VA and PA agree modulo the group size.
        (stext, sym("_etext"), copy_of(stext), PAGE_KERNEL_ROX, True, True),
        # both parts of rodata NO_CONT_MAPPINGS (patch 14)
        (sym("__start_rodata"), ro_cut, copy_of(sym("__start_rodata")), rodata_prot, False,
         False),
        (ro_cut, inittext, image.pa_of(ro_cut), rodata_prot, False, False),
    ]
    for name, start, end, prot, cont in kernel_segments(image):
        if name in ("inittext", "initdata", "data"):
            segments.append((start, end, image.pa_of(start), prot, True, cont))
    for start, end, pa, prot, blocks, cont in segments:
        _map(physmem, geometry, pgd, image, start, end, pa, prot, alloc, blocks, cont)
