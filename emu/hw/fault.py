"""Exception syndromes: the ESR_EL1 values an AArch64 CPU reports, and their decoding.

Owns the EC/IL/ISS encodings for instruction and data aborts (from a walk's Fault),
SVC, BRK and undefined instructions, plus decode_esr() which turns any ESR value
into the one-line text used in reports. FAR_EL1 for an abort is simply the faulting
VA (the PC for an instruction abort); abort_syndrome() returns both.

Not modelled: ISV/SAS/SRT instruction syndromes (ISV=0, as allowed for stage-1
aborts taken to EL1), S1PTW, CM, EA and FnV (all 0: FAR is always valid).
"""

from __future__ import annotations

from emu.errors import ConfigError
from emu.hw.pagetable import Access, Fault, FaultKind, fault

EC_SHIFT = 26
ESR_IL = 1 << 25
ISS_MASK = (1 << 25) - 1
ISS_WNR = 1 << 6

EC_UNKNOWN = 0x00
EC_ILLEGAL_STATE = 0x0E  # PSTATE.IL set: after an illegal exception return
EC_SVC64 = 0x15
EC_IABT_LOW = 0x20
EC_IABT_CUR = 0x21
EC_PC_ALIGN = 0x22
EC_DABT_LOW = 0x24
EC_DABT_CUR = 0x25
EC_SP_ALIGN = 0x26
EC_BRK64 = 0x3C

# Fault status codes (IFSC/DFSC) without the level in bits 1:0.
FSC_ADDRESS_SIZE = 0b000000
FSC_TRANSLATION = 0b000100
FSC_ACCESS_FLAG = 0b001000
FSC_PERMISSION = 0b001100
FSC_WALK_EXTERNAL_ABORT = 0b010100
FSC_ALIGNMENT = 0b100001

_FSC_OF_KIND = {
    FaultKind.ADDRESS_SIZE: FSC_ADDRESS_SIZE,
    FaultKind.TRANSLATION: FSC_TRANSLATION,
    FaultKind.ACCESS_FLAG: FSC_ACCESS_FLAG,
    FaultKind.PERMISSION: FSC_PERMISSION,
    FaultKind.WALK_EXTERNAL_ABORT: FSC_WALK_EXTERNAL_ABORT,
}
_KIND_OF_FSC = {v: k for k, v in _FSC_OF_KIND.items()}

_EC_NAMES = {
    EC_UNKNOWN: "undefined instruction",
    EC_ILLEGAL_STATE: "illegal execution state",
    EC_SVC64: "svc",
    EC_IABT_LOW: "instruction abort (lower EL)",
    EC_IABT_CUR: "instruction abort (same EL)",
    EC_PC_ALIGN: "PC alignment fault",
    EC_DABT_LOW: "data abort (lower EL)",
    EC_DABT_CUR: "data abort (same EL)",
    EC_SP_ALIGN: "SP alignment fault",
    EC_BRK64: "brk",
}


def fault_status_code(flt: Fault) -> int:
    """The 6-bit IFSC/DFSC of a walk fault: class bits 5:2, level bits 1:0."""
    return _FSC_OF_KIND[flt.kind] | flt.level


def fault_from_status_code(fsc: int) -> Fault | None:
    """The walk Fault a 6-bit IFSC/DFSC stands for, or None for any other status."""
    kind = _KIND_OF_FSC.get(fsc & ~3)
    return None if kind is None else fault(kind, fsc & 3)


def esr_for_abort(flt: Fault, access: Access, from_lower_el: bool) -> int:
    """ESR_EL1 for an abort taken to EL1: EC 0x20/0x21 for fetches, 0x24/0x25 otherwise."""
    if access == Access.FETCH:
        ec = EC_IABT_LOW if from_lower_el else EC_IABT_CUR
        iss = fault_status_code(flt)
    else:
        ec = EC_DABT_LOW if from_lower_el else EC_DABT_CUR
        iss = fault_status_code(flt) | (ISS_WNR if access == Access.WRITE else 0)
    return ec << EC_SHIFT | ESR_IL | iss


def abort_syndrome(flt: Fault, va: int, access: Access, from_lower_el: bool) -> tuple[int, int]:
    """(ESR_EL1, FAR_EL1) for an abort on ``va``."""
    return esr_for_abort(flt, access, from_lower_el), va & ((1 << 64) - 1)


def esr_for_svc(imm16: int) -> int:
    """ESR_EL1 for ``svc #imm16`` from AArch64."""
    _check_imm16(imm16, "svc")
    return EC_SVC64 << EC_SHIFT | ESR_IL | imm16


def esr_for_brk(imm16: int) -> int:
    """ESR_EL1 for ``brk #imm16`` (Linux BUG() is brk #0x800)."""
    _check_imm16(imm16, "brk")
    return EC_BRK64 << EC_SHIFT | ESR_IL | imm16


def esr_for_undefined() -> int:
    """ESR_EL1 for an undefined or unallocated instruction (EC 0x00, IL=1, ISS 0)."""
    return EC_UNKNOWN << EC_SHIFT | ESR_IL


def esr_for_illegal_state() -> int:
    """ESR_EL1 for the Illegal State exception (EC 0x0E, IL=1, ISS 0)."""
    return EC_ILLEGAL_STATE << EC_SHIFT | ESR_IL


def esr_class(esr: int) -> int:
    return (esr >> EC_SHIFT) & 0x3F


def decode_esr(esr: int) -> str:
    """One line describing an ESR value, e.g.
    "data abort (same EL), translation fault level 3, write"."""
    ec = esr_class(esr)
    iss = esr & ISS_MASK
    name = _EC_NAMES.get(ec)
    if name is None:
        return f"exception class {ec:#04x}, ISS {iss:#x}"
    if ec in (EC_SVC64, EC_BRK64):
        return f"{name} #{iss & 0xFFFF:#x}"
    if ec in (EC_IABT_LOW, EC_IABT_CUR, EC_DABT_LOW, EC_DABT_CUR):
        fsc = iss & 0x3F
        flt = fault_from_status_code(fsc)
        if flt is not None:
            status = str(flt)
        elif fsc == FSC_ALIGNMENT:
            status = "alignment fault"
        else:
            status = f"fault status {fsc:#04x}"
        if ec in (EC_DABT_LOW, EC_DABT_CUR):
            return f"{name}, {status}, {'write' if iss & ISS_WNR else 'read'}"
        return f"{name}, {status}"
    return name


def _check_imm16(imm16: int, insn: str) -> None:
    if not 0 <= imm16 <= 0xFFFF:
        raise ConfigError(f"{insn} immediate {imm16} is not a 16-bit value")
