"""Fuzz target ``ldst``: the instruction hook's load/store decoder
(emu/hw/ldst.h) against Unicorn's own memory hooks.

An input is a 4-byte instruction word followed by the values of x0..x30 and
sp (8 bytes each, missing bytes zero). The word runs alone on a bare
Unicorn (flat memory, no MMU) with UC_HOOK_MEM_READ/WRITE recording every
access; when it completes, the decoder must list the same accesses, of the
same kind, at the same addresses, in the same order. Inputs are random words
of the load/store group, random words of the whole encoding space, and seeds
of every load/store form, with register values inside memory, small or
negative.

Property: equal access lists for every instruction that completes (one that
is undefined or faults never retires, so the accounting never charges it).
DC ZVA is left out: the accounting counts it as one write of its block,
while Unicorn's hooks report up to 66 byte writes depending on its TLB.
"""

from __future__ import annotations

import ctypes
import functools
import struct

from hypothesis import strategies as st
from unicorn import UC_ARCH_ARM64, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MODE_ARM, Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_SP, UC_ARM64_REG_X0, UC_ARM64_REG_X29, UC_ARM64_REG_X30

from emu.hw.accounting import NO_MONITOR
from fuzz.harness import PropertyViolation, Target

UC_MEM_WRITE = 17
MEMORY = 0x4000000  # 64 MiB of flat memory, no MMU
CODE = 0x2000000  # in the middle, so literal loads (+-1 MiB) stay inside
MAX_ACCESSES = 128
CLREX, NOP = 0xD503305F, 0xD503201F
REGS = struct.Struct("<32Q")

Access = tuple[bool, int]  # (is_write, address)


@functools.cache
def _predictor() -> ctypes._CFuncPtr:
    from emu.hw import _accel  # type: ignore[attr-defined]

    return ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64),
        ctypes.c_uint64, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64),
        ctypes.POINTER(ctypes.c_uint8), ctypes.c_int,
    )(_accel.addresses()["acct_predict"])  # fmt: skip


def predict(insn: int, pc: int, regs: list[int], monitor: int = NO_MONITOR,
            status: int = 0) -> list[Access]:  # fmt: skip
    """What the decoder says ``insn`` at ``pc`` accesses (regs: x0..x30, sp),
    with the exclusive monitor at ``monitor`` and a store-exclusive pair's
    status register reading ``status`` afterwards."""
    values = (ctypes.c_uint64 * 32)(*regs)
    addresses = (ctypes.c_uint64 * MAX_ACCESSES)()
    writes = (ctypes.c_uint8 * MAX_ACCESSES)()
    count = _predictor()(insn, pc, values, monitor, status, addresses, writes, MAX_ACCESSES)
    if count > MAX_ACCESSES:
        raise PropertyViolation(f"{insn:#010x}: {count} accesses, more than any instruction makes")
    return [(bool(writes[i]), addresses[i]) for i in range(count)]


class BareUnicorn:
    """One engine, flat memory, memory hooks recording every access."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        self.uc.mem_map(0, MEMORY)
        self.accesses: list[Access] = []
        self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._hook)

    def _hook(self, _uc: Uc, access: int, address: int, _size: int, _value: int,
              _user: object) -> None:  # fmt: skip
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

    def step(self, insn: int, pc: int = CODE, clear_monitor: bool = True) -> list[Access] | None:
        """Run ``insn`` alone; its accesses, or None if it did not complete.

        A CLREX runs first unless ``clear_monitor`` is False, so that what an
        earlier case left in the exclusive monitor cannot decide this one.
        """
        self.uc.mem_write(pc - 4, (CLREX if clear_monitor else NOP).to_bytes(4, "little"))
        self.uc.mem_write(pc, insn.to_bytes(4, "little"))
        # A host write does not invalidate code Unicorn has translated.
        self.uc.ctl_remove_cache(pc - 4, pc + 4)
        self.accesses = []
        try:
            self.uc.emu_start(pc - 4, pc + 4, 0, 2)
        except UcError:
            return None
        return self.accesses


def is_dc_zva(insn: int) -> bool:
    return insn & 0xFFFFFFE0 == 0xD50B7420


@functools.cache
def _engine() -> BareUnicorn:
    """One engine for the process: making one costs milliseconds."""
    return BareUnicorn()


def run(data: bytes) -> str:
    engine = _engine()
    insn = int.from_bytes(data[:4].ljust(4, b"\0"), "little")
    regs = list(REGS.unpack(data[4 : 4 + REGS.size].ljust(REGS.size, b"\0")))
    if is_dc_zva(insn):
        return "dc zva"
    engine.set_regs(regs)
    seen = engine.step(insn)
    if seen is None:
        return "did not complete"
    expected = predict(insn, CODE, regs)
    if expected != seen:
        raise PropertyViolation(
            f"{insn:#010x}: the decoder says {expected[:4]}, Unicorn's hooks saw {seen[:4]}"
        )
    return f"{len(seen)} accesses"


# Register values: addresses well inside memory, small numbers (index
# registers, post-index amounts) and negative ones.
REGISTER_VALUES = st.lists(
    st.one_of(
        st.integers(0x800000, 0x1800000).map(lambda v: v & ~0xF),
        st.integers(0, 0x1000),
        st.integers(-0x1000, -1).map(lambda v: v & (2**64 - 1)),
    ),
    min_size=32,
    max_size=32,
)
# Any word of the load/store group (op0 = x1x0).
LOAD_STORE_WORDS = st.integers(0, 2**32 - 1).map(lambda w: (w & ~0x0A000000) | 0x08000000)


def _encode(insn: int, regs: list[int]) -> bytes:
    return insn.to_bytes(4, "little") + REGS.pack(*regs)


def strategy() -> st.SearchStrategy[bytes]:
    words = st.one_of(LOAD_STORE_WORDS, st.integers(0, 2**32 - 1), st.sampled_from(seed_words()))
    return st.one_of(st.builds(_encode, words, REGISTER_VALUES), st.binary(max_size=4 + REGS.size))


# One of each load/store form, for seeds and for tests/hw/test_ldst_decoder.py.
SEED_SOURCES = (
    "ldr x0, [x1]", "ldrb w0, [x1, #4095]", "ldursh x0, [x1, #-256]", "str x0, [x1, #8]!",
    "strh w0, [x1], #-2", "ldr x0, [x1, x2, lsl #3]", "ldrsw x0, [x1, w2, uxtw #2]",
    "ldp x0, x1, [sp, #-16]!", "stp x29, x30, [sp], #16", "ldpsw x0, x1, [x1, #8]",
    "stnp d0, d1, [x1, #16]", "ldr q0, [x1, #32]", "str s0, [x1, x2]", "ldr x0, .",
    "ldr q0, .", "ldrsw x0, .", "prfm pldl1keep, [x1]", "prfm pldl1keep, .",
    "ld1 {v0.16b-v3.16b}, [x1], #64", "st2 {v0.8h, v1.8h}, [x1]", "ld3 {v0.b, v1.b, v2.b}[5], [x1]",
    "ld4r {v0.2d-v3.2d}, [x1], x2", "st1 {v0.s}[1], [x1], #4", "ldar x0, [x1]", "stlr w0, [x1]",
    "ldaxr w0, [x1]", "ldxp x0, x2, [x1]", "ldxp w0, w2, [x1]", "ldtr x0, [x1, #8]", "sttrb w0, [x1]",
)  # fmt: skip


def assemble_word(source: str) -> int:
    from emu.blob.asm import assemble_source

    return int.from_bytes(assemble_source(source, "<ldst>").sections[".text"].data[:4], "little")


@functools.cache
def seed_words() -> tuple[int, ...]:
    return tuple(assemble_word(source) for source in SEED_SOURCES)


def seed_regs() -> list[int]:
    """Registers a few hundred bytes apart in the middle of memory; x2 small (an index)."""
    regs = [0x1000000 + 0x100 * n for n in range(32)]
    regs[2] = 0x40
    return regs


def seeds() -> list[bytes]:
    return [_encode(word, seed_regs()) for word in seed_words()]


TARGET = Target(
    name="ldst",
    summary="the load/store decoder of the data accounting against Unicorn's memory hooks",
    documented=(),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=5.0,
)
