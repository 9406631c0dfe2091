"""kpti-offsets: per-node KPTI and SW-PAN tables at the offsets the entry code assumes.

arm64's entry code finds the trampoline and reserved tables at fixed offsets
from the live TTBR1, because vmlinux.lds.S places tramp_pg_dir,
reserved_pg_dir and swapper_pg_dir one page apart: on the way out to EL0,
tramp_unmap_kernel loads TTBR1 - TRAMP_SWAPPER_OFFSET (two pages), on the way
in tramp_map_kernel adds it back, and SW-PAN's __uaccess_ttbr0_disable loads
TTBR0 = TTBR1 - RESERVED_SWAPPER_OFFSET (one page).  The series gives every
node its own swapper root, reserved and tramp dirs (patches 08, 10), and v3's
patch 18 allocates the three separately, memblock_alloc_node(PGD_SIZE,
PGD_SIZE, nid) each.  Off node 0 the offsets then hold only by accident of
memblock: top-down, three back-to-back allocations land one PGD_SIZE apart
in the right order, which is one page when PGD_SIZE == PAGE_SIZE (every
layout here but 64K/48, whose root is 512 bytes) and as long as nothing else
is allocated on the node in between.

The scenario builds KPTI's trampoline tables as map_entry_trampoline() does
(the page mapped at TRAMP_VALIAS is the page of ``vectors``, standing in for
__entry_tramp_text, which this kernel does not have), copies them to every
node (ktext_replication_init_tramp) and checks, on each node's tables, what
the three computations find: the trampoline mapped under TTBR1 - 2 pages,
the node's root at tramp + 2 pages, an empty table at TTBR1 - 1 page.  The
check is on the tables with the architectural walk, not by running the
trampoline (its global TLB entries could hide a wrong TTBR1 on a CPU that
had used the right one).  Remedy: one allocation per node holding tramp,
reserved and swapper one page apart, as vmlinux.lds.S lays out node 0's.
"""

from __future__ import annotations

from emu.hw.pagetable import Access, make_ttbr, walk
from emu.kernel.ktext import ktext_replication_init_tramp
from emu.kernel.mmu import TableAllocator, map_entry_trampoline
from emu.scenarios.base import Outcome, Role, Scenario, Setup, hexa
from emu.system import System

RESERVED_PAGES, TRAMP_PAGES = 1, 2  # RESERVED_/TRAMP_SWAPPER_OFFSET in pages


def _check_node(system: System, node: int, tramp: int, reserved: int, swapper: int,
                tramp_va: int, text_pa: int) -> list[str]:  # fmt: skip
    """What the entry code finds from this node's tables; one line per problem."""
    page = system.geometry.granule
    pgd_size = max(system.geometry.top_table_size, 8)
    read = system.physmem.read_u64
    tcr = system.kernel.tcr
    problems = []
    exit_root = swapper - TRAMP_PAGES * page
    found = walk(read, tcr, 0, make_ttbr(exit_root), tramp_va, Access.FETCH, 1)
    if found.fault is not None or found.pa != text_pa:
        what = str(found.fault) if found.fault is not None else f"PA {hexa(found.pa)}"
        problems.append(f"node {node}: tramp_unmap_kernel loads TTBR1 {hexa(exit_root)} (its "
                        f"tramp_pg_dir is {hexa(tramp)}): TRAMP_VALIAS gives {what}")
    if tramp + TRAMP_PAGES * page != swapper:
        problems.append(f"node {node}: tramp_map_kernel loads TTBR1 "
                        f"{hexa(tramp + TRAMP_PAGES * page)}, not the node's root "
                        f"{hexa(swapper)}")
    pan_root = swapper - RESERVED_PAGES * page
    if pan_root != reserved:
        # The table must be empty and stay so: anything but the reserved dir
        # is memory the allocator may hand out (or has), whatever it holds now.
        try:
            now = "zeroes now" if not any(system.physmem.read(pan_root, pgd_size)) else (
                "holds descriptors now")
        except LookupError:
            now = "is no RAM"
        problems.append(f"node {node}: __uaccess_ttbr0_disable loads TTBR0 {hexa(pan_root)}, "
                        f"not its reserved_pg_dir {hexa(reserved)} ({now})")
    return problems


def _outcome(setup: Setup, remedy: bool, role: Role, label: str) -> Outcome:
    system = setup.boot(iterations=2)
    try:
        system.run()
        image, geometry, physmem = system.image, system.geometry, system.physmem
        repl, layout = system.kernel.replication, system.kernel.layout
        page, pgd_size = geometry.granule, max(geometry.top_table_size, 8)
        tramp_va = layout.fix_to_virt(layout.fix_entry_tramp_text1())
        text_pa = image.pa_of(image.sym("vectors")) & ~(page - 1)
        alloc = TableAllocator(physmem, geometry, node=0)
        map_entry_trampoline(physmem, geometry, repl.tramp_phys[0], repl.pgd_phys[0], tramp_va,
                             text_pa, alloc)
        ktext_replication_init_tramp(repl, physmem, pgd_size)
        groups = list(zip(repl.tramp_phys, repl.reserved_phys, repl.pgd_phys, strict=True))
        if remedy:
            for node in range(1, len(groups)):
                block = physmem.memblock_alloc_node(3 * page, page, node)
                tramp, reserved, swapper = block, block + page, block + 2 * page
                physmem.write(swapper, physmem.read(repl.pgd_phys[node], pgd_size))
                physmem.write(tramp, physmem.read(repl.tramp_phys[0], pgd_size))
                groups[node] = (tramp, reserved, swapper)
        details = []
        bad_nodes = 0
        for node, (tramp, reserved, swapper) in enumerate(groups):
            problems = _check_node(system, node, tramp, reserved, swapper, tramp_va, text_pa)
            bad_nodes += bool(problems)
            details += problems
        spacing = ", ".join(f"node {n}: swapper-reserved {hexa(s - r)}, swapper-tramp "
                            f"{hexa(s - t)}" for n, (t, r, s) in enumerate(groups))  # fmt: skip
        details.append(f"PAGE_SIZE {hexa(page)}, PGD_SIZE {hexa(pgd_size)}; {spacing}")
        counts = {"nodes_with_wrong_offsets": bad_nodes, "problems": len(details) - 1}
        summary = (f"{bad_nodes} of {len(groups)} nodes' tables not at the entry code's "
                   f"offsets (PGD_SIZE {hexa(pgd_size)}, PAGE_SIZE {hexa(page)})")
        if not bad_nodes and not remedy:
            summary += ": memblock placed each node's three dirs back to back, one page apart"
        return Outcome(role, label, bool(bad_nodes), counts, details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, False, Role.HAZARD,
                 "v3 (patch 18): swapper, reserved, tramp allocated separately per node"),
        _outcome(setup, True, Role.REMEDY,
                 "one allocation per node: tramp, reserved, swapper one page apart"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="kpti-offsets",
    title="per-node KPTI/SW-PAN dirs vs the entry code's fixed offsets",
    v3="patch 18 allocates each node's swapper, reserved and tramp dirs separately",
    run=run,
)
