"""Tiny hand-countable guest programs for the cost-model tests, run on a bare
Machine with the MMU off (flat physical addressing), so every count can be
worked out by hand from the listing.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from unicorn.arm64_const import UC_ARM64_REG_PC

from emu.hw.firmware import PSCI_SYSTEM_OFF
from emu.hw.machine import Machine
from emu.hw.physmem import PhysMem
from emu.hw.topology import Topology

SMC_0 = 0xD4000003
LDR_X2_X1 = 0xF9400022  # ldr x2, [x1]
STR_X2_X3 = 0xF9000062  # str x2, [x3]
SUBS_X0_1 = 0xF1000400  # subs x0, x0, #1


def movz(rd: int, imm: int, shift: int = 0) -> int:
    return 0xD2800000 | (shift // 16) << 21 | imm << 5 | rd


def movk(rd: int, imm: int, shift: int = 0) -> int:
    return 0xF2800000 | (shift // 16) << 21 | imm << 5 | rd


def mov64(rd: int, value: int) -> list[int]:
    words = [movz(rd, value & 0xFFFF)]
    words += [movk(rd, (value >> s) & 0xFFFF, s) for s in (16, 32, 48) if (value >> s) & 0xFFFF]
    return words


def b_ne(back: int) -> int:
    """b.ne to ``back`` instructions before this one."""
    return 0x54000001 | ((-back) & 0x7FFFF) << 5


@dataclass(frozen=True)
class LoopProgram:
    """``iterations`` x (load from ``src``, store to ``dst``), then SYSTEM_OFF.

    Listing: mov x0, N / mov x1, src / mov x3, dst / loop: ldr x2, [x1];
    str x2, [x3]; subs x0, x0, #1; b.ne loop / mov x0, SYSTEM_OFF / smc #0.
    """

    code: int
    src: int
    dst: int
    iterations: int

    def words(self) -> list[int]:
        return (
            mov64(0, self.iterations) + mov64(1, self.src) + mov64(3, self.dst)
            + [LDR_X2_X1, STR_X2_X3, SUBS_X0_1, b_ne(3)]
            + mov64(0, PSCI_SYSTEM_OFF) + [SMC_0]
        )  # fmt: skip

    def image(self) -> bytes:
        return b"".join(w.to_bytes(4, "little") for w in self.words())

    @property
    def setup_instructions(self) -> int:
        return len(mov64(0, self.iterations) + mov64(1, self.src) + mov64(3, self.dst))

    @property
    def instructions(self) -> int:
        """What retires: set-up, 4 per iteration, then 3 (mov, movk, smc)."""
        return self.setup_instructions + 4 * self.iterations + len(mov64(0, PSCI_SYSTEM_OFF)) + 1

    def disassembly(self) -> list[str]:
        md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        return [f"{i.mnemonic} {i.op_str}" for i in md.disasm(self.image(), self.code)]


def loop_program(physmem: PhysMem, code_node: int, src_node: int, dst_node: int,
                 iterations: int) -> LoopProgram:  # fmt: skip
    banks = physmem.banks
    return LoopProgram(banks[code_node].base + 0x1000, banks[src_node].base + 0x2000,
                       banks[dst_node].base + 0x3000, iterations)  # fmt: skip


def load_on(topology: Topology, program_for, cpu: int, data_accesses: bool = True,
            before_run=None) -> tuple[Machine, PhysMem]:  # fmt: skip
    """Load ``program_for(physmem)`` (anything with ``code`` and ``image()``) and
    power ``cpu`` on at it; nothing runs yet."""
    physmem = PhysMem.from_topology(topology)
    machine = Machine(topology, physmem, data_accesses=data_accesses)
    program = program_for(physmem)
    physmem.write(program.code, program.image())
    if before_run is not None:
        before_run(machine, physmem)
    machine.power_on(cpu, {UC_ARM64_REG_PC: program.code})
    return machine, physmem


def run_on(topology: Topology, program_for, cpu: int, data_accesses: bool = True,
           before_run=None) -> tuple[Machine, PhysMem]:  # fmt: skip
    """Load ``program_for(physmem)`` and run it on ``cpu`` alone until SYSTEM_OFF."""
    machine, physmem = load_on(topology, program_for, cpu, data_accesses, before_run)
    machine.run(10_000_000)
    return machine, physmem


# -- the programs themselves -------------------------------------------------------


def test_loop_program_listing_and_retired_count() -> None:
    from emu.hw.topology import MIB, regular_distances

    topology = Topology("t", 2, 1, 16 * MIB, regular_distances(2))
    programs = []

    def make(physmem: PhysMem) -> LoopProgram:
        programs.append(loop_program(physmem, 1, 0, 1, 7))
        return programs[-1]

    machine, _ = run_on(topology, make, cpu=0)
    program = programs[0]
    listing = program.disassembly()
    assert listing[program.setup_instructions:][:4] == [
        "ldr x2, [x1]", "str x2, [x3]", "subs x0, x0, #1", f"b.ne #{program.code + 4 * program.setup_instructions:#x}",
    ]  # fmt: skip
    assert listing[-1] == "smc #0"
    counts = machine.accounting.counts(0)
    assert counts.instructions == program.instructions == program.setup_instructions + 4 * 7 + 3
    assert counts.other_fetches_by_node == (0, program.instructions)
    assert counts.data_reads_by_node == (7, 0) and counts.data_writes_by_node == (0, 7)
