"""pytest fixtures for writing kernel text patching tests against ktext-emu.

Registered as the ``pytest11`` entry point ``ktext_emu``, so an installed
ktext-emu gives every test session these fixtures:

``ktext_lab_factory``
    ``ktext_lab_factory(nodes=4, cpus_per_node=2, granule=4096, va_bits=48,
    *, ktext=True, preset="default", workload="syscall", iterations=0,
    boot=True, add=(), add_user=(), syscalls=(), **RunSpec fields)`` boots
    a machine and returns a ``PatchLab``.  ``granule`` is 4096/16384/65536
    or "4k"/"16k"/"64k"; ``add``/``add_user``/``syscalls`` are ``run``'s
    --add, --add-user and --syscall (``{15: "sys_mine"}`` or
    ``["15=sys_mine"]``); other RunSpec fields (``cpu_features``,
    ``user_memory``, ``ro_replicas``, ``is_domain``...) pass through.  With
    ``boot`` every CPU is brought online and parked at EL0 (the default
    workload runs null syscalls until stopped, so kernel text stays quiet).
    Machines are closed at teardown.
``ktext_lab``
    one default machine (4 nodes x 2 CPUs, 4K pages, 48-bit VA, ktext on).

A ``PatchLab`` holds the ``System`` and the calls a patching test needs::

    def test_my_patch(ktext_lab):
        site = ktext_lab.sym("my_function") + 8
        ktext_lab.patch(site, 0xD503201F)                # every node, host side
        assert ktext_lab.guest_patch(cpu=3, va=site, insn=0xD503201F) == 0
        for cpu in ktext_lab.cpus():
            assert ktext_lab.call(cpu, "my_function", 1, 2)["x0"] == 3
        ktext_lab.assert_replicated()                    # the verifier

For negative tests: ``corrupt(node, symbol)`` writes one node's copy only
(a stray write, as the verifier must catch), ``static_keys()`` lists the
keys with their sites.  ``syscall(cpu, nr, *args)`` runs a system call's
handler.  Instruction encoders are in ``emu.kernel.insn``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from emu.checks.icache import IcacheChecker, JumpSiteObserver
from emu.checks.verify import VerifyResult, verify
from emu.config import machine_config
from emu.errors import GuestFault, UsageError
from emu.hw.cpu import PowerState
from emu.hw.machine import RunResult
from emu.kernel import jump_label, patching
from emu.run_options import GRANULES, parse_syscall_hooks
from emu.run_options import syscall_hook as _checked_hook
from emu.system import RunSpec, System


def syscall_hook(text: str) -> str:
    """``NR=SYMBOL`` checked as --syscall checks it (UsageError if malformed)."""
    try:
        return _checked_hook(text)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"syscalls: {err}") from None

BOOT_STEP = 50_000
BOOT_LIMIT = 5_000_000
BRK_BAD = 0xD4200000 | (0xBAD << 5)  # brk #0xbad: what corrupt() writes by default


def granule_bytes(granule: int | str) -> int:
    """4096/16384/65536, or "4k"/"16k"/"64k" as on the command line."""
    if isinstance(granule, str):
        size = GRANULES.get(granule.strip().lower())
        if size is None:
            raise UsageError(f"granule {granule!r}: use {', '.join(GRANULES)}")
        return size
    if granule not in GRANULES.values():
        raise UsageError(f"granule {granule}: use 4096, 16384 or 65536 (or 4k, 16k, 64k)")
    return granule


class PatchLab:
    """A booted machine and the patching API, for tests."""

    def __init__(self, system: System) -> None:
        self.system = system

    # ------------------------------------------------------------ topology
    @property
    def nodes(self) -> int:
        return self.system.config.topology.nodes

    def cpus(self) -> list[int]:
        return [vcpu.index for vcpu in self.system.machine.cpus]

    def cpus_on_node(self, node: int) -> list[int]:
        return [vcpu.index for vcpu in self.system.machine.cpus if vcpu.node == node]

    def node_of(self, cpu: int) -> int:
        return self.system.machine.cpus[cpu].node

    def sym(self, name: str) -> int:
        return self.system.image.sym(name)

    def symbolize(self, va: int) -> str:
        return self.system.kernel.symbolize(va)

    # ------------------------------------------------------------- running
    def run(self, instructions: int) -> RunResult:
        """Run the CPUs round-robin for ``instructions`` more in all.

        Each call starts a round at CPU 0, so give at least a quantum per CPU
        (``round_instructions``) when every CPU should get a turn.
        """
        return self.system.run(self.system.machine.total_instructions + instructions)

    @property
    def round_instructions(self) -> int:
        """Instructions of one full round: a quantum for every CPU."""
        return self.system.machine.quantum * len(self.system.machine.cpus)

    def online(self, cpu: int) -> bool:
        """Powered on and running its task (at EL0 or in a syscall)."""
        vcpu = self.system.machine.cpus[cpu]
        return vcpu.power is PowerState.ON and vcpu.context is not None

    def boot_all(self, limit: int = BOOT_LIMIT) -> None:
        """Run until every CPU has come up, then until each is at EL0 in its task
        (so a ``call`` never lands in the middle of a syscall)."""
        spent = 0
        while not all(self.online(cpu) for cpu in self.cpus()):
            if spent >= limit:
                down = [cpu for cpu in self.cpus() if not self.online(cpu)]
                raise GuestFault(f"CPU(s) {down} not up after {limit} instructions")
            step = max(BOOT_STEP, self.round_instructions)
            self.run(step)
            spent += step
        patching.quiesce(self.system, limit)

    def call(self, cpu: int, function: str | int, *args: int, **kwargs: Any) -> dict[str, int]:
        """Run a kernel function at EL1 on ``cpu`` until it returns: its registers."""
        return self.system.call(cpu, function, *args, **kwargs)

    def syscall(self, cpu: int, nr: int, *args: int) -> dict[str, int]:
        """Run system call ``nr``'s handler (sys_call_table[nr]) on ``cpu``: its registers."""
        return self.system.syscall(cpu, nr, *args)

    def call_everywhere(self, function: str | int, *args: int) -> dict[int, dict[str, int]]:
        """``call`` on every CPU of every node: cpu -> registers."""
        return {cpu: self.call(cpu, function, *args) for cpu in self.cpus()}

    # ------------------------------------------------------------ patching
    def patch(self, va: int, insn: int) -> patching.PatchedWord:
        """patch_text_nosync from the host: every node, translated code invalidated."""
        return patching.patch_text_nosync(self.system, va, insn)

    def patch_many(self, sites: Sequence[tuple[int, int]]) -> patching.Rendezvous:
        """patch_text under stop_machine."""
        return patching.patch_text(self.system, sites)

    def guest_patch(self, cpu: int, va: int, insn: int) -> int:
        """The guest's aarch64_insn_patch_text_nosync on ``cpu``: 0 or -EINVAL."""
        return patching.guest_patch_text_nosync(self.system, cpu, va, insn)

    def read_text(self, va: int) -> dict[int, int]:
        """node -> the word at ``va`` in that node's text (node 0: the image)."""
        return dict(patching.read_text(self.system, va))

    # ------------------------------------------------------ negative tests
    def copy_pa(self, node: int, va: int) -> int:
        """The PA of ``va`` in ``node``'s copy of [_stext, __end_rodata)
        (node 0, or a node without a copy: the image itself)."""
        image = self.system.image
        copies = self.system.kernel.replication.text_copies
        start, end = image.sym("_stext"), image.sym("__end_rodata")
        if not 0 <= node < self.nodes:
            raise UsageError(f"no node {node}: the machine has {self.nodes}")
        if not start <= va < end:
            raise UsageError(f"{va:#x} ({self.symbolize(va)}) is not in [_stext, __end_rodata), "
                             "the part of the image each node has a copy of")
        copy = copies[node] if node < len(copies) else None
        if node == 0:
            return image.pa_of(va)
        if copy is None:
            message = self.system.kernel.replication.message or "replication is off"
            raise UsageError(f"node {node} has no copy of its own ({message})")
        return copy + (va - start)

    def corrupt(self, node: int, where: str | int, word: int = BRK_BAD, offset: int = 0) -> int:
        """Write ``word`` (default ``brk #0xbad``) over the 32-bit word at
        ``where`` (+ ``offset``) in ``node``'s copy only, as a stray write
        would, bypassing patch_text; translated code is dropped so the CPUs
        see it.  Returns the word it replaced.  ``assert_replicated`` and
        ``verify`` then report the node."""
        va = (self.sym(where) if isinstance(where, str) else where) + offset
        pa = self.copy_pa(node, va)
        physmem = self.system.physmem
        old = physmem.read_u32(pa)
        physmem.write_u32(pa, word & 0xFFFF_FFFF)
        patching.invalidate_text(self.system.machine)
        return old

    def static_keys(self) -> dict[str, dict]:
        """Every static key with jump sites: name -> {address, enabled, sites}."""
        return jump_label.static_keys(self.system)

    # --------------------------------------------------------- static keys
    def key_enabled(self, key: str | int) -> bool:
        return jump_label.static_key_enabled(self.system, key)

    def key_set(self, key: str | int, enabled: bool) -> list[patching.PatchedWord]:
        return jump_label.static_key_set(self.system, key, enabled)

    def guest_key(self, cpu: int, key: str | int, op: str = "toggle") -> int:
        """sys_static_key on ``cpu``: the key's new state."""
        return jump_label.guest_static_key(self.system, cpu, key, op)

    # -------------------------------------------------------- verification
    def verify(self) -> VerifyResult:
        return verify(self.system)

    def assert_replicated(self) -> None:
        """Fail the test with the verifier's messages unless every copy checks out."""
        result = self.verify()
        if not result.ok:
            raise AssertionError(result.format())

    def icache_checker(self, watch: Iterable[int] = ()) -> IcacheChecker:
        """Install the cache-model checker (before running the code under test)."""
        return IcacheChecker(self.system, watch)

    def observe_jump_sites(self, key: str | int | None = None) -> JumpSiteObserver:
        """Watch the jump label sites (of ``key``, or all) while they change."""
        entries = jump_label.jump_entries(self.system)
        if key is not None:
            address = jump_label.key_address(self.system, key)
            entries = [entry for entry in entries if entry.key == address]
        return JumpSiteObserver(self.system, entries)


def make_lab(
    nodes: int = 4,
    cpus_per_node: int = 2,
    granule: int | str = 4096,
    va_bits: int = 48,
    *,
    ktext: bool = True,
    preset: str = "default",
    workload: str = "syscall",
    iterations: int = 0,
    boot: bool = True,
    add: Sequence[str | Path] = (),
    add_user: Sequence[str | Path] = (),
    syscalls: Mapping[int, str] | Sequence[str] = (),
    **spec: Any,
) -> PatchLab:
    """A PatchLab outside pytest (the fixtures use this).  ``add``,
    ``add_user`` and ``syscalls`` are ``run``'s --add, --add-user and
    --syscall (``{15: "sys_mine"}`` or ``["15=sys_mine"]``)."""
    config = machine_config(preset, nodes, cpus_per_node, granule=granule_bytes(granule),
                            va_bits=va_bits)
    if add:
        spec["extra_sources"] = (*spec.get("extra_sources", ()), *map(Path, add))
    if add_user:
        spec["user_sources"] = (*spec.get("user_sources", ()), *map(Path, add_user))
    if syscalls:
        hooks = (tuple(syscalls.items()) if isinstance(syscalls, Mapping)
                 else parse_syscall_hooks([syscall_hook(text) for text in syscalls]))
        spec["syscalls"] = (*spec.get("syscalls", ()), *hooks)
    run_spec = RunSpec(ktext=ktext, workload=workload, iterations=iterations, **spec)
    lab = PatchLab(System(config, run_spec))
    if boot:
        lab.boot_all()
    return lab


@pytest.fixture
def ktext_lab_factory() -> Iterator[Callable[..., PatchLab]]:
    """Factory of booted machines: ktext_lab_factory(nodes=4, cpus_per_node=2, ...)."""
    made: list[PatchLab] = []

    def factory(*args: Any, **kwargs: Any) -> PatchLab:
        lab = make_lab(*args, **kwargs)
        made.append(lab)
        return lab

    yield factory
    for lab in made:
        lab.system.close()


@pytest.fixture
def ktext_lab(ktext_lab_factory: Callable[..., PatchLab]) -> PatchLab:
    """The default machine (4 nodes x 2 CPUs, 4K/48, ktext on), every CPU up."""
    return ktext_lab_factory()
