"""Each scenario shows its hazard with the v3 behaviour (or, where v3 is the
fix, with the behaviour it fixed) and loses it with the remedy, with the
counts the scenario reports checked against the machine's shape and against
what the emulator measured independently."""

from __future__ import annotations

import pytest

from emu.hw.pagetable import Geometry
from emu.kernel.layout import LAYOUTS, kernel_layout, layout_problems
from emu.scenarios import SCENARIOS, Role, Setup
from emu.scenarios.cnp_enable import TASK_ITERATIONS
from emu.scenarios.layouts import remedied_layout

SHAPES = [Setup(2, 2), Setup(3, 1)]
SHAPE_IDS = ["2x2", "3x1"]


def run(name: str, setup: Setup):
    result = SCENARIOS[name].execute(setup)
    hazard = result.hazard_outcome
    return result, hazard, result.remedies


def off_node0(setup: Setup) -> int:
    """CPUs on nodes other than 0: the ones a node-0-only mistake hurts."""
    return (setup.nodes - 1) * setup.cpus_per_node


def check_verdict(result) -> None:
    assert result.hazard_seen and result.remedies_hold and result.verdict == "remedied"
    doc = result.to_json()
    assert doc["verdict"] == "remedied"
    assert [o["counts"] for o in doc["outcomes"]] == [o.counts for o in result.outcomes]


@pytest.mark.parametrize("setup", SHAPES, ids=SHAPE_IDS)
def test_cnp_enable(setup):
    result, hazard, (remedy,) = run("cnp-enable", setup)
    check_verdict(result)
    assert hazard.counts["cpus_off_node_root"] == off_node0(setup)
    # every null syscall of every off-node task ran node 0's text: tens of instructions each
    assert hazard.counts["remote_kernel_fetches"] >= off_node0(setup) * TASK_ITERATIONS * 20
    assert len(hazard.details) == off_node0(setup)
    assert all("= node 0's root" in line for line in hazard.details)
    assert remedy.counts["cpus_off_node_root"] == remedy.counts["remote_kernel_fetches"] == 0


@pytest.mark.parametrize("setup", SHAPES, ids=SHAPE_IDS)
def test_cnp_shared_domain(setup):
    result, hazard, remedies = run("cnp-shared-domain", setup)
    check_verdict(result)
    counts = hazard.counts
    assert counts["remote_filled_translations"] > 0 and counts["remote_filled_uses"] > 0
    assert counts["remote_filled_fetches"] > 0
    assert counts["cpus_using_remote_fills"] >= 1
    # kernel text served through another node's entries came from another node's copy
    assert counts["remote_kernel_fetches"] > 0
    for line in hazard.details:
        node = int(line.split("(node ")[1].split(")")[0])
        filler_node = int(line.split("filled by CPU ")[1].split("(node ")[1].split(")")[0])
        assert node != filler_node
    # Per-node Inner Shareable domains are shown, but as hypothetical hardware
    # Linux cannot run on, not as a remedy.
    (remedy,) = remedies
    assert "no CnP" in remedy.label
    (note,) = [o for o in result.outcomes if o.role is Role.NOTE]
    assert "hypothetical hardware" in note.label and "not one Linux can run on" in note.label
    for outcome in (remedy, note):
        assert all(value == 0 for value in outcome.counts.values()), outcome.label


def test_suspend_resume():
    setup = Setup()
    result, hazard, (remedy,) = run("suspend-resume", setup)
    check_verdict(result)
    assert hazard.counts["cpus_off_node_root"] == off_node0(setup)
    assert hazard.counts["remote_kernel_fetches"] > off_node0(setup) * TASK_ITERATIONS * 20
    (note,) = [o for o in result.outcomes if o.role is Role.NOTE]
    # with CnP the node root comes back, after a short remote stretch
    assert note.counts["cpus_off_node_root"] == 0
    assert 0 < note.counts["remote_kernel_fetches"] < hazard.counts["remote_kernel_fetches"] / 100
    assert remedy.counts["cpus_off_node_root"] == remedy.counts["remote_kernel_fetches"] == 0


MODULE_LAYOUTS = [(4096, 48), (4096, 39), (16384, 36), (16384, 47)]


@pytest.mark.parametrize("granule,va_bits", MODULE_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in MODULE_LAYOUTS])
def test_module_in_kernel_slot(granule, va_bits):
    setup = Setup(2, 2, granule, va_bits)
    result, hazard, (remedy,) = run("module-in-kernel-slot", setup)
    check_verdict(result)
    assert hazard.counts == {"module_allocated": 1, "module_in_kernel_slot": 1,
                             "roots_mapping_module": 1, "cpus_ran": 2, "cpus_faulted": 2}
    assert remedy.counts == {"module_allocated": 1, "module_in_kernel_slot": 0,
                             "roots_mapping_module": 2, "cpus_ran": 4, "cpus_faulted": 0}
    faults = [line for line in hazard.details if "instruction abort" in line]
    assert [line.split(" (node")[0] for line in faults] == ["CPU 2", "CPU 3"]
    assert all("translation fault" in line for line in faults)


def test_module_hole_too_small_for_64k_pages():
    # [_text, _stext) is one 64 KiB page: no room for a page plus its guard page
    result, hazard, _ = run("module-in-kernel-slot", Setup(2, 2, 65536, 48))
    assert not result.hazard_seen and result.remedies_hold
    assert hazard.counts["module_in_kernel_slot"] == 0 and hazard.counts["cpus_faulted"] == 0


@pytest.mark.parametrize("setup", SHAPES, ids=SHAPE_IDS)
def test_pgd_propagation(setup):
    result, hazard, (remedy,) = run("pgd-propagation", setup)
    check_verdict(result)
    cpus = setup.nodes * setup.cpus_per_node
    assert hazard.counts == {"new_top_level_entries": 1, "roots_missing_entry": setup.nodes - 1,
                             "cpus_read": setup.cpus_per_node, "cpus_faulted": off_node0(setup),
                             "kernel_slot_writes_refused": 0}
    assert remedy.counts == {"new_top_level_entries": 1, "roots_missing_entry": 0,
                             "cpus_read": cpus, "cpus_faulted": 0,
                             "kernel_slot_writes_refused": 1}
    assert any("refused (WARN); node roots keep their own entry" in d for d in remedy.details)


@pytest.mark.parametrize("setup", [Setup(2, 2), Setup(3, 1), Setup(2, 1, 65536, 48)],
                         ids=["2x2", "3x1", "64k"])
def test_free_initmem(setup):
    result, hazard, (remedy,) = run("free-initmem", setup)
    check_verdict(result)
    cpus = setup.nodes * setup.cpus_per_node
    assert hazard.counts["cpus_ran_init_before"] == cpus
    assert hazard.counts["cpus_fetched_freed_text"] == off_node0(setup)
    assert hazard.counts["cpus_wrote_freed_data"] == off_node0(setup)
    assert remedy.counts["cpus_fetched_freed_text"] == remedy.counts["cpus_wrote_freed_data"] == 0
    assert remedy.counts["leaf_entries_cleared"] == setup.nodes * hazard.counts[
        "leaf_entries_cleared"]


@pytest.mark.parametrize("setup", [Setup(2, 2), Setup(3, 1), Setup(2, 1, 4096, 39),
                                   Setup(2, 1, 65536, 48)], ids=["2x2", "3x1", "4k-39", "64k"])
def test_writable_replica(setup):
    result, hazard, (remedy,) = run("writable-replica", setup)
    check_verdict(result)
    assert hazard.counts == {"image_alias_stores": off_node0(setup),
                             "linear_alias_stores": 2 * (setup.nodes - 1),
                             "guest_patch_faults": 0}
    # the remedy patches the copies through the fixmap: no fault, copies agree
    assert remedy.counts == {"image_alias_stores": 0, "linear_alias_stores": 0,
                             "guest_patch_faults": 0}
    (note,) = [o for o in result.outcomes if o.role is Role.NOTE]
    # read-only aliases with the copies still written through the linear map:
    # every patching CPU faults (a CPU of each node)
    assert note.counts["guest_patch_faults"] >= setup.nodes
    assert note.counts["linear_alias_stores"] == 0


def test_layouts():
    result, hazard, (remedy,) = run("layouts", Setup())
    check_verdict(result)
    assert hazard.counts == {"layouts": 7, "layouts_with_problems": 2,
                             "overflowing_kimage_vaddr": 1, "modules_overlapping_linear_map": 1}
    assert "16k-48" in hazard.summary and "64k-42" in hazard.summary
    assert remedy.counts["layouts_with_problems"] == 0


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_remedied_layouts_are_sound(name):
    geometry = LAYOUTS[name]
    fixed = remedied_layout(geometry)
    assert layout_problems(fixed) == []
    series = kernel_layout(geometry)
    if not layout_problems(series):
        assert fixed == series  # the remedy changes only the broken layouts
    assert fixed.modules_vaddr >= fixed.page_end
    assert fixed.modules_end == fixed.kimage_vaddr or fixed.variant == "upstream"


def test_every_scenario_is_fast_and_has_one_hazard_outcome():
    for name, scenario in SCENARIOS.items():
        result = scenario.execute(Setup())
        assert sum(o.role is Role.HAZARD for o in result.outcomes) == 1
        assert result.remedies, name
        assert result.seconds < 5, f"{name} took {result.seconds:.1f} s"


@pytest.mark.parametrize("nodes", [2, 3])
def test_kpti_offsets_break_with_a_root_smaller_than_a_page(nodes):
    """64K pages, 48-bit VA: a 512-byte root, so patch 18's three separate
    PGD_SIZE allocations sit 512 bytes apart, and the entry code's page
    offsets miss every node but 0; one page-spaced block per node fixes it."""
    setup = Setup(nodes, 1, 65536, 48)
    result, hazard, (remedy,) = run("kpti-offsets", setup)
    check_verdict(result)
    assert hazard.counts["nodes_with_wrong_offsets"] == nodes - 1
    assert any("tramp_unmap_kernel loads TTBR1" in d and "translation fault" in d
               for d in hazard.details)  # fmt: skip
    assert any("tramp_map_kernel loads TTBR1" in d for d in hazard.details)
    assert any("not its reserved_pg_dir" in d for d in hazard.details)
    assert remedy.counts == {"nodes_with_wrong_offsets": 0, "problems": 0}


@pytest.mark.parametrize("granule,va_bits", [(4096, 48), (4096, 39), (16384, 36), (16384, 47),
                                             (65536, 42)])  # fmt: skip
def test_kpti_offsets_hold_by_memblock_adjacency_when_the_root_is_a_page(granule, va_bits):
    """PGD_SIZE == PAGE_SIZE: memblock hands out the three back-to-back
    allocations top-down, one page apart in the right order; the offsets
    hold, by accident of the allocator rather than by construction."""
    result, hazard, (_remedy,) = run("kpti-offsets", Setup(2, 1, granule, va_bits))
    assert not result.hazard_seen and result.remedies_hold
    assert hazard.counts["nodes_with_wrong_offsets"] == 0
    assert "back to back" in hazard.summary


def test_each_node_has_its_own_reserved_and_tramp_dirs(make_system):
    system = make_system(nodes=3, cpus_per_node=1, ktext=True)
    repl, image, physmem = system.kernel.replication, system.image, system.physmem
    page = system.geometry.granule
    assert repl.reserved_phys[0] == image.pa_of(image.sym("reserved_pg_dir"))
    assert repl.tramp_phys[0] == image.pa_of(image.sym("tramp_pg_dir"))
    assert image.sym("swapper_pg_dir") - image.sym("tramp_pg_dir") == 2 * page
    for node in (1, 2):
        for pa in (repl.reserved_phys[node], repl.tramp_phys[node]):
            assert physmem.node_of(pa) == node and not any(physmem.read(pa, page))
