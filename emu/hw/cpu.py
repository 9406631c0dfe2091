"""One virtual CPU: its node, power state, saved Unicorn context and TLB, and
the architectural exception entry that Unicorn leaves to the emulator.

Unicorn runs every CPU on one engine; a CPU not running is a saved context.
Unicorn reports ``svc``, ``brk`` and undefined instructions through its
interrupt hook and faults through a failed TLB fill, but never vectors
through VBAR_EL1: ``take_exception`` does what the PE would (ESR, FAR, ELR,
SPSR, SP banking, PSTATE, PC).  ``eret`` is Unicorn's own and works.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from unicorn import Uc
from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0,
    UC_ARM64_REG_SP_EL1,
    UC_ARM64_REG_VBAR_EL1,
)

from emu.hw.tlb import Tlb, TlbEntry  # noqa: F401  (TlbEntry lived here)

# System registers without a Unicorn register id: (op0, op1, CRn, CRm, op2)
SPSR_EL1 = (3, 0, 4, 0, 0)
SCTLR_EL1 = (3, 0, 1, 0, 0)
TCR_EL1 = (3, 0, 2, 0, 2)

SCTLR_M = 1
PSTATE_SP = 1  # PSTATE.SP: SP_ELx selected
PSTATE_EL1H_MASKED = 0x3C5  # D, A, I, F masked; EL1h
VECTOR_CURRENT_SP0 = 0x000
VECTOR_CURRENT_SPX = 0x200
VECTOR_LOWER_A64 = 0x400
VECTOR_TABLE_SIZE = 0x800


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



class NoVectors(Exception):
    """The CPU took an exception with no vector table to go to."""


def take_exception(uc: Uc, esr: int, return_address: int, far: int | None = None) -> int:
    """Enter the EL1 synchronous vector as the PE does; returns the vector address.

    Raises NoVectors when VBAR_EL1 is still zero (the guest never set one).
    """
    vbar = uc.reg_read(UC_ARM64_REG_VBAR_EL1)
    if vbar == 0:
        raise NoVectors
    pstate = uc.reg_read(UC_ARM64_REG_PSTATE)
    el = (pstate >> 2) & 3
    if el == 0:
        offset = VECTOR_LOWER_A64
    else:
        offset = VECTOR_CURRENT_SPX if pstate & PSTATE_SP else VECTOR_CURRENT_SP0
    # SP banking is ours too: QEMU swaps stack pointers only in its own
    # exception paths, which Unicorn skips.
    if el == 0 or not pstate & PSTATE_SP:
        uc.reg_write(UC_ARM64_REG_SP_EL0, uc.reg_read(UC_ARM64_REG_SP))
        uc.reg_write(UC_ARM64_REG_SP, uc.reg_read(UC_ARM64_REG_SP_EL1))
    uc.reg_write(UC_ARM64_REG_ESR_EL1, esr)
    uc.reg_write(UC_ARM64_REG_ELR_EL1, return_address)
    if far is not None:
        uc.reg_write(UC_ARM64_REG_FAR_EL1, far)
    uc.reg_write(UC_ARM64_REG_PSTATE, PSTATE_EL1H_MASKED)
    # A system-register write makes Unicorn rebuild its cached translation
    # flags (current EL); PSTATE alone does not.
    write_sysreg(uc, SPSR_EL1, pstate)
    vector = vbar + offset
    uc.reg_write(UC_ARM64_REG_PC, vector)
    return vector


