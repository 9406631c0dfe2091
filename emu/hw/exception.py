"""Exception delivery: what the PE does when it takes a synchronous exception
to EL1, which Unicorn leaves to the emulator.

Unicorn reports ``svc``, ``brk`` and undefined instructions as QEMU exception
numbers (through the C hooks, or UC_HOOK_INTR without them) and a failed
translation as a stopped engine, but never vectors through VBAR_EL1.
``take_exception`` does what the PE would (ESR, FAR, ELR, SPSR, SP banking,
PSTATE, PC); ``ExceptionEntry`` turns what stopped the engine into that
entry, with the architectural syndrome (ESR from emu/hw/fault.py, FAR the
exact address the access used; the Illegal State exception of an illegal
ERET as EC 0x0E, looked for once a quantum), and refuses to enter when the guest cannot
go on: no vector table, an exception inside the vectors, or an exception
loop at EL1.  ``eret`` is Unicorn's own and works, but for the
Illegal State exception of an illegal one (``illegal_state``).
"""

from __future__ import annotations

from dataclasses import dataclass

from unicorn import Uc
from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0,
    UC_ARM64_REG_SP_EL1,
    UC_ARM64_REG_VBAR_EL1,
)

from emu.hw.accounting import QEMU_PAGE_SHIFT, Accounting
from emu.hw.cpu import PSTATE_EL1H_MASKED, SPSR_EL1, VCpu, write_sysreg
from emu.hw.fault import (
    EC_DABT_CUR,
    EC_DABT_LOW,
    EC_IABT_CUR,
    EC_IABT_LOW,
    EC_SHIFT,
    EC_SVC64,
    ESR_IL,
    ISS_WNR,
    esr_class,
    esr_for_abort,
    esr_for_brk,
    esr_for_illegal_state,
    esr_for_svc,
    esr_for_undefined,
)
from emu.hw.forensics import FaultReport, Forensics
from emu.hw.mmu import FSC_SYNC_EXTERNAL, PendingFault
from emu.hw.pagetable import Access

# QEMU exception numbers Unicorn passes to UC_HOOK_INTR
EXCP_UDEF, EXCP_SWI, EXCP_BKPT, EXCP_SMC = 1, 2, 7, 13
# Synchronous exceptions taken at EL1 in a row, each within EXCEPTION_LOOP_GAP
# instructions of the last and with no syscall and nothing from EL0 in
# between, before the machine calls it an exception loop.  A handler that
# fixes what faulted (a uaccess fixup, say) runs on for longer than that.
EXCEPTION_LOOP_LIMIT = 32
EXCEPTION_LOOP_GAP = 10_000
QEMU_PAGE_MASK = ~((1 << QEMU_PAGE_SHIFT) - 1)

PSTATE_SP = 1  # PSTATE.SP: SP_ELx selected
PSTATE_IL = 1 << 20  # PSTATE.IL: illegal execution state
VECTOR_CURRENT_SP0 = 0x000
VECTOR_CURRENT_SPX = 0x200
VECTOR_LOWER_A64 = 0x400
VECTOR_TABLE_SIZE = 0x800


class NoVectors(Exception):
    """The CPU took an exception with no vector table to go to."""


def take_exception(uc: Uc, esr: int, return_address: int, far: int | None = None) -> int:
    """Enter the EL1 synchronous vector as the PE does; returns the vector address.

    Raises NoVectors when VBAR_EL1 is still zero (the guest never set one).
    """
    vbar = uc.reg_read(UC_ARM64_REG_VBAR_EL1)
    if vbar == 0:
        raise NoVectors
    pstate = uc.reg_read(UC_ARM64_REG_PSTATE)
    el = (pstate >> 2) & 3
    if el == 0:
        offset = VECTOR_LOWER_A64
    else:
        offset = VECTOR_CURRENT_SPX if pstate & PSTATE_SP else VECTOR_CURRENT_SP0
    # SP banking is ours too: QEMU swaps stack pointers only in its own
    # exception paths, which Unicorn skips.
    if el == 0 or not pstate & PSTATE_SP:
        uc.reg_write(UC_ARM64_REG_SP_EL0, uc.reg_read(UC_ARM64_REG_SP))
        uc.reg_write(UC_ARM64_REG_SP, uc.reg_read(UC_ARM64_REG_SP_EL1))
    uc.reg_write(UC_ARM64_REG_ESR_EL1, esr)
    uc.reg_write(UC_ARM64_REG_ELR_EL1, return_address)
    if far is not None:
        uc.reg_write(UC_ARM64_REG_FAR_EL1, far)
    uc.reg_write(UC_ARM64_REG_PSTATE, PSTATE_EL1H_MASKED)
    # A system-register write makes Unicorn rebuild its cached translation
    # flags (current EL); PSTATE alone does not.
    write_sysreg(uc, SPSR_EL1, pstate)
    vector = vbar + offset
    uc.reg_write(UC_ARM64_REG_PC, vector)
    return vector


@dataclass(slots=True)
class El1Streak:
    """One CPU's run of EL1 exceptions, for exception-loop detection."""

    count: int = 0  # EL1 exceptions in a row
    last: int = 0  # the CPU's instruction count at the last one


class ExceptionEntry:
    """Delivers the exceptions of the CPU on the engine.  Each method returns
    None once the CPU is in its vector, or the FaultReport that must end the
    run instead."""

    def __init__(self, uc: Uc, accounting: Accounting, forensics: Forensics,
                 n_cpus: int) -> None:  # fmt: skip
        self.uc = uc
        self.accounting = accounting
        self.forensics = forensics
        self.streaks = [El1Streak() for _ in range(n_cpus)]

    def progress(self, cpu: int) -> None:
        """``cpu`` made progress (a syscall, a firmware call): no exception loop."""
        self.streaks[cpu].count = 0

    def interrupt(self, cpu: VCpu, intno: int) -> FaultReport | None:
        """The exception Unicorn reported as QEMU exception ``intno`` (not smc:
        that one is the firmware's)."""
        uc = self.uc
        pc = uc.reg_read(UC_ARM64_REG_PC)
        forensics = self.forensics
        if intno == EXCP_SWI:
            return self.enter(cpu, esr_for_svc(forensics.imm16_at(pc - 4)), pc)
        if intno == EXCP_UDEF:
            self.accounting.settle(pc)
            if uc.reg_read(UC_ARM64_REG_PSTATE) & PSTATE_IL:
                # QEMU raises the Illegal State exception as an undefined
                # instruction once PSTATE.IL (set by an illegal ERET) reaches
                # its translation flags; the syndrome is EC 0x0E, and SPSR
                # keeps IL while the handler runs with it clear.
                return self.enter(cpu, esr_for_illegal_state(), pc)
            return self.enter(cpu, esr_for_undefined(), pc)
        if intno == EXCP_BKPT:
            self.accounting.settle(pc)
            return self.enter(cpu, esr_for_brk(forensics.imm16_at(pc)), pc)
        return forensics.report(cpu, pc, f"unexpected exception (QEMU exception {intno})")

    def illegal_state(self, cpu: VCpu) -> FaultReport | None:
        """The Illegal State exception of a CPU whose PSTATE.IL an illegal
        ERET set (a return to EL2/EL3 or to a mode that does not exist).
        QEMU sets IL but, in Unicorn, does not rebuild the translation flags
        that would raise the exception on the next instruction, so the
        machine looks at IL once a quantum and takes the exception where the
        CPU is (up to a quantum late; the ERET target is in ELR_EL1 unless
        the CPU has overwritten it).  None when IL is clear."""
        uc = self.uc
        if not uc.reg_read(UC_ARM64_REG_PSTATE) & PSTATE_IL:
            return None
        self.accounting.settle(uc.reg_read(UC_ARM64_REG_PC))
        return self.enter(cpu, esr_for_illegal_state(), uc.reg_read(UC_ARM64_REG_PC))

    def abort(self, cpu: VCpu, pc: int, pending: PendingFault) -> FaultReport | None:
        """The abort a failed TLB fill reported, taken at ``pc``."""
        lower = pending.el == 0
        if pending.fault is None:
            fetch = pending.access is Access.FETCH
            ec = (EC_IABT_LOW if lower else EC_IABT_CUR) if fetch else (
                EC_DABT_LOW if lower else EC_DABT_CUR
            )
            wnr = ISS_WNR if pending.access is Access.WRITE else 0
            esr = (ec << EC_SHIFT) | ESR_IL | wnr | FSC_SYNC_EXTERNAL
        else:
            esr = esr_for_abort(pending.fault, pending.access, lower)
        # Unicorn asks the fill for a whole page; FAR_EL1 holds the exact address.
        page = pending.va & QEMU_PAGE_MASK
        if pending.access is Access.FETCH:
            far = pc if pc & QEMU_PAGE_MASK == page else pending.va
        else:
            address = self.forensics.data_address(pc)
            far = address if address is not None and address & QEMU_PAGE_MASK == page \
                else pending.va
        return self.enter(cpu, esr, pc, far=far)

    def enter(self, cpu: VCpu, esr: int, return_address: int,
              far: int | None = None) -> FaultReport | None:  # fmt: skip
        """Take the exception ``esr`` to EL1, unless the guest cannot go on."""
        uc = self.uc
        cpu.exceptions += 1
        vbar = uc.reg_read(UC_ARM64_REG_VBAR_EL1)
        el = (uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3
        if el == 1 and vbar <= return_address < vbar + VECTOR_TABLE_SIZE:
            return self.forensics.report(cpu, return_address,
                                         "exception inside the exception vectors", esr, far)
        streak = self.streaks[cpu.index]
        if el == 0 or esr_class(esr) == EC_SVC64:
            streak.count = 0
        else:
            now = self.accounting.instructions(cpu.index)
            if now - streak.last > EXCEPTION_LOOP_GAP:
                streak.count = 0
            streak.last = now
            streak.count += 1
            if streak.count >= EXCEPTION_LOOP_LIMIT:
                return self.forensics.report(
                    cpu, return_address,
                    f"exception loop: {EXCEPTION_LOOP_LIMIT} exceptions taken at EL1 "
                    "in a row (the handler faults again before it returns)", esr, far)
        try:
            take_exception(uc, esr, return_address, far)
        except NoVectors:
            return self.forensics.report(cpu, return_address, "exception with no vector table",
                                         esr, far)
        return None
