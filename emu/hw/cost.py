"""The NUMA cost model's parameters and reports: turns per-CPU, per-node
counts into modelled cycles and per-node memory traffic.

Owns the model's parameters as resolved for one topology (ModelParameters:
core clock, base CPI, the cache hierarchy's figures, the node x node memory
latency, and which of them are ranges) and their points (CostPoint, defined
in emu/hw/costtypes.py), the report of one run (CostReport), the counts-only
formula fast_cost, and the comparisons a caller makes between two runs (speedup,
gain, cycles_saved).

A run's cycles come from the cache hierarchy of emu/hw/cachemodel.py, whose
miss counts are the run's own: ``--detail cache`` simulates it at full size,
``--detail fast`` on a sample of its sets (the formula is there).  The band
over the ranges is emu/hw/band.py's.

fast_cost, the counts-only formula kept for callers with fixed hit rates (a
machine file's optional icache_hit_rate/dcache_hit_rate), per CPU c on node n
(all terms exact, in rationals):

    cycles(c) = instructions(c) x base_cpi
              + sum over memory nodes m of  misses(c, m) x latency_cycles(n, m)
    misses(c, m) = fetches(c, m) x (1 - icache_hit_rate)
                 + (data reads + writes)(c, m) x (1 - dcache_hit_rate)

Memory latency from node n to node m, in ns:
- a [latency] table with remote_ns: local_ns at distance 10, remote_ns at
  remote_distance (default: the nearest remote distance), linear in the SLIT
  distance in between and beyond;
- otherwise local_ns x distance / 10: ACPI defines SLIT entries as relative
  memory latency, normalised so that the local distance is 10 (ACPI 6.5,
  section 5.2.17 "System Locality Information Table (SLIT)"); Linux's
  LOCAL_DISTANCE 10 / REMOTE_DISTANCE 20 follow it.
Both rules are non-decreasing in distance.  Cycles = ns x clock_ghz.

Why ratios of the two runs behave: if replication only moves kernel fetch
misses from remote to local memory, raising the (uniform) remote latency x
raises T_off / T_on, because d/dx (P + R x) / (P + K l + (R - K) x) has the
sign of K (P + R l) >= 0 (P: the latency-independent part, R: remote misses
without replication, K: misses replication makes local, l: local latency).
Raising one entry of an irregular SLIT always raises the cycles saved, but can
lower the ratio when that pair also carries heavy remote traffic replication
does not touch; tests/hw/test_cost_properties.py checks both statements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any

from emu.errors import ConfigError
from emu.hw.bynode import NodeCounts, SlitMatrix, nonzero_items
from emu.hw.costtypes import CostPoint, RunningSystem
from emu.hw.topology import (
    LOCAL_DISTANCE,
    CacheGeometry,
    CoreCost,
    Figure,
    MemoryLatency,
    Topology,
    figure_mid,
    figure_points,
    nearest_remote,
)
from emu.jsonfmt import sparse_by_node, sparse_matrix

if TYPE_CHECKING:
    from emu.hw.accounting import CpuCounts
    from emu.hw.cachestats import HierarchyResult

MODEL_FAST = "fast"
MODEL_CACHE = "cache"

# Used when a machine file has no [latency] table: "Latency for a memory access
# (random access) is about 100 ns.  Access to memory on a remote node adds
# another 50 percent to that number." Christoph Lameter, "NUMA (Non-Uniform
# Memory Access): An Overview", ACM Queue 11(7), 2013,
# https://queue.acm.org/detail.cfm?id=2513149 (a typical two-socket server).
DEFAULT_LATENCY = MemoryLatency(
    100.0, None, "Lameter, ACM Queue 11(7) 2013: local DRAM about 100 ns; remote by SLIT"
)
# Used when a machine file has no [cost] / [cache] table: the figures of the
# default preset (emu/hw/presets/default.toml, where each is cited); a test
# keeps the two equal.
DEFAULT_CORE_COST = CoreCost(
    clock_ghz=3.0, base_cpi=(0.6, 1.4),
    source="default preset (emu/hw/presets/default.toml)",
)  # fmt: skip
DEFAULT_CACHE = CacheGeometry(
    line_bytes=64, l1i_kib=64, l1i_ways=4, l1d_kib=64, l1d_ways=4, llc_kib=32768, llc_ways=16,
    llc_hit_ns=(25.0, 40.0), source="default preset (emu/hw/presets/default.toml)",
    l2_kib=1024, l2_ways=8, l1_hit_cycles=4, l2_hit_cycles=(9, 13), remote_llc_hit_ns=None,
    llc_placement="home", inclusive_l2=True, prefetch_next_line=(False, True),
    data_mlp=(1.0, 4.0),
)  # fmt: skip

# The figures that may be ranges, in the order the band reports them.
RANGE_NAMES = ("base_cpi", "local_ns", "remote_ns", "l2_hit_cycles", "llc_hit_ns",
               "remote_llc_hit_ns", "data_mlp")  # fmt: skip


@dataclass(frozen=True)
class ModelParameters:
    """Everything the models need about one machine, with exact values.
    ``base_cpi`` and ``latency_ns`` are the point values (midpoints of
    ranges); ``core``, ``latency`` and ``cache`` keep the ranges."""

    clock_ghz: Fraction
    base_cpi: Fraction
    icache_hit_rate: Fraction | None
    dcache_hit_rate: Fraction | None
    line_bytes: int
    # [CPU node][memory node], one value per distinct distance (resolve_parameters)
    latency_ns: SlitMatrix[Fraction]
    latency_rule: str
    cache: CacheGeometry
    sources: dict[str, str] = field(default_factory=dict)
    core: CoreCost | None = None
    latency: MemoryLatency | None = None
    distances: tuple[tuple[int, ...], ...] = ()

    @property
    def nodes(self) -> int:
        return len(self.latency_ns)

    def latency_cycles(self, cpu_node: int, memory_node: int) -> Fraction:
        return self.latency_ns[cpu_node][memory_node] * self.clock_ghz

    @property
    def llc_hit_cycles(self) -> Fraction:
        return exact(figure_mid(self.cache.llc_hit_ns)) * self.clock_ghz

    def figure(self, name: str) -> Figure | None:
        """The figure ``name`` of RANGE_NAMES as configured (a number or a range)."""
        if name == "base_cpi":
            return self.core.base_cpi if self.core else self.base_cpi
        if name in ("local_ns", "remote_ns"):
            return getattr(self.latency, name) if self.latency else None
        return getattr(self.cache, name)

    def ranged(self) -> tuple[str, ...]:
        """The figures given as ranges."""
        return tuple(n for n in RANGE_NAMES if isinstance(self.figure(n), tuple))

    @cached_property
    def remote_reference(self) -> int | None:
        """The distance a [latency] table's remote_ns is measured at: found once,
        not at every point (nearest_remote reads every pair of the SLIT)."""
        if self.latency is None or self.latency.remote_ns is None or not self.distances:
            return None
        return self.latency.remote_distance or nearest_remote(self.distances)

    def point(self, picks: dict[str, str] | None = None) -> CostPoint:
        """Every figure at ``picks[name]`` ("low", "mid" or "high"; default mid)."""
        picks = picks or {}

        def value(name: str) -> Fraction | None:
            fig = self.figure(name)
            if fig is None:
                return None
            if not isinstance(fig, tuple):
                return exact(fig)
            pick = picks.get(name, "mid")
            low, high = figure_points(fig)
            return {"low": exact(low), "high": exact(high),
                    "mid": (exact(low) + exact(high)) / 2}[pick]  # fmt: skip

        clock = self.clock_ghz
        if self.latency is not None and self.distances:
            local, remote = value("local_ns"), value("remote_ns")
            if remote is not None and remote < local:
                remote = local  # a corner of overlapping ranges: remote is never faster
            scalar = self.latency.at(float(local), None if remote is None else float(remote))
            dram_ns = latency_matrix_ns(self.distances, scalar, local, remote,
                                        reference=self.remote_reference)  # fmt: skip
        else:
            dram_ns = self.latency_ns
        llc_local = value("llc_hit_ns") * clock
        remote_llc = value("remote_llc_hit_ns")
        # O(distinct distances): each figure is a function of d(n, h) and d(n, n).
        dram = dram_ns.map(lambda ns: ns * clock)

        def llc_cell(distance: int, local_distance: int, diagonal: bool) -> Fraction:
            if diagonal:
                return llc_local
            if remote_llc is not None:
                return remote_llc * clock
            return (llc_local + dram.cell(distance, local_distance, False)
                    - dram.cell(local_distance, local_distance, True))  # fmt: skip

        llc = SlitMatrix(dram_ns.distances, llc_cell)
        return CostPoint(
            base_cpi=value("base_cpi"),
            l1_hit_cycles=exact(self.cache.l1_hit_cycles),
            l2_hit_cycles=value("l2_hit_cycles"),
            llc_cycles=llc,
            dram_cycles=dram,
            data_mlp=value("data_mlp"),
            picks=tuple((n, picks.get(n, "mid")) for n in self.ranged()),
        )

    def mid_point(self) -> CostPoint:
        return self.point()

    def to_json(self) -> dict[str, Any]:
        def fig(value: Any) -> Any:
            return list(value) if isinstance(value, tuple) else value

        return {
            "clock_ghz": float(self.clock_ghz),
            "base_cpi": float(self.base_cpi),
            "icache_hit_rate": None if self.icache_hit_rate is None else float(self.icache_hit_rate),
            "dcache_hit_rate": None if self.dcache_hit_rate is None else float(self.dcache_hit_rate),
            "line_bytes": self.line_bytes,
            # A function of the SLIT distance under either rule (latency_matrix_ns):
            # one figure per distinct distance, not nodes x nodes.
            "latency_ns_by_distance": latency_by_distance(self.distances, self.latency_ns),
            "latency_rule": self.latency_rule,
            "cache": {
                name: fig(getattr(self.cache, name))
                for name in ("l1i_kib", "l1i_ways", "l1d_kib", "l1d_ways", "l2_kib", "l2_ways",
                             "llc_kib", "llc_ways", "l1_hit_cycles", "l2_hit_cycles",
                             "llc_hit_ns", "remote_llc_hit_ns", "llc_placement", "inclusive_l2",
                             "prefetch_next_line", "data_mlp")
            },
            "ranges": {name: fig(self.figure(name)) for name in self.ranged()},
            "sources": dict(self.sources),
        }


def latency_by_distance(distances: Sequence[Sequence[int]],
                        latency_ns: Sequence[Sequence[Fraction]]) -> dict[str, float]:
    """The report's ``latency_ns_by_distance``: {"10": 80.0, "20": 130.0}, the
    latency of the first node pair at each distinct SLIT distance."""
    by_distance: dict[int, float] = {}
    for cpu_node, row in enumerate(distances):
        for distance in set(row).difference(by_distance):
            by_distance[distance] = float(latency_ns[cpu_node][list(row).index(distance)])
    return {str(distance): by_distance[distance] for distance in sorted(by_distance)}


def exact(value: float | int) -> Fraction:
    """The decimal a figure was written as (0.99 -> 99/100), not its binary float."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))


def latency_matrix_ns(
    distances: Sequence[Sequence[int]], latency: MemoryLatency,
    local_ns: Fraction | None = None, remote_ns: Fraction | None = None,
    reference: int | None = None,
) -> SlitMatrix[Fraction]:
    """Node x node memory latency in ns for a SLIT (see the module docstring);
    a range is taken at its midpoint unless ``local_ns``/``remote_ns`` are given.
    ``reference``: the distance remote_ns is measured at, when the caller has
    found it already.  Lazy: one Fraction per distinct distance."""
    local = local_ns if local_ns is not None else exact(figure_mid(latency.local_ns))
    if latency.remote_ns is None:
        return SlitMatrix(distances, lambda d, _local, _diagonal: local * d / LOCAL_DISTANCE)
    remote = remote_ns if remote_ns is not None else exact(figure_mid(latency.remote_ns))
    if reference is None:
        reference = latency.remote_distance or nearest_remote(tuple(map(tuple, distances)))
    step = (remote - local) / (reference - LOCAL_DISTANCE)
    return SlitMatrix(distances, lambda d, _local, _diagonal: local + step * (d - LOCAL_DISTANCE))


def resolve_parameters(topology: Topology) -> ModelParameters:
    """The model parameters of ``topology``: its [cost], [cache] and [latency]
    tables, or the documented defaults above where a table is absent."""
    core = topology.cost or DEFAULT_CORE_COST
    cache = topology.cache or DEFAULT_CACHE
    latency = topology.latency or DEFAULT_LATENCY
    rule = "slit" if latency.remote_ns is None else "measured"

    def rate(value: float | None) -> Fraction | None:
        return None if value is None else exact(value)

    return ModelParameters(
        clock_ghz=exact(core.clock_ghz),
        base_cpi=exact(figure_mid(core.base_cpi)),
        icache_hit_rate=rate(core.icache_hit_rate),
        dcache_hit_rate=rate(core.dcache_hit_rate),
        line_bytes=cache.line_bytes,
        latency_ns=latency_matrix_ns(topology.distances, latency),
        latency_rule=rule,
        cache=cache,
        sources={"cost": core.source, "cache": cache.source, "latency": latency.source},
        core=core,
        latency=latency,
        distances=topology.distances,
    )


@dataclass(frozen=True)
class CostReport:
    """The modelled cost of one run.

    ``memory_lines[c][m]``: cache lines CPU c moved to or from node m's DRAM
    (expected values in the fast model, exact counts in the cache model);
    each row a NodeCounts (only the nodes CPU c touched are stored) or a
    dense sequence.
    ``detail`` holds model-specific per-CPU figures (the cache model's hits
    and misses), already JSON-ready.
    """

    model: str
    parameters: ModelParameters
    cpu_nodes: tuple[int, ...]
    instructions: tuple[int, ...]
    cycles: tuple[Fraction, ...]
    memory_lines: tuple[Sequence[Fraction], ...]
    detail: tuple[dict[str, Any], ...] = ()
    # The cache model's counts of every simulated variant (band, sanity).
    hierarchy: HierarchyResult | None = None

    @property
    def total_cycles(self) -> Fraction:
        return sum(self.cycles, Fraction(0))

    @cached_property
    def traffic_bytes(self) -> tuple[Fraction, ...]:
        """Bytes to and from each memory node's DRAM, all CPUs together."""
        totals = [Fraction(0)] * self.parameters.nodes
        for row in self.memory_lines:
            for m, lines in nonzero_items(row):  # the nodes this CPU touched
                totals[m] += lines
        return tuple(t * self.parameters.line_bytes for t in totals)

    @cached_property
    def traffic_rows(self) -> tuple[NodeCounts, ...]:
        """traffic_matrix_bytes with only each row's nonzero entries stored."""
        rows: list[dict[int, Fraction]] = [{} for _ in range(self.parameters.nodes)]
        for node, row in zip(self.cpu_nodes, self.memory_lines, strict=True):
            target = rows[node]
            for m, lines in nonzero_items(row):  # adding zero changes nothing
                target[m] = target.get(m, 0) + lines * self.parameters.line_bytes
        return tuple(NodeCounts(self.parameters.nodes, r) for r in rows)

    @property
    def traffic_matrix_bytes(self) -> tuple[NodeCounts, ...]:
        """Bytes moved between CPUs of node n (rows) and the DRAM of node m
        (columns); each row reads as a dense tuple."""
        return self.traffic_rows

    @property
    def balance(self) -> float:
        return balance(self.traffic_bytes)

    def to_json(self) -> dict[str, Any]:
        """The report's ``cost`` object (the caller adds the speed-up of two runs);
        by-node figures and matrix rows sparse (report v2, emu/jsonfmt.py), built
        from the nodes each CPU touched."""
        cpus = []
        for index, node in enumerate(self.cpu_nodes):
            entry = {
                "cpu": index,
                "node": node,
                "instructions": self.instructions[index],
                "cycles": float(self.cycles[index]),
                "memory_lines_by_node": sparse_by_node(_nonzero_map(self.memory_lines[index]),
                                                       float),
            }
            if self.detail:
                entry.update(self.detail[index])
            cpus.append(entry)
        bal = self.balance
        return {
            "model": self.model,
            "parameters": self.parameters.to_json(),
            "cpu_cycles": [float(c) for c in self.cycles],
            "total_cycles": float(self.total_cycles),
            "node_traffic_bytes": [float(b) for b in self.traffic_bytes],
            "traffic_matrix_bytes": sparse_matrix([row.as_dict() for row in self.traffic_rows],
                                                  float),
            "balance": None if math.isinf(bal) else bal,  # max/min, kept for old readers
            "balance_max_mean": balance_max_mean(self.traffic_bytes),
            "balance_cv": balance_cv(self.traffic_bytes),
            "cpus": cpus,
        }


def _nonzero_map(row: Sequence[Fraction]) -> Mapping[int, Fraction]:
    """A by-node row as {node: value} of its nonzero entries, without reading
    every node of a NodeCounts."""
    return row.as_dict() if isinstance(row, NodeCounts) else dict(nonzero_items(row))


def balance(per_node: Sequence[Fraction | float | int]) -> float:
    """max / min of per-node traffic: 1.0 is perfectly balanced (and so is no
    traffic at all); infinity when some node carries none while another does."""
    if not per_node:
        return 1.0
    high, low = max(per_node), min(per_node)
    if high == 0:
        return 1.0
    if low == 0:
        return math.inf
    return float(Fraction(high) / Fraction(low))


def balance_max_mean(per_node: Sequence[Fraction | float | int]) -> float:
    """max / mean of per-node traffic: 1.0 is perfectly even (and so is no
    traffic at all), ``len(per_node)`` is all of it on one node.  Bounded, so
    a node that carries almost nothing does not blow it up as max/min does."""
    if not per_node or max(per_node) == 0:
        return 1.0
    total = sum((Fraction(v) for v in per_node), Fraction(0))
    return float(Fraction(max(per_node)) * len(per_node) / total)


def balance_cv(per_node: Sequence[Fraction | float | int]) -> float:
    """Coefficient of variation (population standard deviation / mean) of
    per-node traffic: 0.0 is even, sqrt(n - 1) is all of it on one node."""
    if not per_node or max(per_node) == 0:
        return 0.0
    values = [Fraction(v) for v in per_node]
    mean = sum(values, Fraction(0)) / len(values)
    variance = sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)
    return math.sqrt(float(variance)) / float(mean)


def speedup(off: CostReport, on: CostReport) -> float:
    """How much faster ``on`` did the same work: total cycles off / on."""
    return float(exact_speedup(off, on))


def exact_speedup(off: CostReport, on: CostReport) -> Fraction:
    if on.total_cycles == 0:
        raise ConfigError("speed-up: the second run has no modelled cycles")
    return off.total_cycles / on.total_cycles


def gain(off: CostReport, on: CostReport) -> float:
    """The modelled gain of ``on`` over ``off``: speed-up - 1 (0.1 = 10% faster)."""
    return float(exact_speedup(off, on) - 1)


def cycles_saved(off: CostReport, on: CostReport) -> Fraction:
    return off.total_cycles - on.total_cycles


def fast_cost(
    counts: Sequence[CpuCounts], topology: Topology, parameters: ModelParameters | None = None
) -> CostReport:
    """The fast model over exact per-CPU counts (see the module docstring)."""
    params = parameters or resolve_parameters(topology)
    if params.icache_hit_rate is None or params.dcache_hit_rate is None:
        raise ConfigError(
            "fast_cost: the machine has no fixed icache_hit_rate/dcache_hit_rate; "
            "a run's cost comes from the cache model (emu/hw/cachemodel.py)"
        )
    if len(counts) != topology.n_cpus:
        raise ConfigError(
            f"fast cost: {len(counts)} CPU counts for a machine with {topology.n_cpus} CPUs"
        )
    imiss = 1 - params.icache_hit_rate
    dmiss = 1 - params.dcache_hit_rate
    nodes, cycles, lines = [], [], []
    for cpu, cpu_counts in enumerate(counts):
        node = topology.cpu_to_node(cpu)
        misses: dict[int, Fraction] = {}
        for by_node, rate in ((cpu_counts.fetches_by_node, imiss),
                              (cpu_counts.data_reads_by_node, dmiss),
                              (cpu_counts.data_writes_by_node, dmiss)):  # fmt: skip
            for memory, count in nonzero_items(by_node):
                if memory < topology.nodes:
                    misses[memory] = misses.get(memory, 0) + count * rate
        total = cpu_counts.instructions * params.base_cpi
        for memory, missed in sorted(misses.items()):  # the nodes this CPU touched
            total += missed * params.latency_cycles(node, memory)
        nodes.append(node)
        cycles.append(total)
        lines.append(NodeCounts(topology.nodes, misses))
    return CostReport(
        model=MODEL_FAST,
        parameters=params,
        cpu_nodes=tuple(nodes),
        instructions=tuple(c.instructions for c in counts),
        cycles=tuple(cycles),
        memory_lines=tuple(lines),
    )


def cost_of_run(system: RunningSystem, cache_model: Any = None) -> CostReport:
    """The cost of ``system``'s run so far, inside each CPU's measurement
    window (boot and set-up are not charged; emu/hw/accounting.py): the
    report of the CacheModel that attach_cache_model() installed before
    ``system.run()`` (``--detail fast`` or ``cache``).  Without one, the
    counts-only formula fast_cost(), which needs the machine's fixed hit rates.
    """
    if cache_model is not None:
        return cache_model.cost_report()
    machine = system.machine
    topology = system.config.topology
    counts = [machine.accounting.window_counts(cpu) for cpu in range(topology.n_cpus)]
    return fast_cost(counts, topology)


__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_CORE_COST",
    "DEFAULT_LATENCY",
    "MODEL_CACHE",
    "MODEL_FAST",
    "CostPoint",
    "CostReport",
    "ModelParameters",
    "balance",
    "balance_cv",
    "balance_max_mean",
    "cost_of_run",
    "cycles_saved",
    "exact_speedup",
    "fast_cost",
    "gain",
    "latency_matrix_ns",
    "resolve_parameters",
    "speedup",
]
