"""Data-access counting at its edges, on a bare Machine with the MMU off: an
access that faults is not counted, whichever way accesses are counted (the C
instruction hook, which charges a load or store only once it has retired, or
the Python memory hook)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from test_cost_programs import LDR_X2_X1, SMC_0, load_on, mov64
from unicorn.arm64_const import UC_ARM64_REG_PC

from emu.errors import GuestFault
from emu.hw.accounting import NO_ACCEL_ENV
from emu.hw.firmware import PSCI_SYSTEM_OFF
from emu.hw.machine import Machine
from emu.hw.physmem import PhysMem
from emu.hw.topology import MIB, Topology, regular_distances

LDR_X4_X3 = 0xF9400064  # ldr x4, [x3]
STP_X2_X4_X3 = 0xA9001062  # stp x2, x4, [x3]
BELOW_RAM = 0x1000


@pytest.fixture(params=["compiled", "python"])
def counting(request, monkeypatch) -> str:
    """Run the test with the C hooks, then with the Python fallback."""
    if request.param == "python":
        monkeypatch.setenv(NO_ACCEL_ENV, "1")
    return request.param


@dataclass(frozen=True)
class _Words:
    code: int
    words: list[int]

    def image(self) -> bytes:
        return b"".join(w.to_bytes(4, "little") for w in self.words)


def _machine_running(words_for) -> tuple[Machine, PhysMem, list[int]]:
    """CPU 0 powered on at ``words_for(physmem)``, loaded on node 0."""
    programs: list[_Words] = []

    def program_for(physmem: PhysMem) -> _Words:
        programs.append(_Words(physmem.banks[0].base + 0x1000, words_for(physmem)))
        return programs[0]

    machine, physmem = load_on(Topology("t", 2, 1, 16 * MIB, regular_distances(2)), program_for, 0)
    return machine, physmem, programs[0].words


def test_a_load_that_faults_is_not_counted(counting):
    """ldr and stp on node 1, then ldr from below RAM: the abort stops the
    machine (no vector table); the load that faulted made no access."""

    def words(physmem: PhysMem) -> list[int]:
        return [*mov64(3, physmem.banks[1].base + 0x2000), LDR_X4_X3, STP_X2_X4_X3,
                *mov64(1, BELOW_RAM), LDR_X2_X1, *mov64(0, PSCI_SYSTEM_OFF), SMC_0]

    machine, _, program = _machine_running(words)
    assert machine.accounting.compiled == (counting == "compiled")
    with pytest.raises(GuestFault, match="data abort"):
        machine.run(1_000_000)
    counts = machine.accounting.counts(0)
    assert counts.instructions == program.index(LDR_X2_X1)  # the faulting load did not retire
    assert counts.data_reads_by_node == (0, 1)
    assert counts.data_writes_by_node == (0, 2)
    assert machine.accounting.unknown_data_accesses == 0


def test_the_load_before_an_until_address_is_counted(counting):
    """emu_start stopping at its ``until`` address right after a load: the load
    retired, so settle() charges it, although no later instruction began."""

    def words(physmem: PhysMem) -> list[int]:
        return [*mov64(3, physmem.banks[1].base + 0x2000), LDR_X4_X3,
                *mov64(0, PSCI_SYSTEM_OFF), SMC_0]

    machine, physmem, program = _machine_running(words)
    machine.switch_to(machine.cpus[0])
    code = physmem.banks[0].base + 0x1000
    until = code + 4 * (program.index(LDR_X4_X3) + 1)
    machine.emu_start(code, until, 0)
    machine.accounting.settle(machine.uc.reg_read(UC_ARM64_REG_PC))
    counts = machine.accounting.counts(0)
    assert counts.instructions == program.index(LDR_X4_X3) + 1
    assert counts.data_reads_by_node == (0, 1)


def test_a_kernel_call_leaves_the_exclusive_monitor_as_it_was(make_system):
    """System.call restores the CPU's registers afterwards, the exclusive
    monitor with them, and the instruction hook's copy of it follows."""
    system = make_system(nodes=2, cpus_per_node=1, ktext=True, iterations=2, data_accesses=True)
    system.run()
    accounting = system.machine.accounting
    accounting.set_exclusive_monitor(0, 0x1234_5670)
    system.call(0, "sys_ni_syscall")
    assert accounting.exclusive_monitor(0) == 0x1234_5670


def test_a_tagged_pointer_is_charged_to_the_node_of_its_untagged_address(make_system, counting):
    """TCR_EL1.TBI0 is set (as Linux sets it): a load through a tagged user
    pointer reads the untagged address, and is a read on that page's node."""
    from emu.kernel.boot import USER_BASE

    system = make_system(nodes=2, cpus_per_node=1, ktext=True, iterations=2, data_accesses=True)
    system.run()
    image = system.image
    user_va = USER_BASE + image.sym("scenario_op") - image.sym("__user_text_start")
    accounting = system.machine.accounting
    before = accounting.counts(1).data_reads_by_node
    value = system.call(1, "scenario_read_u64", 0x5A << 56 | user_va)["x0"]
    assert value == system.physmem.read_u64(image.pa_of(image.sym("scenario_op")))
    after = accounting.counts(1).data_reads_by_node
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0]  # the image is on node 0
    assert accounting.unknown_data_accesses == 0
