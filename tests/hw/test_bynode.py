"""The cost model's per-node containers at scale (issue 17 item 8): the lazy
node x node figures (SlitMatrix) equal the dense matrices they replace, and
the sparse counts (NodeCounts, the C node records, the accounting's nonzero
scan) equal dense ones."""

from __future__ import annotations

import ctypes
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.config import load_preset
from emu.hw.accounting import Accounting, _nonzero_counters_python
from emu.hw.bynode import NodeCounts, SlitMatrix
from emu.hw.cost import exact, latency_matrix_ns, resolve_parameters
from emu.hw.topology import LOCAL_DISTANCE, MemoryLatency, nearest_remote


def dense_latency_ns(distances, latency: MemoryLatency, local=None, remote=None):
    """The dense matrix latency_matrix_ns built before it became lazy."""
    local = local if local is not None else exact(
        (latency.local_ns[0] + latency.local_ns[1]) / 2 if isinstance(latency.local_ns, tuple)
        else latency.local_ns)  # fmt: skip
    if latency.remote_ns is None:
        return tuple(tuple(local * d / LOCAL_DISTANCE for d in row) for row in distances)
    remote = remote if remote is not None else exact(latency.remote_ns)
    reference = latency.remote_distance or nearest_remote(distances)
    step = (remote - local) / (reference - LOCAL_DISTANCE)
    return tuple(tuple(local + step * (d - LOCAL_DISTANCE) for d in row) for row in distances)


def dense_point(params, picks):
    """CostPoint.dram_cycles and llc_cycles as point() built them densely."""
    point = params.point(picks)
    clock = params.clock_ghz
    local, remote = _picked(params, "local_ns", picks), _picked(params, "remote_ns", picks)
    if remote is not None and remote < local:
        remote = local
    scalar = params.latency.at(float(local), None if remote is None else float(remote))
    dram = tuple(tuple(ns * clock for ns in row)
                 for row in dense_latency_ns(params.distances, scalar, local, remote))  # fmt: skip
    llc_local = _picked(params, "llc_hit_ns", picks) * clock
    remote_llc = _picked(params, "remote_llc_hit_ns", picks)
    llc = tuple(
        tuple(llc_local if n == h else (remote_llc * clock if remote_llc is not None
                                        else llc_local + dram[n][h] - dram[n][n])
              for h in range(len(dram)))
        for n in range(len(dram))
    )  # fmt: skip
    return point, dram, llc


def _picked(params, name, picks):
    figure = params.figure(name)
    if figure is None:
        return None
    if not isinstance(figure, tuple):
        return exact(figure)
    low, high = exact(figure[0]), exact(figure[1])
    return {"low": low, "high": high, "mid": (low + high) / 2}[picks.get(name, "mid")]


@st.composite
def slits(draw, max_nodes: int = 6):
    """Symmetric SLITs: 10 on the diagonal, 11..60 elsewhere."""
    nodes = draw(st.integers(1, max_nodes))
    rows = [[LOCAL_DISTANCE] * nodes for _ in range(nodes)]
    for i in range(nodes):
        for j in range(i + 1, nodes):
            rows[i][j] = rows[j][i] = draw(st.integers(11, 60))
    return tuple(tuple(row) for row in rows)


@settings(max_examples=80, deadline=None)
@given(slit=slits(), local=st.integers(50, 150), extra=st.one_of(st.none(), st.integers(0, 200)),
       remote_distance=st.one_of(st.none(), st.integers(11, 40)))
def test_lazy_latency_equals_the_dense_matrix(slit, local, extra, remote_distance) -> None:
    remote = None if extra is None else float(local + extra)
    latency = MemoryLatency(float(local), remote, "test",
                            remote_distance=None if remote is None else remote_distance)
    lazy = latency_matrix_ns(slit, latency)
    dense = dense_latency_ns(slit, latency)
    assert isinstance(lazy, SlitMatrix)
    assert lazy == dense and dense == lazy
    assert [list(row) for row in lazy] == [list(row) for row in dense]
    assert all(lazy.at(n, h) == dense[n][h] and lazy[n][h] == dense[n][h]
               for n in range(len(slit)) for h in range(len(slit)))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(slit=slits(), preset=st.sampled_from(["default", "altra-2s", "kunpeng920-4n"]),
       picks=st.lists(st.sampled_from(["low", "mid", "high"]), min_size=7, max_size=7))
def test_point_equals_the_dense_point_on_random_slits(slit, preset, picks) -> None:
    topology = replace(load_preset(preset).resized(nodes=len(slit)), distances=slit)
    params = resolve_parameters(topology)
    chosen = dict(zip(params.ranged(), picks, strict=False))
    point, dram, llc = dense_point(params, chosen)
    assert point.dram_cycles == dram and point.llc_cycles == llc


def irregular_slit(nodes: int) -> tuple[tuple[int, ...], ...]:
    """A symmetric SLIT with several remote distances (12 to 40)."""
    return tuple(tuple(LOCAL_DISTANCE if i == j else 12 + 4 * ((i ^ j) % 8) for j in range(nodes))
                 for i in range(nodes))  # fmt: skip


@pytest.mark.parametrize("preset", ["default", "altra-2s", "kunpeng920-4n"])
@pytest.mark.parametrize("irregular", [False, True])
def test_point_at_1024_nodes_equals_the_dense_formula_at_sampled_pairs(preset: str,
                                                                       irregular: bool) -> None:
    topology = load_preset(preset).resized(nodes=1024)
    if irregular:
        topology = replace(topology, distances=irregular_slit(1024))
    params = resolve_parameters(topology)
    for pick in ("low", "high"):
        chosen = dict.fromkeys(params.ranged(), pick)
        point = params.point(chosen)
        clock = params.clock_ghz
        local, remote = _picked(params, "local_ns", chosen), _picked(params, "remote_ns", chosen)
        if remote is not None and remote < local:
            remote = local
        scalar = params.latency.at(float(local), None if remote is None else float(remote))
        reference = scalar.remote_distance or nearest_remote(topology.distances)

        def ns(d: int, scalar=scalar, local=local, remote=remote, reference=reference
               ) -> Fraction:  # fmt: skip
            if scalar.remote_ns is None:
                return local * d / LOCAL_DISTANCE
            return local + (remote - local) / (reference - LOCAL_DISTANCE) * (d - LOCAL_DISTANCE)

        llc_local = _picked(params, "llc_hit_ns", chosen) * clock
        remote_llc = _picked(params, "remote_llc_hit_ns", chosen)
        for node, home in ((0, 0), (0, 1), (1, 0), (511, 1023), (1023, 1023), (17, 900), (3, 5)):
            d = topology.distances[node][home]
            dram = ns(d) * clock
            assert point.dram_cycles[node][home] == dram
            expected_llc = (llc_local if node == home else
                            remote_llc * clock if remote_llc is not None
                            else llc_local + dram - ns(LOCAL_DISTANCE) * clock)  # fmt: skip
            assert point.llc_cycles[node][home] == expected_llc
        assert len(point.dram_cycles) == 1024 and len(point.llc_cycles[5]) == 1024


def test_slit_matrix_computes_each_distinct_distance_once() -> None:
    calls = []
    slit = tuple(tuple(10 if i == j else 20 + (i + j) % 3 for j in range(64)) for i in range(64))

    def value(d, local, diagonal):
        calls.append((d, local, diagonal))
        return Fraction(d, local)

    matrix = SlitMatrix(slit, value)
    total = sum(v for row in matrix for v in row)
    assert total == sum(Fraction(d, 10) for row in slit for d in row)
    assert sorted(set(calls)) == sorted(calls) and len(calls) == 4  # 10 and 20, 21, 22


def test_node_counts_read_as_dense_tuples() -> None:
    counts = NodeCounts(6, {1: 5, 4: 2, 5: 0})
    assert counts == (0, 5, 0, 0, 2, 0)
    assert (0, 5, 0, 0, 2, 0) == counts  # noqa: SIM300 - the reflected comparison
    assert counts != (0, 5, 0, 0, 2) and counts != (0, 5, 0, 0, 3, 0)
    assert list(counts) == [0, 5, 0, 0, 2, 0] and counts[-2] == 2 and counts[1:3] == (5, 0)
    assert hash(counts) == hash((0, 5, 0, 0, 2, 0)) and counts.total() == 7
    assert counts.as_dict() == {1: 5, 4: 2} and list(counts.items()) == [(1, 5), (4, 2)]
    assert counts.minus((0, 5, 0, 0, 1, 0)) == (0, 0, 0, 0, 1, 0)
    with pytest.raises(IndexError):
        counts[6]
    with pytest.raises(IndexError):
        NodeCounts(2, {2: 1})


@settings(max_examples=60, deadline=None)
@given(now=st.lists(st.integers(0, 10**12), min_size=0, max_size=40), data=st.data())
def test_node_counts_minus_equals_dense_subtraction(now, data) -> None:
    then = data.draw(st.lists(st.integers(0, 10**12), min_size=len(now), max_size=len(now)))
    difference = NodeCounts.dense(now).minus(NodeCounts.dense(then))
    assert difference == tuple(a - b for a, b in zip(now, then, strict=True))


@settings(max_examples=60, deadline=None)
@given(values=st.dictionaries(st.integers(0, 2047), st.integers(1, 2**64 - 1), max_size=20),
       start=st.integers(0, 200), count=st.integers(0, 1800))
def test_nonzero_counter_scans_equal_a_dense_scan(values, start, count) -> None:
    counters = (ctypes.c_uint64 * 2048)()
    for index, value in values.items():
        counters[index] = value
    count = min(count, 2048 - start)
    dense = [(i - start, counters[i]) for i in range(start, start + count) if counters[i]]
    as_bytes = memoryview(counters).cast("B")
    assert _nonzero_counters_python(as_bytes, start, count) == dense
    accounting = Accounting(1, 1, 0, 1 << 30)
    assert accounting._nonzero(counters, as_bytes, start, count) == dense


@pytest.mark.parametrize("nodes", [1, 3, 64])
def test_accounting_counts_equal_its_dense_rows(nodes: int) -> None:
    accounting = Accounting(4, nodes, 0, 1 << 30)
    row = accounting._row
    for cpu in range(4):
        for slot in {0, 3 % (2 * row), (2 * row - 1), (row + 1) % (2 * row)}:
            accounting._fetch[cpu * 2 * row + slot] += 10 * cpu + slot + 1
        for slot in {1, row - 1}:
            accounting._data[cpu * row + slot] += 7 + cpu
    for cpu in range(4):
        fetch = accounting._fetch[2 * cpu * row : 2 * (cpu + 1) * row]
        local, remote = fetch[:row], fetch[row:]
        data = accounting._data[cpu * row : (cpu + 1) * row]
        counts = accounting.counts(cpu)
        assert counts.kernel_fetches_by_node == tuple(
            a + b for a, b in zip(local[0::2], remote[0::2], strict=True))
        assert counts.other_fetches_by_node == tuple(
            a + b for a, b in zip(local[1::2], remote[1::2], strict=True))
        assert counts.remote_filled_kernel_fetches_by_node == tuple(remote[0::2])
        assert counts.remote_filled_other_fetches_by_node == tuple(remote[1::2])
        assert counts.data_reads_by_node == tuple(data[0::2])
        assert counts.data_writes_by_node == tuple(data[1::2])
        assert accounting.instructions(cpu) == sum(fetch)


@pytest.mark.parametrize("nodes", [2, 64])
def test_window_counts_equal_the_dense_difference(nodes: int) -> None:
    accounting = Accounting(2, nodes, 0, 1 << 30)
    row = accounting._row
    accounting._fetch[0], accounting._fetch[1] = 5, 6
    accounting._fetch[row + 3] = 9  # a remote-filled "other" fetch from node 1
    accounting._data[2 * nodes - 1] = 4
    accounting.open_window(0)
    before = accounting.counts(0)
    assert accounting.setup_counts(0) == before and accounting.setup_counts(1) is None
    accounting._fetch[0] += 7
    accounting._fetch[2 * row - 2] = 11  # remote-filled kernel fetch, last node
    accounting._data[0] = 3
    accounting._fetch[1] -= 2  # settle() takes back fetches that did not retire
    since = accounting.window_counts(0)
    assert since == accounting.counts(0).minus(before)
    assert since.kernel_fetches_by_node[0] == 7 and since.other_fetches_by_node[0] == -2
    assert accounting.window_counts(1) == accounting.counts(1)
