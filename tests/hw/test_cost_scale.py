"""The cache model's per-CPU cost at many nodes: skipping the nodes a CPU
never touched (issue 17 item 8) must give exactly the sum over every node."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from emu.hw.cachestats import CacheStats, hierarchy_cycles
from emu.hw.costtypes import CostPoint

NODES = 12


def every_home_cycles(stats: CacheStats, instructions: int, node: int, point: CostPoint,
                      llc_at_home: bool) -> Fraction:
    """The module docstring's formula summed over every home node, zeros included."""
    l1, mlp = point.l1_hit_cycles, point.data_mlp
    l2 = point.l2_hit_cycles - l1
    total = instructions * point.base_cpi + stats.l2_fetch_hits * l2 + stats.l2_data_hits * l2 / mlp
    for home in range(NODES):
        llc = point.llc_cycles[node][home if llc_at_home else node] - l1
        dram = point.dram_cycles[node][home]
        total += (stats.llc_fetch_hits_by_node[home] * llc
                  + stats.llc_data_hits_by_node[home] * llc / mlp
                  + stats.fetch_fills_by_node[home] * dram
                  + stats.data_fills_by_node[home] * dram / mlp)
    return total


def sparse_counts() -> st.SearchStrategy[tuple[int, ...]]:
    """Per-node counts that are mostly zero, as on a large machine."""
    return st.lists(st.one_of(st.just(0), st.just(0), st.integers(0, 10**6)),
                    min_size=NODES, max_size=NODES).map(tuple)


def a_point(node_cost: list[int]) -> CostPoint:
    dram = tuple(tuple(Fraction(100 + 7 * abs(n - h) + node_cost[h], 3) for h in range(NODES))
                 for n in range(NODES))
    llc = tuple(tuple(Fraction(40 + abs(n - h), 7) for h in range(NODES)) for n in range(NODES))
    return CostPoint(base_cpi=Fraction(11, 10), l1_hit_cycles=Fraction(4),
                     l2_hit_cycles=Fraction(14), llc_cycles=llc, dram_cycles=dram,
                     data_mlp=Fraction(5, 2))


@settings(max_examples=60, deadline=None)
@given(llc_fetch=sparse_counts(), llc_data=sparse_counts(), fetch_fills=sparse_counts(),
       data_fills=sparse_counts(), other=sparse_counts(),
       node=st.integers(0, NODES - 1), llc_at_home=st.booleans(),
       node_cost=st.lists(st.integers(0, 50), min_size=NODES, max_size=NODES))
def test_cost_skipping_untouched_nodes_is_exact(llc_fetch, llc_data, fetch_fills, data_fills,
                                                 other, node, llc_at_home, node_cost):
    stats = CacheStats(
        fetch_lines=9, read_lines=8, write_lines=7, l1i_misses=6, l1d_misses=5,
        l2_fetch_hits=123, l2_fetch_misses=4, l2_data_hits=77, l2_data_misses=3, prefetches=0,
        prefetch_l1_hits=0, l2_prefetch_hits=0, l1d_writebacks=0, l2_writebacks=0,
        back_invalidations=0, llc_writebacks=0, llc_fetch_hits_by_node=llc_fetch,
        llc_data_hits_by_node=llc_data, llc_prefetch_hits_by_node=other,
        fetch_fills_by_node=fetch_fills, data_fills_by_node=data_fills,
        prefetch_fills_by_node=other, writebacks_by_node=other)
    point = a_point(node_cost)
    expected = every_home_cycles(stats, 1000, node, point, llc_at_home)
    assert hierarchy_cycles(stats, 1000, node, point, llc_at_home, exact=True) == expected
    approx = hierarchy_cycles(stats, 1000, node, point, llc_at_home)
    assert isinstance(approx, float) and abs(approx - float(expected)) <= 1e-9 * float(expected)
