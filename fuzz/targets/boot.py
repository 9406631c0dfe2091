"""Fuzz target ``boot``: a damaged kernel ELF given to ``ktext-emu run --kernel``:
KernelImage, boot (image load, paging_init, ktext replication) and a short run
of the guest on the default machine, then the report.

Inputs are the shipped kernel (built for the default layout) with damaged
instruction words in its text (undefined instructions, branches to anywhere
or to themselves, exception returns, system-register writes), damaged
symbol values, and damaged header fields. Properties: the run ends with a
result or an EmuError (any class: each has its exit status), never another
exception, never a hang; a run that completes also reports.
"""

from __future__ import annotations

import atexit
import functools
import gc
import hashlib
import shutil
import struct
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from emu.config import machine_config
from emu.errors import EmuError
from emu.system import RunSpec, System
from fuzz.harness import Target
from fuzz.mutate import damaged_bytes, interesting_int
from fuzz.targets.elf import hot_offsets

MAX_INSTRUCTIONS = 200_000
# Instruction words that make a guest misbehave in different ways.
NASTY_WORDS = (
    0x00000000,  # udf #0
    0x14000000,  # b . (spins)
    0xD69F03E0,  # eret
    0xD4000001,  # svc #0
    0xD4000003,  # smc #0
    0xD65F03C0,  # ret
    0xD61F0000,  # br x0
    0xD518201F,  # msr ttbr0_el1, xzr
    0xD518203F,  # msr ttbr1_el1, xzr
    0xD518C01F,  # msr vbar_el1, xzr
    0xD508871F,  # tlbi vmalle1
    0xF940001F,  # ldr xzr, [x0]
    0xF900001F,  # str xzr, [x0]
    0xD50343DF,  # msr daifset, #3
    0x17FFFFFF,  # b .-4
)


@functools.lru_cache(maxsize=1)
def shipped_kernel() -> bytes:
    system = System(machine_config(), RunSpec(workload="syscall", iterations=1))
    try:
        return Path(system.image.path).read_bytes()
    finally:
        system.close()


@functools.lru_cache(maxsize=1)
def code_offsets() -> tuple[int, ...]:
    """File offsets of the instruction words in executable segments (padding left out)."""
    blob = shipped_kernel()
    phoff, phnum = struct.unpack_from("<Q", blob, 32)[0], struct.unpack_from("<H", blob, 56)[0]
    words = []
    for i in range(phnum):
        p_type, flags, offset, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", blob,
                                                                       phoff + 56 * i)
        if p_type == 1 and flags & 1:
            words += [at for at in range(offset, offset + filesz - 3, 4) if any(blob[at : at + 4])]
    return tuple(words)


@st.composite
def damaged_code(draw: st.DrawFn) -> bytes:
    data = bytearray(shipped_kernel())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(code_offsets()))
        word = draw(st.one_of(st.sampled_from(NASTY_WORDS), interesting_int(4)))
        data[at : at + 4] = word.to_bytes(4, "little")
    return bytes(data)


def strategy() -> st.SearchStrategy[bytes]:
    blob = st.just(None).map(lambda _: shipped_kernel())
    headers = blob.flatmap(lambda b: damaged_bytes(b, max_edits=2, hot=hot_offsets(b)))
    return st.one_of(damaged_code(), damaged_code(), headers)


def seeds() -> list[bytes]:
    return [shipped_kernel()]


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ktext-fuzz-boot-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def run(data: bytes) -> str:
    path = _scratch() / "kernel.elf"
    path.write_bytes(data)
    ktext = hashlib.sha256(data).digest()[0] & 1 == 1
    system = None
    try:
        system = System(machine_config(), RunSpec(ktext=ktext, workload="syscall", iterations=5, kernel=path,
                                                  max_instructions=MAX_INSTRUCTIONS))  # fmt: skip
        result = system.run()
        system.report()
    finally:
        if system is not None:
            system.close()
        # System keeps its Unicorn engine (about 1 GiB of address space) in reference
        # cycles: without a collection, case after case would exhaust the child's limit.
        gc.collect()
    return f"ran: {result.reason.value}"


TARGET = Target(
    name="boot",
    summary="a damaged kernel ELF booted and run (run --kernel): KernelImage, boot, guest",
    documented=(EmuError,),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=30.0,
)
