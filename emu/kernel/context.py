"""KernelContext: what host-side kernel code reaches of a booted machine.

The functions that act on a running kernel (patching.py, jump_label.py, and
the checkers in emu/checks/) take a ``KernelContext`` rather than the
top-level ``emu.system.System``, which sits above the kernel package and
imports it.  The protocol names exactly what they use:

* ``physmem``: guest physical memory (node 0's image, every copy, the tables);
* ``image``: the kernel image and its symbols;
* ``geometry``: the granule and VA size the tables are built for;
* ``kernel``: the booted kernel's state (``BootedKernel``): the layout, the
  replication state of ktext.py, TCR_EL1, and symbolization;
* ``machine``: the hardware, for what Linux does to CPUs and to translated
  code: invalidating it after a host write (``patching.invalidate_text``),
  running CPUs to a rendezvous (``patching.stop_machine``), the CPUs' nodes
  (``machine.cpus[i].node``) and their MMUs;
* ``call``: running a kernel function on a CPU (the guest-side patch paths).

``System`` satisfies it structurally; so does any object with these members
(a test double, another front end).  ``BootedKernel`` is a protocol rather
than boot.py's ``Kernel`` because boot.py imports the patching code, which
would close an import cycle.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from emu.hw.machine import Machine
from emu.hw.pagetable import Geometry
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage
from emu.kernel.ktext import Replication
from emu.kernel.layout import KernelLayout


@runtime_checkable
class BootedKernel(Protocol):
    """The booted kernel as the host's kernel code reads it (boot.Kernel has it)."""

    @property
    def layout(self) -> KernelLayout: ...

    @property
    def replication(self) -> Replication: ...

    @property
    def tcr(self) -> int: ...

    def symbolize(self, va: int) -> str: ...


@runtime_checkable
class KernelContext(Protocol):
    """What patching, jump labels and the checkers need of a booted system."""

    @property
    def physmem(self) -> PhysMem: ...

    @property
    def image(self) -> KernelImage: ...

    @property
    def geometry(self) -> Geometry: ...

    @property
    def kernel(self) -> BootedKernel: ...

    @property
    def machine(self) -> Machine: ...

    def call(
        self, cpu: int, function: str | int, *args: int, max_instructions: int = 1_000_000
    ) -> dict[str, int]:
        """Run a kernel function on ``cpu`` until it returns; its registers after."""
        ...
