"""ktext-emu: an instruction-level emulator for arm64 NUMA kernel text replication.

The package is layered like the kernel it models: ``emu.blob`` turns assembly
into ELF images, ``emu.hw`` is the machine (topology, memory, MMU, CPUs),
``emu.kernel`` mirrors the Linux arm64 code that replication touches, and
``emu.cli`` sits on top.
"""

__version__ = "0.1.0"
