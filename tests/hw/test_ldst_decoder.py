"""The instruction hook's load/store decoder (emu/hw/ldst.h) against Unicorn's
own memory hooks.

Fast mode counts data accesses by decoding each instruction instead of
hooking memory; these tests hold that decoding to what UC_HOOK_MEM_READ and
UC_HOOK_MEM_WRITE report when the same instruction runs on a bare Unicorn:
the same accesses, of the same kind, at the same addresses, in order, for
any word of the load/store encoding space and any register values.
"""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_ARM64, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_ARM, Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_SP, UC_ARM64_REG_X0, UC_ARM64_REG_X29, UC_ARM64_REG_X30

from emu.blob.asm import assemble_source
from emu.hw.accounting import NO_MONITOR

accel = pytest.importorskip("emu.hw._accel", reason="the C extension is not built")

UC_MEM_WRITE = 17
MEMORY = 0x4000000  # 64 MiB of flat memory, no MMU
CODE = 0x2000000  # in the middle, so literal loads (+-1 MiB) stay inside
MAX_ACCESSES = 128

_predict = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64),
    ctypes.c_uint64, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8), ctypes.c_int,
)(accel.addresses()["acct_predict"])  # fmt: skip

Access = tuple[bool, int]  # (is_write, address)


def predict(insn: int, pc: int, regs: list[int], monitor: int = NO_MONITOR,
            status: int = 0) -> list[Access]:
    """What the decoder says ``insn`` at ``pc`` accesses (regs: x0..x30, sp)."""
    values = (ctypes.c_uint64 * 32)(*regs)
    addresses = (ctypes.c_uint64 * MAX_ACCESSES)()
    writes = (ctypes.c_uint8 * MAX_ACCESSES)()
    count = _predict(insn, pc, values, monitor, status, addresses, writes, MAX_ACCESSES)
    assert count <= MAX_ACCESSES
    return [(bool(writes[i]), addresses[i]) for i in range(count)]


class BareUnicorn:
    """One engine, flat memory, memory hooks recording every access."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        self.uc.mem_map(0, MEMORY)
        self.accesses: list[Access] = []
        self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._hook)

    def _hook(self, _uc: Uc, access: int, address: int, _size: int, _value: int, _user: object) -> None:
        self.accesses.append((access == UC_MEM_WRITE, address))

    def set_regs(self, regs: list[int]) -> None:
        for n in range(29):
            self.uc.reg_write(UC_ARM64_REG_X0 + n, regs[n])
        self.uc.reg_write(UC_ARM64_REG_X29, regs[29])
        self.uc.reg_write(UC_ARM64_REG_X30, regs[30])
        self.uc.reg_write(UC_ARM64_REG_SP, regs[31])

    def regs(self) -> list[int]:
        values = [self.uc.reg_read(UC_ARM64_REG_X0 + n) for n in range(29)]
        return values + [self.uc.reg_read(r) for r in (UC_ARM64_REG_X29, UC_ARM64_REG_X30, UC_ARM64_REG_SP)]

    def step(self, insn: int, pc: int = CODE) -> list[Access] | None:
        """Run ``insn`` alone; its accesses, or None if it did not complete."""
        self.uc.mem_write(pc, insn.to_bytes(4, "little"))
        self.accesses = []
        try:
            self.uc.emu_start(pc, pc + 4, 0, 1)
        except UcError:
            return None
        return self.accesses


@pytest.fixture(scope="module")
def bare() -> BareUnicorn:
    return BareUnicorn()


def _word(source: str) -> int:
    return int.from_bytes(assemble_source(source, "<test>").sections[".text"].data[:4], "little")


# Register values: addresses well inside memory, small numbers (index
# registers, post-index amounts) and negative ones.
_reg = st.one_of(
    st.integers(0x800000, 0x1800000).map(lambda v: v & ~0xF),
    st.integers(0, 0x1000),
    st.integers(-0x1000, -1).map(lambda v: v & (2**64 - 1)),
)
_regs = st.lists(_reg, min_size=32, max_size=32)
# Any word of the load/store group (op0 = x1x0).
_ldst_word = st.integers(0, 2**32 - 1).map(lambda w: (w & ~0x0A000000) | 0x08000000)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(insn=_ldst_word, regs=_regs)
@example(insn=_word("ldp q0, q1, [x1, #-32]!"), regs=[0x1000000] * 32)
@example(insn=_word("ld4 {v0.4s-v3.4s}, [x1], x2"), regs=[0x1000000] * 32)
@example(insn=_word("ldr w0, [x1, w2, sxtw #2]"), regs=[0x1000000, 0x1000000, 0xFFFFFFF0] + [0] * 29)
def test_decoder_matches_unicorn_hooks(bare, insn, regs):
    bare.set_regs(regs)
    seen = bare.step(insn)
    if seen is None:
        return  # undefined, or faulted: it never retires, so nothing is charged
    assert predict(insn, CODE, regs) == seen, f"{insn:#010x}"


@pytest.mark.parametrize(
    "source",
    [
        "ldr x0, [x1]", "ldrb w0, [x1, #4095]", "ldursh x0, [x1, #-256]", "str x0, [x1, #8]!",
        "strh w0, [x1], #-2", "ldr x0, [x1, x2, lsl #3]", "ldrsw x0, [x1, w2, uxtw #2]",
        "ldp x0, x1, [sp, #-16]!", "stp x29, x30, [sp], #16", "ldpsw x0, x1, [x1, #8]",
        "stnp d0, d1, [x1, #16]", "ldr q0, [x1, #32]", "str s0, [x1, x2]", "ldr x0, .",
        "ldr q0, .", "ldrsw x0, .", "prfm pldl1keep, [x1]", "prfm pldl1keep, .",
        "ld1 {v0.16b-v3.16b}, [x1], #64", "st2 {v0.8h, v1.8h}, [x1]", "ld3 {v0.b, v1.b, v2.b}[5], [x1]",
        "ld4r {v0.2d-v3.2d}, [x1], x2", "st1 {v0.s}[1], [x1], #4", "ldar x0, [x1]", "stlr w0, [x1]",
        "ldaxr w0, [x1]", "ldxp x0, x2, [x1]", "ldxp w0, w2, [x1]", "ldtr x0, [x1, #8]", "sttrb w0, [x1]",
    ],
)  # fmt: skip
def test_decoder_matches_unicorn_on_every_form(bare, source):
    insn = _word(source)
    regs = [0x1000000 + 0x100 * n for n in range(32)]
    regs[2] = 0x40
    bare.set_regs(regs)
    seen = bare.step(insn)
    assert seen is not None, source
    assert predict(insn, CODE, regs) == seen, source


def test_store_exclusive_accesses_follow_the_monitor(bare):
    regs = [0x1000000] * 32
    load, store = _word("ldxr x0, [x1]"), _word("stxr w2, x3, [x1]")
    bare.set_regs(regs)
    assert bare.step(load) == predict(load, CODE, regs) == [(False, 0x1000000)]
    # The monitor holds the address: a read and a write, whatever the value.
    assert bare.step(store) == predict(store, CODE, regs, monitor=0x1000000) \
        == [(False, 0x1000000), (True, 0x1000000)]
    # The store cleared it: another makes no access at all.
    assert bare.step(store) == predict(store, CODE, regs) == []
    clrex = _word("clrex")
    bare.step(load)
    bare.step(clrex)
    assert predict(clrex, CODE, regs, monitor=0x1000000) == []
    assert bare.step(store) == []


@pytest.mark.parametrize("changed", [False, True])
def test_store_exclusive_pair_writes_only_when_it_succeeds(bare, changed):
    regs = [0x1000000] * 32
    load, store = _word("ldxp x0, x5, [x1]"), _word("stxp w2, x3, x4, [x1]")
    bare.set_regs(regs)
    bare.uc.mem_write(0x1000000, bytes(16))
    assert bare.step(load) == [(False, 0x1000000), (False, 0x1000008)]
    if changed:
        bare.uc.mem_write(0x1000008, b"\x01")
    seen = bare.step(store)
    status = bare.regs()[2] & 0xFFFFFFFF
    assert status == int(changed)
    assert seen == predict(store, CODE, regs, monitor=0x1000000, status=status)
    assert len(seen) == (2 if changed else 4)


def test_dc_zva_is_one_write_of_its_block():
    regs = [0] * 32
    regs[1] = 0x1000025
    assert predict(_word("dc zva, x1"), CODE, regs) == [(True, 0x1000000)]
    assert predict(_word("dc zva, xzr"), CODE, [0x1000040] * 32) == [(True, 0)]


@pytest.mark.parametrize("source", ["add x0, x1, x2", "b .", "ret", "svc #0", "nop", "mrs x0, tpidr_el1"])
def test_other_instructions_make_no_access(source):
    assert predict(_word(source), CODE, [0x1000000] * 32) == []
