"""The machine: one Unicorn engine, per-node RAM, the CPUs, and the loop that
runs them in deterministic round-robin quanta (the hot path).

Every CPU runs on the same engine in turn; a CPU off the engine is a saved
context.  Switching CPU restores its context and empties Unicorn's TLB, so
the next fills come from that CPU's own TLB model (``emu/hw/mmu.py``).
Within a quantum the guest runs at Unicorn's speed: Python runs only on a
TLB miss, an exception (``svc``, ``smc``, undefined instruction, abort) or a
TLB/cache maintenance instruction; fetch accounting is in C.

A guest that cannot go on ends the run with a GuestFault carrying a
FaultReport: an exception with nowhere to go, one taken inside the vectors,
a loop of exceptions at EL1 (the handler faulting again), a guest panic, or a
CPU the watchdog finds spinning (``watchdog`` instructions without taking an
exception).  The machine stays usable afterwards.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
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
from emu.hw.accounting import NO_MONITOR, QEMU_PAGE_SHIFT, Accounting
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
    EC_PC_ALIGN,
    EC_SHIFT,
    EC_SVC64,
    ESR_IL,
    ISS_WNR,
    decode_esr,
    esr_class,
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
# A CPU that runs this many instructions without taking any exception (no
# syscall, no fault, no firmware call) is reported as spinning.  The shipped
# workloads take one every few hundred instructions; boot takes under 1 M.
DEFAULT_WATCHDOG = 10_000_000
# Synchronous exceptions taken at EL1 in a row, each within EXCEPTION_LOOP_GAP
# instructions of the last and with no syscall and nothing from EL0 in
# between, before the machine calls it an exception loop.  A handler that
# fixes what faulted (a uaccess fixup, say) runs on for longer than that.
EXCEPTION_LOOP_LIMIT = 32
EXCEPTION_LOOP_GAP = 10_000
QEMU_PAGE_SIZE = 1 << QEMU_PAGE_SHIFT
# Registers a CPU can be started with (PSCI CPU_ON, or the boot loader for CPU 0)
RegisterSet = dict[object, int]


class StopReason(enum.Enum):
    ALL_OFF = "all CPUs powered off"
    INSTRUCTION_LIMIT = "instruction limit reached"
    INTERRUPTED = "interrupted"


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
        # Instructions a CPU may run without taking an exception (0: no watchdog;
        # it needs the fetch counts, so count_fetches=False runs without it).
        self.watchdog = DEFAULT_WATCHDOG
        # Set (from a signal handler) to end run() after the current quantum.
        self.interrupt_requested = False
        n_cpus = topology.n_cpus
        self._quiet_since = [0] * n_cpus  # each CPU's count when it last took an exception
        self._el1_streak = [0] * n_cpus  # EL1 exceptions in a row (exception-loop detection)
        self._el1_last = [0] * n_cpus  # the CPU's instruction count at the last one
        self.smc_calls = 0
        self._disassembler = None
        self._stop_quantum = False
        self.total_instructions = 0
        self._next_cpu = 0  # round-robin position, kept across run() calls
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
        vcpu.entry = dict(registers)

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

    def close(self) -> None:
        """Free the Unicorn engine now (its translation buffer is large) rather
        than whenever the garbage collector gets to it.  The machine is
        unusable afterwards; RAM (PhysMem) must outlive this call."""
        finalizer = getattr(self.uc, "_Uc__finalizer", None)
        if finalizer is not None and finalizer.alive:
            finalizer()  # uc_close, exactly once: the finalizer is then dead

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
            self.accounting.set_exclusive_monitor(cpu.index, NO_MONITOR)  # reset clears it
            for reg, value in cpu.entry.items():
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
        Ctrl-C raises KeyboardInterrupt at the end of the current quantum,
        with every CPU's state and counts saved.
        """
        with self.interrupts_deferred():
            result = self._run_rounds(max_instructions, on_round)
        if result.reason is StopReason.INTERRUPTED:
            self.interrupt_requested = False
            raise KeyboardInterrupt
        return result

    @contextlib.contextmanager
    def interrupts_deferred(self) -> Iterator[None]:
        """SIGINT sets ``interrupt_requested`` while the guest runs.

        Raised where Python's default handler raises it, a KeyboardInterrupt
        could land inside a Unicorn callback, where ctypes prints and drops
        it and the callback fails (a TLB fill then looks like a guest fault).
        A handler someone else installed is left alone.
        """
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return

        def request_stop(signum: int, frame: object) -> None:
            self.interrupt_requested = True

        signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _run_rounds(self, max_instructions: int, on_round: Callable[[], None] | None) -> RunResult:
        while True:
            runnable = [cpu for cpu in self.cpus if cpu.power is PowerState.ON]
            if not runnable:
                self.save_current()
                return RunResult(StopReason.ALL_OFF, self.total_instructions)
            # A round starts where the last one stopped, so a run cut short
            # by its limit does not starve the higher-numbered CPUs next time.
            start = next((i for i, cpu in enumerate(runnable) if cpu.index >= self._next_cpu), 0)
            for cpu in runnable[start:] + runnable[:start]:
                if cpu.power is not PowerState.ON:
                    continue
                if self.interrupt_requested:
                    self.save_current()
                    return RunResult(StopReason.INTERRUPTED, self.total_instructions)
                budget = min(self.quantum, max_instructions - self.total_instructions)
                if budget <= 0:
                    self.save_current()
                    return RunResult(StopReason.INSTRUCTION_LIMIT, self.total_instructions)
                self._next_cpu = cpu.index + 1
                self.switch_to(cpu)
                self.run_quantum(cpu, budget)
            if on_round is not None:
                on_round()

    def emu_start(self, begin: int, until: int, count: int) -> None:
        """Unicorn's ``emu_start`` (``count`` 0: no limit).  When the accounting
        counts data accesses its instruction hook counts instructions too, in
        place of Unicorn's own count hook, so that Unicorn can inline it."""
        if self.accounting.counts_instructions:
            self.accounting.start(count)
            self.uc.emu_start(begin, until, 0, 0)
        else:
            self.uc.emu_start(begin, until, 0, count)

    def run_quantum(self, cpu: VCpu, budget: int) -> int:
        """Run ``cpu`` for at most ``budget`` instructions; returns how many ran."""
        uc = self.uc
        accounting = self.accounting
        index = cpu.index
        start = accounting.instructions(index)
        watchdog = self.watchdog if self.count_fetches else 0
        if watchdog:
            # Stop exactly where the watchdog would fire if nothing is taken before.
            budget = max(1, min(budget, self._quiet_since[index] + watchdog - start))
        taken = self._exceptions_taken(cpu)
        executed = 0
        self._stop_quantum = False
        # An exception left pending by an emu_start outside this loop (a
        # System.call that stopped on one) belongs to nothing that runs now.
        accounting.take_pending_interrupt()
        while executed < budget and cpu.power is PowerState.ON:
            self.mmu.fault = None
            aborted = False
            svc_before = accounting.state.svc_entries
            try:
                self.emu_start(uc.reg_read(UC_ARM64_REG_PC), 0, budget - executed)
                error = None
            except UcError as err:
                error = err
            if accounting.state.svc_entries != svc_before:
                self._el1_streak[index] = 0  # a syscall (entered in C) is progress
            pc = uc.reg_read(UC_ARM64_REG_PC)
            accounting.settle(pc)
            if error is not None:
                pending = self.mmu.fault
                if pending is None:
                    self._fault_stop(cpu, pc, f"emulation error ({error})")
                else:
                    self._deliver_abort(cpu, pc, pending)
                    aborted = True
            intno = accounting.take_pending_interrupt()
            if intno:
                self._handle_interrupt(cpu, intno)
                aborted = True  # handled: carry on with the quantum
            if self._stop_fault is not None:
                self._raise_stop(cpu, start)
            executed = accounting.instructions(index) - start
            now_taken = self._exceptions_taken(cpu)
            if now_taken != taken:
                taken = now_taken
                self._quiet_since[index] = accounting.instructions(index)
            if not aborted or self._stop_quantum:
                break  # the count ran out, or wfi / power-off ended the quantum early
        if not self.count_fetches:
            executed = budget  # unknown without the block hook; the quantum is the bound
        elif watchdog and cpu.power is PowerState.ON:
            quiet = accounting.instructions(index) - self._quiet_since[index]
            if quiet >= watchdog:
                self._fault_stop(cpu, uc.reg_read(UC_ARM64_REG_PC),
                                 f"spinning: {quiet:,} instructions without taking an exception "
                                 f"(watchdog {watchdog:,})")  # fmt: skip
                self._raise_stop(cpu, start)
        self.total_instructions += executed
        return executed

    def _exceptions_taken(self, cpu: VCpu) -> int:
        """Exceptions so far: the CPU's own (Python), every svc entered in C and
        every firmware call; only ``cpu`` runs while this is compared."""
        return cpu.exceptions + self.accounting.state.svc_entries + self.smc_calls

    def _raise_stop(self, cpu: VCpu, start: int) -> None:
        report, self._stop_fault = self._stop_fault, None
        self.total_instructions += self.accounting.instructions(cpu.index) - start
        self.save_current()
        raise GuestFault(report.message(), report)

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
        # Unicorn asks the fill for a whole page; FAR_EL1 holds the exact address.
        page = pending.va & ~(QEMU_PAGE_SIZE - 1)
        if pending.access is Access.FETCH:
            far = pc if pc & ~(QEMU_PAGE_SIZE - 1) == page else pending.va
        else:
            address = self._data_address(pc)
            far = address if address is not None and address & ~(QEMU_PAGE_SIZE - 1) == page \
                else pending.va
        self._exception(cpu, esr, pc, far=far)

    def _data_address(self, pc: int) -> int | None:
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

    def _exception(self, cpu: VCpu, esr: int, return_address: int, far: int | None = None) -> None:
        uc = self.uc
        cpu.exceptions += 1
        vbar = uc.reg_read(UC_ARM64_REG_VBAR_EL1)
        el = (uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3
        if el == 1 and vbar <= return_address < vbar + VECTOR_TABLE_SIZE:
            self._fault_stop(cpu, return_address, "exception inside the exception vectors", esr, far)
            return
        if el == 0 or esr_class(esr) == EC_SVC64:
            self._el1_streak[cpu.index] = 0
        else:
            now = self.accounting.instructions(cpu.index)
            if now - self._el1_last[cpu.index] > EXCEPTION_LOOP_GAP:
                self._el1_streak[cpu.index] = 0
            self._el1_last[cpu.index] = now
            self._el1_streak[cpu.index] += 1
            if self._el1_streak[cpu.index] >= EXCEPTION_LOOP_LIMIT:
                self._fault_stop(cpu, return_address,
                                 f"exception loop: {EXCEPTION_LOOP_LIMIT} exceptions taken at EL1 "
                                 "in a row (the handler faults again before it returns)",
                                 esr, far)  # fmt: skip
                return
        try:
            take_exception(uc, esr, return_address, far)
        except NoVectors:
            self._fault_stop(cpu, return_address, "exception with no vector table", esr, far)

    def fault_report(
        self, cpu: VCpu, pc: int, what: str, esr: int | None = None, far: int | None = None
    ) -> FaultReport:
        """A report on ``cpu`` at ``pc``, with the blocks it ran last."""
        return FaultReport(cpu.index, cpu.node, pc, self.symbolize(pc), esr, far, what,
                           self.accounting.recent_blocks(cpu.index))

    def _fault_stop(
        self, cpu: VCpu, pc: int, what: str, esr: int | None = None, far: int | None = None
    ) -> None:
        self._stop_fault = self.fault_report(cpu, pc, what, esr, far)
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
            self.smc_calls += 1
            self._el1_streak[cpu.index] = 0
            self._smc(cpu)
        elif intno == EXCP_UDEF:
            self.accounting.settle(pc)
            self._exception(cpu, esr_for_undefined(), pc)
        elif intno == EXCP_BKPT:
            self.accounting.settle(pc)
            self._exception(cpu, esr_for_brk(self._imm16_at(pc)), pc)
        else:
            self._fault_stop(cpu, pc, f"unexpected exception (QEMU exception {intno})")

    def _how_el0_got_there(self, cpu: VCpu) -> str | None:
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
            if esr_class(esr) == EC_IABT_LOW:
                what = self._how_el0_got_there(cpu) or what
            # FAR_EL1 is UNKNOWN after anything but an abort or a PC alignment fault.
            far_valid = esr_class(esr) in _FAR_VALID
            self._stop_fault = FaultReport(
                cpu.index, cpu.node, elr, self.symbolize(elr), esr or None,
                far if far_valid else None, f"{what} (SPSR {spsr:#x})",
                self.accounting.recent_blocks(cpu.index),
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

__all__ = ["DEFAULT_QUANTUM", "DEFAULT_WATCHDOG", "FaultReport", "Machine", "RunResult", "StopReason"]
