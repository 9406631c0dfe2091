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
    # Registers the CPU starts with when next scheduled after power-on (keys:
    # Unicorn register ids, or sysreg tuples for cpr_write).
    entry: dict[object, int] = field(default_factory=dict)


def read_sysreg(uc: Uc, reg: tuple[int, int, int, int, int]) -> int:
    op0, op1, crn, crm, op2 = reg
    return uc.cpr_read(op0, op1, crn, crm, op2)


def write_sysreg(uc: Uc, reg: tuple[int, int, int, int, int], value: int) -> None:
    op0, op1, crn, crm, op2 = reg
    uc.cpr_write(op0, op1, crn, crm, op2, value)
