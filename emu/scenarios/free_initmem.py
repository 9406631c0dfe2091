"""free-initmem: init memory unmapped on node 0 only.

free_initmem() gives [__init_begin, __init_end) back to the page allocator
(free_reserved_area() poisons it with 0xcc) and vunmap_range()s it from
init_mm, which is node 0's root.  The other nodes' roots have their own
kernel-slot tables, built by create_kernel_nid_map(), and keep mapping init
text executable and init data writable: their CPUs can run and write pages
the allocator has handed to someone else.  Remedy: unmap on every root.
"""

from __future__ import annotations

from emu.errors import GuestFault
from emu.hw.pagetable import Access
from emu.scenarios.base import Outcome, Role, Scenario, Setup, hexa
from emu.scenarios.kmodel import flush_tlb_kernel_range, vunmap

POISON_FREE_INITMEM = 0xCC
INIT_PROBE_RESULT = 0x1717  # scenario_init_probe's return value
NEW_OWNER_DATA = 0x5EED_0F_0F_0F_0F_0F


def _fetch_outcome(system, cpu: int, probe: int) -> str:
    """'ran' (returned), 'fetched' (ran the freed page's new contents), 'faulted'."""
    try:
        result = system.call(cpu, probe)["x0"]
    except GuestFault:
        # A call that faults leaves its exception pending; this one is handled here.
        system.machine.accounting.take_pending_interrupt()
        fault = system.machine.mmu.fault
        if fault is not None and fault.access is Access.FETCH and fault.va >> 12 == probe >> 12:
            return "faulted"
        return "fetched"  # the page translated: the CPU ran what is there now (poison)
    return "ran" if result == INIT_PROBE_RESULT else "fetched"


def _outcome(setup: Setup, every_node: bool, role: Role, label: str) -> Outcome:
    system = setup.boot(iterations=3)
    try:
        system.run()
        image, physmem = system.image, system.physmem
        begin, end = image.sym("__init_begin"), image.sym("__init_end")
        probe, word = image.sym("scenario_init_probe"), image.sym("scenario_init_word")
        before = [_fetch_outcome(system, vcpu.index, probe) for vcpu in system.machine.cpus]
        # free_initmem(): poison through the linear alias, then unmap and flush
        physmem.write(image.pa_of(begin), bytes([POISON_FREE_INITMEM]) * (end - begin))
        system.machine.uc.ctl_flush_tb()  # a host write: drop translated init code
        nodes = list(range(len(system.kernel.replication.pgd_phys)))
        cleared = vunmap(system, begin, end - begin, nodes if every_node else [0])
        flush_tlb_kernel_range(system, 0, begin, end)
        details = [f"init [{hexa(begin)}, {hexa(end)}) at PA {hexa(image.pa_of(begin))} freed "
                   f"and poisoned; {cleared} leaf entries cleared on "
                   f"{'every root' if every_node else 'node 0 root'}"]
        fetched, wrote = [], []
        for vcpu in system.machine.cpus:
            if _fetch_outcome(system, vcpu.index, probe) != "faulted":
                fetched.append(vcpu.index)
                details.append(f"CPU {vcpu.index} (node {vcpu.node}): fetched freed init text "
                               f"at {hexa(probe)} (PA {hexa(image.pa_of(probe))})")
            try:
                system.call(vcpu.index, "scenario_write_u64", word, NEW_OWNER_DATA)
            except GuestFault:
                continue
            wrote.append(vcpu.index)
            details.append(f"CPU {vcpu.index} (node {vcpu.node}): stored to freed init data "
                           f"at {hexa(word)} (PA {hexa(image.pa_of(word))})")
        counts = {"cpus_ran_init_before": before.count("ran"),
                  "cpus_fetched_freed_text": len(fetched), "cpus_wrote_freed_data": len(wrote),
                  "leaf_entries_cleared": cleared}  # fmt: skip
        summary = (f"{len(fetched)} CPUs still fetch freed init text, {len(wrote)} still write "
                   f"freed init data (of {len(system.machine.cpus)})")
        return Outcome(role, label, bool(fetched or wrote), counts, details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, False, Role.HAZARD, "v3: vunmap_range() on init_mm (node 0's root)"),
        _outcome(setup, True, Role.REMEDY, "unmap init on every node's root"),
    ]


SCENARIO = Scenario(
    name="free-initmem",
    title="init memory freed but still mapped on other nodes",
    v3="free_initmem() unmaps init text/data in node 0's tables only",
    run=run,
)
