"""The machine: one Unicorn engine, per-node RAM, the CPUs, and the loop that
runs them in deterministic round-robin quanta (the hot path).

Every CPU runs on the same engine in turn; a CPU off the engine is a saved
context.  Switching CPU restores its context and empties Unicorn's TLB, so
the next fills come from that CPU's own TLB model (``emu/hw/mmu.py``).
Within a quantum the guest runs at Unicorn's speed: Python runs only on a
TLB miss, an exception (``svc``, ``smc``, undefined instruction, abort) or a
TLB/cache maintenance instruction; fetch accounting is in C.

The machine owns the scheduling and wires the rest: exception entry
(``emu/hw/exception.py``), PSCI and the SiP service (``emu/hw/firmware.py``),
guest ``tlbi`` (``emu/hw/tlbi.py``) and fault reports
(``emu/hw/forensics.py``).  A guest that cannot go on ends the run with a
GuestFault carrying a FaultReport: an exception with nowhere to go, one taken
inside the vectors, a loop of exceptions at EL1 (the handler faulting
again), a guest panic, a CPU the watchdog finds spinning (``watchdog``
instructions without taking an exception), the firmware-call budget spent,
or a deadlock: every powered-on CPU waiting in ``wfi``.  A CPU in ``wfi``
waits forever (the machine has no interrupt source) and is not scheduled
again, so it costs the host nothing.  The machine stays usable afterwards.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

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
from unicorn.arm64_const import UC_ARM64_INS_SYS, UC_ARM64_REG_PC
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_ERR_OK
from unicorn.unicorn_py3.unicorn import uclib

from emu.errors import GuestFault
from emu.hw.accounting import NO_MONITOR, QEMU_PAGE_SHIFT, Accounting
from emu.hw.cpu import PowerState, VCpu, set_firmware_reset_state
from emu.hw.exception import EXCP_SMC, ExceptionEntry
from emu.hw.firmware import CallEnd, Firmware, RegisterSet
from emu.hw.forensics import FaultReport, Forensics
from emu.hw.mmu import Mmu
from emu.hw.physmem import PhysMem
from emu.hw.tlb import Tlbs
from emu.hw.tlbi import TlbiListener, TlbMaintenance
from emu.hw.topology import Topology

DEFAULT_QUANTUM = 20_000
# A CPU that runs this many instructions without taking any exception (no
# syscall, no fault, no firmware call) is reported as spinning.  The shipped
# workloads take one every few hundred instructions; boot takes under 1 M.
DEFAULT_WATCHDOG = 10_000_000
QEMU_PAGE_SIZE = 1 << QEMU_PAGE_SHIFT
WFI = 0xD503207F  # Unicorn ends emu_start after it, with PC past it


class StopReason(enum.Enum):
    ALL_OFF = "all CPUs powered off"
    INSTRUCTION_LIMIT = "instruction limit reached"
    INTERRUPTED = "interrupted"
    DEBUGGER = "stopped by the debugger"


class Debugger(Protocol):
    """What the run loop consults between quanta while one is attached
    (``Machine.debugger``; None, the default, costs one test per quantum).

    A debugger (the GDB stub of emu/gdb/, the tracer of emu/trace.py) installs
    its own Unicorn hooks while it needs them and removes them after; the
    loop only gives it the CPU boundaries where it may stop the machine.
    """

    def before_quantum(self, cpu: VCpu, budget: int) -> int:
        """Called before ``cpu`` runs; returns the budget to run it with (0:
        end the run now, StopReason.DEBUGGER).  May block (a stopped target)."""
        ...

    def after_quantum(self, cpu: VCpu) -> None:
        """Called after ``cpu``'s quantum (ended early by a breakpoint, say)."""
        ...


@dataclass
class RunResult:
    reason: StopReason
    instructions: int


@dataclass(slots=True)
class Turn:
    """What the handlers a CPU's quantum runs (inside ``emu_start`` or just
    after it stopped) tell the quantum loop."""

    ended: bool = False  # the CPU (or every CPU) powered off: the quantum ends early
    stop: FaultReport | None = None  # the guest cannot go on: the run ends in GuestFault


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
        self.current: VCpu | None = None
        self.forensics = Forensics(uc, self.mmu, physmem, self.accounting)
        self.firmware = Firmware(uc, self, self.mmu, physmem, self.forensics)
        self.firmware.window_listeners.append(lambda cpu: self.accounting.open_window(cpu.index))
        self.exceptions = ExceptionEntry(uc, self.accounting, self.forensics, topology.n_cpus)
        self.tlb_maintenance = TlbMaintenance(uc, self.tlbs, self.cpus, lambda: self.current)
        uc.hook_add(UC_HOOK_TLB_FILL, self.mmu.fill)
        uc.hook_add(UC_HOOK_INSN, self.tlb_maintenance.on_sys, None, 1, 0, UC_ARM64_INS_SYS)
        # With the C hooks, svc enters its vector in C and every other
        # exception stops the engine for _handle_interrupt; without them a
        # Python interrupt hook does all of it.
        if not self.accounting.install(uc, data_accesses, count_fetches):
            uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        # Without fetch counts, quanta are measured by Unicorn's own count.
        self.count_fetches = count_fetches
        set_firmware_reset_state(uc)  # every CPU starts from this context
        self._reset_context = uc.context_save()
        # Instructions a CPU may run without taking an exception (0: no watchdog;
        # it needs the fetch counts, so count_fetches=False runs without it).
        self.watchdog = DEFAULT_WATCHDOG
        # Set (from a signal handler) to end run() after the current quantum.
        self.interrupt_requested = False
        self.turn = Turn()
        # Each CPU's instruction count when it last took an exception (the watchdog's).
        self._quiet_since = [0] * topology.n_cpus
        self.total_instructions = 0
        self._next_cpu = 0  # round-robin position, kept across run() calls
        # Called with the CPU just put on the engine (e.g. a cache model's select_cpu).
        self.switch_listeners: list[Callable[[VCpu], None]] = []
        # Consulted between quanta while attached (emu/gdb/, emu/trace.py).
        self.debugger: Debugger | None = None

    @property
    def window_listeners(self) -> list[Callable[[VCpu], None]]:
        """Told of a CPU whose measurement window opens (SIP_WINDOW), after the
        accounting took its snapshot (e.g. a cache model's open_window)."""
        return self.firmware.window_listeners

    @property
    def console(self) -> list[str]:
        """What the guest wrote through the SiP console call, one entry a call."""
        return self.firmware.console

    @property
    def console_cpus(self) -> list[int]:
        """The CPU of each ``console`` entry."""
        return self.firmware.console_cpus

    @property
    def symbolize(self) -> Callable[[int], str]:
        """Names a guest address in fault reports (set to the kernel's once booted)."""
        return self.forensics.symbolize

    @symbolize.setter
    def symbolize(self, symbolize: Callable[[int], str]) -> None:
        self.forensics.symbolize = symbolize

    @property
    def kernel_stack_guards(self) -> list[tuple[int, int, int]]:
        """(start, end, cpu) of the unmapped guard page below each kernel stack:
        a fault there is reported as that CPU's stack overflow."""
        return self.forensics.kernel_stack_guards

    @kernel_stack_guards.setter
    def kernel_stack_guards(self, guards: list[tuple[int, int, int]]) -> None:
        self.forensics.kernel_stack_guards = list(guards)

    @property
    def tlbi_hooks(self) -> list[TlbiListener]:
        """Told of every guest ``tlbi`` that reached a CPU (see emu/hw/tlbi.py)."""
        return self.tlb_maintenance.listeners

    # ------------------------------------------------------------------ CPUs
    def power_on(self, cpu: int, registers: RegisterSet) -> None:
        """Mark ``cpu`` on; it starts from reset state plus ``registers`` when
        first scheduled (keys: Unicorn register ids or sysreg tuples)."""
        vcpu = self.cpus[cpu]
        vcpu.power = PowerState.ON
        vcpu.waiting = False
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
        # The engine handle every uclib call takes (the MMU and the accounting
        # call the C API through it too).  The binding's finalizer closes this
        # same handle object when the Uc is collected and skips a null one, so
        # clearing it after uc_close makes the close happen exactly once.
        handle = self.uc._uch
        if handle:
            status = uclib.uc_close(handle)
            handle.value = None
            if status != UC_ERR_OK:
                raise UcError(status)

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
            runnable = [cpu for cpu in self.cpus if cpu.power is PowerState.ON and not cpu.waiting]
            if not runnable:
                self.save_current()
                self._check_deadlock()
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
                if self.debugger is not None:
                    budget = self.debugger.before_quantum(cpu, budget)
                    if budget <= 0:
                        self.save_current()
                        return RunResult(StopReason.DEBUGGER, self.total_instructions)
                self._next_cpu = cpu.index + 1
                self.switch_to(cpu)
                self.run_quantum(cpu, budget)
                if self.debugger is not None:
                    self.debugger.after_quantum(cpu)
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
        accounting = self.accounting
        index = cpu.index
        start = accounting.instructions(index)
        watchdog = self.watchdog if self.count_fetches else 0
        if watchdog:
            # Stop exactly where the watchdog would fire if nothing is taken before.
            budget = max(1, min(budget, self._quiet_since[index] + watchdog - start))
        turn = self.turn
        turn.ended = False
        taken = self._exceptions_taken(cpu)
        executed = 0
        handled = True
        # An exception left pending by an emu_start outside this loop (a
        # System.call that stopped on one) belongs to nothing that runs now.
        accounting.take_pending_interrupt()
        while executed < budget and cpu.power is PowerState.ON:
            handled = self._run_until_stopped(cpu, budget - executed)
            if turn.stop is not None:
                self._raise_stop(cpu, start)
            executed = accounting.instructions(index) - start
            now_taken = self._exceptions_taken(cpu)
            if now_taken != taken:
                taken = now_taken
                self._quiet_since[index] = accounting.instructions(index)
            if not handled or turn.ended:
                break  # the count ran out, or wfi / power-off ended the quantum early
        if not handled and executed < budget and self._stopped_in_wfi(cpu):
            cpu.waiting = True
        if cpu.power is PowerState.ON:  # an illegal ERET in this quantum
            turn.stop = self.exceptions.illegal_state(cpu)
            if turn.stop is not None:
                self._raise_stop(cpu, start)
        if not self.count_fetches:
            executed = budget  # unknown without the block hook; the quantum is the bound
        elif watchdog and cpu.power is PowerState.ON:
            quiet = accounting.instructions(index) - self._quiet_since[index]
            if quiet >= watchdog:
                self._watchdog_fired(cpu, start, quiet, watchdog)
        self.total_instructions += executed
        return executed

    def _run_until_stopped(self, cpu: VCpu, count: int) -> bool:
        """One ``emu_start`` of ``cpu`` for at most ``count`` instructions, then
        the exception that stopped it delivered; True when there was one (the
        quantum goes on)."""
        uc = self.uc
        accounting = self.accounting
        self.mmu.fault = None
        svc_before = accounting.state.svc_entries
        try:
            self.emu_start(uc.reg_read(UC_ARM64_REG_PC), 0, count)
            error = None
        except UcError as err:
            error = err
        if accounting.state.svc_entries != svc_before:
            self.exceptions.progress(cpu.index)  # a syscall (entered in C) is progress
        pc = uc.reg_read(UC_ARM64_REG_PC)
        accounting.settle(pc)
        handled = False
        if error is not None:
            pending = self.mmu.fault
            if pending is None:
                self._follow(self.forensics.report(cpu, pc, f"emulation error ({error})"))
            else:
                self._follow(self.exceptions.abort(cpu, pc, pending))
                handled = True
        intno = accounting.take_pending_interrupt()
        if intno:
            self._handle_interrupt(cpu, intno)
            handled = True
        return handled

    def _stopped_in_wfi(self, cpu: VCpu) -> bool:
        """Whether the engine stopped early, still on, just after a ``wfi``
        (not for a listener's emu_stop).  Early stops are rare but for wfi."""
        if not self.count_fetches or cpu.power is not PowerState.ON or self.turn.ended:
            return False
        return self.forensics.insn_word(self.uc.reg_read(UC_ARM64_REG_PC) - 4) == WFI

    def _check_deadlock(self) -> None:
        """Every CPU still on waits in wfi: nothing can wake any, so the run
        would never end.  A GuestFault naming where each one waits."""
        waiting = [cpu for cpu in self.cpus if cpu.power is PowerState.ON]
        if not waiting:
            return
        numbers = ", ".join(str(cpu.index) for cpu in waiting[:8])
        more = f" and {len(waiting) - 8} more" if len(waiting) > 8 else ""
        first = waiting[0]
        report = self.forensics.report(
            first, first.context.reg_read(UC_ARM64_REG_PC) - 4,
            f"deadlock: every powered-on CPU ({numbers}{more}) waits in wfi and the machine "
            "has no interrupt to wake one")  # fmt: skip
        raise GuestFault(report.message(), report)

    def _watchdog_fired(self, cpu: VCpu, start: int, quiet: int, watchdog: int) -> None:
        self._follow(self.forensics.report(
            cpu, self.uc.reg_read(UC_ARM64_REG_PC),
            f"spinning: {quiet:,} instructions without taking an exception "
            f"(watchdog {watchdog:,})"))  # fmt: skip
        self._raise_stop(cpu, start)

    def _exceptions_taken(self, cpu: VCpu) -> int:
        """Exceptions so far: the CPU's own (Python), every svc entered in C and
        every firmware call; only ``cpu`` runs while this is compared."""
        return cpu.exceptions + self.accounting.state.svc_entries + self.firmware.calls

    def _raise_stop(self, cpu: VCpu, start: int) -> None:
        report, self.turn.stop = self.turn.stop, None
        self.total_instructions += self.accounting.instructions(cpu.index) - start
        self.save_current()
        raise GuestFault(report.message(), report)

    # ----------------------------------------------------------- exceptions
    def _on_interrupt(self, uc: Uc, intno: int, _user: object) -> None:
        """UC_HOOK_INTR when the C hooks are not compiled in."""
        self._handle_interrupt(self.current, intno)

    def _handle_interrupt(self, cpu: VCpu, intno: int) -> None:
        if intno == EXCP_SMC:
            self.exceptions.progress(cpu.index)  # a firmware call is progress
            self._follow(self.firmware.call(cpu))
        else:
            self._follow(self.exceptions.interrupt(cpu, intno))

    def _follow(self, outcome: FaultReport | CallEnd | None) -> None:
        """Act on how a handler ended: a FaultReport ends the run, a power-off
        the quantum; either stops the engine if it is still running."""
        if outcome is None or outcome is CallEnd.RETURNED:
            return
        if outcome is CallEnd.POWERED_OFF:
            self.turn.ended = True
        else:
            self.turn.stop = outcome
        self.uc.emu_stop()

    def fault_report(
        self, cpu: VCpu, pc: int, what: str, esr: int | None = None, far: int | None = None
    ) -> FaultReport:
        """A report on ``cpu`` at ``pc``, with the blocks it ran last."""
        return self.forensics.report(cpu, pc, what, esr, far)


__all__ = ["DEFAULT_QUANTUM", "DEFAULT_WATCHDOG", "Debugger", "FaultReport", "Machine", "RunResult", "StopReason"]
