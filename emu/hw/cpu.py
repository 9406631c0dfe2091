"""One virtual CPU: its node, power state, saved Unicorn context and TLB, and
the system registers Unicorn has no register id for (read_sysreg/write_sysreg).

Unicorn runs every CPU on one engine; a CPU not running is a saved context.
The exception entry Unicorn leaves to the emulator is in ``emu/hw/exception.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from unicorn import Uc

from emu.hw.tlb import Tlb, TlbEntry  # noqa: F401  (TlbEntry lived here)

# System registers without a Unicorn register id: (op0, op1, CRn, CRm, op2)
SPSR_EL1 = (3, 0, 4, 0, 0)
SCTLR_EL1 = (3, 0, 1, 0, 0)
TCR_EL1 = (3, 0, 2, 0, 2)

# EL3/EL2 registers firmware sets before entering the kernel at EL1.
SCR_EL3 = (3, 6, 1, 1, 0)
HCR_EL2 = (3, 4, 1, 1, 0)
SCR_EL3_NS = 1 << 0  # EL1/EL0 are Non-secure
SCR_EL3_RW = 1 << 10  # the next lower level (EL2, and so EL1) is AArch64
HCR_EL2_RW = 1 << 31  # EL1 is AArch64

SCTLR_M = 1
PSTATE_EL1H_MASKED = 0x3C5  # D, A, I, F masked; EL1h


class PowerState(enum.Enum):
    OFF = "off"
    ON = "on"


@dataclass
class VCpu:
    """A CPU of the machine.  ``tlb`` is its private TLB (emu/hw/tlb.py): valid
    translations stay until the CPU (or a broadcast) invalidates them, as on hardware."""

    index: int
    node: int
    power: PowerState = PowerState.OFF
    context: object | None = None
    tlb: Tlb = field(default_factory=Tlb)
    exceptions: int = 0
    tlbi_count: int = 0
    exit_status: int | None = None  # what the task passed to exit() before CPU_OFF
    # In wfi with nothing to wake it: the machine has no interrupt source
    # (no GIC, no timer interrupt), so the CPU is never scheduled again.
    waiting: bool = False
    # Registers the CPU starts with when next scheduled after power-on (keys:
    # Unicorn register ids, or sysreg tuples for cpr_write).
    entry: dict[object, int] = field(default_factory=dict)


def read_sysreg(uc: Uc, reg: tuple[int, int, int, int, int]) -> int:
    op0, op1, crn, crm, op2 = reg
    return uc.cpr_read(op0, op1, crn, crm, op2)


def write_sysreg(uc: Uc, reg: tuple[int, int, int, int, int], value: int) -> None:
    op0, op1, crn, crm, op2 = reg
    uc.cpr_write(op0, op1, crn, crm, op2, value)


def set_firmware_reset_state(uc: Uc) -> None:
    """What firmware (TF-A's BL31, then a bootloader at EL2) leaves behind when
    Linux is entered at EL1: SCR_EL3.NS|RW and HCR_EL2.RW.  Unicorn's
    Cortex-A72 has EL2 and EL3 and resets both registers to 0, which makes
    QEMU treat EL1 as AArch32 wherever it asks (arm_el_is_aa64): a guest
    ``AT`` then walks the EL1&0 tables as AArch32 and reports faults for
    every TTBR1 address (platform-notes.md, UC_TLB_CPU).  Call on a CPU's
    reset state, before any guest code runs."""
    write_sysreg(uc, SCR_EL3, SCR_EL3_NS | SCR_EL3_RW)
    write_sysreg(uc, HCR_EL2, HCR_EL2_RW)
