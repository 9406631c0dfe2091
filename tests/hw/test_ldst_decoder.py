"""The instruction hook's load/store decoder (emu/hw/ldst.h) against Unicorn's
own memory hooks.

Fast mode counts data accesses by decoding each instruction instead of
hooking memory; these tests hold that decoding to what UC_HOOK_MEM_READ and
UC_HOOK_MEM_WRITE report when the same instruction runs on a bare Unicorn:
the same accesses, of the same kind, at the same addresses, in order, for
any word of the load/store encoding space and any register values.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings

from fuzz.targets.ldst import (
    CODE,
    LOAD_STORE_WORDS,
    REGISTER_VALUES,
    SEED_SOURCES,
    BareUnicorn,
    assemble_word,
    predict,
    seed_regs,
)

pytest.importorskip("emu.hw._accel", reason="the C extension is not built")


@pytest.fixture(scope="module")
def bare() -> BareUnicorn:
    return BareUnicorn()


_word = assemble_word


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(insn=LOAD_STORE_WORDS, regs=REGISTER_VALUES)
@example(insn=_word("ldp q0, q1, [x1, #-32]!"), regs=[0x1000000] * 32)
@example(insn=_word("ld4 {v0.4s-v3.4s}, [x1], x2"), regs=[0x1000000] * 32)
@example(insn=_word("ldr w0, [x1, w2, sxtw #2]"), regs=[0x1000000, 0x1000000, 0xFFFFFFF0] + [0] * 29)
def test_decoder_matches_unicorn_hooks(bare, insn, regs):
    bare.set_regs(regs)
    seen = bare.step(insn)
    if seen is None:
        return  # undefined, or faulted: it never retires, so nothing is charged
    assert predict(insn, CODE, regs) == seen, f"{insn:#010x}"


@pytest.mark.parametrize("source", SEED_SOURCES)
def test_decoder_matches_unicorn_on_every_form(bare, source):
    insn = _word(source)
    regs = seed_regs()
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
    assert bare.step(store, clear_monitor=False) == predict(store, CODE, regs, monitor=0x1000000) \
        == [(False, 0x1000000), (True, 0x1000000)]
    # The store cleared it: another makes no access at all.
    assert bare.step(store, clear_monitor=False) == predict(store, CODE, regs) == []
    clrex = _word("clrex")
    bare.step(load)
    bare.step(clrex, clear_monitor=False)
    assert predict(clrex, CODE, regs, monitor=0x1000000) == []
    assert bare.step(store, clear_monitor=False) == []


@pytest.mark.parametrize("changed", [False, True])
def test_store_exclusive_pair_writes_only_when_it_succeeds(bare, changed):
    regs = [0x1000000] * 32
    load, store = _word("ldxp x0, x5, [x1]"), _word("stxp w2, x3, x4, [x1]")
    bare.set_regs(regs)
    bare.uc.mem_write(0x1000000, bytes(16))
    assert bare.step(load) == [(False, 0x1000000), (False, 0x1000008)]
    if changed:
        bare.uc.mem_write(0x1000008, b"\x01")
    seen = bare.step(store, clear_monitor=False)
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
