"""Secondary bring-up as the series does it (patch 11): secondary_entry
hands secondary_data.ttbr1, the node root, straight to __enable_mmu, so the
MMU comes on on that root, with no detour through reserved_pg_dir and no
second TTBR1 switch."""

from __future__ import annotations

import pytest
from ktext_testlib import REPLICATED_LAYOUTS
from unicorn import UC_HOOK_CODE
from unicorn.arm64_const import UC_ARM64_REG_TTBR1_EL1

from emu.hw.pagetable import Geometry, decode_ttbr


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
@pytest.mark.parametrize("ktext", [True, False])
def test_secondary_enables_the_mmu_on_its_node_root(make_system, granule, va_bits, ktext):
    system = make_system(nodes=2, cpus_per_node=2, granule=granule, va_bits=va_bits,
                         ktext=ktext, iterations=2)
    image, machine = system.image, system.machine
    # The head text runs at its physical address (MMU off, then the idmap).
    head = (image.pa_of(image.sym("_text")), image.pa_of(image.sym("_stext")))
    seen: dict[int, list[int]] = {}  # cpu -> the TTBR1 roots head text ran on, in order

    def on_code(uc, address, _size, _user):
        cpu = machine.current.index
        if cpu == 0:
            return
        root = decode_ttbr(uc.reg_read(UC_ARM64_REG_TTBR1_EL1)).baddr
        roots = seen.setdefault(cpu, [])
        if not roots or roots[-1] != root:
            roots.append(root)

    machine.uc.hook_add(UC_HOOK_CODE, on_code, None, head[0], head[1] - 1)
    assert system.run().reason.name == "ALL_OFF"
    repl = system.kernel.replication
    for vcpu in machine.cpus[1:]:
        # the reset value of TTBR1 first, then the node root and nothing else
        assert seen[vcpu.index][1:] == [repl.pgd_phys[vcpu.node]], vcpu.index
