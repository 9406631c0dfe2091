"""The MMU: Unicorn's TLB-fill hook, backed by a per-CPU TLB model and the pure
VMSAv8-64 walk of ``emu/hw/pagetable.py``.

Unicorn runs in virtual-TLB mode: whenever its own (QEMU) TLB misses, it asks
``Mmu.fill`` for the physical page and permissions.  The answer comes from the
TLB model (``emu/hw/tlb.py``: the current CPU's own entries, then, when the
TTBR in use has CnP set, its Inner Shareable domain's shared ones) when it
holds the page for the current ASID, otherwise from a walk of the tables the
CPU's TTBR0/TTBR1 point at, whose result is then cached there.  Entries stay
until a ``tlbi`` removes them, so a CPU that writes TTBR1 without
invalidating keeps using its old translations, as hardware may.  The machine
empties Unicorn's TLB whenever it switches CPU, so every CPU sees only what
its TLBs hold.  A translation another node's CPU filled is charged to the
accounting's remote-fill slots, so fetches through it are counted apart.

A translation that faults is not cached; ``fill`` records it in
``Mmu.fault`` and returns False, which stops ``emu_start``; the machine then
enters the guest's abort vector with the architectural syndrome.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, Uc
from unicorn.arm64_const import (
    UC_ARM64_REG_CP_REG,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_TTBR0_EL1,
    UC_ARM64_REG_TTBR1_EL1,
)

from emu.hw.accounting import KIND_KERNEL_TEXT, KIND_OTHER, Accounting
from emu.hw.cpu import SCTLR_EL1, SCTLR_M, TCR_EL1, VCpu, read_sysreg
from emu.hw.pagetable import (
    OA_BITS,
    TTBR_CNP,
    Access,
    Fault,
    FaultKind,
    Walker,
    current_asid,
    leaf_permissions,
)
from emu.hw.physmem import PhysAddrError, PhysMem
from emu.hw.tlb import GLOBAL, TlbEntry, Tlbs

UC_MEM_READ, UC_MEM_WRITE, UC_MEM_FETCH = 16, 17, 18
_ACCESS = {UC_MEM_READ: Access.READ, UC_MEM_WRITE: Access.WRITE, UC_MEM_FETCH: Access.FETCH}
_NEEDED = {UC_MEM_READ: UC_PROT_READ, UC_MEM_WRITE: UC_PROT_WRITE, UC_MEM_FETCH: UC_PROT_EXEC}
PAGE_SHIFT = 12
PAGE_MASK = ~((1 << PAGE_SHIFT) - 1)
FSC_SYNC_EXTERNAL = 0b010000  # synchronous external abort, not on a walk


@dataclass(frozen=True)
class PendingFault:
    """A translation or permission fault the last fill reported."""

    va: int
    access: Access
    el: int
    fault: Fault | None  # None: the output address is not RAM (external abort)


class _CpuRegisters:
    """The registers a fill reads, through Unicorn's C API: about 0.5 us a read
    instead of 1.4-2.4 us through the Python binding (a fill reads four)."""

    class _CpReg(ctypes.Structure):  # uc_arm64_cp_reg
        _fields_ = [("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("op0", ctypes.c_uint32),
                    ("op1", ctypes.c_uint32), ("op2", ctypes.c_uint32), ("val", ctypes.c_uint64)]

    def __init__(self, uc: Uc) -> None:
        from unicorn.unicorn_py3.unicorn import uclib

        self.uc = uc
        self._read = uclib.uc_reg_read
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        op0, op1, crn, crm, op2 = TCR_EL1
        self._tcr = self._CpReg(crn, crm, op0, op1, op2, 0)
        self._tcr_ref = ctypes.byref(self._tcr)
        op0, op1, crn, crm, op2 = SCTLR_EL1
        self._sctlr = self._CpReg(crn, crm, op0, op1, op2, 0)
        self._sctlr_ref = ctypes.byref(self._sctlr)

    def read(self, regid: int) -> int:
        self._read(self._handle, regid, self._value_ref)
        return self._value.value

    def tcr(self) -> int:
        self._read(self._handle, UC_ARM64_REG_CP_REG, self._tcr_ref)
        return self._tcr.val

    def sctlr(self) -> int:
        self._read(self._handle, UC_ARM64_REG_CP_REG, self._sctlr_ref)
        return self._sctlr.val


def _perms(readable: bool, writable: bool, executable: bool) -> int:
    return (
        (UC_PROT_READ if readable else 0)
        | (UC_PROT_WRITE if writable else 0)
        | (UC_PROT_EXEC if executable else 0)
    )


class Mmu:
    """Translations for the CPU currently on the engine."""

    def __init__(self, physmem: PhysMem, accounting: Accounting, tlbs: Tlbs) -> None:
        self.physmem = physmem
        self.accounting = accounting
        self.tlbs = tlbs
        self._regs: _CpuRegisters | None = None
        self.read_u64: Callable[[int], int] = physmem.u64_reader()
        self.cpu: VCpu | None = None
        self.fault: PendingFault | None = None
        self.kernel_text = (0, 0)  # [_stext, _etext): fetches from here are kernel text
        self.walks = 0
        self.fills = 0
        self._walkers: dict[int, Walker] = {}
        # Called when the accounting table had to be emptied: the machine
        # flushes Unicorn's TLB so every live page is described again.
        self.on_accounting_reset: Callable[[], None] = lambda: None

    def set_kernel_text(self, start: int, end: int) -> None:
        self.kernel_text = (start, end)

    def _kind(self, va: int) -> int:
        start, end = self.kernel_text
        return KIND_KERNEL_TEXT if start <= va < end else KIND_OTHER

    def fill(self, uc: Uc, va: int, access: int, entry: object, _user: object) -> bool:
        """UC_HOOK_TLB_FILL: map one 4 KiB page for the current CPU, or fault."""
        self.fills += 1
        cpu = self.cpu
        regs = self._regs
        if regs is None or regs.uc is not uc:
            regs = self._regs = _CpuRegisters(uc)
        el = (regs.read(UC_ARM64_REG_PSTATE) >> 2) & 3
        # SCTLR_EL1.M first: with stage 1 off no TLB entry is used (a CPU that
        # turns its MMU off at a kernel VA must not go on through its TLB).
        if not regs.sctlr() & SCTLR_M:
            return self._identity(va, access, el, entry)
        walker = self._walker(regs.tcr())
        ttbr0 = regs.read(UC_ARM64_REG_TTBR0_EL1)
        ttbr1 = regs.read(UC_ARM64_REG_TTBR1_EL1)
        asid = current_asid(walker.tcr, ttbr0, ttbr1)
        cnp = bool((ttbr1 if va >> 55 & 1 else ttbr0) & TTBR_CNP)
        hit = self.tlbs.lookup(cpu.index, va, asid, cnp)
        if hit is None:
            hit = self._walk(cpu, walker, ttbr0, ttbr1, va, access, el, cnp)
            if hit is None:
                return False
        perms = hit.perms_el1 if el else hit.perms_el0
        if not perms & _NEEDED[access]:
            self.fault = PendingFault(
                va, _ACCESS[access], el, Fault(FaultKind.PERMISSION, hit.level)
            )
            return False
        # Unicorn asks for its own page (va is aligned to it): give the exact PA.
        entry.paddr = hit.pa | (va & ~PAGE_MASK)
        entry.perms = perms
        remote = hit.filler_node != cpu.node  # a CnP entry another node's CPU filled
        if not self.accounting.record(va, hit.pa, hit.node, hit.kind, remote):
            self.on_accounting_reset()
        return True

    def _identity(self, va: int, access: int, el: int, entry: object) -> bool:
        # MMU off: flat physical addressing, everything permitted (as with
        # SCTLR_EL1.M == 0, where all accesses are treated as Device/Normal NC).
        # An address wider than the PA size takes an Address size fault at
        # level 0 (ARM ARM D8.2, "stage 1 translation disabled"): a kernel VA.
        if va >> OA_BITS:
            self.fault = PendingFault(va, _ACCESS[access], el, Fault(FaultKind.ADDRESS_SIZE, 0))
            return False
        try:
            node = self.physmem.node_of(va)
        except PhysAddrError:
            self.fault = PendingFault(va, _ACCESS[access], el, None)
            return False
        entry.paddr = va
        entry.perms = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
        if not self.accounting.record(va, va, node, self._kind(va)):
            self.on_accounting_reset()
        return True

    def _walker(self, tcr: int) -> Walker:
        walker = self._walkers.get(tcr)
        if walker is None:
            walker = self._walkers[tcr] = Walker(tcr)
        return walker

    def translation_context(self, uc: Uc, va: int) -> tuple[int, bool]:
        """(ASID, CnP) the current CPU translates ``va`` with: the ASID of the
        TTBR TCR_EL1.A1 names, the CnP bit of the TTBR of ``va``'s half."""
        ttbr0 = uc.reg_read(UC_ARM64_REG_TTBR0_EL1)
        ttbr1 = uc.reg_read(UC_ARM64_REG_TTBR1_EL1)
        walker = self._walker(read_sysreg(uc, TCR_EL1))
        asid = current_asid(walker.tcr, ttbr0, ttbr1)
        return asid, bool((ttbr1 if va >> 55 & 1 else ttbr0) & TTBR_CNP)

    def _walk(self, cpu: VCpu, walker: Walker, ttbr0: int, ttbr1: int, va: int, access: int,
              el: int, cnp: bool) -> TlbEntry | None:  # fmt: skip
        self.walks += 1
        result = walker.walk(self.read_u64, ttbr0, ttbr1, va, _ACCESS[access], el)
        if result.pa is None or (
            result.fault is not None and result.fault.kind != FaultKind.PERMISSION
        ):
            self.fault = PendingFault(va, _ACCESS[access], el, result.fault)
            return None
        pa = result.pa & PAGE_MASK
        try:
            node = self.physmem.node_of(pa)
        except PhysAddrError:
            self.fault = PendingFault(va, _ACCESS[access], el, None)
            return None
        desc, table_attrs = result.descriptor, result.table_attrs
        hit = TlbEntry(
            pa=pa,
            perms_el0=_perms(*leaf_permissions(desc, table_attrs, 0)),
            perms_el1=_perms(*leaf_permissions(desc, table_attrs, 1)),
            node=node,
            kind=self._kind(va),
            asid=result.asid if result.ng else GLOBAL,
            level=result.level,
            size=result.tlb_span,
            contiguous=result.contiguous,
        )
        return self.tlbs.insert(cpu.index, va, hit, cnp)

    def translate(self, uc: Uc, va: int, access: Access = Access.READ) -> int | None:
        """The PA the current CPU would use for ``va`` (TLB first), or None."""
        cpu = self.cpu
        if not read_sysreg(uc, SCTLR_EL1) & SCTLR_M:
            return None if va >> OA_BITS else va
        asid, cnp = self.translation_context(uc, va)
        hit = self.tlbs.lookup(cpu.index, va, asid, cnp, record=False)
        if hit is not None:
            return hit.pa | (va & ~PAGE_MASK)
        tcr = read_sysreg(uc, TCR_EL1)
        el = (uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3
        result = self._walker(tcr).walk(
            self.read_u64,
            uc.reg_read(UC_ARM64_REG_TTBR0_EL1),
            uc.reg_read(UC_ARM64_REG_TTBR1_EL1),
            va,
            access,
            el,
        )
        return result.pa if result.pa is not None and result.fault is None else None
