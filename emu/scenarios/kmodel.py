"""Kernel operations the scenarios perform after boot, shaped like the Linux C
code they stand for and run on the host the way boot.py runs boot-time C:
vmap() into init_mm (node 0's root) with set_swapper_pgd() for a new
top-level entry, vunmap_range() on one or every root, module_alloc()'s
windows and vmalloc's lowest-hole search, splitting linear-map blocks to
change a range's permissions (set_memory_ro), and TLB flushes.

TLB maintenance after a mapping change runs as guest instructions
(``scenario_flush_tlb_kernel_range`` in kernel_blob/scenarios.S) on a chosen
CPU, so it reaches exactly the CPUs its Inner Shareable domain holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.errors import ConfigError
from emu.hw.pagetable import (
    DESC_RDONLY,
    DESC_TABLE,
    DESC_VALID,
    LEAF_ATTR_MASK,
    DescKind,
    Prot,
    decode_descriptor,
    table_descriptor,
)
from emu.kernel.ktext import set_swapper_pgd
from emu.kernel.layout import KernelLayout
from emu.kernel.mmu import TableAllocator, create_pgd_mapping, unmap_range
from emu.system import System

SZ_128M = 128 << 20
SZ_2G = 2 << 30


def top_entries(system: System, root: int) -> list[int]:
    return [system.physmem.read_u64(root + 8 * index)
            for index in range(system.geometry.top_entries)]  # fmt: skip


def vmap(system: System, va: int, pa: int, size: int, prot: Prot,
         hook: bool = True) -> list[int]:  # fmt: skip
    """Map [va, va + size) to pa in init_mm (node 0's swapper_pg_dir), as vmap()
    does with page-sized entries.  A top-level entry it creates goes through
    set_swapper_pgd(): with ``hook`` the ktext hook copies it to every node's
    root (refusing the kernel slots); without it (upstream) it stays in node
    0's table.  Returns the top-level indices written."""
    repl = system.kernel.replication
    root = repl.pgd_phys[0]
    before = top_entries(system, root)
    alloc = TableAllocator(system.physmem, system.geometry, node=0)
    create_pgd_mapping(system.physmem, system.geometry, root, va, pa, size, prot, alloc,
                       block_mappings=False)  # fmt: skip
    changed = [index for index, value in enumerate(top_entries(system, root))
               if value != before[index]]  # fmt: skip
    if hook:
        for index in changed:
            set_swapper_pgd(repl, system.physmem, index, system.physmem.read_u64(root + 8 * index))
    return changed


def vunmap(system: System, va: int, size: int, nodes: list[int]) -> int:
    """vunmap_range() on the roots of ``nodes``; returns the leaf entries cleared."""
    repl = system.kernel.replication
    roots = sorted({repl.pgd_phys[node] for node in nodes})
    return sum(unmap_range(system.physmem, system.geometry, root, va, size) for root in roots)


def flush_tlb_kernel_range(system: System, cpu: int, start: int, end: int) -> None:
    """flush_tlb_kernel_range() executed by ``cpu``: TLBI VAALE1IS per page."""
    system.call(cpu, "scenario_flush_tlb_kernel_range", start, end, system.geometry.granule)


def flush_every_tlb(system: System) -> None:
    """Empty every TLB of the machine (a flush_tlb_all() on every IS domain)."""
    for vcpu in system.machine.cpus:
        vcpu.tlb.clear()
    system.machine.tlbs.shared.clear()
    system.machine.flush_tlb()


# ---------------------------------------------------------- set_memory_ro

def _split_block(system: System, dpa: int, level: int, desc: int, alloc: TableAllocator) -> int:
    """Replace the block at ``dpa`` by a next-level table mapping the same range
    with the same attributes; returns the new table descriptor."""
    geometry = system.geometry
    child_level = level + 1
    child_size = geometry.level_size(child_level)
    base = decode_descriptor(geometry, level, desc).address
    attrs = desc & LEAF_ATTR_MASK
    page_type = DESC_VALID | (DESC_TABLE if child_level == 3 else 0)
    table = alloc()
    for index in range(geometry.entries):
        system.physmem.write_u64(table + 8 * index, base + index * child_size | attrs | page_type)
    # kernel (TTBR1) tables carry UXNTable, as create_pgd_mapping() builds them
    return table_descriptor(table, uxn_table=True)


def set_memory_ro(system: System, va: int, size: int) -> int:
    """Make [va, va + size) read-only in the kernel's tables (node 0's root and
    the lower levels every root shares), splitting blocks down to pages as
    set_memory_ro() needs (rodata_full).  A split top-level entry is a
    top-level write, so it goes through set_swapper_pgd() and reaches every
    root.  Returns the pages changed; the caller flushes the TLBs."""
    geometry = system.geometry
    repl = system.kernel.replication
    alloc = TableAllocator(system.physmem, geometry, node=0)
    granule = geometry.granule
    if va % granule or size % granule:
        raise ConfigError(f"set_memory_ro range [{va:#x}, +{size:#x}) is not page-aligned")
    changed = 0
    for page in range(va, va + size, granule):
        table, level = repl.pgd_phys[0], geometry.start_level
        while True:
            dpa = table + 8 * geometry.index(page, level)
            desc = system.physmem.read_u64(dpa)
            kind = decode_descriptor(geometry, level, desc).kind
            if kind is DescKind.TABLE:
                table = decode_descriptor(geometry, level, desc).address
                level += 1
                continue
            if kind is DescKind.BLOCK:
                new = _split_block(system, dpa, level, desc, alloc)
                if level == geometry.start_level:
                    set_swapper_pgd(repl, system.physmem, geometry.index(page, level), new)
                else:
                    system.physmem.write_u64(dpa, new)
                continue
            if kind is not DescKind.PAGE:
                raise ConfigError(f"set_memory_ro: VA {page:#x} is not mapped")
            if not desc & DESC_RDONLY:
                system.physmem.write_u64(dpa, desc | DESC_RDONLY)
                changed += 1
            break
    return changed


# ------------------------------------------------------------ module_alloc

@dataclass(frozen=True)
class Area:
    start: int
    end: int
    what: str

    def overlaps(self, start: int, end: int) -> bool:
        return start < self.end and self.start < end


def image_vm_areas(system: System) -> list[Area]:
    """The vm areas map_kernel() registers (v6.7: from _stext on), so
    [_text, _stext) is free in vmalloc's eyes."""
    sym = system.image.sym
    segments = [("text", "_stext", "_etext"), ("rodata", "__start_rodata", "__inittext_begin"),
                ("inittext", "__inittext_begin", "__inittext_end"),
                ("initdata", "__initdata_begin", "__initdata_end"), ("data", "_data", "_end")]
    return [Area(sym(a), sym(b), f"vmlinux {name}") for name, a, b in segments if sym(b) > sym(a)]


def module_windows(system: System, layout: KernelLayout, bounded: bool) -> list[tuple[int, int]]:
    """module_alloc()'s windows without KASLR (v6.5+ module_init_limits): the
    direct one, 128 MiB up to _end, then the PLT one, 2 GiB up to _end; patch
    19 (``bounded``) ends both at MODULES_END = KIMAGE_VADDR."""
    kernel_end = system.image.sym("_end")
    end = layout.modules_end if bounded else kernel_end
    return [(kernel_end - SZ_128M, end), (kernel_end - SZ_2G, end)]


def find_vm_hole(windows: list[tuple[int, int]], busy: list[Area], size: int, align: int,
                 guard: int) -> int | None:  # fmt: skip
    """__vmalloc_node_range()'s choice: the lowest ``align``-ed address of the
    first window where ``size`` plus a guard page overlaps nothing busy."""
    for start, end in windows:
        address = -(-start // align) * align
        while address + size + guard <= end:
            clash = [area for area in busy if area.overlaps(address, address + size + guard)]
            if not clash:
                return address
            address = -(-max(area.end for area in clash) // align) * align
    return None
