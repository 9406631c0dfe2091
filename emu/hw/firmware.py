"""The machine's firmware: PSCI (CPU_ON, CPU_OFF, SYSTEM_OFF) and ktext-emu's
SiP service (panic, console, measurement window), reached by the guest with ``smc #0`` under the
SMC Calling Convention (function ID in x0, arguments x1-x3, result in x0).

PSCI is how Linux brings secondaries up (``psci_cpu_on``) and down; the SiP
calls are the emulator's equivalent of a panic console and a UART.
``Firmware.call`` serves one call and tells the machine how it ended: back
to the caller, with the CPU (or every CPU) powered off, or with a panic's
FaultReport.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol

from unicorn import Uc
from unicorn.arm64_const import (
    UC_ARM64_REG_PC,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X1,
    UC_ARM64_REG_X2,
    UC_ARM64_REG_X3,
    UC_ARM64_REG_X4,
)

from emu.hw.cpu import PowerState, VCpu
from emu.hw.forensics import FaultReport, Forensics
from emu.hw.mmu import Mmu
from emu.hw.physmem import PhysAddrError, PhysMem

PSCI_VERSION = 0x84000000
PSCI_CPU_OFF = 0x84000002
PSCI_CPU_ON_64 = 0xC4000003
PSCI_SYSTEM_OFF = 0x84000008
SIP_PANIC = 0xC2000001
SIP_PUTS = 0xC2000002
SIP_WINDOW = 0xC2000003  # the calling CPU's measurement window opens (sys_window)

PSCI_RET_SUCCESS = 0
PSCI_RET_NOT_SUPPORTED = -1
PSCI_RET_INVALID_PARAMS = -2
PSCI_RET_ALREADY_ON = -4
SMCCC_RET_NOT_SUPPORTED = -1

PSCI_VERSION_1_1 = 0x10001
MAX_CONSOLE_WRITE = 4096
# Host-work bounds a guest's instruction count does not give: every smc
# leaves the engine for Python (about 20-40 us of host time, the cost of a
# few hundred to a thousand guest instructions), so a loop of firmware calls
# is bounded by count.  A shipped workload makes 2 calls per CPU (CPU_ON,
# CPU_OFF) plus its console writes; 4096 CPUs use 8,192.
DEFAULT_MAX_FIRMWARE_CALLS = 1_000_000
# Console text kept for the report (and its JSON); the rest is counted, not kept.
DEFAULT_MAX_CONSOLE_BYTES = 1 << 20
# Registers a CPU can be started with (PSCI CPU_ON, or the boot loader for CPU 0)
RegisterSet = dict[object, int]


def to_u64(value: int) -> int:
    return value & ((1 << 64) - 1)


class CallEnd(enum.Enum):
    """How a firmware call ended, when it did not end in a panic."""

    RETURNED = "returned"  # result in x0; the caller carries on
    POWERED_OFF = "powered off"  # CPU_OFF or SYSTEM_OFF: the caller's turn is over


class PowerControl(Protocol):
    """What PSCI needs of the machine: its CPUs and their power switches."""

    cpus: Sequence[VCpu]

    def power_on(self, cpu: int, registers: RegisterSet) -> None: ...

    def power_off(self, cpu: int) -> None: ...


class Firmware:
    """PSCI and the SiP service for the CPU on the engine."""

    def __init__(self, uc: Uc, power: PowerControl, mmu: Mmu, physmem: PhysMem,
                 forensics: Forensics) -> None:  # fmt: skip
        self.uc = uc
        self.power = power
        self.mmu = mmu
        self.physmem = physmem
        self.forensics = forensics
        self.console: list[str] = []
        self.console_cpus: list[int] = []  # the CPU of each console write, in order
        self.calls = 0  # every smc served (the watchdog counts them as progress)
        self.max_calls = DEFAULT_MAX_FIRMWARE_CALLS  # 0: no limit
        self.max_console_bytes = DEFAULT_MAX_CONSOLE_BYTES
        self.console_bytes = 0  # bytes kept in ``console``
        self.console_dropped_bytes = 0  # written past max_console_bytes
        # Told of the CPU whose measurement window opens (SIP_WINDOW), in order:
        # the machine puts the accounting's snapshot first.
        self.window_listeners: list[Callable[[VCpu], None]] = []

    def call(self, cpu: VCpu) -> CallEnd | FaultReport:
        """Serve the ``smc`` ``cpu`` just executed (PC is past it)."""
        self.calls += 1
        uc = self.uc
        function = uc.reg_read(UC_ARM64_REG_X0) & 0xFFFFFFFF
        if self.max_calls and self.calls > self.max_calls:
            return self.forensics.report(
                cpu, uc.reg_read(UC_ARM64_REG_PC) - 4,
                f"firmware call limit: {self.max_calls:,} smc calls served (the last "
                f"function {function:#x}); raise it with --max-firmware-calls")  # fmt: skip
        x1, x2, x3 = (uc.reg_read(r) for r in (UC_ARM64_REG_X1, UC_ARM64_REG_X2, UC_ARM64_REG_X3))
        result: int
        if function == PSCI_VERSION:
            result = PSCI_VERSION_1_1
        elif function == PSCI_CPU_ON_64:
            result = self._cpu_on(x1, x2, x3)
        elif function == PSCI_CPU_OFF:
            cpu.exit_status = x1
            self.power.power_off(cpu.index)
            return CallEnd.POWERED_OFF
        elif function == PSCI_SYSTEM_OFF:
            for other in self.power.cpus:
                self.power.power_off(other.index)
            return CallEnd.POWERED_OFF
        elif function == SIP_PANIC:
            return self.forensics.panic_report(cpu, esr=x1, far=x2, elr=x3,
                                               spsr=uc.reg_read(UC_ARM64_REG_X4))
        elif function == SIP_PUTS:
            result = self._console_write(cpu.index, x1, x2)
        elif function == SIP_WINDOW:
            # Set-up and warm-up are done: what this CPU runs from here on is measured.
            for listener in self.window_listeners:
                listener(cpu)
            result = 0
        else:
            result = SMCCC_RET_NOT_SUPPORTED
        uc.reg_write(UC_ARM64_REG_X0, to_u64(result))
        return CallEnd.RETURNED

    def _cpu_on(self, target: int, entry: int, context_id: int) -> int:
        cpus = self.power.cpus
        if not 0 <= target < len(cpus) or entry & 3:
            return PSCI_RET_INVALID_PARAMS
        if cpus[target].power is PowerState.ON:
            return PSCI_RET_ALREADY_ON
        self.power.power_on(target, {UC_ARM64_REG_PC: entry, UC_ARM64_REG_X0: context_id})
        return PSCI_RET_SUCCESS

    def _console_write(self, cpu: int, va: int, length: int) -> int:
        """Append guest bytes [va, va + length) to the console (at most
        MAX_CONSOLE_WRITE, translated a page at a time); past
        ``max_console_bytes`` they are counted in ``console_dropped_bytes``."""
        length = min(length, MAX_CONSOLE_WRITE)
        data = bytearray()
        offset = 0
        while offset < length:
            pa = self.mmu.translate(self.uc, va + offset)
            if pa is None:
                return PSCI_RET_INVALID_PARAMS
            # A translation holds to the end of the smallest page (4 KiB).
            chunk = min(length - offset, 0x1000 - ((va + offset) & 0xFFF))
            try:
                data += self.physmem.read(pa, chunk)
            except PhysAddrError:  # mapped, but not to RAM
                return PSCI_RET_INVALID_PARAMS
            offset += chunk
        room = max(0, self.max_console_bytes - self.console_bytes)
        if len(data) > room:
            self.console_dropped_bytes += len(data) - room
            data = data[:room]
        if data:
            self.console.append(data.decode("utf-8", "replace"))
            self.console_cpus.append(cpu)
            self.console_bytes += len(data)
        return length
