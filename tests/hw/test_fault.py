"""ESR_EL1 syndromes: hand-assembled values for aborts of every kind and level, SVC,
BRK and undefined instructions, decode_esr text, and ESR/FAR of real walk faults."""

from __future__ import annotations

import re

import pytest

from emu.errors import ConfigError
from emu.hw.fault import (
    abort_syndrome,
    decode_esr,
    esr_for_abort,
    esr_for_brk,
    esr_for_svc,
    esr_for_undefined,
    fault_from_status_code,
    fault_status_code,
)
from emu.hw.pagetable import (
    Access,
    FaultKind,
    Geometry,
    fault,
    leaf_descriptor,
    make_tcr,
    make_ttbr,
    table_descriptor,
    walk,
)
from emu.kernel.pgtable_prot import PAGE_KERNEL_ROX

T, AF, P, AS, EA = (FaultKind.TRANSLATION, FaultKind.ACCESS_FLAG, FaultKind.PERMISSION,
                    FaultKind.ADDRESS_SIZE, FaultKind.WALK_EXTERNAL_ABORT)

# (kind, level, access, from lower EL) -> ESR; EC in 31:26, IL bit 25, WnR bit 6, FSC 5:0.
HAND = [
    (T, 3, Access.WRITE, False, 0x9600_0047),  # EC 0x25: the classic kernel oops value
    (T, 3, Access.READ, False, 0x9600_0007),
    (T, 0, Access.READ, True, 0x9200_0004),  # EC 0x24
    (AF, 2, Access.READ, False, 0x9600_000A),
    (P, 3, Access.WRITE, True, 0x9200_004F),
    (AS, 0, Access.READ, False, 0x9600_0000),
    (EA, 1, Access.WRITE, False, 0x9600_0055),
    (P, 3, Access.FETCH, False, 0x8600_000F),  # EC 0x21, no WnR
    (T, 2, Access.FETCH, True, 0x8200_0006),  # EC 0x20
    (EA, 3, Access.FETCH, True, 0x8200_0017),
]


@pytest.mark.parametrize(("kind", "level", "access", "lower", "esr"), HAND)
def test_abort_syndromes_by_hand(kind, level, access, lower, esr) -> None:
    assert esr_for_abort(fault(kind, level), access, lower) == esr


@pytest.mark.parametrize("kind", list(FaultKind))
@pytest.mark.parametrize("level", range(4))
@pytest.mark.parametrize("access", list(Access))
@pytest.mark.parametrize("lower", [False, True])
def test_every_fault_round_trips_through_the_syndrome(kind, level, access, lower) -> None:
    flt = fault(kind, level)
    esr = esr_for_abort(flt, access, lower)
    assert esr >> 25 & 1 == 1
    assert fault_from_status_code(esr & 0x3F) == flt == fault_from_status_code(
        fault_status_code(flt))
    text = decode_esr(esr)
    kind_text = {T: "translation fault", AF: "access flag fault", P: "permission fault",
                 AS: "address size fault",
                 EA: "synchronous external abort on translation table walk"}[kind]
    origin = "lower EL" if lower else "same EL"
    if access == Access.FETCH:
        assert text == f"instruction abort ({origin}), {kind_text} level {level}"
    else:
        rw = "write" if access == Access.WRITE else "read"
        assert text == f"data abort ({origin}), {kind_text} level {level}, {rw}"


def test_other_syndromes() -> None:
    assert esr_for_svc(0) == 0x5600_0000
    assert esr_for_svc(0x123) == 0x5600_0123
    assert esr_for_brk(0x800) == 0xF200_0800
    assert esr_for_undefined() == 0x0200_0000
    assert decode_esr(0x5600_0123) == "svc #0x123"
    assert decode_esr(0xF200_0800) == "brk #0x800"
    assert decode_esr(0x0200_0000) == "undefined instruction"
    assert decode_esr(0x9600_0021) == "data abort (same EL), alignment fault, read"
    assert decode_esr(0x9600_0030) == "data abort (same EL), fault status 0x30, read"
    assert re.fullmatch(r"exception class 0x07, ISS 0x1", decode_esr(0x1E00_0001))
    assert fault_from_status_code(0x21) is None
    with pytest.raises(ConfigError):
        esr_for_svc(0x10000)
    with pytest.raises(ConfigError):
        fault(FaultKind.PERMISSION, 4)


def test_esr_and_far_of_real_walk_faults() -> None:
    g = Geometry(4096, 39)
    mem: dict[int, int] = {}
    root, l2, l3 = 0x4000_0000, 0x4000_1000, 0x4000_2000
    va = g.upper_base + 0x4020_3000 + 0x44  # L1 1, L2 1, L3 3
    mem[root + 8] = table_descriptor(l2)
    mem[l2 + 8] = table_descriptor(l3)
    mem[l3 + 24] = leaf_descriptor(g, 3, 0x8000_0000, PAGE_KERNEL_ROX)

    def read(pa: int) -> int:
        if not 0x4000_0000 <= pa < 0x4001_0000:
            raise KeyError(pa)
        return mem.get(pa, 0)

    tcr, ttbr1 = make_tcr(g), make_ttbr(root)
    r = walk(read, tcr, 0, ttbr1, va, Access.WRITE, 1)
    assert abort_syndrome(r.fault, va, Access.WRITE, False) == (0x9600_004F, va)
    r = walk(read, tcr, 0, ttbr1, va, Access.FETCH, 0)  # kernel text from EL0
    assert abort_syndrome(r.fault, va, Access.FETCH, True) == (0x8200_000F, va)
    r = walk(read, tcr, 0, ttbr1, va + 0x1000, Access.READ, 1)
    assert abort_syndrome(r.fault, va + 0x1000, Access.READ, False) == (0x9600_0007,
                                                                        va + 0x1000)
    mem[l2 + 8] = table_descriptor(0x7000_0000)  # next table outside RAM
    r = walk(read, tcr, 0, ttbr1, va, Access.READ, 1)
    assert esr_for_abort(r.fault, Access.READ, False) == 0x9600_0017
    assert decode_esr(0x9600_0017) == (
        "data abort (same EL), synchronous external abort on translation table walk "
        "level 3, read")
