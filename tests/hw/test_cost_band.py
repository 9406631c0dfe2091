"""The speed-up band, the sanity figures, and the negative controls of the
cost model: one node gains exactly nothing, equal remote and local latency
gains exactly nothing, an LLC at the requester gains less than one at the
home node, and a kernel path that fits in the L2 gains under 1%."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emu.config import machine_config
from emu.hw.accounting import CpuCounts
from emu.hw.band import agreement, band_and_sanity, sanity, speedup_band
from emu.hw.cachemodel import KIND_FETCH, KIND_READ, CacheModel, attach_cache_model
from emu.hw.cost import CostReport, cost_of_run
from emu.hw.topology import MIB, CacheGeometry, CoreCost, MemoryLatency, Topology, regular_distances
from emu.system import RunSpec, System

RAM_BASE = 0x4000_0000
BANK = 16 * MIB


def run_pair(preset: str, workload: str, iterations: int, nodes: int | None = None,
             latency: MemoryLatency | None = None, **cache: object) -> tuple[CostReport, CostReport]:  # fmt: skip
    """The cache-model reports of ``workload`` with ktext off and on."""
    config = machine_config(preset, nodes)
    topology = config.topology
    if cache:
        topology = replace(topology, cache=replace(topology.cache, **cache))
    if latency is not None:
        topology = replace(topology, latency=latency)
    config = replace(config, topology=topology)
    reports = []
    for ktext in (False, True):
        spec = RunSpec(ktext=ktext, workload=workload, iterations=iterations, data_accesses=True)
        system = System(config, spec)
        try:
            model = attach_cache_model(system)
            system.run()
            reports.append(cost_of_run(system, model))
        finally:
            system.close()
    return reports[0], reports[1]


# -- negative controls -------------------------------------------------------------------


def test_one_node_gains_exactly_nothing() -> None:
    off, on = run_pair("default", "syscall", 50, nodes=1)
    assert off.total_cycles == on.total_cycles  # exact rationals
    assert speedup_band(off, on) == {"low": 1.0, "mid": 1.0, "high": 1.0}


def synthetic_pair(placement: str, latency: MemoryLatency) -> tuple[CostReport, CostReport]:
    """The same kernel-text stream on 2 nodes x 2 CPUs, homed on node 0 (off)
    and on each CPU's own node (on), with user data on each CPU's node."""
    cache = CacheGeometry(64, 1, 2, 1, 2, 64, 4, (20.0, 40.0), "test", l2_kib=4, l2_ways=2,
                          llc_placement=placement, prefetch_next_line=(False, True),
                          data_mlp=(1.0, 4.0))  # fmt: skip
    topo = Topology("t", 2, 2, BANK, regular_distances(2), latency=latency,
                    cost=CoreCost(3.0, (0.5, 1.5), source="test"), cache=cache)  # fmt: skip
    text = [(RAM_BASE >> 6) + i for i in range(300)]
    reports = []
    for replicated in (False, True):
        model = CacheModel(topo, None, RAM_BASE, BANK)
        cpus, lines, kinds, homes = [], [], [], []
        for rounds in range(20):
            for cpu in range(4):
                node = cpu // 2
                home = node if replicated else 0
                for line in text[rounds % 3 * 50 : rounds % 3 * 50 + 120]:
                    cpus.append(cpu)
                    lines.append(line)  # the same line numbers: only the home differs
                    kinds.append(KIND_FETCH)
                    homes.append(home)
                cpus += [cpu] * 40
                lines += [(RAM_BASE + node * BANK + 0x100000 >> 6) + cpu * 1000 + i
                          for i in range(40)]  # fmt: skip
                kinds += [KIND_READ] * 40
                homes += [node] * 40
        model.feed(cpus, lines, kinds, homes)
        counts = [CpuCounts((10_000, 0), (0, 0), (0, 0), (0, 0))] * 4
        reports.append(model.cost_report(counts))
    return reports[0], reports[1]


def test_remote_latency_equal_to_local_gains_exactly_nothing() -> None:
    """LLC at the requester: with remote DRAM as fast as local DRAM, moving
    text homes changes no cycle (the same line numbers in both runs, so the
    same sets and the same hits)."""
    flat = MemoryLatency((80.0, 120.0), (80.0, 120.0), "test: remote = local")
    off, on = synthetic_pair("requester", flat)
    assert off.total_cycles == on.total_cycles
    # The band's corners also pair local low with remote high, which is not
    # "equal latency"; the point (both at their midpoint) is.
    assert speedup_band(off, on)["mid"] == 1.0
    slow = MemoryLatency(100.0, 200.0, "test: remote = 2 x local")
    off, on = synthetic_pair("requester", slow)
    assert speedup_band(off, on)["mid"] > 1.0


def test_with_the_llc_at_home_and_equal_latency_replication_costs_its_cold_fills() -> None:
    """Why the control above uses the requester placement: with the LLC at
    the home node, one fill of node 0's slice serves every node's CPUs; with
    replication each node's copy is filled from DRAM once, so at equal
    latency replication loses by those extra cold fills, and gains nothing."""
    flat = MemoryLatency((80.0, 120.0), (80.0, 120.0), "test: remote = local")
    off, on = synthetic_pair("home", flat)
    assert on.total_cycles > off.total_cycles
    extra = sum(sum(s.fetch_fills_by_node) for s in on.hierarchy.stats[0]) - sum(
        sum(s.fetch_fills_by_node) for s in off.hierarchy.stats[0])  # fmt: skip
    assert extra == 220  # node 1's copy of the 220 text lines the stream touches


def test_remote_latency_equal_to_local_gains_nothing_on_a_real_run() -> None:
    """The shipped kernel on 2 nodes, LLC at the requester, remote = local:
    the copies sit at other physical addresses, which could change which
    lines collide in a set, but not here: the gain is exactly 0."""
    off, on = run_pair("default", "syscall", 50, llc_placement="requester",
                       latency=MemoryLatency(90.0, 90.0, "test: remote = local"))  # fmt: skip
    band = speedup_band(off, on)
    assert band == {"low": 1.0, "mid": 1.0, "high": 1.0}


def test_an_llc_at_the_requester_shrinks_the_gain() -> None:
    """At the home node, a remote CPU's miss to node 0's text crosses the link
    even on an SLC hit; at the requester, the text is cached on its node after
    the first touch, so replication saves less."""
    home = speedup_band(*run_pair("altra-2s", "dbsim", 100, llc_placement="home"))
    requester = speedup_band(*run_pair("altra-2s", "dbsim", 100, llc_placement="requester"))
    assert requester["mid"] < home["mid"]
    assert requester["high"] < home["high"]
    assert home["mid"] > 1.0 and requester["mid"] >= 1.0


def test_a_kernel_path_that_fits_in_the_l2_gains_under_one_percent() -> None:
    """The shipped `syscall` workload's hot kernel text is about ten lines:
    after the first touches it never leaves the L1I, so replication has
    nothing to save.  What is left is cold start: the gain falls as the run
    grows, and the extra iterations themselves gain under 0.1%."""
    short = run_pair("altra-2s", "syscall", 200)
    long = run_pair("altra-2s", "syscall", 2000)
    gain_short = float(short[0].total_cycles / short[1].total_cycles) - 1
    gain_long = float(long[0].total_cycles / long[1].total_cycles) - 1
    assert gain_long < 0.01 and gain_long < gain_short
    extra_off = long[0].total_cycles - short[0].total_cycles
    extra_on = long[1].total_cycles - short[1].total_cycles
    assert abs(float(extra_off / extra_on) - 1) < 0.001
    l1i_misses = sum(s.l1i_misses for s in long[1].hierarchy.stats[0]) - sum(
        s.l1i_misses for s in short[1].hierarchy.stats[0])  # fmt: skip
    assert l1i_misses < 50  # 1,800 more iterations on 8 CPUs: almost no new misses


# -- band, sanity, agreement -------------------------------------------------------------


def test_band_brackets_the_point_and_spans_the_structural_variants() -> None:
    off, on = synthetic_pair("home", MemoryLatency(100.0, (150.0, 250.0), "test"))
    band = speedup_band(off, on)
    assert band["low"] <= band["mid"] <= band["high"]
    assert band["mid"] == float(off.total_cycles / on.total_cycles)
    assert band["low"] < band["high"]
    doc = band_and_sanity(off, on)
    assert doc["band_over"]["ranges"] == ["base_cpi", "remote_ns", "llc_hit_ns", "data_mlp"]
    assert len(doc["band_over"]["variants"]) == 2  # prefetch off and on
    agree = agreement(off, on)
    assert agree is not None and agree["agree"] and agree["fast_gain"] == agree["cache_gain"]


def test_sanity_figures_by_hand() -> None:
    _off, on = synthetic_pair("requester", MemoryLatency(100.0, 200.0, "test"))
    figures = sanity(on)
    assert set(figures) == {"kernel_share", "frontend_stall_share", "cpi", "l1i_mpki",
                            "l2i_mpki", "llc_mpki"}  # fmt: skip
    assert figures["kernel_share"] == 1.0  # every counted instruction is kernel's
    stats = on.hierarchy.stats[0]
    assert figures["l1i_mpki"] == sum(s.l1i_misses for s in stats) * 1000 / 40_000
    assert figures["cpi"] == pytest.approx(float(on.total_cycles) / 40_000)
    assert 0 < figures["frontend_stall_share"] < 1
    assert figures["l2i_mpki"] <= figures["l1i_mpki"]


def test_the_run_report_carries_band_sanity_and_agreement(tmp_path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "emu", "run", "--machine", "altra-2s", "--workload", "syscall",
         "--iterations", "20", "--detail", "cache", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    on = next(run for run in runs if run["ktext"])
    band = on["cost"]["speedup_band"]
    assert band["low"] <= band["mid"] <= band["high"] and band["mid"] == on["cost"]["speedup"]
    assert set(on["cost"]["sanity"]) >= {"kernel_share", "cpi", "llc_mpki"}
    assert "fast_agreement" in on["cost"] and "gain" in on["cost"]
    assert "speed-up band: low" in done.stdout and "sanity (ktext on)" in done.stdout


def test_a_generated_kernel_path_larger_than_the_l1i_but_inside_the_l2_gains_under_one_percent() -> None:
    """The generated kernel body with 96 KiB of kernel text per query (three
    paths of 32 KiB: more than the 64 KiB L1I, far less than the 1 MiB L2)
    and little user code and data to evict it: after a warm-up the L1I
    misses all the time, the private L2 serves those misses on every node
    with replication on or off, so there is nothing left to replicate."""
    from emu.blob.footprint_data import footprint_with

    footprint = footprint_with({"kernel_text_per_iter": 96 * 1024, "instructions_per_path": 9000,
                                "user_code": 4096, "user_data": 128 * 1024})  # fmt: skip
    config = machine_config("altra-2s", None, 1)  # 2 nodes x 1 CPU
    reports = []
    for ktext in (False, True):
        spec = RunSpec(ktext=ktext, workload="dbsim", iterations=20, warmup=10,
                       data_accesses=True, footprint=footprint)  # fmt: skip
        system = System(config, spec)
        try:
            model = attach_cache_model(system, detail="cache")
            system.run()
            reports.append(cost_of_run(system, model))
        finally:
            system.close()
    off, on = reports
    band = speedup_band(off, on)
    assert band["mid"] - 1 < 0.01 and band["high"] - 1 < 0.01
    figures = sanity(off)
    assert figures["l1i_mpki"] > 5  # the path does not fit in the L1I ...
    assert figures["l2i_mpki"] < figures["l1i_mpki"] / 20  # ... but it fits in the L2
