"""The cache model's counts and what they cost: the statistics row one
simulated hierarchy keeps per CPU (STAT_NAMES, PER_NODE: the enum in
emu/hw/_cachesim.c), CacheStats read from it, the structural variants a
model simulates (Variant), the cycles those counts cost at one parameter
point (hierarchy_cycles, frontend_stall_cycles) and one run's counts of
every variant (HierarchyResult, CostReport.hierarchy).

The C simulator and its installation are emu/hw/cachemodel.py, the Python
reference simulator emu/hw/cacheref.py; the formula is written out at the top
of emu/hw/cachemodel.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

from emu.hw.bynode import NodeCounts
from emu.hw.costtypes import CostPoint
from emu.hw.topology import CacheGeometry, choice_values
from emu.jsonfmt import sparse_by_node

KIND_FETCH, KIND_READ, KIND_WRITE = 0, 1, 2
KINDS = {"fetch": KIND_FETCH, "read": KIND_READ, "write": KIND_WRITE}
# The fast model simulates one group of 8 lines in SAMPLE_FACTOR (set sampling).
SAMPLE_FACTOR = 8
SAMPLE_MIN_SETS = 64  # exact sampled sets need bits 3..5 of the line in every set index

# The statistics row of one CPU (the enum in _cachesim.c), then per home
# node, in this order, the PER_NODE counts.
STAT_NAMES = (
    "fetch_lines", "read_lines", "write_lines", "l1i_misses", "l1d_misses",
    "l2_fetch_hits", "l2_fetch_misses", "l2_data_hits", "l2_data_misses",
    "prefetches", "prefetch_l1_hits", "l2_prefetch_hits",
    "l1d_writebacks", "l2_writebacks", "back_invalidations", "llc_writebacks",
)  # fmt: skip
PER_NODE = (
    "llc_fetch_hits_by_node", "llc_data_hits_by_node", "llc_prefetch_hits_by_node",
    "fetch_fills_by_node", "data_fills_by_node", "prefetch_fills_by_node",
    "writebacks_by_node",
)  # fmt: skip
(ST_FETCH_LINES, ST_READ_LINES, ST_WRITE_LINES, ST_L1I_MISSES, ST_L1D_MISSES,
 ST_L2_FETCH_HITS, ST_L2_FETCH_MISSES, ST_L2_DATA_HITS, ST_L2_DATA_MISSES,
 ST_PREFETCHES, ST_PREFETCH_L1_HITS, ST_L2_PREFETCH_HITS,
 ST_L1D_WRITEBACKS, ST_L2_WRITEBACKS, ST_BACK_INVALIDATIONS,
 ST_LLC_WRITEBACKS) = range(len(STAT_NAMES))  # fmt: skip
ST_FIXED = len(STAT_NAMES)
CLASS_FETCH, CLASS_DATA, CLASS_PREFETCH = 0, 1, 2


@dataclass(frozen=True)
class CacheStats:
    """One CPU's counts in one hierarchy; *_by_node are indexed by home node:
    NodeCounts, which store only the homes the CPU touched (a dense tuple
    given to the constructor is converted)."""

    fetch_lines: int
    read_lines: int
    write_lines: int
    l1i_misses: int
    l1d_misses: int
    l2_fetch_hits: int
    l2_fetch_misses: int
    l2_data_hits: int
    l2_data_misses: int
    prefetches: int
    prefetch_l1_hits: int
    l2_prefetch_hits: int
    l1d_writebacks: int
    l2_writebacks: int
    back_invalidations: int
    llc_writebacks: int
    llc_fetch_hits_by_node: tuple[int, ...]
    llc_data_hits_by_node: tuple[int, ...]
    llc_prefetch_hits_by_node: tuple[int, ...]
    fetch_fills_by_node: tuple[int, ...]
    data_fills_by_node: tuple[int, ...]
    prefetch_fills_by_node: tuple[int, ...]
    writebacks_by_node: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in PER_NODE:
            value = getattr(self, name)
            if not isinstance(value, NodeCounts):
                object.__setattr__(self, name, NodeCounts.dense(value))

    def minus(self, earlier: CacheStats) -> CacheStats:
        """What was counted since ``earlier`` (a snapshot of the same CPU and hierarchy)."""
        values: dict[str, Any] = {name: getattr(self, name) - getattr(earlier, name)
                                  for name in STAT_NAMES}  # fmt: skip
        for name in PER_NODE:
            values[name] = getattr(self, name).minus(getattr(earlier, name))
        return CacheStats(**values)

    @classmethod
    def from_row(cls, row: Sequence[int], nodes: int, scale: int = 1) -> CacheStats:
        """From a dense statistics row (stats_row_length(nodes) numbers)."""
        per_node = [{} for _ in PER_NODE]
        for k, counts in enumerate(per_node):
            base = ST_FIXED + k * nodes
            for home in range(nodes):
                if row[base + home]:
                    counts[home] = int(row[base + home]) * scale
        return cls.from_parts(row[:ST_FIXED], per_node, nodes, scale)

    @classmethod
    def from_parts(cls, fixed: Sequence[int], per_node: Sequence[dict[int, int]], nodes: int,
                   scale: int = 1) -> CacheStats:  # fmt: skip
        """From the ST_FIXED counts and, per PER_NODE kind, {home: count}
        of the nonzero counts (already scaled)."""
        values: dict[str, Any] = {name: int(fixed[i]) * scale for i, name in enumerate(STAT_NAMES)}
        for name, counts in zip(PER_NODE, per_node, strict=True):
            values[name] = NodeCounts(nodes, counts)
        return cls(**values)

    # The figures the single-LLC model reported, kept for the JSON.
    @property
    def llc_fetch_hits(self) -> int:
        return self.llc_fetch_hits_by_node.total()

    @property
    def llc_fetch_misses(self) -> int:
        return self.fetch_fills_by_node.total()

    @property
    def llc_data_hits(self) -> int:
        return self.llc_data_hits_by_node.total()

    @property
    def llc_data_misses(self) -> int:
        return self.data_fills_by_node.total()

    @property
    def llc_hits(self) -> int:
        return self.llc_fetch_hits + self.llc_data_hits

    def to_json(self) -> dict[str, Any]:
        """The counts; each *_by_node is {home node: count} of the nonzero counts."""
        doc: dict[str, Any] = {name: getattr(self, name) for name in STAT_NAMES}
        for name in ("llc_fetch_hits", "llc_fetch_misses", "llc_data_hits", "llc_data_misses"):
            doc[name] = getattr(self, name)
        doc.update({name: sparse_by_node(getattr(self, name).as_dict()) for name in PER_NODE})
        return doc

    @cached_property
    def home_terms(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """(home, LLC fetch hits, LLC data hits, fetch fills, data fills) of
        every node whose LLC or DRAM served this CPU at all, in node order:
        what the cycle formula reads, found once (the band prices the same
        counts at every corner)."""
        homes: set[int] = set()
        names = ("llc_fetch_hits_by_node", "llc_data_hits_by_node", "fetch_fills_by_node",
                 "data_fills_by_node")  # fmt: skip
        for name in names:
            homes.update(home for home, _ in getattr(self, name).items())
        columns = [getattr(self, name) for name in names]
        return tuple((home, *(column[home] for column in columns)) for home in sorted(homes))


def stats_row_length(nodes: int) -> int:
    return ST_FIXED + len(PER_NODE) * nodes


@dataclass(frozen=True)
class Variant:
    """One simulated hierarchy: its structural options and its sampling."""

    prefetch: bool
    inclusive: bool
    sampled: bool

    @property
    def scale(self) -> int:
        return SAMPLE_FACTOR if self.sampled else 1

    def label(self) -> str:
        return (f"prefetch {'on' if self.prefetch else 'off'}, "
                f"{'inclusive' if self.inclusive else 'non-inclusive'} L2"
                f"{', sampled 1/' + str(SAMPLE_FACTOR) if self.sampled else ''}")  # fmt: skip


def structural_variants(geometry: CacheGeometry, sampled: bool) -> tuple[Variant, ...]:
    """Every combination of the preset's structural choices, first-listed first."""
    return tuple(
        Variant(prefetch, inclusive, sampled)
        for prefetch, inclusive in itertools.product(
            choice_values(geometry.prefetch_next_line), choice_values(geometry.inclusive_l2)
        )
    )


def can_sample(geometry: CacheGeometry) -> bool:
    """Set sampling is exact per sampled set only when every level has >= 64 sets."""
    return all(geometry.sets(level) >= SAMPLE_MIN_SETS for level in ("l1i", "l1d", "l2", "llc"))


def hierarchy_cycles(stats: CacheStats, instructions: int, node: int, point: CostPoint,
                     llc_at_home: bool, exact: bool = False) -> Any:  # fmt: skip
    """One CPU's cycles (module docstring) at ``point``; Fractions when
    ``exact``, else floats (the band evaluates many points)."""
    number: Callable[[Any], Any] = Fraction if exact else float
    l1 = number(point.l1_hit_cycles)
    mlp = number(point.data_mlp)
    l2 = number(point.l2_hit_cycles) - l1
    total = instructions * number(point.base_cpi)
    total += stats.l2_fetch_hits * l2 + stats.l2_data_hits * l2 / mlp
    llc_row, dram_row = point.llc_cycles[node], point.dram_cycles[node]
    # A CPU touches a few nodes of a 1024-node machine; the others add exactly
    # zero, so the exact (Fraction) cost is O(nodes touched) per CPU.
    for home, llc_fetch_hits, llc_data_hits, fetch_fills, data_fills in stats.home_terms:
        llc = number(llc_row[home if llc_at_home else node]) - l1
        dram = number(dram_row[home])
        total += llc_fetch_hits * llc
        total += llc_data_hits * llc / mlp
        total += fetch_fills * dram
        total += data_fills * dram / mlp
    return total


def frontend_stall_cycles(stats: CacheStats, node: int, point: CostPoint, llc_at_home: bool) -> float:
    """The instruction-miss part of hierarchy_cycles (floats)."""
    l1 = float(point.l1_hit_cycles)
    total = stats.l2_fetch_hits * (float(point.l2_hit_cycles) - l1)
    llc_row, dram_row = point.llc_cycles[node], point.dram_cycles[node]
    for home, llc_fetch_hits, _, fetch_fills, _ in stats.home_terms:
        llc = float(llc_row[home if llc_at_home else node]) - l1
        total += llc_fetch_hits * llc
        total += fetch_fills * float(dram_row[home])
    return total


@dataclass(frozen=True)
class HierarchyResult:
    """What the band and the sanity figures need from one run: every
    variant's per-CPU counts, and the per-CPU instruction counts."""

    variants: tuple[Variant, ...]
    stats: tuple[tuple[CacheStats, ...], ...]  # [variant][cpu]
    cpu_nodes: tuple[int, ...]
    instructions: tuple[int, ...]
    kernel_instructions: tuple[int, ...]
    llc_at_home: bool
    primary: Variant

    def total_cycles(self, variant: Variant, point: CostPoint) -> float:
        index = self.variants.index(variant)
        return sum(
            hierarchy_cycles(stats, self.instructions[cpu], self.cpu_nodes[cpu], point,
                             self.llc_at_home)
            for cpu, stats in enumerate(self.stats[index])
        )  # fmt: skip
