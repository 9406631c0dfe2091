"""Machine.close frees the Unicorn engine at once (the fuzz boot target and
sweeps build machine after machine), exactly once: a second close and the
binding's own finalizer at collection find nothing left to close."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent("""
    import gc
    from unicorn.arm64_const import UC_ARM64_REG_PC

    from emu.hw.machine import Machine, StopReason
    from emu.hw.physmem import PhysMem
    from emu.hw.topology import MIB, Topology, regular_distances

    def vm_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) // 1024

    topology = Topology("t", 1, 1, 16 * MIB, regular_distances(1))
    physmem = PhysMem.from_topology(topology)
    machine = Machine(topology, physmem)
    code = physmem.banks[0].base
    # movz x0, #0x8400, lsl #16; movk x0, #8; smc #0: PSCI SYSTEM_OFF
    words = (0xD2B08000, 0xF2800100, 0xD4000003)
    physmem.write(code, b"".join(w.to_bytes(4, "little") for w in words))
    machine.power_on(0, {UC_ARM64_REG_PC: code})
    assert machine.run(1000).reason is StopReason.ALL_OFF
    before = vm_mib()
    machine.close()
    after = vm_mib()
    machine.close()
    del machine
    gc.collect()
    physmem.close()
    print(before, after)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_close_releases_the_engine_once() -> None:
    # A child process: closing an engine twice would be a double free, which
    # must fail this test rather than crash the test session.
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    # Unicorn reserves its translation buffer (about 1 GiB) per engine.
    assert before - after >= 256, (before, after)
