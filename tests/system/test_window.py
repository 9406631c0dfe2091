"""The measurement window (sys_window -> SIP_WINDOW): boot, bring-up, set-up and
warm-up are counted apart and never charged; the window's counts are exact and
per CPU; and the generated dbsim runs with the footprint it was asked for."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ktext_testlib import SMALL_FOOTPRINT

from benchmarks.footprint import measure
from emu.blob.synth import ENTRY_FUNCTIONS
from emu.hw.cachemodel import attach_cache_model
from emu.hw.cost import cost_of_run
from emu.hw.machine import StopReason
from emu.jsonfmt import by_node_total, dense

NO_WINDOW_S = """
	.include "asm-offsets.inc"
	.section .user.text, "ax"
	.globl	workload_plain
workload_plain:				// never calls sys_window
	mov	x8, #__NR_null
	svc	#0
	mov	x0, #0
	mov	x8, #__NR_exit
	svc	#0
"""


def _run(make_system, **spec):
    system = make_system(nodes=2, cpus_per_node=2, data_accesses=True, **spec)
    assert system.run().reason is StopReason.ALL_OFF
    return system, system.report()


def _fields(section: dict, nodes: int = 2) -> list:
    """The counts of a CPU's section, by-node figures dense (the report's are sparse)."""
    return [section["instructions"]] + [
        dense(section[key], nodes) for key in ("kernel_fetches_by_node", "fetches_by_node",
                                               "data_reads_by_node", "data_writes_by_node")]


@pytest.mark.parametrize("workload", ["syscall", "dbsim_tiny", "migrate"])
def test_setup_is_not_charged_and_iterations_add_exactly(make_system, workload):
    _, short = _run(make_system, workload=workload, iterations=10)
    _, long = _run(make_system, workload=workload, iterations=30)
    per_cpu = []
    for a, b in zip(short["cpus"], long["cpus"], strict=True):
        assert a["window"]["opened"] and b["window"]["opened"]
        assert a["setup"] == b["setup"]  # the same boot and set-up, whatever the run length
        extra = b["window"]["instructions"] - a["window"]["instructions"]
        assert extra > 0
        per_cpu.append(extra)
        # setup + window is everything the CPU ran, field by field
        for run in (a, b):
            whole = [run["instructions"], dense(run["kernel_fetches_by_node"], 2),
                     dense(run["fetches_by_node"], 2)]
            parts = [(s + w) if isinstance(s, int) else [x + y for x, y in zip(s, w, strict=True)]
                     for s, w in zip(_fields(run["setup"])[:3], _fields(run["window"])[:3],
                                     strict=True)]  # fmt: skip
            assert parts == whole
    if workload == "syscall":  # no data-dependent path: every iteration the same instructions
        assert len(set(per_cpu)) == 1 and per_cpu[0] % 20 == 0
    assert short["window"]["iterations"] == 10 * 4 and long["window"]["iterations"] == 30 * 4
    assert short["window"]["noun"] in ("syscall", "query", "round trip")
    # Boot is on CPU 0 only, and it is all set-up.
    assert short["cpus"][0]["setup"]["instructions"] > 10 * short["cpus"][1]["setup"]["instructions"]


def test_warmup_moves_iterations_from_the_window_to_setup(make_system):
    _, cold = _run(make_system, workload="syscall", iterations=10)
    _, warm = _run(make_system, workload="syscall", iterations=10, warmup=5)
    _, longer = _run(make_system, workload="syscall", iterations=15)
    per_iteration = (longer["cpus"][1]["window"]["instructions"]
                     - cold["cpus"][1]["window"]["instructions"]) // 5
    assert warm["window"]["warmup"] == 5
    for c, w in zip(cold["cpus"], warm["cpus"], strict=True):
        grown = w["setup"]["instructions"] - c["setup"]["instructions"]
        # five iterations more before the window; a warm-up iteration's loop
        # end skips the counted loop's `cbz x19` (task.inc)
        assert grown == 5 * (per_iteration - 1)
        assert abs(w["window"]["instructions"] - c["window"]["instructions"]) <= 4


def test_cost_charges_only_the_window_per_cpu(make_system):
    system = make_system(nodes=2, cpus_per_node=2, data_accesses=True, workload="syscall",
                         iterations=10)  # fmt: skip
    model = attach_cache_model(system)
    assert system.run().reason is StopReason.ALL_OFF
    report = system.report()
    cost = cost_of_run(system, model)
    assert list(cost.instructions) == [cpu["window"]["instructions"] for cpu in report["cpus"]]
    for cpu in range(4):
        # the cache model's stats are the window's too: boot's lines are not in them
        window = model.stats(cpu)
        assert 0 < window.fetch_lines < model.all_stats(cpu).fetch_lines
    assert report["window"]["instructions"] == sum(cost.instructions)
    assert report["window"]["setup_instructions"] == sum(cpu["setup"]["instructions"]
                                                        for cpu in report["cpus"])  # fmt: skip


def test_a_workload_without_window_is_measured_whole(make_system, tmp_path):
    source = tmp_path / "plain.S"
    source.write_text(NO_WINDOW_S)
    _, report = _run(make_system, workload="plain", iterations=1, extra_sources=(source,))
    assert report["window"]["cpus_opened"] == 0 and report["window"]["iterations"] is None
    for cpu in report["cpus"]:
        assert cpu["setup"] is None and not cpu["window"]["opened"]
        assert cpu["window"]["instructions"] == cpu["instructions"]


@pytest.mark.parametrize("nodes,cpus_per_node", [(1, 1), (2, 2)])
def test_generated_dbsim_builds_its_index_then_queries(make_system, nodes, cpus_per_node):
    system = make_system(nodes=nodes, cpus_per_node=cpus_per_node, workload="dbsim",
                         iterations=6, footprint=SMALL_FOOTPRINT, data_accesses=True)  # fmt: skip
    assert system.run().reason is StopReason.ALL_OFF
    report = system.report()
    cpus = nodes * cpus_per_node
    assert [cpu["exit_status"] for cpu in report["cpus"]] == [0] * cpus  # every key was found
    assert report["window"] == {**report["window"], "noun": "query", "cpus_opened": cpus,
                                "iterations": 6 * cpus}  # fmt: skip
    for cpu in report["cpus"]:
        # filling rows and index is set-up: bigger than six queries' worth of window
        assert cpu["setup"]["instructions"] > 0 and cpu["window"]["instructions"] > 0
        assert by_node_total(cpu["window"]["data_reads_by_node"]) > 0


def test_generated_footprint_is_what_was_asked_for():
    """Issue 12's code-hook measurement of a window: the knobs reach the executed code."""
    fp = replace(SMALL_FOOTPRINT, kernel_text_per_iter=6 * 1024, functions_per_path=12,
                 user_code=16 * 1024)  # fmt: skip
    result = measure("dbsim", iterations=12, spec={"footprint": fp})
    paths = result["syscalls"]
    assert len(paths) == fp.syscalls_per_iter
    for figures in paths.values():
        assert figures["calls"] == 12
        # the entry code's symbols (vectors, el0_sync, el0_svc, ret_to_user) are among them
        assert figures["functions_per_call"]["max"] == fp.functions_per_path
        assert figures["functions_per_call"]["min"] >= fp.functions_per_path - ENTRY_FUNCTIONS
        assert figures["instructions_per_call"]["mean"] >= figures["text_bytes_per_call"]["mean"] / 4
    per_iter = result["per_iteration"]["kernel_text_bytes"]["mean"]
    assert 0.8 * fp.kernel_text_per_iter <= per_iter <= 1.2 * fp.kernel_text_per_iter
    union = result["union"]["user_code_bytes"]
    assert 0.8 * fp.user_code <= union <= 1.2 * fp.user_code
    # a query scans its rows (4 lines each) and probes the index
    assert result["per_iteration"]["user_data_bytes"]["mean"] >= fp.rows_per_query * 256
