"""A TTBR1 write without TLB maintenance keeps the old translations; after
``tlbi`` the new ones apply (the architecture allows caching until then, and
Unicorn with ktext-emu's per-CPU TLB model does exactly that)."""

from __future__ import annotations

from ktext_testlib import ASM_DIR

from emu.hw.pagetable import make_ttbr

MARKER = 0x5EED_0000_C0FF_EE00


def test_ttbr1_switch_without_tlbi_uses_old_mapping(make_system):
    system = make_system(nodes=2, cpus_per_node=1, ktext=True,
                         extra_sources=(ASM_DIR / "ttbr1_switch.S",))
    image, repl = system.image, system.kernel.replication
    variable = image.sym("alt_selftest_page_a")  # replicated rodata (its first page)
    original = system.physmem.read_u64(image.pa_of(variable))
    # Make node 1's copy of the variable differ, so the two roots disagree.
    offset = variable - image.sym("_stext")
    system.physmem.write_u64(repl.text_copies[1] + offset, MARKER)
    regs = system.call(0, "test_ttbr1_switch", variable, make_ttbr(repl.pgd_phys[1]))
    assert regs["x2"] == original  # node 0's root
    assert regs["x3"] == original  # new TTBR1, stale TLB entry still used
    assert regs["x4"] == MARKER  # after tlbi: node 1's copy


def test_call_runs_on_the_cpu_and_restores_it(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=True)
    system.run()  # brings every CPU up (per-CPU areas, node roots)
    before = system.cpu_ttbr1(3)
    regs = system.call(3, "sys_getcpu")
    assert regs["x0"] == (1 << 32) | 3  # node 1, CPU 3
    assert system.cpu_ttbr1(3) == before
