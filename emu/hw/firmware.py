"""The machine's firmware: PSCI (CPU_ON, CPU_OFF, SYSTEM_OFF) and ktext-emu's
SiP service (panic, console), reached by the guest with ``smc #0`` under the
SMC Calling Convention (function ID in x0, arguments x1-x3, result in x0).

PSCI is how Linux brings secondaries up (``psci_cpu_on``) and down; the SiP
calls are the emulator's equivalent of a panic console and a UART.
"""

from __future__ import annotations

PSCI_VERSION = 0x84000000
PSCI_CPU_OFF = 0x84000002
PSCI_CPU_ON_64 = 0xC4000003
PSCI_SYSTEM_OFF = 0x84000008
SIP_PANIC = 0xC2000001
SIP_PUTS = 0xC2000002

PSCI_RET_SUCCESS = 0
PSCI_RET_NOT_SUPPORTED = -1
PSCI_RET_INVALID_PARAMS = -2
PSCI_RET_ALREADY_ON = -4
SMCCC_RET_NOT_SUPPORTED = -1

PSCI_VERSION_1_1 = 0x10001
MAX_CONSOLE_WRITE = 4096



def to_u64(value: int) -> int:
    return value & ((1 << 64) - 1)
