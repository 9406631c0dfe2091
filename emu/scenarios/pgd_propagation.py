"""pgd-propagation: top-level entries created after boot.

Each node's root is a copy of swapper_pg_dir taken at boot, so a top-level
entry created later (a new vmalloc area's table) exists only in node 0's
root unless set_swapper_pgd() copies it: patch 10's hook does, with a plain
store and no TLB maintenance (the entry goes from invalid to valid, which no
TLB caches).  Writes to the kernel slots are refused (WARN): each node's
slot differs by design.  The scenario maps one page at a vmalloc address
whose top-level entry is empty, with and without the hook, has every CPU
read it, and issues one top-level write to the kernel slot.
"""

from __future__ import annotations

from emu.errors import GuestFault
from emu.kernel.ktext import set_swapper_pgd
from emu.kernel.pgtable_prot import PAGE_KERNEL
from emu.scenarios.base import Outcome, Role, Scenario, Setup, hexa
from emu.scenarios.kmodel import top_entries, vmap

MARKER = 0x7067_6470_7067_6470


def _empty_vmalloc_slot(system) -> int:
    """A vmalloc VA whose top-level entry node 0's root does not have yet."""
    layout, geometry = system.kernel.layout, system.geometry
    entries = top_entries(system, system.kernel.replication.pgd_phys[0])
    kidx = system.kernel.replication.kidx
    size = geometry.pgdir_size
    va = layout.vmalloc_start
    while va < layout.vmalloc_end:
        index = geometry.pgd_index(va)
        if not entries[index] and not kidx[0] <= index <= kidx[1]:
            return va
        va = (va // size + 1) * size
    raise GuestFault(f"{geometry.name}: no empty top-level slot in the vmalloc area")


def _outcome(setup: Setup, hook: bool, role: Role, label: str) -> Outcome:
    system = setup.boot(iterations=3)
    try:
        system.run()
        geometry, repl, physmem = system.geometry, system.kernel.replication, system.physmem
        va = _empty_vmalloc_slot(system)
        pa = physmem.memblock_alloc_node(geometry.granule, geometry.granule, 0)
        physmem.write_u64(pa, MARKER)
        changed = vmap(system, va, pa, geometry.granule, PAGE_KERNEL, hook=hook)
        index = geometry.pgd_index(va)
        missing = [node for node, root in enumerate(repl.pgd_phys)
                   if not physmem.read_u64(root + 8 * index)]  # fmt: skip
        details = [f"vmalloc page at {hexa(va)} -> PA {hexa(pa)}: new top-level entry {index}; "
                   f"missing from the roots of nodes {missing or 'none'}"]
        read, faulted = [], []
        for vcpu in system.machine.cpus:
            try:
                value = system.call(vcpu.index, "scenario_read_u64", va)["x0"]
            except GuestFault:
                faulted.append(vcpu.index)
                details.append(f"CPU {vcpu.index} (node {vcpu.node}): data abort at {hexa(va)}")
                continue
            if value == MARKER:
                read.append(vcpu.index)
        refused = 0
        if hook:
            slot = repl.kidx[0]
            before = [physmem.read_u64(root + 8 * slot) for root in repl.pgd_phys]
            if not set_swapper_pgd(repl, physmem, slot, before[0]):
                refused = 1
                kept = [physmem.read_u64(root + 8 * slot) for root in repl.pgd_phys] == before
                details.append(f"top-level write to kernel slot {slot} refused (WARN); "
                               f"node roots {'keep' if kept else 'LOST'} their own entry")
        counts = {"new_top_level_entries": len(changed), "roots_missing_entry": len(missing),
                  "cpus_read": len(read), "cpus_faulted": len(faulted),
                  "kernel_slot_writes_refused": refused}  # fmt: skip
        summary = (f"new top-level entry {index} missing on {len(missing)} node roots; "
                   f"{len(faulted)} CPUs faulted reading {hexa(va)}, {len(read)} read it")
        if hook:
            summary += f"; {refused} kernel-slot write refused"
        return Outcome(role, label, bool(missing or faulted), counts, details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, False, Role.HAZARD,
                 "set_swapper_pgd without the ktext hook: node 0's root only"),
        _outcome(setup, True, Role.REMEDY,
                 "v3 patch 10: the hook copies it to every root, refuses kernel slots"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="pgd-propagation",
    title="top-level entries created after boot",
    v3="patch 10: set_swapper_pgd() copies outside the kernel slots, refuses inside",
    run=run,
)
