"""Fault forensics: what a report says about a guest that had to stop, and
what the machine reads back from the guest's own instructions to say it.

Owns FaultReport (CPU, node, symbolized PC, ESR/FAR, the blocks the CPU ran
last) and ``Forensics``, which builds one and answers the questions exception
delivery and the firmware's panic call ask of the faulting code: which
address a load/store accessed (capstone decodes its operands), the 16-bit
immediate of an ``svc``/``brk``, and for an EL0 fetch abort which branch to
a register sent the CPU there.  None of this runs on the hot path: only when
the guest takes an abort, an exception or panics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from unicorn import Uc, UcError

from emu.hw.accounting import Accounting
from emu.hw.cpu import VCpu
from emu.hw.fault import (
    EC_DABT_CUR,
    EC_DABT_LOW,
    EC_IABT_CUR,
    EC_IABT_LOW,
    EC_PC_ALIGN,
    decode_esr,
    esr_class,
)
from emu.hw.mmu import Mmu
from emu.hw.pagetable import Access
from emu.hw.physmem import PhysMem


@dataclass
class FaultReport:
    """Where a CPU was when the run had to stop."""

    cpu: int
    node: int
    pc: int
    symbol: str
    esr: int | None
    far: int | None
    what: str
    recent_blocks: list[int] = field(default_factory=list)

    def message(self) -> str:
        parts = [f"CPU {self.cpu} (node {self.node}): {self.what} at {self.pc:#x} <{self.symbol}>"]
        if self.esr is not None:
            parts.append(f"ESR {self.esr:#010x} ({decode_esr(self.esr)})")
        if self.far is not None:
            parts.append(f"FAR {self.far:#x}")
        return ", ".join(parts)


class Forensics:
    """Reads the current CPU's code through its own translation (``mmu``) to
    explain a fault; ``symbolize`` names an address (the kernel's symbols once
    booted)."""

    def __init__(self, uc: Uc, mmu: Mmu, physmem: PhysMem, accounting: Accounting) -> None:
        self.uc = uc
        self.mmu = mmu
        self.physmem = physmem
        self.accounting = accounting
        self.symbolize: Callable[[int], str] = lambda va: f"{va:#x}"
        # (start, end, cpu): the unmapped page below each CPU's kernel stack, as
        # plain data from the kernel side (hw never imports kernel).
        self.kernel_stack_guards: list[tuple[int, int, int]] = []
        self._disassembler = None

    def report(
        self, cpu: VCpu, pc: int, what: str, esr: int | None = None, far: int | None = None
    ) -> FaultReport:
        """A report on ``cpu`` at ``pc``, with the blocks it ran last; a FAR in a
        kernel stack's guard page names the stack overflow first."""
        overflow = self.stack_overflow(far)
        if overflow is not None:
            what = f"{overflow}; {what}"
        return FaultReport(cpu.index, cpu.node, pc, self.symbolize(pc), esr, far, what,
                           self.accounting.recent_blocks(cpu.index))

    def stack_overflow(self, far: int | None) -> str | None:
        """What a fault at ``far`` means if it lies in a kernel stack's guard page."""
        if far is None:
            return None
        for start, end, owner in self.kernel_stack_guards:
            if start <= far < end:
                return (f"kernel stack overflow on CPU {owner} "
                        f"(FAR {far:#x} in the guard page below its stack)")
        return None

    def panic_report(self, cpu: VCpu, esr: int, far: int, elr: int, spsr: int) -> FaultReport:
        """The report of the SiP panic call: the guest's own ESR/FAR/ELR/SPSR
        (ESR 0: a panic, not an exception the kernel could not handle)."""
        what = "guest panic" if esr == 0 else "unhandled exception"
        if esr_class(esr) == EC_IABT_LOW:
            what = self.how_el0_got_there(cpu) or what
        # FAR_EL1 is UNKNOWN after anything but an abort or a PC alignment fault.
        far_valid = esr_class(esr) in _FAR_VALID
        return self.report(cpu, elr, f"{what} (SPSR {spsr:#x})", esr or None,
                           far if far_valid else None)

    def insn_word(self, va: int) -> int | None:
        """The instruction word at ``va`` as the current CPU fetches it, or None."""
        pa = self.mmu.translate(self.uc, va, Access.FETCH)
        if pa is None:
            return None
        return int.from_bytes(self.physmem.read(pa, 4), "little")

    def imm16_at(self, va: int) -> int:
        """The 16-bit immediate of the ``svc``/``brk`` at ``va`` (0 if unreadable)."""
        word = self.insn_word(va)
        return 0 if word is None else (word >> 5) & 0xFFFF

    def data_address(self, pc: int) -> int | None:
        """The address the load/store at ``pc`` accesses, from its operands, or None."""
        pa = self.mmu.translate(self.uc, pc, Access.FETCH)
        if pa is None:
            return None
        from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs, CsError
        from capstone.arm64 import ARM64_OP_IMM, ARM64_OP_MEM
        from unicorn import arm64_const

        if self._disassembler is None:
            self._disassembler = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
            self._disassembler.detail = True
        uc = self.uc

        def register(insn: object, reg: int) -> int:
            return uc.reg_read(getattr(arm64_const, f"UC_ARM64_REG_{insn.reg_name(reg).upper()}"))

        try:
            insn = next(self._disassembler.disasm(self.physmem.read(pa, 4), pc), None)
            if insn is None:
                return None
            for op in insn.operands:
                if op.type == ARM64_OP_MEM:
                    address = register(insn, op.mem.base) + op.mem.disp if op.mem.base else 0
                    if op.mem.index:
                        index = register(insn, op.mem.index)
                        name = insn.reg_name(op.mem.index)
                        if op.ext in _SIGNED_EXTENDS and index & _EXTEND_SIGN[op.ext]:
                            index -= _EXTEND_SIGN[op.ext] << 1
                        elif name.startswith("w"):
                            index &= 0xFFFF_FFFF
                        address += index << op.shift.value
                    return address & ((1 << 64) - 1)
            if insn.mnemonic.startswith("ld") and insn.operands[-1].type == ARM64_OP_IMM:
                return insn.operands[-1].imm & ((1 << 64) - 1)  # a literal load
        except (CsError, AttributeError, UcError):
            return None
        return None

    def how_el0_got_there(self, cpu: VCpu) -> str | None:
        """For an EL0 fetch abort: "ret at <symbol>" (or br/blr) when the last
        EL0 block the CPU ran ended in a branch to a register."""
        user_blocks = [va for va in self.accounting.recent_blocks(cpu.index) if not va >> 63]
        if not user_blocks:
            return None
        va = user_blocks[-1]
        for _ in range(_MAX_BLOCK_SCAN):
            pa = self.mmu.translate(self.uc, va)
            if pa is None:
                return None
            insn = int.from_bytes(self.physmem.read(pa, 4), "little")
            if any(insn & mask == value for mask, value in _BLOCK_ENDS):
                break
            va += 4
        else:
            return None
        if insn & 0xFE00_0000 != 0xD600_0000:  # not a branch to a register
            return None
        kind = {0: "br", 1: "blr", 2: "ret"}.get((insn >> 21) & 0xF)
        if kind is None:
            return None
        return f"{kind} x{(insn >> 5) & 31} at <{self.symbolize(va)}> to a bad address"


# Encodings that end a translated block: B/BL, B.cond, CB(N)Z, TB(N)Z, branches
# to a register (BR/BLR/RET/ERET), exception generation (SVC/HVC/SMC/BRK).
_BLOCK_ENDS = (
    (0x7C00_0000, 0x1400_0000), (0xFF00_0010, 0x5400_0000), (0x7E00_0000, 0x3400_0000),
    (0x7E00_0000, 0x3600_0000), (0xFE00_0000, 0xD600_0000), (0xFF00_0000, 0xD400_0000),
)  # fmt: skip
_FAR_VALID = (EC_IABT_LOW, EC_IABT_CUR, EC_PC_ALIGN, EC_DABT_LOW, EC_DABT_CUR)
_MAX_BLOCK_SCAN = 512  # QEMU's longest translated block
# capstone's sign-extending index extends (SXTB, SXTH, SXTW) and their sign bits
_SIGNED_EXTENDS = (5, 6, 7)
_EXTEND_SIGN = {5: 1 << 7, 6: 1 << 15, 7: 1 << 31}

__all__ = ["FaultReport", "Forensics"]
