"""The machine: one Unicorn engine, per-node RAM, the CPUs, and the loop that
runs them in deterministic round-robin quanta (the hot path).

Every CPU runs on the same engine in turn; a CPU off the engine is a saved
context.  Switching CPU restores its context and empties Unicorn's TLB, so
the next fills come from that CPU's own TLB model (``emu/hw/mmu.py``).
Within a quantum the guest runs at Unicorn's speed: Python runs only on a
TLB miss, an exception (``svc``, ``smc``, undefined instruction, abort) or a
TLB/cache maintenance instruction; fetch accounting is in C.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_TLB_FILL,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn.arm64_const import (
    UC_ARM64_INS_SYS,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_VBAR_EL1,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X1,
    UC_ARM64_REG_X2,
    UC_ARM64_REG_X3,
    UC_ARM64_REG_X4,
)
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from emu.errors import GuestFault
from emu.hw import firmware as fw
from emu.hw.accounting import QEMU_PAGE_SHIFT, Accounting
from emu.hw.cpu import (
    TCR_EL1,
    VECTOR_TABLE_SIZE,
    NoVectors,
    PowerState,
    VCpu,
    read_sysreg,
    take_exception,
)
from emu.hw.fault import (
    EC_DABT_CUR,
    EC_DABT_LOW,
    EC_IABT_CUR,
    EC_IABT_LOW,
    EC_SHIFT,
    ESR_IL,
    ISS_WNR,
    decode_esr,
    esr_for_abort,
    esr_for_brk,
    esr_for_svc,
    esr_for_undefined,
)
from emu.hw.mmu import FSC_SYNC_EXTERNAL, Mmu, PendingFault
from emu.hw.pagetable import Access
from emu.hw.physmem import PhysMem
from emu.hw.tlb import Tlbs, decode_tlbi
from emu.hw.topology import Topology

# QEMU exception numbers Unicorn passes to UC_HOOK_INTR
EXCP_UDEF, EXCP_SWI, EXCP_BKPT, EXCP_SMC = 1, 2, 7, 13
DEFAULT_QUANTUM = 20_000
QEMU_PAGE_SIZE = 1 << QEMU_PAGE_SHIFT
# Registers a CPU can be started with (PSCI CPU_ON, or the boot loader for CPU 0)
RegisterSet = dict[object, int]


class StopReason(enum.Enum):
    ALL_OFF = "all CPUs powered off"
    INSTRUCTION_LIMIT = "instruction limit reached"


@dataclass
class RunResult:
    reason: StopReason
    instructions: int


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


class Machine:
    """A NUMA arm64 machine: topology, RAM banks, CPUs, MMU, firmware."""

    def __init__(
        self,
        topology: Topology,
        physmem: PhysMem,
        quantum: int = DEFAULT_QUANTUM,
        data_accesses: bool = False,
        count_fetches: bool = True,
    ) -> None:
        self.topology = topology
        self.physmem = physmem
        self.quantum = quantum
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        # Unicorn's AArch64 page defaults to 1 KiB; 4 KiB (the smallest
        # granule) means a quarter of the TLB fills and matches accounting.
        uc.ctl_set_page_size(QEMU_PAGE_SIZE)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        for bank in physmem.banks:
            uc.mem_map_ptr(bank.base, bank.size, UC_PROT_ALL, bank.host_address)
        self.uc = uc
        self.cpus = [VCpu(i, topology.cpu_to_node(i)) for i in range(topology.n_cpus)]
        base = physmem.banks[0].base
        self.accounting = Accounting(
            topology.n_cpus, topology.nodes, base, physmem.banks[0].size,
            tuple(bank.host_address for bank in physmem.banks),
        )  # fmt: skip
        # Every TLB: one per CPU, one shared (CnP) per Inner Shareable domain;
        # one domain for the whole machine, as Linux assumes (tlbs.set_domains).
        self.tlbs = Tlbs([cpu.tlb for cpu in self.cpus], [cpu.node for cpu in self.cpus])
        self.mmu = Mmu(physmem, self.accounting, self.tlbs)
        self.mmu.on_accounting_reset = self.flush_tlb
        uc.hook_add(UC_HOOK_TLB_FILL, self.mmu.fill)
        uc.hook_add(UC_HOOK_INSN, self._on_sys, None, 1, 0, UC_ARM64_INS_SYS)
        # With the C hooks, svc enters its vector in C and every other
        # exception stops the engine for _handle_interrupt; without them a
        # Python interrupt hook does all of it.
        if not self.accounting.install(uc, data_accesses, count_fetches):
            uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        # Without fetch counts, quanta are measured by Unicorn's own count.
        self.count_fetches = count_fetches
        self._reset_context = uc.context_save()
        self.current: VCpu | None = None
        self.console: list[str] = []
        self.symbolize: Callable[[int], str] = lambda va: f"{va:#x}"
        self._stop_fault: FaultReport | None = None
        self._stop_quantum = False
        self.total_instructions = 0
        self.tlbi_hooks: list[Callable[[VCpu, Sequence[VCpu], str, int | None], None]] = []
        # Called with the CPU just put on the engine (e.g. a cache model's select_cpu).
        self.switch_listeners: list[Callable[[VCpu], None]] = []

    # ------------------------------------------------------------------ CPUs
    def power_on(self, cpu: int, registers: RegisterSet) -> None:
        """Mark ``cpu`` on; it starts from reset state plus ``registers`` when
        first scheduled (keys: Unicorn register ids or sysreg tuples)."""
        vcpu = self.cpus[cpu]
        vcpu.power = PowerState.ON
        vcpu.context = None
        vcpu.tlb.clear()
        vcpu.entry = dict(registers)  # type: ignore[attr-defined]

    def power_off(self, cpu: int) -> None:
        """Power ``cpu`` off; its last register state stays readable in its context."""
        vcpu = self.cpus[cpu]
        if vcpu is self.current and vcpu.context is not None:
            self.uc.context_update(vcpu.context)
        vcpu.power = PowerState.OFF

    @property
    def is_domain(self) -> list[int]:
        """Inner Shareable domain of each CPU: broadcast TLBIs reach the CPUs
        sharing it, and so do CnP entries (set with ``tlbs.set_domains``)."""
        return self.tlbs.domains

    def flush_tlb(self) -> None:
        """Empty Unicorn's TLB (not the CPUs' TLB models)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def switch_to(self, cpu: VCpu) -> None:
        """Put ``cpu`` on the engine."""
        if self.current is cpu:
            return
        uc = self.uc
        if self.current is not None and self.current.context is not None:
            uc.context_update(self.current.context)
        if cpu.context is None:
            uc.context_restore(self._reset_context)
            for reg, value in getattr(cpu, "entry", {}).items():
                if isinstance(reg, tuple):
                    uc.cpr_write(*reg, value)
                else:
                    uc.reg_write(reg, value)
            cpu.context = uc.context_save()
        else:
            uc.context_restore(cpu.context)
        self.flush_tlb()
        self.accounting.select_cpu(cpu.index)
        self.mmu.cpu = cpu
        self.current = cpu
        for listener in self.switch_listeners:
            listener(cpu)

    def save_current(self) -> None:
        if self.current is not None and self.current.context is not None:
            self.uc.context_update(self.current.context)

    # ------------------------------------------------------------- the loop
    def run(self, max_instructions: int, on_round: Callable[[], None] | None = None) -> RunResult:
        """Run until every CPU is off or ``max_instructions`` have retired.

        Each round gives every powered-on CPU one quantum, in CPU order;
        ``on_round`` runs after each round (the scheduler migrates there).
        """
        while True:
            runnable = [cpu for cpu in self.cpus if cpu.power is PowerState.ON]
            if not runnable:
                self.save_current()
                return RunResult(StopReason.ALL_OFF, self.total_instructions)
            for cpu in runnable:
                if cpu.power is not PowerState.ON:
                    continue
                budget = min(self.quantum, max_instructions - self.total_instructions)
                if budget <= 0:
                    self.save_current()
                    return RunResult(StopReason.INSTRUCTION_LIMIT, self.total_instructions)
                self.switch_to(cpu)
                self.run_quantum(cpu, budget)
            if on_round is not None:
                on_round()

    def run_quantum(self, cpu: VCpu, budget: int) -> int:
        """Run ``cpu`` for at most ``budget`` instructions; returns how many ran."""
        uc = self.uc
        accounting = self.accounting
        start = accounting.instructions(cpu.index)
        executed = 0
        self._stop_quantum = False
        while executed < budget and cpu.power is PowerState.ON:
            self.mmu.fault = None
            aborted = False
            try:
                uc.emu_start(uc.reg_read(UC_ARM64_REG_PC), 0, 0, budget - executed)
            except UcError as err:
                pc = uc.reg_read(UC_ARM64_REG_PC)
                accounting.settle(pc)
                pending = self.mmu.fault
                if pending is None:
                    self._fault_stop(cpu, pc, f"emulation error ({err})")
                else:
                    self._deliver_abort(cpu, pc, pending)
                    aborted = True
            else:
                accounting.settle(uc.reg_read(UC_ARM64_REG_PC))
            intno = accounting.take_pending_interrupt()
            if intno:
                self._handle_interrupt(cpu, intno)
                aborted = True  # handled: carry on with the quantum
            if self._stop_fault is not None:
                report, self._stop_fault = self._stop_fault, None
                self.total_instructions += accounting.instructions(cpu.index) - start
                self.save_current()
                raise GuestFault(report.message(), report)
            executed = accounting.instructions(cpu.index) - start
            if not aborted or self._stop_quantum:
                break  # the count ran out, or wfi / power-off ended the quantum early
        if not self.count_fetches:
            executed = budget  # unknown without the block hook; the quantum is the bound
        self.total_instructions += executed
        return executed

    # ----------------------------------------------------------- exceptions
    def _deliver_abort(self, cpu: VCpu, pc: int, pending: PendingFault) -> None:
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
        self._exception(cpu, esr, pc, far=pending.va)

    def _exception(self, cpu: VCpu, esr: int, return_address: int, far: int | None = None) -> None:
        uc = self.uc
        cpu.exceptions += 1
        vbar = uc.reg_read(UC_ARM64_REG_VBAR_EL1)
        el = (uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3
        if el == 1 and vbar <= return_address < vbar + VECTOR_TABLE_SIZE:
            self._fault_stop(cpu, return_address, "exception inside the exception vectors", esr, far)
            return
        try:
            take_exception(uc, esr, return_address, far)
        except NoVectors:
            self._fault_stop(cpu, return_address, "exception with no vector table", esr, far)

    def _fault_stop(
        self, cpu: VCpu, pc: int, what: str, esr: int | None = None, far: int | None = None
    ) -> None:
        self._stop_fault = FaultReport(cpu.index, cpu.node, pc, self.symbolize(pc), esr, far, what,
                                       self.accounting.recent_blocks(cpu.index))
        self.uc.emu_stop()

    def _on_interrupt(self, uc: Uc, intno: int, _user: object) -> None:
        """UC_HOOK_INTR when the C hooks are not compiled in."""
        self._handle_interrupt(self.current, intno)

    def _handle_interrupt(self, cpu: VCpu, intno: int) -> None:
        uc = self.uc
        pc = uc.reg_read(UC_ARM64_REG_PC)
        if intno == EXCP_SWI:
            self._exception(cpu, esr_for_svc(self._imm16_at(pc - 4)), pc)
        elif intno == EXCP_SMC:
            self._smc(cpu)
        elif intno == EXCP_UDEF:
            self.accounting.settle(pc)
            self._exception(cpu, esr_for_undefined(), pc)
        elif intno == EXCP_BKPT:
            self.accounting.settle(pc)
            self._exception(cpu, esr_for_brk(self._imm16_at(pc)), pc)
        else:
            self._fault_stop(cpu, pc, f"unexpected exception (QEMU exception {intno})")

    def _imm16_at(self, va: int) -> int:
        pa = self.mmu.translate(self.uc, va, Access.FETCH)
        if pa is None:
            return 0
        return (int.from_bytes(self.physmem.read(pa, 4), "little") >> 5) & 0xFFFF

    # -------------------------------------------------------------- firmware
    def _smc(self, cpu: VCpu) -> None:
        uc = self.uc
        function = uc.reg_read(UC_ARM64_REG_X0) & 0xFFFFFFFF
        x1, x2, x3 = (uc.reg_read(r) for r in (UC_ARM64_REG_X1, UC_ARM64_REG_X2, UC_ARM64_REG_X3))
        result: int
        if function == fw.PSCI_VERSION:
            result = fw.PSCI_VERSION_1_1
        elif function == fw.PSCI_CPU_ON_64:
            result = self._psci_cpu_on(x1, x2, x3)
        elif function == fw.PSCI_CPU_OFF:
            cpu.exit_status = x1
            self.power_off(cpu.index)
            self._stop_quantum = True
            uc.emu_stop()
            return
        elif function == fw.PSCI_SYSTEM_OFF:
            for other in self.cpus:
                self.power_off(other.index)
            self._stop_quantum = True
            uc.emu_stop()
            return
        elif function == fw.SIP_PANIC:
            esr, far, elr = x1, x2, x3
            spsr = uc.reg_read(UC_ARM64_REG_X4)
            what = "guest panic" if esr == 0 else "unhandled exception"
            self._stop_fault = FaultReport(
                cpu.index, cpu.node, elr, self.symbolize(elr), esr or None, far if esr else None,
                f"{what} (SPSR {spsr:#x})", self.accounting.recent_blocks(cpu.index),
            )  # fmt: skip
            uc.emu_stop()
            return
        elif function == fw.SIP_PUTS:
            result = self._console_write(x1, x2)
        else:
            result = fw.SMCCC_RET_NOT_SUPPORTED
        uc.reg_write(UC_ARM64_REG_X0, fw.to_u64(result))

    def _psci_cpu_on(self, target: int, entry: int, context_id: int) -> int:
        if not 0 <= target < len(self.cpus) or entry & 3:
            return fw.PSCI_RET_INVALID_PARAMS
        if self.cpus[target].power is PowerState.ON:
            return fw.PSCI_RET_ALREADY_ON
        self.power_on(target, {UC_ARM64_REG_PC: entry, UC_ARM64_REG_X0: context_id})
        return fw.PSCI_RET_SUCCESS

    def _console_write(self, va: int, length: int) -> int:
        length = min(length, fw.MAX_CONSOLE_WRITE)
        data = bytearray()
        for offset in range(length):
            pa = self.mmu.translate(self.uc, va + offset)
            if pa is None:
                return fw.PSCI_RET_INVALID_PARAMS
            data += self.physmem.read(pa, 1)
        self.console.append(data.decode("utf-8", "replace"))
        return length

    # ------------------------------------------------------ TLB maintenance
    def _on_sys(self, uc: Uc, reg: int, cp: object, _user: object) -> bool:
        if cp.op0 == 1 and cp.crn == 8 and cp.op1 == 0:
            self._tlbi(cp.crm, cp.op2, cp.val)
        return False  # let Unicorn execute it (it flushes its own TLB)

    def _tlbi(self, crm: int, op2: int, value: int) -> None:
        """A guest ``tlbi``: the TLB model (emu/hw/tlb.py) does what the form says."""
        cpu = self.current
        as16 = bool(read_sysreg(self.uc, TCR_EL1) >> 36 & 1)
        op = decode_tlbi(crm, op2, value, as16)
        if op is None:
            return
        reached = self.tlbs.tlbi(cpu.index, op)
        if not reached:
            return  # a form this CPU does not implement: it takes an undefined-instruction exception
        cpu.tlbi_count += 1
        targets = [self.cpus[index] for index in reached]
        for hook in self.tlbi_hooks:
            hook(cpu, targets, op.name, op.va)


__all__ = ["DEFAULT_QUANTUM", "FaultReport", "Machine", "RunResult", "StopReason"]
