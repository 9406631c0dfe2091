"""Kernel page tables as arch/arm64/mm/mmu.c builds them: map_kernel(),
map_mem() (the linear map), the idmap, create_kernel_nid_map() of the ktext
series (patches 13/14), and set_swapper_pgd().

These run on the host at boot, where Linux runs boot-time C; they write real
VMSAv8-64 descriptors into guest RAM through ``emu.hw.pagetable``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emu.hw.pagetable import (
    PAGE_KERNEL,
    PAGE_KERNEL_RO,
    PAGE_KERNEL_ROX,
    Geometry,
    Prot,
    create_pgd_mapping,
)
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage
from emu.kernel.layout import KernelLayout


@dataclass
class TableAllocator:
    """memblock allocations for translation tables on one node."""

    physmem: PhysMem
    geometry: Geometry
    node: int
    tables: int = 0

    def __call__(self) -> int:
        self.tables += 1
        size = self.geometry.granule
        return self.physmem.memblock_alloc_node(size, size, self.node)

    def top_table(self) -> int:
        size = max(self.geometry.top_table_size, 8)
        self.tables += 1
        return self.physmem.memblock_alloc_node(size, size, self.node)


def _page_down(value: int, geometry: Geometry) -> int:
    return value & ~(geometry.granule - 1)


def _map(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage,
    start: int, end: int, pa: int, prot: Prot, alloc: Callable[[], int], blocks: bool = True,
) -> None:  # fmt: skip
    if end > start:
        create_pgd_mapping(physmem, geometry, pgd, start, pa, end - start, prot, alloc,
                           block_mappings=blocks)


def kernel_segments(image: KernelImage) -> list[tuple[str, int, int, Prot]]:
    """map_kernel()'s segments: (name, start VA, end VA, prot) after mark_rodata_ro()."""
    sym = image.sym
    segments = [
        ("text", sym("_text"), sym("_etext"), PAGE_KERNEL_ROX),
        ("rodata", sym("__start_rodata"), sym("__inittext_begin"), PAGE_KERNEL_RO),
    ]
    init_end = sym("__inittext_end") if image.has("__inittext_end") else sym("__inittext_begin")
    segments.append(("inittext", sym("__inittext_begin"), init_end, PAGE_KERNEL_ROX))
    data_start = init_end
    segments.append(("data", data_start, sym("_end"), PAGE_KERNEL))
    return [seg for seg in segments if seg[2] > seg[1]]


def map_kernel(
    physmem: PhysMem, geometry: Geometry, pgd: int, image: KernelImage, alloc: Callable[[], int]
) -> None:
    """Map the image at KIMAGE_VADDR into ``pgd`` (map_kernel in mmu.c)."""
    for _name, start, end, prot in kernel_segments(image):
        _map(physmem, geometry, pgd, image, start, end, image.pa_of(start), prot, alloc)


def map_mem(
    physmem: PhysMem, geometry: Geometry, pgd: int, layout: KernelLayout,
    alloc: Callable[[], int],
) -> None:  # fmt: skip
    """The linear map of every node's RAM (map_mem in mmu.c), PAGE_KERNEL."""
    phys_offset = physmem.banks[0].base
    for bank in physmem.banks:
        va = layout.linear_va(bank.base, phys_offset)
        create_pgd_mapping(physmem, geometry, pgd, va, bank.base, bank.size, PAGE_KERNEL, alloc)


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
    segments = [
        # head text sits before _stext and is not copied: it stays shared
        (sym("_text"), stext, image.pa_of(sym("_text")), PAGE_KERNEL_ROX, True),
        (stext, sym("_etext"), copy_of(stext), PAGE_KERNEL_ROX, True),
        (sym("__start_rodata"), ro_cut, copy_of(sym("__start_rodata")), rodata_prot, False),
        (ro_cut, inittext, image.pa_of(ro_cut), rodata_prot, False),
    ]
    for name, start, end, prot in kernel_segments(image):
        if name in ("inittext", "data"):
            segments.append((start, end, image.pa_of(start), prot, True))
    for start, end, pa, prot, blocks in segments:
        _map(physmem, geometry, pgd, image, start, end, pa, prot, alloc, blocks)
