"""module-in-kernel-slot: a module placed inside the kernel's top-level slot.

v6.5+ module_alloc() (no KASLR) tries [_end - 128 MiB, _end), then
[_end - 2 GiB, _end).  Both end at _end, above KIMAGE_VADDR, so once the
space below the image is taken, vmalloc's lowest free hole can be inside the
image's top-level slot: [_text, _stext), which v6.7's map_kernel() neither
maps nor registers as a vm area.  A mapping there lands in node 0's private
kernel-slot tables only; every other node faults on it (the "abnormal
startup" of patch 19).  Patch 19 ends both windows at MODULES_END.

Every root already leaves the head text unmapped, as v6.7's map_kernel()
does.  The scenario lets earlier modules fill the direct window below the image, places
one page of module text where module_alloc() would, maps it through init_mm
(vmap, with set_swapper_pgd for a new top-level entry) and calls it on every
CPU.
"""

from __future__ import annotations

from emu.errors import GuestFault
from emu.hw.pagetable import Access, make_ttbr, walk
from emu.kernel.pgtable_prot import PAGE_KERNEL_ROX
from emu.scenarios.base import Outcome, Role, Scenario, Setup, hexa
from emu.scenarios.kmodel import (
    Area,
    find_vm_hole,
    image_vm_areas,
    module_windows,
    vmap,
)

MODULE_MAGIC = 0x4D4F  # what the module's function returns
_MOVZ_X0 = 0xD280_0000  # movz x0, #imm16
_RET = 0xD65F_03C0


def _module_text(size: int) -> bytes:
    code = (_MOVZ_X0 | MODULE_MAGIC << 5).to_bytes(4, "little") + _RET.to_bytes(4, "little")
    return code + bytes(size - len(code))


def _outcome(setup: Setup, bounded: bool, role: Role, label: str) -> Outcome:
    system = setup.boot(iterations=3)
    try:
        system.run()
        image, layout, geometry = system.image, system.kernel.layout, system.geometry
        repl = system.kernel.replication
        nodes = list(range(len(repl.pgd_phys)))
        granule = geometry.granule
        text = image.sym("_text")
        windows = module_windows(system, layout, bounded)
        earlier = Area(windows[0][0], text, "earlier modules")
        va = find_vm_hole(windows, [*image_vm_areas(system), earlier], granule, granule, granule)
        details = ["module_alloc windows: " + ", ".join(
            f"[{hexa(lo)}, {hexa(hi)})" for lo, hi in windows),
            f"precondition: earlier modules fill [{hexa(earlier.start)}, {hexa(earlier.end)}) "
            f"below the image"]  # fmt: skip
        if va is None:
            counts = {"module_in_kernel_slot": 0, "cpus_faulted": 0, "cpus_ran": 0,
                      "module_allocated": 0}  # fmt: skip
            return Outcome(role, label, False, counts, details, "module_alloc found no room")
        slot = geometry.pgd_index(va)
        in_slot = repl.kidx[0] <= slot <= repl.kidx[1]
        pa = system.physmem.memblock_alloc_node(granule, granule, 0)
        system.physmem.write(pa, _module_text(granule))
        system.machine.uc.ctl_flush_tb()
        new_entries = vmap(system, va, pa, granule, PAGE_KERNEL_ROX)
        details.append(f"module text at {hexa(va)} (top-level slot {slot}"
                       f"{', a kernel slot' if in_slot else ''}) -> PA {hexa(pa)}; "
                       f"new top-level entries {new_entries or 'none'}")  # fmt: skip
        tcr = system.kernel.tcr
        mapped = [node for node, root in enumerate(repl.pgd_phys)
                  if walk(system.physmem.read_u64, tcr, 0, make_ttbr(root), va,
                          Access.FETCH, 1).ok]  # fmt: skip
        ran, faulted = [], []
        for vcpu in system.machine.cpus:
            try:
                result = system.call(vcpu.index, va)["x0"]
            except GuestFault:
                fault = system.machine.mmu.fault
                faulted.append(vcpu.index)
                details.append(f"CPU {vcpu.index} (node {vcpu.node}): instruction abort at "
                               f"{hexa(fault.va if fault else va)}"
                               f"{f' ({fault.fault})' if fault and fault.fault else ''}")
                continue
            if result == MODULE_MAGIC:
                ran.append(vcpu.index)
        counts = {"module_allocated": 1, "module_in_kernel_slot": int(in_slot),
                  "roots_mapping_module": len(mapped), "cpus_ran": len(ran),
                  "cpus_faulted": len(faulted)}  # fmt: skip
        summary = (f"module at {hexa(va)} ({'inside' if in_slot else 'outside'} the kernel slot) "
                   f"mapped on {len(mapped)} of {len(nodes)} node roots; "
                   f"{len(faulted)} CPUs faulted, {len(ran)} ran it")
        return Outcome(role, label, bool(faulted) or in_slot, counts, details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, False, Role.HAZARD, "v3 before patch 19: windows end at _end"),
        _outcome(setup, True, Role.REMEDY, "patch 19: windows end at MODULES_END"),
    ]


SCENARIO = Scenario(
    name="module-in-kernel-slot",
    title="module placed in a hole inside the kernel's top-level slot",
    v3="patch 19 bounds module_alloc by MODULES_END; before it, windows end at _end",
    run=run,
)
