"""The debugged machine as GDB sees it: registers by GDB number, memory
through one CPU's translation, and writes to kernel text under the patching
rules (every copy, or one node's copy when the session asked for that).

Every access puts the selected CPU on the engine first (``switch_to``): a
CPU off the engine is a saved context, and the MMU translates for the CPU
on it.  A CPU never brought up has no registers (GDB shows them unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass

from unicorn import UcError
from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_FPCR,
    UC_ARM64_REG_FPSR,
    UC_ARM64_REG_MAIR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_TTBR0_EL1,
    UC_ARM64_REG_TTBR1_EL1,
    UC_ARM64_REG_V0,
    UC_ARM64_REG_VBAR_EL1,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X29,
    UC_ARM64_REG_X30,
)

from emu.gdb.target_xml import REGISTERS
from emu.hw.cpu import (
    SCTLR_EL1,
    SCTLR_M,
    SPSR_EL1,
    TCR_EL1,
    PowerState,
    VCpu,
    read_sysreg,
    write_sysreg,
)
from emu.hw.pagetable import TTBR_CNP, Access, FaultKind, WalkResult, current_asid, decode_tcr, walk
from emu.hw.physmem import PhysAddrError
from emu.kernel.context import KernelContext
from emu.kernel.ktext import node_text_pas
from emu.kernel.patching import invalidate_text

_X_IDS = (*(UC_ARM64_REG_X0 + n for n in range(29)), UC_ARM64_REG_X29, UC_ARM64_REG_X30)
# Register number -> Unicorn id (an int) or a sysreg tuple for cpr_read; CurrentEL is derived.
_UC_IDS: dict[int, object] = {n: uc_id for n, uc_id in enumerate(_X_IDS)}
_UC_IDS.update({31: UC_ARM64_REG_SP, 32: UC_ARM64_REG_PC, 33: UC_ARM64_REG_PSTATE})
_UC_IDS.update({34 + n: UC_ARM64_REG_V0 + n for n in range(32)})
_UC_IDS.update({66: UC_ARM64_REG_FPSR, 67: UC_ARM64_REG_FPCR})
_SYSREGS: dict[str, object] = {
    "CurrentEL": None, "SCTLR_EL1": SCTLR_EL1, "TCR_EL1": TCR_EL1,
    "TTBR0_EL1": UC_ARM64_REG_TTBR0_EL1, "TTBR1_EL1": UC_ARM64_REG_TTBR1_EL1,
    "MAIR_EL1": UC_ARM64_REG_MAIR_EL1, "VBAR_EL1": UC_ARM64_REG_VBAR_EL1,
    "ESR_EL1": UC_ARM64_REG_ESR_EL1, "FAR_EL1": UC_ARM64_REG_FAR_EL1,
    "ELR_EL1": UC_ARM64_REG_ELR_EL1, "SPSR_EL1": SPSR_EL1,
}  # fmt: skip
for _n, _reg in enumerate(REGISTERS):
    if _reg.name in _SYSREGS:
        _UC_IDS[_n] = _SYSREGS[_reg.name]
CURRENT_EL = next(n for n, reg in enumerate(REGISTERS) if reg.name == "CurrentEL")
PAGE = 4096


class TargetError(Exception):
    """A request the target cannot satisfy (GDB gets an ``E`` reply)."""


@dataclass(frozen=True)
class Translation:
    """Where one CPU's access to ``va`` goes, and how it got there."""

    va: int
    pa: int | None
    from_tlb: bool
    walk: WalkResult | None  # None when the TLB answered or the MMU is off
    mmu_on: bool


class Target:
    """Registers and memory of the machine of ``ctx`` (a booted System)."""

    def __init__(self, ctx: KernelContext) -> None:
        self.ctx = ctx
        self.machine = ctx.machine
        # None: a write to kernel text goes to every copy (patch_text's rule);
        # a node: only that node's copy (``monitor text-writes node N``).
        self.text_write_node: int | None = None

    # -------------------------------------------------------------- CPUs
    def cpu(self, index: int) -> VCpu:
        if not 0 <= index < len(self.machine.cpus):
            raise TargetError(f"no CPU {index}")
        return self.machine.cpus[index]

    def online(self, vcpu: VCpu) -> bool:
        """Has registers: brought up once, or powered on and about to start
        (``switch_to`` gives it its entry state, as its first quantum would)."""
        return vcpu.context is not None or vcpu.power is PowerState.ON

    def _select(self, vcpu: VCpu) -> None:
        if not self.online(vcpu):
            raise TargetError(f"CPU {vcpu.index} has not been brought up")
        self.machine.switch_to(vcpu)

    # --------------------------------------------------------- registers
    def read_register(self, vcpu: VCpu, regnum: int) -> int | None:
        """The value of GDB register ``regnum`` (None: unavailable)."""
        if not 0 <= regnum < len(REGISTERS):
            raise TargetError(f"no register {regnum}")
        if not self.online(vcpu):
            return None
        self._select(vcpu)
        uc = self.machine.uc
        if regnum == CURRENT_EL:
            return uc.reg_read(UC_ARM64_REG_PSTATE) & 0xC
        reg = _UC_IDS[regnum]
        value = read_sysreg(uc, reg) if isinstance(reg, tuple) else uc.reg_read(reg)
        return value & ((1 << REGISTERS[regnum].bits) - 1)

    def write_register(self, vcpu: VCpu, regnum: int, value: int) -> None:
        if not 0 <= regnum < len(REGISTERS):
            raise TargetError(f"no register {regnum}")
        if regnum == CURRENT_EL:
            raise TargetError("CurrentEL is read-only (write cpsr.EL)")
        self._select(vcpu)
        uc = self.machine.uc
        reg = _UC_IDS[regnum]
        if isinstance(reg, tuple):
            write_sysreg(uc, reg, value)
        else:
            uc.reg_write(reg, value)
        if reg == UC_ARM64_REG_PSTATE:
            # Unicorn re-derives its cached EL on a CP-register write, not on a
            # PSTATE write (platform-notes.md).
            write_sysreg(uc, SPSR_EL1, read_sysreg(uc, SPSR_EL1))
        if regnum == 32 or isinstance(reg, tuple) or reg in (UC_ARM64_REG_TTBR0_EL1,
                                                              UC_ARM64_REG_TTBR1_EL1):
            self.machine.flush_tlb()
        self.machine.save_current()

    # ----------------------------------------------------------- memory
    def translate(self, vcpu: VCpu, va: int) -> Translation:
        """``va`` as ``vcpu`` would reach it: its TLB first (what it would
        really use, stale or not), else a walk of its tables at EL1."""
        self._select(vcpu)
        uc = self.machine.uc
        if not read_sysreg(uc, SCTLR_EL1) & SCTLR_M:
            return Translation(va, va, False, None, False)
        tcr = read_sysreg(uc, TCR_EL1)
        ttbr0 = uc.reg_read(UC_ARM64_REG_TTBR0_EL1)
        ttbr1 = uc.reg_read(UC_ARM64_REG_TTBR1_EL1)
        asid = current_asid(decode_tcr(tcr), ttbr0, ttbr1)
        cnp = bool((ttbr1 if va >> 55 & 1 else ttbr0) & TTBR_CNP)
        hit = self.machine.tlbs.lookup(vcpu.index, va, asid, cnp, record=False)
        if hit is not None:
            return Translation(va, hit.pa | (va & (PAGE - 1)), True, None, True)
        result = walk(self.machine.physmem.read_u64, tcr, ttbr0, ttbr1, va, Access.READ, 1)
        usable = result.pa is not None and (
            result.fault is None or result.fault.kind == FaultKind.PERMISSION)
        return Translation(va, result.pa if usable else None, False, result, True)

    def table_walk(self, vcpu: VCpu, va: int) -> WalkResult | None:
        """What ``vcpu``'s tables say of ``va`` now, at EL1 (None: MMU off)."""
        self._select(vcpu)
        uc = self.machine.uc
        if not read_sysreg(uc, SCTLR_EL1) & SCTLR_M:
            return None
        return walk(self.machine.physmem.read_u64, read_sysreg(uc, TCR_EL1),
                    uc.reg_read(UC_ARM64_REG_TTBR0_EL1), uc.reg_read(UC_ARM64_REG_TTBR1_EL1),
                    va, Access.READ, 1)

    def _pa(self, vcpu: VCpu, va: int) -> int:
        pa = self.translate(vcpu, va).pa
        if pa is None or not self.machine.physmem.is_ram(pa):
            raise TargetError(f"{va:#x} is not mapped for CPU {vcpu.index}")
        return pa

    def physical_addresses(self, va: int) -> set[int]:
        """Every PA ``va`` has for some CPU that has registers (a watchpoint's
        ranges: copies differ per node, data is usually one)."""
        pas = set()
        current = self.machine.current
        for vcpu in self.machine.cpus:
            if self.online(vcpu):
                pa = self.translate(vcpu, va).pa
                if pa is not None:
                    pas.add(pa)
        if current is not None:
            self.machine.switch_to(current)
        return pas

    def read_memory(self, vcpu: VCpu, va: int, length: int) -> bytes:
        """``length`` bytes at ``va`` through ``vcpu``'s translation, page by page;
        short when a page is not mapped (TargetError if the first is not)."""
        out = bytearray()
        while length > 0:
            chunk = min(length, PAGE - (va & (PAGE - 1)))
            try:
                out += self.machine.physmem.read(self._pa(vcpu, va), chunk)
            except (TargetError, PhysAddrError):
                if not out:
                    raise
                break
            va += chunk
            length -= chunk
        return bytes(out)

    def text_copies(self) -> list[tuple[int, int, int]]:
        """(node, first PA, end PA) of node 0's text and of every node's copy."""
        image = self.ctx.image
        stext, etext = image.sym("_stext"), image.sym("_etext")
        return [(node, pa, pa + etext - stext) for node, pa in
                node_text_pas(image, self.ctx.kernel.replication.text_copies, stext)]

    def text_va_of(self, pa: int) -> tuple[int, int] | None:
        """(node, text VA) when ``pa`` is in some node's copy of kernel text."""
        stext = self.ctx.image.sym("_stext")
        for node, start, end in self.text_copies():
            if start <= pa < end:
                return node, stext + pa - start
        return None

    def write_memory(self, vcpu: VCpu, va: int, data: bytes) -> None:
        """Store ``data`` at ``va`` through ``vcpu``'s translation.  Bytes that
        land in kernel text go to every copy (or to ``text_write_node``'s
        only), then translated code is dropped, as patch_text does."""
        physmem = self.machine.physmem
        pieces = []
        offset = 0
        while offset < len(data):
            chunk = min(len(data) - offset, PAGE - ((va + offset) & (PAGE - 1)))
            pieces.append((self._pa(vcpu, va + offset), data[offset : offset + chunk]))
            offset += chunk
        touched_text = False
        for pa, piece in pieces:
            where = self.text_va_of(pa)
            if where is None:
                physmem.write(pa, piece)
                continue
            touched_text = True
            _node, text_va = where
            for node, start, _end in self.text_copies():
                if self.text_write_node is None or node == self.text_write_node:
                    physmem.write(start + text_va - self.ctx.image.sym("_stext"), piece)
        if touched_text:
            invalidate_text(self.machine)

    def pc(self, vcpu: VCpu) -> int | None:
        return self.read_register(vcpu, 32)


def safe_read_u32(target: Target, vcpu: VCpu, va: int) -> int | None:
    try:
        return int.from_bytes(target.read_memory(vcpu, va, 4), "little")
    except (TargetError, PhysAddrError, UcError):
        return None
