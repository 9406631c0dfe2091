"""The cache hierarchy: hand-countable LRU, L2, placement, prefetch,
inclusion and write-back sequences, the guest loop program, set sampling,
the record feed, and the C code against the pure-Python reference on
synthetic traces (hypothesis) and on a recorded trace of a real run."""

from __future__ import annotations

import ctypes
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cost_programs import loop_program, run_on

from emu.errors import ConfigError
from emu.hw.accounting import KIND_OTHER, Accounting, CpuCounts, _load_accel
from emu.hw.cachemodel import (
    KIND_FETCH,
    KIND_READ,
    KIND_WRITE,
    SAMPLE_FACTOR,
    STAT_NAMES,
    CacheModel,
    CacheStats,
    ReferenceCache,
    ReferenceHierarchy,
    ReferenceSim,
    Variant,
    attach_cache_model,
    load_cachesim,
)
from emu.hw.cost import MODEL_CACHE
from emu.hw.topology import MIB, CacheGeometry, CoreCost, MemoryLatency, Topology, regular_distances

RAM_BASE = 0x4000_0000
BANK = 16 * MIB
BACKENDS = ["c", "python"] if load_cachesim() is not None else ["python"]
needs_c = pytest.mark.skipif(load_cachesim() is None, reason="emu.hw._cachesim is not built")
UC_MEM_READ, UC_MEM_WRITE = 16, 17
LEVELS = ("l1i", "l1d", "l2")


def geometry(line=64, l1i=(64, 4), l1d=(64, 4), llc=(1024, 16), llc_hit_ns=10.0, l2=(256, 8),
             placement="requester", inclusive=False, prefetch=False) -> CacheGeometry:  # fmt: skip
    """Hand-countable figures: no L1 hit time subtracted, no data overlap."""
    return CacheGeometry(line, l1i[0], l1i[1], l1d[0], l1d[1], llc[0], llc[1], llc_hit_ns, "test",
                         l2_kib=l2[0], l2_ways=l2[1], l1_hit_cycles=0, l2_hit_cycles=12,
                         llc_placement=placement, inclusive_l2=inclusive,
                         prefetch_next_line=prefetch, data_mlp=1.0)  # fmt: skip


def machine(nodes=2, cpus_per_node=1, cache=None) -> Topology:
    return Topology("c", nodes, cpus_per_node, BANK, regular_distances(nodes),
                    latency=MemoryLatency(100.0, 150.0, "test"),
                    cost=CoreCost(2.0, 1.0, 0.75, 0.5, "test"), cache=cache or geometry())  # fmt: skip


def model(topology: Topology, backend: str, **kwargs) -> tuple[CacheModel, Accounting]:
    accounting = Accounting(topology.n_cpus, topology.nodes, RAM_BASE, BANK)
    return CacheModel(topology, accounting, RAM_BASE, BANK, backend=backend, **kwargs), accounting


def no_instructions(n: int = 2) -> list[CpuCounts]:
    return [CpuCounts((0,) * 2, (0,) * 2, (0,) * 2, (0,) * 2)] * n


def line_of(node: int, offset: int = 0x10000) -> int:
    return (RAM_BASE + node * BANK + offset) >> 6


# -- hand-countable ----------------------------------------------------------------------


def test_reference_cache_lru_by_hand() -> None:
    cache = ReferenceCache(sets=1, ways=2)
    assert cache.lookup(1, False) == (False, None, False)
    assert cache.lookup(2, True) == (False, None, False)
    assert cache.lookup(1, False) == (True, None, False)  # 1 is now most recent
    assert cache.lookup(3, False) == (False, 2, True)  # evicts 2, the LRU, dirty
    assert cache.lookup(1, True) == (True, None, False)
    assert cache.contents() == {(1, True), (3, False)}
    sets = ReferenceCache(sets=4, ways=1)
    assert [sets.lookup(line, False)[0] for line in (0, 4, 1, 0, 5, 1)] == [
        False, False, False, False, False, False
    ]  # 0/4 and 1/5 share sets  # fmt: skip
    assert sets.remove(1) == 1 and sets.remove(1) == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cpu", [0, 1])
def test_guest_loop_program_by_hand(backend: str, cpu: int) -> None:
    """Code (12 instructions, one 64-byte line) on node 1; 10 loads from one
    line of node 0, 10 stores to one line of node 1.  Blocks: set-up + loop
    body, the loop body 9 more times, the exit: 11 fetched lines, one miss
    at every level for the code line and for each data line."""
    topo = machine()
    models = []

    def attach(machine_, physmem) -> None:
        cache = CacheModel(topo, machine_.accounting, RAM_BASE, BANK, backend=backend)
        cache.install(machine_.uc)
        machine_.switch_listeners.append(cache.on_switch)
        models.append(cache)

    run_on(topo, lambda pm: loop_program(pm, 1, 0, 1, 10), cpu, before_run=attach)
    cache = models[0]
    stats = cache.stats(cpu)
    zero = (0, 0)
    assert stats == CacheStats(
        fetch_lines=11, read_lines=10, write_lines=10, l1i_misses=1, l1d_misses=2,
        l2_fetch_hits=0, l2_fetch_misses=1, l2_data_hits=0, l2_data_misses=2, prefetches=0,
        prefetch_l1_hits=0, l2_prefetch_hits=0, l1d_writebacks=0, l2_writebacks=0,
        back_invalidations=0, llc_writebacks=0, llc_fetch_hits_by_node=zero,
        llc_data_hits_by_node=zero, llc_prefetch_hits_by_node=zero, fetch_fills_by_node=(0, 1),
        data_fills_by_node=(1, 1), prefetch_fills_by_node=zero, writebacks_by_node=zero,
    )  # fmt: skip
    assert cache.stats(1 - cpu) == CacheStats.from_row([0] * 100, 2)
    assert (cache.unknown_fetch_lines, cache.unknown_data_lines) == (0, 0)
    report = cache.cost_report()
    assert report.model == MODEL_CACHE
    # 48 instructions; fills: code from node 1, data from nodes 0 and 1; 200/300 cycles
    remote, local = 300, 200
    expected = 48 + (remote + local + remote if cpu == 0 else local + remote + local)
    assert report.cycles[cpu] == expected
    assert report.memory_lines[cpu] == (1, 2)
    assert report.traffic_bytes == (64, 128)
    assert report.to_json()["cpus"][cpu]["cache"]["fetch_lines"] == 11


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("placement", ["requester", "home"])
def test_llc_placement_by_hand(backend: str, placement: str) -> None:
    """One line of node 1 fetched by CPUs 0, 1 (node 0), 2 (node 1), then 0."""
    topo = machine(nodes=2, cpus_per_node=2, cache=geometry(placement=placement))
    cache, _ = model(topo, backend)
    line = line_of(1)
    cache.feed([0, 1, 2, 0], [line] * 4, [KIND_FETCH] * 4, [1] * 4)
    s0, s1, s2 = (cache.stats(c) for c in range(3))
    assert (s0.fetch_lines, s0.l1i_misses, s0.l2_fetch_misses, s0.fetch_fills_by_node) == (
        2, 1, 1, (0, 1))  # fmt: skip
    assert (s1.l2_fetch_misses, s1.llc_fetch_hits_by_node, s1.fetch_fills_by_node) == (
        1, (0, 1), (0, 0))  # fmt: skip
    report = cache.cost_report(no_instructions(4))
    if placement == "requester":
        # node 0's LLC holds it for CPU 1; CPU 2 misses its own node's LLC
        assert s2.fetch_fills_by_node == (0, 1)
        assert report.cycles[:3] == (300, 20, 200)  # remote fill, local LLC hit, local fill
    else:
        # one slice, node 1's, for everyone: CPU 1 crosses the link to hit it
        assert s2.llc_fetch_hits_by_node == (0, 1) and s2.fetch_fills_by_node == (0, 0)
        # remote slice hit: 20 + (300 - 200) cycles of link; CPU 2's slice is local
        assert report.cycles[:3] == (300, 120, 20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_write_backs_by_hand(backend: str) -> None:
    """L1D 1 KiB direct-mapped (16 sets), L2 2 KiB (32 sets), LLC 4 KiB (64
    sets), all direct-mapped.  Lines A, B = A + 16, C = A + 32, D = A + 64 of
    node 1: write A, write B, read C, read D."""
    topo = machine(cache=geometry(l1d=(1, 1), l2=(2, 1), llc=(4, 1)))
    cache, _ = model(topo, backend)
    _, mem = cache.hook_functions()
    a = RAM_BASE + BANK + 0x10000
    mem(None, UC_MEM_WRITE, a, 8, 0)  # A: misses everywhere, dirty in L1D
    mem(None, UC_MEM_WRITE, a + 16 * 64, 8, 0)  # B: evicts dirty A from L1D into L2 (hit)
    mem(None, UC_MEM_READ, a + 32 * 64, 8, 0)  # C: L2 evicts dirty A into the LLC; B into L2
    mem(None, UC_MEM_READ, a + 64 * 64, 8, 0)  # D: the LLC evicts dirty A to DRAM
    stats = cache.stats(0)
    assert (stats.write_lines, stats.read_lines, stats.l1d_misses, stats.l2_data_misses) == (
        2, 2, 4, 4)  # fmt: skip
    assert (stats.l1d_writebacks, stats.l2_writebacks, stats.llc_writebacks) == (2, 1, 1)
    assert (stats.data_fills_by_node, stats.writebacks_by_node) == ((0, 4), (0, 1))
    line = a >> 6
    assert cache.contents("l1d", 0) == {(line + 64, False)}
    assert cache.contents("l2", 0) == {(line + 16, True), (line + 64, False)}
    assert cache.contents("llc", 0) == {(line + 16, False), (line + 32, False), (line + 64, False)}
    assert cache.cost_report(no_instructions()).memory_lines[0] == (0, 5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_next_line_prefetch_by_hand(backend: str) -> None:
    """A miss on line L also brings L + 1 (same 4 KiB page only), counted as
    prefetch traffic, costing no cycles, and making the fetch of L + 1 a hit."""
    topo = machine(cache=geometry(prefetch=True))
    cache, _ = model(topo, backend)
    first = line_of(1)  # the first line of a page
    last = first + 63  # the last line of that page
    cache.feed([0] * 3, [first, first + 1, last], [KIND_FETCH] * 3, [1] * 3)
    stats = cache.stats(0)
    assert (stats.fetch_lines, stats.l1i_misses, stats.prefetches) == (3, 2, 1)
    assert (stats.fetch_fills_by_node, stats.prefetch_fills_by_node) == ((0, 2), (0, 1))
    report = cache.cost_report(no_instructions())
    assert report.cycles[0] == 600  # two remote demand fills; the prefetch is free
    assert report.memory_lines[0] == (0, 3)  # ... but moves a line


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("inclusive", [False, True])
def test_inclusive_l2_back_invalidates_the_l1d(backend: str, inclusive: bool) -> None:
    """L1D 1 KiB 2-way (8 sets), L2 2 KiB direct-mapped (32 sets): A and
    A + 32 fit the L1D together but not the L2."""
    topo = machine(cache=geometry(l1d=(1, 2), l2=(2, 1), inclusive=inclusive))
    cache, _ = model(topo, backend)
    a = line_of(1)
    cache.feed([0] * 3, [a, a + 32, a], [KIND_WRITE, KIND_READ, KIND_READ], [1] * 3)
    stats = cache.stats(0)
    if inclusive:
        # A + 32 evicts A from the L2, which removes dirty A from the L1D (written
        # back); reading A again evicts A + 32 from both in turn
        assert (stats.l1d_misses, stats.back_invalidations, stats.l2_writebacks) == (3, 2, 1)
    else:
        assert (stats.l1d_misses, stats.back_invalidations, stats.l2_writebacks) == (2, 0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fetch_that_evicts_a_data_line_from_an_inclusive_l2(backend: str) -> None:
    """Read A, then fetch A + 32 (same L2 set, direct-mapped): the L2 evicts A
    and removes it from the L1D, so reading A again misses the L1D (the C
    code's last-line shortcut must not call it a hit)."""
    topo = machine(cache=geometry(l1d=(1, 2), l2=(2, 1), inclusive=True))
    cache, _ = model(topo, backend)
    a = line_of(1)
    cache.feed([0] * 3, [a, a + 32, a], [KIND_READ, KIND_FETCH, KIND_READ], [1] * 3)
    stats = cache.stats(0)
    assert (stats.read_lines, stats.l1d_misses, stats.back_invalidations) == (2, 2, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accesses_outside_ram_and_unfilled_pages_are_counted_apart(backend: str) -> None:
    cache, accounting = model(machine(), backend)
    block, mem = cache.hook_functions()
    accounting.record(0x2000, RAM_BASE, 0, KIND_OTHER)
    block(None, 0x2FF0, 0x20)  # the last line of a known page, then one of an unknown page
    mem(None, UC_MEM_READ, 0x1000, 8, 0)  # below RAM
    mem(None, UC_MEM_READ, RAM_BASE + 2 * BANK - 4, 8, 0)  # straddles the end of RAM
    assert (cache.unknown_fetch_lines, cache.unknown_data_lines) == (1, 2)
    assert cache.stats(0).fetch_lines == 1 and cache.stats(0).read_lines == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_feed_records_are_config_errors_naming_the_record(backend: str) -> None:
    cache, _ = model(machine(), backend)
    line = line_of(0)
    with pytest.raises(ConfigError, match="record 1: CPU 7 does not exist"):
        cache.feed([0, 7], [line, line], [0, 0], [0, 0])
    with pytest.raises(ConfigError, match="record 0: home node 2 does not exist"):
        cache.feed([0], [line], [0], [2])
    with pytest.raises(ConfigError, match="record 0: kind 3"):
        cache.feed([1], [line], [3], [0])
    with pytest.raises(ConfigError, match="differ in length"):
        cache.feed([0], [line, line], [0], [0])
    assert cache.stats(0).fetch_lines == 1  # the good record before the bad one


def test_structural_variants_are_simulated_in_one_pass() -> None:
    topo = machine(cache=geometry(prefetch=(False, True), inclusive=(True, False)))
    cache, _ = model(topo, "auto")
    assert [(v.prefetch, v.inclusive) for v in cache.variants] == [
        (False, True), (False, False), (True, True), (True, False)]  # fmt: skip
    fast, _ = model(topo, "auto", detail="fast")
    assert fast.variants == (Variant(False, True, False),)


# -- set sampling ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("placement", ["requester", "home"])
def test_sampled_sets_are_exactly_the_full_caches_sets(backend: str, placement: str) -> None:
    """On lines of sampled groups only, the sampled hierarchy's counts x 8 are
    the full one's: every level has 64 sets, so the sampled sets are exactly
    those the full caches use for these lines (Kessler, Hill and Wood 1994)."""
    cache_geo = geometry(l1i=(4, 1), l1d=(4, 1), l2=(8, 2), llc=(16, 4), placement=placement,
                         inclusive=True)  # fmt: skip
    topo = machine(nodes=2, cpus_per_node=2, cache=cache_geo)
    cache, _ = model(topo, backend, sampled=True)
    rng = random.Random(3)
    groups = [g for g in range(line_of(0) >> 3, (line_of(0) >> 3) + 4096) if g % SAMPLE_FACTOR == 0]
    records = []
    for _ in range(6000):
        line = (rng.choice(groups[:200]) << 3) | rng.randrange(8)
        records.append((rng.randrange(4), line + (BANK >> 6) * rng.randrange(2), rng.randrange(3)))
    homes = [((line << 6) - RAM_BASE) // BANK for _, line, _ in records]
    cache.feed([r[0] for r in records], [r[1] for r in records], [r[2] for r in records], homes)
    full, sampled = cache.variants
    assert sampled.sampled and not full.sampled
    for cpu in range(4):
        exact_stats = cache.stats(cpu, full)
        scaled = CacheStats.from_row(
            [*(getattr(exact_stats, n) for n in STAT_NAMES),
             *(v for n in ("llc_fetch_hits_by_node", "llc_data_hits_by_node",
                           "llc_prefetch_hits_by_node", "fetch_fills_by_node",
                           "data_fills_by_node", "prefetch_fills_by_node", "writebacks_by_node")
               for v in getattr(exact_stats, n))], 2, SAMPLE_FACTOR)  # fmt: skip
        assert cache.stats(cpu, sampled) == scaled
        assert exact_stats.l2_data_misses > 100


# -- C against the reference on synthetic traces ------------------------------------------

GEOMETRIES = st.builds(
    lambda line, l1i_ways, l1d_ways, l2, llc_kib, llc_ways, placement, inclusive, prefetch: geometry(
        line, (1, l1i_ways), (1, l1d_ways), (llc_kib, llc_ways), l2=l2, placement=placement,
        inclusive=inclusive, prefetch=prefetch,
    ),
    st.sampled_from([16, 32, 64]), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]),
    st.sampled_from([(1, 1), (2, 2), (4, 4)]), st.sampled_from([1, 2]),
    st.sampled_from([1, 2, 4]), st.sampled_from(["home", "requester"]),
    st.sampled_from([False, True, (True, False)]), st.sampled_from([False, True, (False, True)]),
)  # fmt: skip
PA_PAGES = [RAM_BASE + node * BANK + page * 0x1000 for node in range(3) for page in range(3)]
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("cpu"), st.integers(0, 5)),
        st.tuples(st.just("block"), st.integers(0, 7), st.integers(0, 1023).map(lambda i: i * 4),
                  st.integers(1, 40).map(lambda i: i * 4), st.booleans()),
        st.tuples(st.just("mem"), st.sampled_from([*PA_PAGES, 0x1000, RAM_BASE + 3 * BANK]),
                  st.integers(0, 4095), st.sampled_from([1, 2, 4, 8, 16]), st.booleans()),
        st.tuples(st.just("map"), st.integers(0, 7), st.sampled_from(PA_PAGES)),
    ),
    max_size=120,
)  # fmt: skip


@needs_c
@settings(max_examples=200, deadline=None)
@given(GEOMETRIES, st.integers(1, 3), st.integers(1, 2), EVENTS, st.data())
def test_c_hooks_equal_the_reference_on_synthetic_traces(geo, nodes, cpn, events, data) -> None:
    initial = [data.draw(st.sampled_from(PA_PAGES)) for _ in range(6)]
    run_synthetic(geo, nodes, cpn, events, initial)


@needs_c
def test_c_hooks_equal_the_reference_on_a_long_seeded_trace() -> None:
    """20 000 random events: every eviction and write-back path is taken many times."""
    import random

    rng = random.Random(5)
    events = []
    for _ in range(20_000):
        roll = rng.random()
        if roll < 0.02:
            events.append(("cpu", rng.randrange(6)))
        elif roll < 0.45:
            events.append(("block", rng.randrange(8), 4 * rng.randrange(1024),
                           4 * rng.randrange(1, 41), rng.random() < 0.5))  # fmt: skip
        elif roll < 0.99:
            events.append(("mem", rng.choice([*PA_PAGES, 0x1000, RAM_BASE + 3 * BANK]),
                           rng.randrange(4096),
                           rng.choice([1, 4, 8, 16]), rng.random() < 0.4))  # fmt: skip
        else:
            events.append(("map", rng.randrange(8), rng.choice(PA_PAGES)))
    geo = geometry(32, (1, 2), (1, 2), (4, 4), l2=(2, 2), placement="home", inclusive=True,
                   prefetch=(False, True))  # fmt: skip
    c_model, _ = run_synthetic(geo, 3, 2, events,
                               [rng.choice(PA_PAGES) for _ in range(6)])  # fmt: skip
    prefetching = c_model.variants[1]
    assert prefetching.prefetch
    totals = {name: sum(getattr(c_model.stats(c, prefetching), name) for c in range(6))
              for name in STAT_NAMES}  # fmt: skip
    llc_hits = {name: sum(sum(getattr(c_model.stats(c, prefetching), name)) for c in range(6))
                for name in ("llc_fetch_hits_by_node", "llc_data_hits_by_node")}  # fmt: skip
    assert totals["l1d_writebacks"] > 500 and totals["llc_writebacks"] > 500
    assert totals["l2_writebacks"] > 500 and totals["back_invalidations"] > 100
    assert totals["prefetches"] > 100 and totals["l2_fetch_hits"] > 100
    assert min(llc_hits.values()) > 100
    assert c_model.unknown_fetch_lines > 0 and c_model.unknown_data_lines > 0


def run_synthetic(geo, nodes, cpn, events, initial) -> tuple[CacheModel, CacheModel]:
    """Feed ``events`` to the C hooks and to the reference; assert they agree."""
    topo = machine(nodes, cpn, geo)
    accounting = Accounting(topo.n_cpus, nodes, RAM_BASE, BANK)
    c_model = CacheModel(topo, accounting, RAM_BASE, BANK, backend="c")
    reference = CacheModel(topo, accounting, RAM_BASE, BANK, backend="python")
    c_hooks, py_hooks = c_model.hook_functions(), reference.hook_functions()
    acct_block = _acct_block(accounting)
    # The fill hook only ever records RAM of this machine (a node beyond it
    # would index past the accounting's counters).
    mappable = [pa for pa in PA_PAGES if (pa - RAM_BASE) // BANK < nodes]

    def record(page: int, pa: int) -> None:
        pa = mappable[PA_PAGES.index(pa) % len(mappable)]
        accounting.record(page << 12, pa, (pa - RAM_BASE) // BANK, KIND_OTHER)

    for va_page, pa in enumerate(initial):  # pages 6 and 7 start unmapped
        record(va_page, pa)
    for event in events:
        kind = event[0]
        if kind == "cpu":
            cpu = event[1] % topo.n_cpus
            accounting.select_cpu(cpu)
            c_model.select_cpu(cpu)
            reference.select_cpu(cpu)
        elif kind == "block":
            _, page, offset, size, through_accounting = event
            address = (page << 12) + offset
            if through_accounting and acct_block is not None:
                acct_block(None, address, size, ctypes.addressof(accounting.state))
            c_hooks[0](None, address, size)
            py_hooks[0](None, address, size)
        elif kind == "mem":
            _, base, offset, size, write = event
            access = UC_MEM_WRITE if write else UC_MEM_READ
            c_hooks[1](None, access, base + offset, size, 0)
            py_hooks[1](None, access, base + offset, size, 0)
        else:
            record(event[1], event[2])
    assert_same(c_model, reference, topo)
    return c_model, reference


def _acct_block(accounting: Accounting):
    """The accounting's own C block hook (it fills the one-entry page cache the
    cache model's block hook reads first), or None without _accel."""
    addresses = _load_accel()
    if addresses is None:
        return None
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                             ctypes.c_void_p)  # fmt: skip
    return proto(addresses["acct_block"])


def assert_same(c_model: CacheModel, reference: CacheModel, topo: Topology) -> None:
    assert c_model.variants == reference.variants
    for variant in c_model.variants:
        for cpu in range(topo.n_cpus):
            assert c_model.stats(cpu, variant) == reference.stats(cpu, variant), f"CPU {cpu}"
            for level in LEVELS:
                assert c_model.contents(level, cpu, variant) == reference.contents(
                    level, cpu, variant)  # fmt: skip
        for node in range(topo.nodes):
            assert c_model.contents("llc", node, variant) == reference.contents(
                "llc", node, variant)  # fmt: skip
    assert c_model.unknown_fetch_lines == reference.unknown_fetch_lines
    assert c_model.unknown_data_lines == reference.unknown_data_lines


# -- a real run --------------------------------------------------------------------------


class TraceRecorder:
    """Python hooks that record, in order, every CPU switch, fetched line (by
    physical line, resolved through the accounting table as the C hook does)
    and data access of a run."""

    def __init__(self, system, line_shift: int) -> None:
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE

        self.events: list[tuple] = []
        self.pages = system.machine.accounting._pages
        self.shift = line_shift
        current = system.machine.current
        if current is not None:
            self.events.append(("cpu", current.index))
        system.machine.switch_listeners.append(lambda vcpu: self.events.append(("cpu", vcpu.index)))
        system.machine.uc.hook_add(UC_HOOK_BLOCK, self.block)
        system.machine.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self.mem)

    def block(self, uc, address, size, _user) -> None:
        for line in range(address >> self.shift, ((address + size - 1) >> self.shift) + 1):
            va = line << self.shift
            entry = self.pages.get((va >> 12) + 1)
            self.events.append(("fetch", None if entry is None else (entry[1] << 12) | (va & 0xFFF)))

    def mem(self, uc, access, address, size, value, _user) -> None:
        self.events.append(("mem", address, size, access == UC_MEM_WRITE))


def replay(events, system, geometry_: CacheGeometry) -> ReferenceSim:
    topology = system.config.topology
    state = system.machine.accounting.state
    cpu_nodes = [topology.cpu_to_node(c) for c in range(topology.n_cpus)]
    llc_at_home = geometry_.llc_placement == "home"
    hierarchies = [ReferenceHierarchy(geometry_, Variant(False, bool(geometry_.inclusive_l2), False),
                                      topology.n_cpus, topology.nodes, llc_at_home)]  # fmt: skip
    reference = ReferenceSim(hierarchies, cpu_nodes, state.ram_base, state.bank_size,
                             topology.nodes, 6)  # fmt: skip
    for event in events:
        if event[0] == "cpu":
            reference.select_cpu(event[1])
        elif event[0] == "fetch":
            if event[1] is None:
                reference.unknown_fetch_lines += 1
            else:
                reference.fetch_pa(event[1], 1)
        else:
            reference.access_pa(event[1], event[2], event[3])
    return reference


def _small_cache_system(ktext: bool, iterations: int, placement: str = "home"):
    from dataclasses import replace

    from emu.config import machine_config
    from emu.system import RunSpec, System

    config = machine_config()
    # Small caches, so a short run evicts and writes back at every level.
    small = geometry(l1i=(1, 2), l1d=(1, 2), l2=(2, 2), llc=(4, 2), placement=placement,
                     inclusive=True)  # fmt: skip
    config = replace(config, topology=replace(config.topology, cache=small))
    spec = RunSpec(ktext=ktext, workload="syscall", iterations=iterations, data_accesses=True)
    return System(config, spec), small


@needs_c
@pytest.mark.parametrize("ktext", [False, True])
def test_c_model_equals_the_reference_on_a_recorded_trace(ktext: bool) -> None:
    system, small = _small_cache_system(ktext, iterations=30)
    try:
        cache = attach_cache_model(system, backend="c", data_from_accounting=False)
        recorder = TraceRecorder(system, cache.line_shift)
        system.machine.uc.ctl_flush_tb()
        system.run()
        topo = system.config.topology
        reference = replay(recorder.events, system, small)
        assert sum(1 for e in recorder.events if e[0] == "fetch") > 10_000
        hierarchy = reference.hierarchies[0]
        for cpu in range(topo.n_cpus):
            # the replay has no measurement window: compare everything since attach
            assert cache.all_stats(cpu) == hierarchy.stats(cpu), f"CPU {cpu}"
            for level in LEVELS:
                assert cache.contents(level, cpu) == getattr(hierarchy, level)[cpu].contents()
        for node in range(topo.nodes):
            assert cache.contents("llc", node) == hierarchy.llc[node].contents()
        assert cache.unknown_fetch_lines == reference.unknown_fetch_lines == 0
        assert cache.unknown_data_lines == 0
        totals = [sum(getattr(cache.all_stats(c), n) for c in range(topo.n_cpus))
                  for n in STAT_NAMES]  # fmt: skip
        named = dict(zip(STAT_NAMES, totals, strict=True))
        assert named["llc_writebacks"] > 0 and named["l1d_writebacks"] > 0
        assert named["l2_writebacks"] > 0
    finally:
        system.close()


@needs_c
def test_python_backend_equals_the_c_backend_on_a_full_run() -> None:
    results = []
    for backend in ("c", "python"):
        system, _ = _small_cache_system(True, iterations=10)
        try:
            cache = attach_cache_model(system, backend=backend, data_from_accounting=False)
            system.run()
            results.append([cache.stats(c) for c in range(system.config.topology.n_cpus)])
            report = cache.cost_report()
            assert report.cycles == cache.cost_report().cycles
        finally:
            system.close()
    assert results[0] == results[1]


@needs_c
def test_data_from_the_accounting_decoder_equals_the_memory_hook() -> None:
    """The fast data path (the accounting's decoder calls the cache model, no
    memory hook) sees the same data lines as Unicorn's memory hook."""
    if _load_accel() is None:
        pytest.skip("emu.hw._accel is not built")
    totals = []
    for from_accounting in (True, False):
        system, _ = _small_cache_system(True, iterations=20)
        try:
            cache = attach_cache_model(system, backend="c", data_from_accounting=from_accounting)
            assert (system.machine.accounting.state.data_sink is not None) == from_accounting
            system.run()
            n_cpus = system.config.topology.n_cpus
            totals.append([(cache.stats(c).read_lines, cache.stats(c).write_lines,
                            cache.stats(c).fetch_lines) for c in range(n_cpus)])  # fmt: skip
            assert cache.unknown_data_lines == 0
        finally:
            system.close()
    assert totals[0] == totals[1]
    assert sum(r for r, _, _ in totals[0]) > 1000 and sum(w for _, w, _ in totals[0]) > 1000


def test_detailed_report_of_a_run_with_the_preset_caches() -> None:
    from emu.config import machine_config
    from emu.hw.cost import cost_of_run, speedup
    from emu.system import RunSpec, System

    reports = {}
    for ktext in (False, True):
        spec = RunSpec(ktext=ktext, workload="syscall", iterations=50, data_accesses=True)
        system = System(machine_config(), spec)
        try:
            cache = attach_cache_model(system)
            system.run()
            reports[ktext] = cost_of_run(system, cache)
            assert cache.unknown_fetch_lines == 0 and cache.unknown_data_lines == 0
            counts = system.machine.accounting.counts(2)
            stats = cache.stats(2)
            assert stats.fetch_lines >= counts.instructions // 16  # at most 16 per 64-byte line
            # node 1's CPU fetches kernel text from node 1 only with replication
            assert (stats.fetch_fills_by_node[1] > 0) == ktext
        finally:
            system.close()
    doc = reports[True].to_json()
    assert doc["model"] == "cache" and set(doc["cpus"][0]["cache"]) >= set(STAT_NAMES)
    assert reports[True].total_cycles > 0
    assert isinstance(reports[True].total_cycles, Fraction)
    assert speedup(reports[False], reports[True]) > 0
