"""The guest's TLB maintenance: the UC_HOOK_INSN callback for system
instructions that hands every EL1 ``tlbi`` to the TLB model (emu/hw/tlb.py)
and tells listeners which CPUs it reached (a shootdown's cost is theirs to
count).  Unicorn then executes the instruction itself, emptying its own TLB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from unicorn import Uc

from emu.hw.cpu import TCR_EL1, VCpu, read_sysreg
from emu.hw.pagetable import walker_for
from emu.hw.tlb import Tlbs, decode_tlbi

# Told of every tlbi that reached any CPU: (issuer, CPUs reached, mnemonic, VA or None)
TlbiListener = Callable[[VCpu, Sequence[VCpu], str, int | None], None]


class TlbMaintenance:
    """Guest ``tlbi`` for the CPU on the engine, which ``current()`` names."""

    def __init__(self, uc: Uc, tlbs: Tlbs, cpus: Sequence[VCpu],
                 current: Callable[[], VCpu]) -> None:  # fmt: skip
        self.uc = uc
        self.tlbs = tlbs
        self.cpus = cpus
        self.current = current
        self.listeners: list[TlbiListener] = []

    def on_sys(self, uc: Uc, reg: int, cp: object, _user: object) -> bool:
        """UC_HOOK_INSN for UC_ARM64_INS_SYS: sees ``tlbi`` (op0 1, CRn 8, op1 0)."""
        if cp.op0 == 1 and cp.crn == 8 and cp.op1 == 0:
            self.tlbi(cp.crm, cp.op2, cp.val)
        return False  # let Unicorn execute it (it flushes its own TLB)

    def tlbi(self, crm: int, op2: int, value: int) -> None:
        """A guest ``tlbi``: the TLB model does what the form says."""
        cpu = self.current()
        # TCR_EL1.AS: the width of the operand's ASID field
        as16 = walker_for(read_sysreg(self.uc, TCR_EL1)).tcr.as16
        op = decode_tlbi(crm, op2, value, as16)
        if op is None:
            return
        reached = self.tlbs.tlbi(cpu.index, op)
        if not reached:
            return  # a form this CPU does not implement: it takes an undefined-instruction exception
        cpu.tlbi_count += 1
        targets = [self.cpus[index] for index in reached]
        for listener in self.listeners:
            listener(cpu, targets, op.name, op.va)
