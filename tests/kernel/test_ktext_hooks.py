"""ktext.py's replication hooks called directly (ktext_replication_patch,
ktext_replication_patch_alternative, ktext_replication_set_swapper_pgd and
set_swapper_pgd), and the KernelContext protocol: a System satisfies it, and
patching, jump labels and the verifier work through an object that has
nothing else of a System."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from emu.checks.verify import verify
from emu.hw.machine import Machine
from emu.hw.pagetable import Geometry
from emu.hw.physmem import PhysMem
from emu.kernel import jump_label, patching
from emu.kernel.context import BootedKernel, KernelContext
from emu.kernel.image import KernelImage
from emu.kernel.insn import AARCH64_INSN_NOP
from emu.kernel.ktext import (
    ktext_replication_patch,
    ktext_replication_patch_alternative,
    ktext_replication_set_swapper_pgd,
    node_text_pas,
    set_swapper_pgd,
    swapper_pg_dir_node_phys,
)

SITE = "sys_ni_syscall"
BRK = 0xD4200000


def _words(system, va: int) -> list[int]:
    repl = system.kernel.replication
    return [system.physmem.read_u32(pa) for _node, pa in node_text_pas(system.image,
                                                                          repl.text_copies, va)]


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_patch_hook_writes_every_copy_but_not_node0(make_system, nodes):
    system = make_system(nodes=nodes, cpus_per_node=1, ktext=True)
    repl, image = system.kernel.replication, system.image
    va = image.sym(SITE)
    before = _words(system, va)
    written = ktext_replication_patch(repl, system.physmem, image, va, BRK)
    assert [node for node, _pa in written] == list(range(1, nodes))
    assert _words(system, va) == [before[0]] + [BRK] * (nodes - 1)  # node 0: the caller's write


def test_patch_hook_ignores_what_is_not_kernel_text(make_system):
    system = make_system(nodes=2, cpus_per_node=1, ktext=True)
    image = system.image
    va = image.sym("__start_rodata")  # copied, but no text: is_kernel_text() is false
    copy = system.kernel.replication.text_copies[1] + va - image.sym("_stext")
    before = system.physmem.read_u32(copy)
    assert ktext_replication_patch(system.kernel.replication, system.physmem, image, va, BRK) == []
    assert system.physmem.read_u32(copy) == before


def test_patch_hook_finds_nothing_with_replication_off(make_system):
    system = make_system(nodes=4, cpus_per_node=1, ktext=False)
    va = system.image.sym(SITE)
    assert ktext_replication_patch(system.kernel.replication, system.physmem, system.image, va,
                                   BRK) == []  # fmt: skip


def test_alternative_hook_copies_node0s_words(make_system):
    system = make_system(nodes=3, cpus_per_node=1, ktext=True)
    image, physmem = system.image, system.physmem
    va = image.sym(SITE)
    words = [AARCH64_INSN_NOP, BRK]
    for index, word in enumerate(words):
        physmem.write_u32(image.pa_of(va + 4 * index), word)
    ktext_replication_patch_alternative(system.kernel.replication, physmem, image, va, len(words))
    for index, word in enumerate(words):
        assert _words(system, va + 4 * index) == [word] * 3


def test_set_swapper_pgd_hook_propagates_outside_and_refuses_inside_kernel_slots(make_system):
    system = make_system(nodes=2, cpus_per_node=1, ktext=True)
    repl, physmem = system.kernel.replication, system.physmem
    kidx_base, _kidx_end = repl.kidx
    free = next(i for i in range(system.geometry.top_entries)
                if all(physmem.read_u64(pgd + 8 * i) == 0 for pgd in repl.pgd_phys))
    value = physmem.memblock_alloc_node(system.geometry.granule, system.geometry.granule, 0) | 3
    assert ktext_replication_set_swapper_pgd(repl, physmem, free, value)
    assert physmem.read_u64(repl.pgd_phys[1] + 8 * free) == value
    assert physmem.read_u64(swapper_pg_dir_node_phys(repl, 0) + 8 * free) == 0  # the hook only
    node1_kernel = physmem.read_u64(repl.pgd_phys[1] + 8 * kidx_base)
    assert not set_swapper_pgd(repl, physmem, kidx_base, value)
    assert repl.refused_pgd_writes == [kidx_base] and repl.warned
    assert physmem.read_u64(repl.pgd_phys[1] + 8 * kidx_base) == node1_kernel
    assert physmem.read_u64(repl.pgd_phys[0] + 8 * kidx_base) == value  # node 0 still written


def test_swapper_pg_dir_node_phys_is_what_each_node_runs_on(make_system):
    system = make_system(nodes=4, cpus_per_node=1, ktext=True, iterations=2)
    system.run()
    repl = system.kernel.replication
    assert [swapper_pg_dir_node_phys(repl, n) for n in range(4)] == repl.pgd_phys
    assert system.ttbr1_matches_node()


# -------------------------------------------------------------- KernelContext


@dataclass(frozen=True)
class OnlyTheContext:
    """A KernelContext with nothing else of a System: no config, spec, report."""

    physmem: PhysMem
    image: KernelImage
    geometry: Geometry
    kernel: BootedKernel
    machine: Machine
    system_call: object

    def call(self, cpu: int, function: str | int, *args: int,
             max_instructions: int = 1_000_000) -> dict[str, int]:  # fmt: skip
        return self.system_call(cpu, function, *args, max_instructions=max_instructions)


def test_system_satisfies_the_protocol(make_system):
    system = make_system(nodes=2, cpus_per_node=1, ktext=True)
    assert isinstance(system, KernelContext)
    assert isinstance(system.kernel, BootedKernel)


def test_kernel_code_reaches_nothing_beyond_the_protocol(make_system):
    system = make_system(nodes=2, cpus_per_node=1, ktext=True, workload="static_keys",
                         iterations=0)  # fmt: skip
    ctx = OnlyTheContext(system.physmem, system.image, system.geometry, system.kernel,
                         system.machine, system.call)  # fmt: skip
    assert isinstance(ctx, KernelContext)
    system.run(200_000)
    va = system.image.sym(SITE)
    with patching.stop_machine(ctx) as rendezvous:
        pass
    assert rendezvous.released and rendezvous.parked
    patched = patching.patch_text_nosync(ctx, va, BRK)
    assert [node for node, _pa in patched.pas] == [0, 1]
    assert patching.read_text(ctx, va) == [(0, BRK), (1, BRK)]
    patching.patch_text_nosync(ctx, va, patched.old)
    key = next(iter(jump_label.static_keys(ctx)))
    assert jump_label.static_key_toggle(ctx, key)
    assert verify(ctx).ok


def test_no_kernel_module_imports_the_layers_above():
    """emu/kernel/ sits under emu.system, emu.checks and the commands."""
    import ast

    kernel_dir = Path(__file__).resolve().parents[2] / "emu" / "kernel"
    above = ("emu.system", "emu.checks", "emu.scenarios", "emu.cli", "emu.report")
    for path in kernel_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(above), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(above), f"{path.name} imports {alias.name}"
