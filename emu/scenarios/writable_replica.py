"""writable-replica: the text and rodata copies are writable.

create_kernel_nid_map() maps each node's rodata copy PAGE_KERNEL (writable)
where node 0 has PAGE_KERNEL_RO, and every copy also sits in the linear map,
PAGE_KERNEL, with no mark_linear_text_alias_ro() for it.  So a store through
a rodata address succeeds on any node but 0, and a store through the linear
map rewrites another node's text or rodata, which that node's CPUs then run
or read.  Remedy: PAGE_KERNEL_RO for the rodata copies and read-only linear
aliases of the copies (set_memory_ro); the guest's patch routine then
writes the copies through the FIX_TEXT_POKE0 fixmap, as it writes node 0's
text (``ktext_copies_ro``).  Each outcome also patches a jump-label site
from a CPU of every node with the guest's aarch64_insn_patch_text_nosync;
the note shows the remedy's read-only aliases without the fixmap for the
copies: patching faults.
"""

from __future__ import annotations

from emu.errors import GuestFault
from emu.kernel.insn import AARCH64_INSN_NOP, aarch64_insn_gen_branch_imm
from emu.kernel.patching import guest_patch_text_nosync, read_text
from emu.scenarios.base import Outcome, Role, Scenario, Setup, hexa
from emu.scenarios.kmodel import flush_every_tlb, set_memory_ro

MARKER = 0x5EED_BAD0_5EED_BAD0


def _store(system, cpu: int, va: int) -> bool:
    try:
        system.call(cpu, "scenario_write_u64", va, MARKER)
    except GuestFault:
        return False
    return True


def _guest_patches(system) -> tuple[int, list[str]]:
    """Flip static_key_storm_site (NOP <-> B) from the first CPU of every
    node with the guest's patch routine; (faults, details)."""
    site = system.image.sym("static_key_storm_site")
    faults, details = 0, []
    nodes = sorted({vcpu.node for vcpu in system.machine.cpus})
    for node in nodes:
        cpu = next(v.index for v in system.machine.cpus if v.node == node)
        word = aarch64_insn_gen_branch_imm(site, site + 8, False) if node % 2 == 0 else (
            AARCH64_INSN_NOP)
        try:
            guest_patch_text_nosync(system, cpu, site, word)
        except GuestFault as fault:
            faults += 1
            details.append(f"CPU {cpu} (node {node}): aarch64_insn_patch_text_nosync faulted: "
                           f"{fault.report.what}")
    words = {word for _node, word in read_text(system, site)}
    if len(words) != 1:
        faults += 1
        details.append(f"the copies of static_key_storm_site disagree after patching: "
                       f"{sorted(hex(w) for w in words)}")
    return faults, details


def _outcome(setup: Setup, remedy: bool, role: Role, label: str,
             copies_through_fixmap: bool | None = None) -> Outcome:  # fmt: skip
    system = setup.boot(iterations=3, ro_replicas=remedy)
    try:
        system.run()
        image, physmem, layout = system.image, system.physmem, system.kernel.layout
        repl = system.kernel.replication
        granule = system.geometry.granule
        phys_offset = physmem.banks[0].base
        copy_bytes = -(-repl.copy_size // granule) * granule
        if remedy:
            for copy in repl.text_copies:
                if copy is not None:
                    set_memory_ro(system, layout.linear_va(copy, phys_offset), copy_bytes)
            flush_every_tlb(system)
            if copies_through_fixmap is None or copies_through_fixmap:
                physmem.write_u64(image.pa_of(image.sym("ktext_copies_ro")), 1)
        stext = image.sym("_stext")
        rodata_va, text_va = image.sym("sys_null_weights"), image.sym("sys_null")
        details, image_stores, linear_stores = [], [], []

        def restore(pa: int, original: int) -> None:
            physmem.write_u64(pa, original)
            system.machine.uc.ctl_flush_tb()  # a host write to text: no stale translation

        # 1. a store to replicated rodata through its kernel-image address, on each CPU
        # sys_null_weights lies past patch 14's cut (in the page holding
        # __start_ro_after_init), so every node maps node 0's original there
        ro_cut = image.sym("__start_ro_after_init") & ~(granule - 1)
        for vcpu in system.machine.cpus:
            pa = (repl.node_text_pa(vcpu.node, image) + rodata_va - stext if rodata_va < ro_cut
                  else image.pa_of(rodata_va))
            original = physmem.read_u64(pa)
            if _store(system, vcpu.index, rodata_va):
                changed = physmem.read_u64(pa) == MARKER
                image_stores.append(vcpu.index)
                details.append(f"CPU {vcpu.index} (node {vcpu.node}): store to sys_null_weights "
                               f"{hexa(rodata_va)} succeeded{f', PA {hexa(pa)} changed' if changed else ''}")
                restore(pa, original)
        # 2. stores through the linear map into every other node's copy, from node 0
        writer = system.machine.cpus[0]
        for node, copy in enumerate(repl.text_copies):
            if copy is None:
                continue
            for what, va in (("sys_null (text)", text_va), ("sys_null_weights (rodata)", rodata_va)):
                pa = copy + va - stext
                alias = layout.linear_va(pa, phys_offset)
                original = physmem.read_u64(pa)
                if _store(system, writer.index, alias):
                    linear_stores.append((node, what))
                    details.append(f"CPU {writer.index} (node {writer.node}): store to node "
                                   f"{node}'s copy of {what} through the linear map "
                                   f"{hexa(alias)} (PA {hexa(pa)}) succeeded")
                    restore(pa, original)
        patch_faults, patch_details = _guest_patches(system)
        details += patch_details
        counts = {"image_alias_stores": len(image_stores),
                  "linear_alias_stores": len(linear_stores),
                  "guest_patch_faults": patch_faults}  # fmt: skip
        summary = (f"{len(image_stores)} CPUs wrote rodata through the image mapping, "
                   f"{len(linear_stores)} stores into other nodes' copies through the linear map")
        if patch_faults:
            summary += f"; {patch_faults} guest patches faulted"
        return Outcome(role, label, bool(image_stores or linear_stores or patch_faults), counts,
                       details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, False, Role.HAZARD,
                 "v3: rodata copies PAGE_KERNEL, copies' linear aliases PAGE_KERNEL"),
        _outcome(setup, True, Role.REMEDY,
                 "rodata copies PAGE_KERNEL_RO, read-only linear aliases of the copies, "
                 "copies patched through the fixmap"),
        _outcome(setup, True, Role.NOTE,
                 "the same read-only aliases, copies still patched through the linear map",
                 copies_through_fixmap=False),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="writable-replica",
    title="text and rodata copies are writable",
    v3="create_kernel_nid_map(rodata_prot=PAGE_KERNEL); copies' linear aliases stay writable",
    run=run,
)
