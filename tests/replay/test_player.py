"""The player: a synthetic trace's counts equal a hand count (hypothesis),
replication is a no-op on one node, CPU-to-node maps, and the cache model
adapter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emu.config import machine_config
from emu.hw.cachemodel import KIND_FETCH, CacheModel
from emu.jsonfmt import by_node, dense
from emu.replay.errors import TraceError
from emu.replay.player import cache_sinks, cpu_counts, cpu_map, play, replay_runs
from emu.replay.qemu_log import parse_qemu
from emu.replay.symbols import KernelMap

STEXT, ETEXT, END_RODATA = 0xFFFF800008010000, 0xFFFF800008D00000, 0xFFFF80000964D000
MODULES = 0xFFFF800000F00000
USER = 0x400000
KERNEL = KernelMap(stext=STEXT, etext=ETEXT, end_rodata=END_RODATA, text=0xFFFF800008000000)
REGIONS = {"text": STEXT, "rodata": ETEXT, "module": MODULES, "user": USER}

block = st.tuples(
    st.integers(0, 7),  # trace CPU
    st.sampled_from(sorted(REGIONS)),
    st.integers(0, 4000).map(lambda k: 4 * k),  # offset in the region
    st.integers(1, 40),  # instructions
)


def qemu_log(blocks) -> str:
    """An in_asm + exec log of ``blocks``, as QEMU 7.2 writes one: a block
    shorter than an earlier one at its PC is a cut block (its length in
    CFLAGS & 0x1ff, as -icount makes them)."""
    out = []
    longest: dict[int, int] = {}
    for number, (cpu, region, offset, insns) in enumerate(blocks):
        pc = REGIONS[region] + offset
        cflags = 0xFF080200
        if insns < longest.get(pc, 0):
            cflags |= insns
        longest[pc] = max(longest.get(pc, 0), insns)
        out.append("----------------\nIN: \n")
        out += [f"0x{pc + 4 * i:016x}:  d503201f  nop      \n" for i in range(insns)]
        out.append("\n")
        out.append(f"Trace {cpu}: 0x7f00{number:08x} [0000000000007001/{pc:016x}/00000021/"
                   f"{cflags:08x}] \n")  # fmt: skip
    return "".join(out)


def hand_count(blocks, topology, ktext):
    """Per CPU: kernel text fetches by node, all kernel fetches by node, lines."""
    nodes = topology.nodes
    kernel = np.zeros((topology.n_cpus, nodes), np.int64)
    every = np.zeros((topology.n_cpus, nodes), np.int64)
    lines = np.zeros((topology.n_cpus, nodes), np.int64)
    for cpu, region, offset, insns in blocks:
        if region == "user":
            continue
        home = topology.cpu_to_node(cpu) if ktext and region in ("text", "rodata") else 0
        if region == "text":
            kernel[cpu, home] += insns
        every[cpu, home] += insns
        first = REGIONS[region] + offset
        lines[cpu, home] += len({(first + 4 * i) // 64 for i in range(insns)})
    return kernel, every, lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(block, min_size=1, max_size=60), nodes=st.sampled_from([1, 2, 4]),
       chunk_bytes=st.sampled_from([256, 1 << 20]))  # fmt: skip
def test_counts_equal_a_hand_count(tmp_path, blocks, nodes, chunk_bytes):
    assume(any(region != "user" for _, region, _, _ in blocks))  # else `replay` refuses it
    topology = machine_config("default", nodes, 8 // nodes).topology
    trace = tmp_path / "synthetic.log"
    trace.write_text(qemu_log(blocks))
    chunks, _ = parse_qemu(trace, chunk_bytes)
    cpu_nodes = np.array([topology.cpu_to_node(c) for c in range(topology.n_cpus)])
    sinks, feeds = cache_sinks(topology, cpu_nodes, "fast", [False, True])
    counts, sizer = play(chunks, KERNEL, cpu_map(topology), topology.n_cpus, str(trace),
                         sinks=sinks)  # fmt: skip
    assert sizer.guessed_next == sizer.guessed_one == 0
    assert counts.records_outside_kernel == sum(1 for b in blocks if b[1] == "user")
    source = {"assumptions": []}
    runs, costs = replay_runs(machine_config("default", nodes, 8 // nodes), KERNEL, counts,
                              source, [False, True], feeds)  # fmt: skip
    for run, cost in zip(runs, costs, strict=True):
        kernel, every, lines = hand_count(blocks, topology, run["ktext"])
        for cpu in run["cpus"]:
            index = cpu["cpu"]
            assert dense(cpu["kernel_fetches_by_node"], nodes) == kernel[index].tolist()
            assert dense(cpu["fetches_by_node"], nodes) == every[index].tolist()
            assert dense(cpu["fetch_lines_by_node"], nodes) == lines[index].tolist()
            assert 0 not in cpu["fetches_by_node"].values()  # v2: sparse, zeros absent
            assert cpu["instructions"] == every[index].sum()
        # The same lines fed to a model by hand, one record per fetched line.
        model = CacheModel(topology, None, 0, 1 << 48, detail="fast")
        for cpu, region, offset, insns in blocks:
            if region == "user":
                continue
            home = topology.cpu_to_node(cpu) if run["ktext"] and region != "module" else 0
            first = REGIONS[region] + offset
            for line in sorted({(first + 4 * i) // 64 for i in range(insns)}):
                model.feed([cpu], [(home << 42) | (line & ((1 << 42) - 1))], [KIND_FETCH], [home])
        expected = model.cost_report(cpu_counts(counts, topology, run["ktext"]))
        assert cost.total_cycles == expected.total_cycles


def _replay_json(ktext_emu, tmp_path, trace, *options):
    import json

    out = tmp_path / "replay.json"
    assert ktext_emu(["replay", str(trace), "--system-map", str(tmp_path / "System.map"),
                      "--json", str(out), "--quiet", *options]) == 0  # fmt: skip
    return json.loads(out.read_text())


def _system_map(tmp_path):
    (tmp_path / "System.map").write_text(
        f"{KERNEL.text:016x} T _text\n{STEXT:016x} T _stext\n{ETEXT:016x} T _etext\n"
        f"{ETEXT:016x} D __start_rodata\n{END_RODATA:016x} D __end_rodata\n"
    )


@pytest.mark.parametrize("detail", ["fast", "cache"])
def test_one_node_gains_nothing(ktext_emu, tmp_path, detail):
    """On one node both settings fetch from node 0: every figure is identical."""
    _system_map(tmp_path)
    trace = tmp_path / "t.log"
    blocks = [(cpu % 4, "text", (97 * i) % 4000 * 4, 1 + i % 9) for i, cpu in enumerate(range(300))]
    trace.write_text(qemu_log(blocks))
    report = _replay_json(ktext_emu, tmp_path, trace, "--nodes", "1", "--cpus-per-node", "4",
                          "--detail", detail)  # fmt: skip
    off, on = report["runs"]
    assert (off["ktext"], on["ktext"]) == (False, True)
    for key in ("cpus", "instructions", "nodes", "machine", "kernel"):
        assert off[key] == on[key]
    common = set(off["cost"]) & set(on["cost"]) - {"speedup", "gain"}  # on adds its band
    assert {k: off["cost"][k] for k in common} == {k: on["cost"][k] for k in common}
    assert on["cost"]["speedup_band"] == {"low": 1.0, "mid": 1.0, "high": 1.0}
    assert on["cost"]["speedup"] == 1.0 and on["cost"]["gain"] == 0.0


def test_replication_makes_text_local_and_saves_cycles(ktext_emu, tmp_path):
    _system_map(tmp_path)
    trace = tmp_path / "t.log"
    blocks = [(cpu, "text", 64 * (i % 50), 16) for i in range(40) for cpu in range(8)]
    blocks += [(cpu, "module", 0, 8) for cpu in range(8)]
    trace.write_text(qemu_log(blocks))
    off, on = _replay_json(ktext_emu, tmp_path, trace)["runs"]
    for cpu in on["cpus"]:
        node = cpu["node"]
        assert cpu["kernel_fetches_by_node"] == {str(node): 640}
        assert by_node(cpu["fetches_by_node"], 0) >= 8  # module text stays on node 0
    for cpu in off["cpus"]:
        assert cpu["kernel_fetches_by_node"] == {"0": 640}
    assert on["cost"]["speedup"] > 1.0


def test_cpu_maps(tmp_path):
    topology = machine_config("default").topology  # 4 nodes x 2 CPUs
    assert cpu_map(topology).tolist() == list(range(8))
    mapping = cpu_map(topology, {0: 0, 1: 3, 5: 3})
    assert mapping.tolist() == [0, 6, -1, -1, -1, 7]
    with pytest.raises(TraceError, match="more than 2 trace CPUs on node 3"):
        cpu_map(topology, {0: 3, 1: 3, 2: 3})
    with pytest.raises(TraceError, match="nodes 0-3"):
        cpu_map(topology, {0: 4})


def test_trace_cpu_beyond_the_machine_names_its_line(ktext_emu, tmp_path, capsys):
    _system_map(tmp_path)
    trace = tmp_path / "t.log"
    trace.write_text(qemu_log([(0, "text", 0, 4), (1, "text", 0, 4), (9, "text", 8, 4)]))
    status = ktext_emu(["replay", str(trace), "--system-map", str(tmp_path / "System.map")])
    assert status == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{trace}:24: trace CPU 9 is not on the machine (CPUs 0-7" in err


def test_cache_feed_charges_each_line_to_its_home():
    """The cache adapter: every fetched line reaches the model, and a line's
    DRAM fill goes to the home node it was fed with."""
    from emu.replay.player import CacheFeed

    topology = machine_config("default", 2, 1).topology
    feed = CacheFeed(topology, "fast")
    pcs = np.array([STEXT, STEXT + 60, STEXT + 4096, STEXT], np.uint64)
    sizes = np.array([8, 8, 64, 8], np.int64)  # lines: 1, 2 (straddles), 1, 1 (a hit)
    feed.feed(np.array([0, 0, 1, 1]), pcs, sizes, np.array([0, 0, 1, 1]))
    cpu0, cpu1 = feed.model.stats(0), feed.model.stats(1)
    assert (cpu0.fetch_lines, cpu1.fetch_lines) == (3, 2)
    assert cpu0.fetch_fills_by_node == (2, 0)  # STEXT's line and the next, from node 0
    assert cpu1.fetch_fills_by_node == (0, 2)  # its own copies: node 1's lines


def test_top_functions_by_hand(ktext_emu, tmp_path):
    _system_map(tmp_path)
    with (tmp_path / "System.map").open("a") as handle:
        handle.write(f"{STEXT:016x} T func_a\n{STEXT + 0x1000:016x} T func_b\n")
    trace = tmp_path / "t.log"
    trace.write_text(qemu_log([(0, "text", 0, 4), (1, "text", 16, 4), (0, "text", 0, 4),
                               (1, "text", 0x1000, 8), (0, "module", 0, 2)]))  # fmt: skip
    source = _replay_json(ktext_emu, tmp_path, trace, "--top", "5")["runs"][0]["source"]
    assert [(f["symbol"], f["instructions"]) for f in source["top_functions"]] == \
        [("func_a", 12), ("func_b", 8)]  # module code has no System.map symbol
    assert source["top_functions"][0]["share"] == 12 / 20
