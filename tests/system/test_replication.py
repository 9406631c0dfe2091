"""Replication after boot, on every layout the series replicates and several
node counts: copies, roots, TTBR1s, and where kernel text is fetched from."""

from __future__ import annotations

import pytest
from ktext_testlib import REPLICATED_LAYOUTS

from emu.hw.pagetable import Access, Geometry, decode_ttbr, make_ttbr, walk

NODE_COUNTS = [1, 2, 4, 8]


def _kernel_fetches(system, cpu: int) -> list[int]:
    return list(system.machine.accounting.counts(cpu).kernel_fetches_by_node)


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
@pytest.mark.parametrize("nodes", NODE_COUNTS)
def test_replication_on(make_system, granule, va_bits, nodes):
    system = make_system(nodes=nodes, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         ktext=True, iterations=5)
    result = system.run()
    assert result.reason.name == "ALL_OFF"
    report = system.report()
    assert report["ktext"] is (nodes > 1)
    assert report["checks"] == {
        "copies_identical": True,
        "roots_differ_only_in_kernel_slots": True,
        "ttbr1_matches_node": True,
    }
    repl = system.kernel.replication
    assert len(set(repl.pgd_phys)) == nodes  # one root per node
    for node in range(1, nodes):
        assert system.physmem.node_of(repl.pgd_phys[node]) == node
        assert system.physmem.node_of(repl.text_copies[node]) == node
    for vcpu in system.machine.cpus:
        assert decode_ttbr(system.cpu_ttbr1(vcpu.index)).baddr == repl.pgd_phys[vcpu.node]
        fetches = _kernel_fetches(system, vcpu.index)
        assert fetches[vcpu.node] > 0
        assert sum(fetches) == fetches[vcpu.node], "every kernel-text fetch is node-local"


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_replication_off_fetches_from_node0(make_system, granule, va_bits):
    system = make_system(nodes=4, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         ktext=False, iterations=5)
    system.run()
    report = system.report()
    assert report["ktext"] is False
    assert all(checked for checked in report["checks"].values())
    repl = system.kernel.replication
    assert set(repl.pgd_phys) == {system.kernel.swapper_pa}
    for vcpu in system.machine.cpus:
        fetches = _kernel_fetches(system, vcpu.index)
        assert fetches[0] > 0 and sum(fetches) == fetches[0]


def test_roots_differ_exactly_in_kernel_slots(make_system):
    system = make_system(nodes=3, cpus_per_node=1, ktext=True)
    repl = system.kernel.replication
    geometry = system.geometry
    base, end = repl.kidx
    differing = set()
    for pgd in repl.pgd_phys[1:]:
        for index in range(geometry.top_entries):
            if system.physmem.read_u64(pgd + 8 * index) != system.physmem.read_u64(
                repl.pgd_phys[0] + 8 * index
            ):
                differing.add(index)
    assert differing == set(range(base, end + 1))


def test_16k_48_refuses_replication_with_reason(make_system):
    system = make_system(nodes=2, cpus_per_node=1, granule=16384, va_bits=48, ktext=True)
    system.run()
    report = system.report()
    assert report["ktext"] is False
    assert report["ktext_requested"] is True
    assert "16K" in report["ktext_message"] and "L0" in report["ktext_message"]
    for vcpu in system.machine.cpus:
        fetches = _kernel_fetches(system, vcpu.index)
        assert sum(fetches) == fetches[0]


def test_one_node_is_a_no_op(make_system):
    system = make_system(nodes=1, cpus_per_node=2, ktext=True)
    system.run()
    assert system.kernel.replication.text_copies == [None]
    assert system.report()["ktext"] is False


def test_accounting_is_exact(make_system):
    """Every retired instruction is charged to a known page, and replication does
    not change the instruction stream, only where it is fetched from."""
    totals = []
    for ktext in (False, True):
        system = make_system(nodes=2, cpus_per_node=2, ktext=ktext, iterations=50)
        system.run()
        assert system.machine.accounting.unknown_instructions == 0
        totals.append([system.machine.accounting.instructions(c) for c in range(4)])
    assert totals[0] == totals[1]


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_head_text_is_mapped_by_no_root(make_system, granule, va_bits):
    """v6.7's map_kernel() maps from _stext on (and create_kernel_nid_map
    mirrors it): [_text, _stext) has no translation on any node's root; the
    idmap alone has the head text, at its physical address."""
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         ktext=True)
    image, kernel = system.image, system.kernel
    read = system.physmem.read_u64
    text, stext = image.sym("_text"), image.sym("_stext")
    for root in kernel.replication.pgd_phys:
        for va in range(text, stext, granule):
            found = walk(read, kernel.tcr, 0, make_ttbr(root), va, Access.READ, 1)
            assert found.pa is None, f"{va:#x} mapped on root {root:#x}"
        assert walk(read, kernel.tcr, 0, make_ttbr(root), stext, Access.FETCH, 1).pa is not None
    head_pa = image.pa_of(text)
    found = walk(read, kernel.tcr, make_ttbr(kernel.idmap_pa), 0, head_pa, Access.FETCH, 1)
    assert found.pa == head_pa
