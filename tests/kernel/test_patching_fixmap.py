# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""Node 0's text is patched as Linux patches it once all CPUs are up: its
linear alias is read-only (mark_linear_text_alias_ro), so the guest's
aarch64_insn_patch_text_nosync maps the page at FIX_TEXT_POKE0, stores
through it, clears the slot and flushes it (flush_tlb_kernel_range); each
copy then gets its own caches_clean_inval_pou."""

from __future__ import annotations

import pytest
from ktext_testlib import REPLICATED_LAYOUTS
from unicorn import UC_HOOK_CODE

from emu.errors import GuestFault
from emu.hw.pagetable import Access, Geometry, make_ttbr, walk
from emu.kernel.insn import AARCH64_INSN_NOP, aarch64_insn_gen_branch_imm
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

IC_IVAU_MASK, IC_IVAU = 0xFFFFFFE0, 0xD50B7520  # ic ivau, Xt
DC_CVAU = 0xD50B7B20


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_node0_linear_alias_of_text_is_read_only(ktext_lab_factory, granule, va_bits):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits)
    system = lab.system
    image, layout, kernel = system.image, system.kernel.layout, system.kernel
    phys_offset = system.physmem.banks[0].base
    for symbol in ("_stext", "__start_rodata", "__end_rodata"):
        pa = image.pa_of(lab.sym(symbol))
        alias = layout.linear_va(pa, phys_offset)
        for root in kernel.replication.pgd_phys:
            found = walk(system.physmem.read_u64, kernel.tcr, 0, make_ttbr(root), alias,
                         Access.WRITE, 1)
            assert found.pa == pa and not found.writable and not found.executable
        with pytest.raises(GuestFault, match="fault at"):
            system.call(1, "scenario_write_u64", alias, 0)
    # the rest of RAM stays writable through the linear map
    data = layout.linear_va(image.pa_of(lab.sym("_data")), phys_offset)
    system.call(1, "scenario_write_u64", data, system.physmem.read_u64(image.pa_of(lab.sym("_data"))))


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_guest_patch_goes_through_the_fixmap(ktext_lab_factory, nodes):
    lab = ktext_lab_factory(nodes=nodes, cpus_per_node=1)
    system = lab.system
    kernel, machine = system.kernel, system.machine
    site = lab.sym("static_key_storm_site")
    jump = aarch64_insn_gen_branch_imm(site, site + 8, False)
    tlbis = []
    machine.tlbi_hooks.append(lambda cpu, targets, name, va: tlbis.append((cpu.index, name, va)))
    fn = lab.sym("aarch64_insn_patch_text_nosync")
    fn_end = fn + system.image.elf.symbols["aarch64_insn_patch_text_nosync"].size
    executed: list[int] = []

    def on_code(uc, address, _size, _user):
        executed.append(system.physmem.read_u32(system.image.pa_of(address)))

    for cpu in range(nodes):
        hook = machine.uc.hook_add(UC_HOOK_CODE, on_code, None, fn, fn_end - 1)
        machine.uc.ctl_flush_tb()
        executed.clear()
        tlbis.clear()
        word = jump if cpu % 2 == 0 else AARCH64_INSN_NOP
        assert lab.guest_patch(cpu, site, word) == 0
        machine.uc.hook_del(hook)
        assert set(lab.read_text(site).values()) == {word}
        # patch_unmap(): the slot cleared and one tlbi vaale1is for its page
        assert system.physmem.read_u64(kernel.text_poke_pte) == 0
        assert tlbis == [(cpu, "vaale1is", kernel.text_poke_va)]
        # caches_clean_inval_pou per copy, plus node 0's alias off node 0, plus addr
        ic = sum(1 for w in executed if w & IC_IVAU_MASK == IC_IVAU)
        dc = sum(1 for w in executed if w & IC_IVAU_MASK == DC_CVAU)
        expected = (nodes - 1) + (1 if machine.cpus[cpu].node else 0) + 1
        assert ic == dc == expected, (cpu, ic, dc)
