# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""The verifier: clean machines pass; a corrupted word on one node's copy,
a node root mapping the wrong text, an alternative or a jump label out of
step are each reported with the address, symbol and disassembly."""

from __future__ import annotations

import json

import pytest
from ktext_testlib import REPLICATED_LAYOUTS

from emu.checks.verify import verify
from emu.hw.pagetable import Access, Geometry, make_ttbr, walk
from emu.kernel.ktext import set_swapper_pgd
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

BRK = 0xD4200000


def _copy_pa(lab, node: int, va: int) -> int:
    return lab.system.kernel.replication.text_copies[node] + va - lab.sym("_stext")


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_clean_machine_verifies(ktext_lab_factory, granule, va_bits):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1, granule=granule, va_bits=va_bits,
                            workload="static_keys", iterations=10, boot=False)  # fmt: skip
    lab.system.run()
    result = verify(lab.system)
    assert result.ok and result.replicated and result.nodes == 3
    assert result.messages() == []
    assert result.format().endswith("OK")


def test_replication_off_has_nothing_to_compare(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=4, ktext=False)
    result = verify(lab.system)
    assert result.ok and not result.replicated
    assert "no copies" in result.format()


@pytest.mark.parametrize("node", [1, 2, 3])
def test_corrupted_copy_is_found_on_its_node_only(ktext_lab_factory, node):
    lab = ktext_lab_factory(nodes=4)
    site = lab.sym("sys_getcpu") + 4
    original = lab.read_text(site)[0]
    lab.system.physmem.write_u32(_copy_pa(lab, node, site), BRK)
    result = verify(lab.system)
    assert not result.ok
    (diff,) = result.differences
    assert (diff.node, diff.va, diff.symbol, diff.region) == (node, site, "sys_getcpu+0x4", "text")
    assert (diff.node0_word, diff.copy_word) == (original, BRK)
    assert diff.node0_disasm.startswith("ldr") and diff.copy_disasm == "brk #0"
    assert diff.differing_words == 1
    message = diff.message()
    assert f"node {node}" in message and "sys_getcpu+0x4" in message and "brk #0" in message


def test_first_difference_and_count_per_node(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1)
    first, later = lab.sym("sys_null"), lab.sym("sys_puts")
    rodata = lab.sym("sys_null_weights")
    physmem = lab.system.physmem
    for va in (later, first, rodata):
        physmem.write_u32(_copy_pa(lab, 2, va), physmem.read_u32(_copy_pa(lab, 2, va)) ^ 1)
    jump_table = lab.sym("__start___jump_table")
    physmem.write_u32(_copy_pa(lab, 1, jump_table), 0xFFFFFFFF)
    result = verify(lab.system)
    by_node = {d.node: d for d in result.differences}
    assert by_node[2].va == first and by_node[2].differing_words == 3
    assert by_node[1].va == jump_table and by_node[1].region.startswith("rodata tail")
    assert [d.node for d in result.differences] == [1, 2]


def test_rodata_difference_is_labelled(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1)
    # the first 4 KiB page of .rodata is replicated (sys_null_weights, in
    # the page holding __start_ro_after_init, is not: patch 14's cut)
    va = lab.sym("alt_selftest_page_a") + 8
    lab.system.physmem.write_u32(_copy_pa(lab, 1, va), 99)
    (diff,) = verify(lab.system).differences
    assert diff.region == "rodata" and diff.symbol == "alt_selftest_page_a+0x8"


def test_a_root_mapping_the_wrong_text_is_found(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1)
    system = lab.system
    repl = system.kernel.replication
    stext = lab.sym("_stext")
    found = walk(system.physmem.read_u64, system.kernel.tcr, 0, make_ttbr(repl.pgd_phys[1]),
                 stext, Access.FETCH, 1)  # fmt: skip
    _level, _table, _index, desc_pa, desc = found.chain[-1]
    # point node 1's leaf for _stext at node 0's image instead of its copy
    node0 = system.image.pa_of(stext)
    mask = (1 << 48) - 1 & ~(found.size - 1)
    system.physmem.write_u64(desc_pa, (desc & ~mask) | (node0 & mask))
    result = verify(system)
    (problem,) = result.mappings
    assert problem.node == 1 and problem.va == stext
    assert problem.found_pa == node0 and problem.expected_pa == repl.text_copies[1]
    assert "not to the node's copy" in problem.message()


def test_alternatives_and_jump_labels_out_of_step(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, cpu_features=("ARM64_HAS_PAN",))
    physmem = lab.system.physmem
    probe_site = lab.sym("static_key_probe") + 4  # probe_key_false, NOP while disabled
    alt_site = lab.sym("alternative_selftest") + 4  # the ADRP
    for node_pa in (lab.system.image.pa_of(probe_site), _copy_pa(lab, 1, probe_site)):
        physmem.write_u32(node_pa, 0x14000002)
    for node_pa in (lab.system.image.pa_of(alt_site), _copy_pa(lab, 1, alt_site)):
        physmem.write_u32(node_pa, 0xD503201F)
    result = verify(lab.system)
    assert result.differences == []  # every copy is still node 0's
    assert {(a.node, a.va, a.cpucap) for a in result.alternatives} == {
        (0, alt_site, "ARM64_HAS_PAN"), (1, alt_site, "ARM64_HAS_PAN")}
    assert {(j.node, j.site, j.key) for j in result.jump_labels} == {
        (0, probe_site, "probe_key_false"), (1, probe_site, "probe_key_false")}
    report = result.to_dict()
    json.dumps(report)
    assert report["ok"] is False
    assert report["alternatives"][0]["va"] == f"{alt_site:#x}"
    assert report["jump_labels"][0]["found"] == "0x14000002"


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_set_swapper_pgd_is_not_a_copy_difference(ktext_lab_factory, granule, va_bits):
    """vmlinux.lds.S puts reserved_pg_dir and swapper_pg_dir after __end_rodata,
    outside the copied [_stext, __end_rodata): a legitimate top-level write
    (set_swapper_pgd) changes node 0's image there and must not show up as a
    difference between the copies (it did, as swapper_pg_dir+0x810, while the
    directories sat inside the copied range)."""
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits)
    system, image = lab.system, lab.system.image
    for symbol in ("reserved_pg_dir", "swapper_pg_dir"):
        assert image.sym("__end_rodata") <= image.sym(symbol) < image.sym("__inittext_begin")
    # RO_DATA(PAGE_SIZE): __end_rodata page-aligned; RESERVED_SWAPPER_OFFSET = PAGE_SIZE
    assert image.sym("__end_rodata") % granule == 0
    assert image.sym("__end_rodata") - image.sym("__end_ro_after_init") < granule
    assert image.sym("swapper_pg_dir") - image.sym("reserved_pg_dir") == granule
    repl, physmem = system.kernel.replication, system.physmem
    free = next(i for i in range(system.geometry.top_entries)
                if all(physmem.read_u64(pgd + 8 * i) == 0 for pgd in repl.pgd_phys))
    table = physmem.memblock_alloc_node(system.geometry.granule, system.geometry.granule, 0)
    assert set_swapper_pgd(repl, physmem, free, table | 3)
    assert verify(system).ok and system.copies_identical()
