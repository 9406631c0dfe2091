"""The cost model's cache hierarchy: per CPU a private L1I, L1D and unified
L2, per node a last-level cache (SLC slice) at the memory's home node or at
the requester; set-associative, LRU, fed by every instruction fetch and data
access of the run (or by a stream of records: ``CacheModel.feed``).

Owns the hierarchy state and per-level statistics (CacheModel, CacheStats),
their installation on a machine (attach_cache_model), the pure-Python
simulator with the same semantics (ReferenceHierarchy: the fallback without
a C compiler and the reference the tests compare the C code against), and
the CostReport of one structural variant at one parameter point.  The
semantics are written out at the top of emu/hw/_cachesim.c; this module
mirrors its structs in ctypes.

One model simulates several hierarchies in one pass over the same stream:
``--detail cache`` every structural variant of the preset (next-line
prefetch off/on, inclusive L2 or not, where the preset gives both);
``--detail fast`` only the first-listed one, so its point estimate is the
detailed model's and only its band is narrower.  Set-sampled copies (1 line
group in 8, counts scaled back by 8; ``sampled=True``) are available for
large footprints; they are not the run's fast model because on the shipped
workloads, whose hot kernel text is about ten lines, which groups fall in
the sample decides the result (+5.1% sampled against +1.0% full size, syscall
on altra-2s).

Cycles of CPU c on node n at one parameter point (emu/hw/cost.py CostPoint):

    instructions x base_cpi
    + L2 fetch hits x (l2 - l1) + L2 data hits x (l2 - l1) / mlp
    + sum over home nodes h of
        LLC fetch hits(h) x (llc(n, h) - l1) + LLC data hits(h) x (llc(n, h) - l1) / mlp
      + DRAM fetch fills(h) x dram(n, h) + DRAM data fills(h) x dram(n, h) / mlp

llc(n, h) is the local LLC hit time, or the remote one when the LLC sits at
the home node and h != n.  Prefetch fills and write-backs move lines (they
count as traffic) but cost no cycles: a next-line prefetch is assumed timely.
Instruction misses stall the front end one at a time; data misses overlap
``data_mlp`` at a time.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc

from emu.errors import ConfigError
from emu.hw.accounting import QEMU_PAGE_SHIFT, Accounting, CpuCounts
from emu.hw.cost import (
    MODEL_CACHE,
    MODEL_FAST,
    CostPoint,
    CostReport,
    ModelParameters,
    resolve_parameters,
)
from emu.hw.topology import CacheGeometry, Topology, choice_values

if TYPE_CHECKING:
    from emu.system import System

UC_MEM_WRITE = 17
PAGE_OFFSET_MASK = (1 << QEMU_PAGE_SHIFT) - 1
HOME_BITS = 10  # _cachesim.c: keys are (line + 1) << HOME_BITS | home
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

_u64p = ctypes.POINTER(ctypes.c_uint64)
_u8p = ctypes.POINTER(ctypes.c_uint8)


class _CacheState(ctypes.Structure):
    # Must match cache_t in _cachesim.c field for field.
    _fields_ = [
        ("tags", _u64p),
        ("stamps", _u64p),
        ("dirty", _u8p),
        ("set_mask", ctypes.c_uint64),
        ("ways", ctypes.c_uint64),
        ("clock", ctypes.c_uint64),
    ]


class _HierState(ctypes.Structure):
    # Must match hier_t in _cachesim.c.
    _fields_ = [
        ("l1i", ctypes.POINTER(_CacheState)),
        ("l1d", ctypes.POINTER(_CacheState)),
        ("l2", ctypes.POINTER(_CacheState)),
        ("llc", ctypes.POINTER(_CacheState)),
        ("stats", _u64p),
        ("row_len", ctypes.c_uint64),
        ("llc_at_home", ctypes.c_uint64),
        ("inclusive", ctypes.c_uint64),
        ("prefetch", ctypes.c_uint64),
        ("sample_mask", ctypes.c_uint64),
        ("n_nodes", ctypes.c_uint64),
        ("last_fetch", _u64p),
        ("last_data", _u64p),
    ]


class _SimState(ctypes.Structure):
    # Must match sim_t in _cachesim.c.
    _fields_ = [
        ("acct", ctypes.c_void_p),
        ("hiers", ctypes.POINTER(_HierState)),
        ("n_hiers", ctypes.c_uint64),
        ("cpu", ctypes.c_uint64),
        ("node", ctypes.c_uint64),
        ("line_shift", ctypes.c_uint64),
        ("n_nodes", ctypes.c_uint64),
        ("ram_base", ctypes.c_uint64),
        ("bank_size", ctypes.c_uint64),
        ("unknown_fetch_lines", ctypes.c_uint64),
        ("unknown_data_lines", ctypes.c_uint64),
    ]


def load_cachesim() -> dict[str, int] | None:
    """The C functions' addresses, or None without the compiled extension."""
    try:
        from emu.hw import _cachesim  # type: ignore[attr-defined]
    except ImportError:
        return None
    addresses = _cachesim.addresses()
    expected = (ctypes.sizeof(_SimState), ctypes.sizeof(_HierState), ctypes.sizeof(_CacheState),
                ST_FIXED)  # fmt: skip
    found = (addresses["sim_size"], addresses["hier_size"], addresses["cache_size"],
             addresses["stat_fixed"])  # fmt: skip
    if found != expected:
        raise RuntimeError("emu/hw/_cachesim.c and cachemodel.py disagree on a layout")
    return addresses


@dataclass(frozen=True)
class CacheStats:
    """One CPU's counts in one hierarchy; *_by_node tuples are indexed by home node."""

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

    def minus(self, earlier: CacheStats) -> CacheStats:
        """What was counted since ``earlier`` (a snapshot of the same CPU and hierarchy)."""
        values = {}
        for name in self.__dataclass_fields__:
            now, then = getattr(self, name), getattr(earlier, name)
            values[name] = (tuple(a - b for a, b in zip(now, then, strict=True))
                            if isinstance(now, tuple) else now - then)  # fmt: skip
        return CacheStats(**values)

    @classmethod
    def from_row(cls, row: Sequence[int], nodes: int, scale: int = 1) -> CacheStats:
        fixed = {name: int(row[i]) * scale for i, name in enumerate(STAT_NAMES)}
        per_node = {
            name: tuple(int(v) * scale for v in row[ST_FIXED + k * nodes : ST_FIXED + (k + 1) * nodes])
            for k, name in enumerate(PER_NODE)
        }
        return cls(**fixed, **per_node)

    # The figures the single-LLC model reported, kept for the JSON.
    @property
    def llc_fetch_hits(self) -> int:
        return sum(self.llc_fetch_hits_by_node)

    @property
    def llc_fetch_misses(self) -> int:
        return sum(self.fetch_fills_by_node)

    @property
    def llc_data_hits(self) -> int:
        return sum(self.llc_data_hits_by_node)

    @property
    def llc_data_misses(self) -> int:
        return sum(self.data_fills_by_node)

    @property
    def llc_hits(self) -> int:
        return self.llc_fetch_hits + self.llc_data_hits

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {name: getattr(self, name) for name in STAT_NAMES}
        for name in ("llc_fetch_hits", "llc_fetch_misses", "llc_data_hits", "llc_data_misses"):
            doc[name] = getattr(self, name)
        doc.update({name: list(getattr(self, name)) for name in PER_NODE})
        return doc


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


# ----------------------------------------------------------------- reference


def squeeze(line: int) -> int:
    """The index a sampled hierarchy uses for ``line``: bits 3..5 removed."""
    return ((line >> 6) << 3) | (line & 7)


class ReferenceCache:
    """One set-associative LRU cache, each set a list from most to least
    recently used: an implementation independent of the C one's timestamps.
    ``sampled``: index by squeeze(line) (see _cachesim.c)."""

    def __init__(self, sets: int, ways: int, sampled: bool = False) -> None:
        self.set_mask = sets - 1
        self.ways = ways
        self.sampled = sampled
        self.sets: dict[int, list[list[int]]] = {}  # set -> [[line, dirty, home], ...], MRU first

    def _set(self, line: int) -> list[list[int]]:
        index = squeeze(line) if self.sampled else line
        return self.sets.setdefault(index & self.set_mask, [])

    def lookup(self, line: int, make_dirty: bool, home: int = 0
               ) -> tuple[bool, int | None, bool]:  # fmt: skip
        """(hit, evicted line or None, evicted line was dirty); a miss installs ``line``.
        The evicted line's home is in ``self.evicted_home``."""
        entries = self._set(line)
        for position, entry in enumerate(entries):
            if entry[0] == line:
                entries.insert(0, entries.pop(position))
                entry[1] = entry[1] or make_dirty
                return True, None, False
        evicted = entries.pop() if len(entries) == self.ways else None
        entries.insert(0, [line, make_dirty, home])
        if evicted is None:
            return False, None, False
        self.evicted_home = evicted[2]
        return False, evicted[0], bool(evicted[1])

    def remove(self, line: int) -> int:
        """Drop ``line``: 0 if absent, 1 if clean, 2 if dirty."""
        entries = self._set(line)
        for position, entry in enumerate(entries):
            if entry[0] == line:
                entries.pop(position)
                return 2 if entry[1] else 1
        return 0

    def contents(self) -> set[tuple[int, bool]]:
        return {(line, bool(dirty)) for entries in self.sets.values() for line, dirty, _ in entries}


class ReferenceHierarchy:
    """One hierarchy in plain Python (semantics: _cachesim.c's header)."""

    def __init__(self, geometry: CacheGeometry, variant: Variant, n_cpus: int, n_nodes: int,
                 llc_at_home: bool) -> None:  # fmt: skip
        def level(name: str) -> ReferenceCache:
            sets = geometry.sets(name) // variant.scale
            return ReferenceCache(max(sets, 1), getattr(geometry, f"{name}_ways"), variant.sampled)

        self.variant = variant
        self.line_shift = geometry.line_bytes.bit_length() - 1
        self.n_nodes = n_nodes
        self.llc_at_home = llc_at_home
        self.l1i = [level("l1i") for _ in range(n_cpus)]
        self.l1d = [level("l1d") for _ in range(n_cpus)]
        self.l2 = [level("l2") for _ in range(n_cpus)]
        self.llc = [level("llc") for _ in range(n_nodes)]
        self.rows = [[0] * stats_row_length(n_nodes) for _ in range(n_cpus)]

    def _node_slot(self, index: int, node: int) -> int:
        return ST_FIXED + index * self.n_nodes + node

    def _llc(self, node: int, home: int) -> ReferenceCache:
        return self.llc[home if self.llc_at_home else node]

    def access(self, cpu: int, node: int, line: int, home: int, kind: int) -> None:
        if self.variant.sampled and (line >> 3) & (SAMPLE_FACTOR - 1):
            return
        row = self.rows[cpu]
        if kind == KIND_FETCH:
            row[ST_FETCH_LINES] += 1
            if self.l1i[cpu].lookup(line, False, home)[0]:
                return
            row[ST_L1I_MISSES] += 1
            self._l2_read(cpu, node, line, home, CLASS_FETCH)
            following = line + 1
            page_lines = (1 << QEMU_PAGE_SHIFT) >> self.line_shift
            if self.variant.prefetch and following % page_lines and (
                not self.variant.sampled or following & 7
            ):
                row[ST_PREFETCHES] += 1
                if self.l1i[cpu].lookup(following, False, home)[0]:
                    row[ST_PREFETCH_L1_HITS] += 1
                else:
                    self._l2_read(cpu, node, following, home, CLASS_PREFETCH)
            return
        write = kind == KIND_WRITE
        row[ST_WRITE_LINES if write else ST_READ_LINES] += 1
        l1d = self.l1d[cpu]
        hit, victim, victim_dirty = l1d.lookup(line, write, home)
        if hit:
            return
        victim_home = getattr(l1d, "evicted_home", 0)
        row[ST_L1D_MISSES] += 1
        self._l2_read(cpu, node, line, home, CLASS_DATA)
        if victim_dirty:
            row[ST_L1D_WRITEBACKS] += 1
            l2 = self.l2[cpu]
            hit, l2_victim, l2_dirty = l2.lookup(victim, True, victim_home)
            if not hit and l2_victim is not None:
                self._l2_victim(cpu, node, l2_victim, l2.evicted_home, l2_dirty)

    def _l2_read(self, cpu: int, node: int, line: int, home: int, cls: int) -> None:
        row = self.rows[cpu]
        l2 = self.l2[cpu]
        hit, victim, victim_dirty = l2.lookup(line, False, home)
        if hit:
            row[(ST_L2_FETCH_HITS, ST_L2_DATA_HITS, ST_L2_PREFETCH_HITS)[cls]] += 1
            return
        victim_home = getattr(l2, "evicted_home", 0)
        if cls != CLASS_PREFETCH:
            row[ST_L2_FETCH_MISSES if cls == CLASS_FETCH else ST_L2_DATA_MISSES] += 1
        llc = self._llc(node, home)
        llc_hit, _, llc_dirty = llc.lookup(line, False, home)
        if llc_hit:
            row[self._node_slot(cls, home)] += 1
        else:
            row[self._node_slot(3 + cls, home)] += 1
            if llc_dirty:
                row[ST_LLC_WRITEBACKS] += 1
                row[self._node_slot(6, llc.evicted_home)] += 1
        if victim is not None:
            self._l2_victim(cpu, node, victim, victim_home, victim_dirty)

    def _l2_victim(self, cpu: int, node: int, line: int, home: int, dirty: bool) -> None:
        row = self.rows[cpu]
        if self.variant.inclusive:
            removed = self.l1d[cpu].remove(line)
            if removed:
                row[ST_BACK_INVALIDATIONS] += 1
            dirty = dirty or removed == 2
        if dirty:
            row[ST_L2_WRITEBACKS] += 1
            llc = self._llc(node, home)
            hit, _, victim_dirty = llc.lookup(line, True, home)
            if not hit and victim_dirty:
                row[ST_LLC_WRITEBACKS] += 1
                row[self._node_slot(6, llc.evicted_home)] += 1

    def stats(self, cpu: int) -> CacheStats:
        return CacheStats.from_row(self.rows[cpu], self.n_nodes, self.variant.scale)


class ReferenceSim:
    """Several reference hierarchies fed the same stream (sim_t's Python twin)."""

    def __init__(self, hierarchies: Sequence[ReferenceHierarchy], cpu_nodes: Sequence[int],
                 ram_base: int, bank_size: int, n_nodes: int, line_shift: int) -> None:  # fmt: skip
        self.hierarchies = list(hierarchies)
        self.cpu_nodes = tuple(cpu_nodes)
        self.ram_base = ram_base
        self.bank_size = bank_size
        self.n_nodes = n_nodes
        self.line_shift = line_shift
        self.cpu = 0
        self.unknown_fetch_lines = 0
        self.unknown_data_lines = 0

    def select_cpu(self, cpu: int) -> None:
        self.cpu = cpu

    def node_of_line(self, line: int) -> int:
        pa = line << self.line_shift
        if pa < self.ram_base:
            return -1
        node = (pa - self.ram_base) // self.bank_size
        return node if node < self.n_nodes else -1

    def access(self, line: int, home: int, kind: int) -> None:
        node = self.cpu_nodes[self.cpu]
        for hierarchy in self.hierarchies:
            hierarchy.access(self.cpu, node, line, home, kind)

    def fetch_pa(self, pa: int, size: int) -> None:
        """Every line of [pa, pa + size) fetched, as the block hook does for one page."""
        for line in range(pa >> self.line_shift, ((pa + size - 1) >> self.line_shift) + 1):
            home = self.node_of_line(line)
            if home < 0:
                self.unknown_fetch_lines += 1
            else:
                self.access(line, home, KIND_FETCH)

    def access_pa(self, pa: int, size: int, write: bool) -> None:
        """The data path: every line of [pa, pa + max(size, 1))."""
        last = (pa + max(size, 1) - 1) >> self.line_shift
        for line in range(pa >> self.line_shift, last + 1):
            home = self.node_of_line(line)
            if home < 0:
                self.unknown_data_lines += 1
            else:
                self.access(line, home, KIND_WRITE if write else KIND_READ)


# ------------------------------------------------------------------ the model


def _zeroed(ctype: type, count: int) -> ctypes.Array:
    """A zeroed ctypes array in anonymous memory: pages are committed only when
    touched, so a node's 32 MiB LLC costs only the sets a run uses."""
    buffer = mmap.mmap(-1, max(ctypes.sizeof(ctype) * count, 1))
    array_ = (ctype * count).from_buffer(buffer)
    array_._mapping = buffer  # keep the mapping as long as the array
    return array_


class _CLevel:
    """One C cache_t per CPU or node, with its arrays."""

    def __init__(self, count: int, sets: int, ways: int) -> None:
        self.states = (_CacheState * count)()
        self.arrays = []
        for i in range(count):
            tags = _zeroed(ctypes.c_uint64, sets * ways)
            stamps = _zeroed(ctypes.c_uint64, sets * ways)
            dirty = _zeroed(ctypes.c_uint8, sets * ways)
            self.arrays.append((tags, dirty, stamps))
            self.states[i] = _CacheState(ctypes.cast(tags, _u64p), ctypes.cast(stamps, _u64p),
                                         ctypes.cast(dirty, _u8p), sets - 1, ways, 0)  # fmt: skip

    def contents(self, index: int) -> set[tuple[int, bool]]:
        tags, dirty, _ = self.arrays[index]
        return {((tag >> HOME_BITS) - 1, bool(dirty[i])) for i, tag in enumerate(tags) if tag}


@dataclass
class _CHierarchy:
    """One hier_t's arrays, kept alive as long as the model."""

    levels: dict[str, _CLevel]
    stats: ctypes.Array
    row_len: int
    variant: Variant
    last: tuple[ctypes.Array, ctypes.Array]


class CacheModel:
    """The hierarchies of one machine, fed by its run or by ``feed``.

    ``detail``: "cache" simulates every structural variant, "fast" the
    first-listed one.  ``sampled``: also simulate set-sampled copies of them
    (when every level has at least 64 sets).
    ``backend``: "c", "python" (ReferenceSim behind Python hooks) or "auto".
    """

    def __init__(self, topology: Topology, accounting: Accounting | None, ram_base: int,
                 bank_size: int, parameters: ModelParameters | None = None,
                 backend: str = "auto", detail: str = MODEL_CACHE,
                 sampled: bool = False) -> None:  # fmt: skip
        if backend not in ("auto", "c", "python"):
            raise ValueError(f"cache model backend {backend!r}: use auto, c or python")
        if detail not in (MODEL_CACHE, MODEL_FAST):
            raise ConfigError(f"cost model {detail!r}: use fast or cache")
        self.topology = topology
        self.accounting = accounting
        self.parameters = parameters or resolve_parameters(topology)
        self.detail = detail
        # Each (CPU, hierarchy)'s stats when the CPU's measurement window opened.
        self._window_base: dict[tuple[int, Variant], CacheStats] = {}
        geometry = self.parameters.cache
        self.geometry = geometry
        n_cpus, nodes = topology.n_cpus, topology.nodes
        self.cpu_nodes = tuple(topology.cpu_to_node(cpu) for cpu in range(n_cpus))
        variants = list(structural_variants(geometry, sampled=False))
        if detail == MODEL_FAST:
            variants = variants[:1]
        if sampled and can_sample(geometry):
            variants += [Variant(v.prefetch, v.inclusive, True) for v in variants]
        self.variants = tuple(variants)
        self.llc_at_home = geometry.llc_placement == "home"
        addresses = load_cachesim() if backend in ("auto", "c") else None
        if backend == "c" and addresses is None:
            raise RuntimeError("the compiled cache model (emu.hw._cachesim) is not built")
        self._addresses = addresses
        self.line_shift = geometry.line_bytes.bit_length() - 1
        self.cpu = 0
        self.row_len = stats_row_length(nodes)
        if addresses is None:
            self.reference: ReferenceSim | None = ReferenceSim(
                [ReferenceHierarchy(geometry, v, n_cpus, nodes, self.llc_at_home)
                 for v in self.variants],
                self.cpu_nodes, ram_base, bank_size, nodes, self.line_shift,
            )  # fmt: skip
            return
        self.reference = None
        self._hiers: list[_CHierarchy] = []
        self._hier_states = (_HierState * len(self.variants))()
        for index, variant in enumerate(self.variants):
            levels = {}
            for name, count in (("l1i", n_cpus), ("l1d", n_cpus), ("l2", n_cpus), ("llc", nodes)):
                sets = max(geometry.sets(name) // variant.scale, 1)
                levels[name] = _CLevel(count, sets, getattr(geometry, f"{name}_ways"))
            stats = (ctypes.c_uint64 * (n_cpus * self.row_len))()
            last = ((ctypes.c_uint64 * n_cpus)(), (ctypes.c_uint64 * n_cpus)())
            self._hiers.append(_CHierarchy(levels, stats, self.row_len, variant, last))
            state = self._hier_states[index]
            for name, level in levels.items():
                setattr(state, name, ctypes.cast(level.states, ctypes.POINTER(_CacheState)))
            state.stats = ctypes.cast(stats, _u64p)
            state.row_len = self.row_len
            state.llc_at_home = int(self.llc_at_home)
            state.inclusive = int(variant.inclusive)
            state.prefetch = int(variant.prefetch)
            state.sample_mask = SAMPLE_FACTOR - 1 if variant.sampled else 0
            state.n_nodes = nodes
            state.last_fetch = ctypes.cast(last[0], _u64p)
            state.last_data = ctypes.cast(last[1], _u64p)
        self.state = _SimState()
        state = self.state
        if accounting is not None:
            state.acct = ctypes.cast(ctypes.pointer(accounting.state), ctypes.c_void_p)
        state.hiers = ctypes.cast(self._hier_states, ctypes.POINTER(_HierState))
        state.n_hiers = len(self.variants)
        state.line_shift = self.line_shift
        state.n_nodes = nodes
        state.ram_base = ram_base
        state.bank_size = bank_size
        self._cpu_nodes_c = (ctypes.c_uint64 * n_cpus)(*self.cpu_nodes)
        self.select_cpu(0)

    @property
    def compiled(self) -> bool:
        return self._addresses is not None

    # ---------------------------------------------------------------- hooks
    def install(self, uc: Uc, data_from_accounting: bool = True) -> str:
        """Connect the fetch and data paths; returns "accounting" when data
        accesses come from the accounting's C instruction hook (no memory
        hook: Unicorn keeps its fast path for loads and stores), "hook" when
        a memory hook was added.  Fetches come from the accounting's block
        hook when it has one (one block hook for Unicorn to call, not two),
        else from a block hook of the model's own.  Flush the engine's
        translations after."""
        accounting = self.accounting
        if self._addresses is None:
            uc.hook_add(UC_HOOK_BLOCK, self._python_block_hook)
            uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._python_mem_hook)
            return "hook"
        hooks = []
        compiled = data_from_accounting and accounting is not None and accounting.compiled
        if compiled and accounting.counts_fetches:
            accounting.state.fetch_sink = self._addresses["cache_block"]
            accounting.state.fetch_sink_user = ctypes.addressof(self.state)
        else:
            hooks.append((UC_HOOK_BLOCK, "cache_block"))
        sink = compiled and accounting.counts_instructions
        if sink:
            accounting.state.data_sink = self._addresses["cache_data_sink"]
            accounting.state.data_sink_user = ctypes.addressof(self.state)
        else:
            hooks.append((UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, "cache_mem"))
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

        user = ctypes.cast(ctypes.pointer(self.state), ctypes.c_void_p)
        for htype, name in hooks:
            handle = uc_hook_h()
            status = uclib.uc_hook_add(
                uc._uch, ctypes.byref(handle), htype, ctypes.c_void_p(self._addresses[name]),
                user, ctypes.c_uint64(1), ctypes.c_uint64(0),
            )  # fmt: skip
            if status != 0:
                raise RuntimeError(f"uc_hook_add failed with {status}")
        return "accounting" if sink else "hook"

    def select_cpu(self, cpu: int) -> None:
        """Charge what follows to ``cpu`` (its private caches, its node)."""
        self.cpu = cpu
        if self.reference is not None:
            self.reference.select_cpu(cpu)
            return
        self.state.cpu = cpu
        self.state.node = self.cpu_nodes[cpu]

    def on_switch(self, vcpu: Any) -> None:
        """A machine.switch_listeners entry."""
        self.select_cpu(vcpu.index)

    def hook_functions(self) -> tuple[Callable[..., None], Callable[..., None]]:
        """The block and data hooks as Python callables (ctypes calls into C when
        compiled): what tests feed synthetic traces through."""
        if self._addresses is None:
            return self._python_block_hook, self._python_mem_hook
        block_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                   ctypes.c_void_p)  # fmt: skip
        mem_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64,
                                 ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)  # fmt: skip
        block = block_t(self._addresses["cache_block"])
        mem = mem_t(self._addresses["cache_mem"])
        user = ctypes.cast(ctypes.pointer(self.state), ctypes.c_void_p)

        def call_block(uc: object, address: int, size: int, _user: object = None) -> None:
            block(None, address, size, user)

        def call_mem(uc: object, access: int, address: int, size: int, value: int,
                     _user: object = None) -> None:  # fmt: skip
            mem(None, access, address, size, value, user)

        return call_block, call_mem

    # Fallback hooks: the block hook's page lookup reads the accounting
    # table's Python mirror, which holds what the C table holds.
    def _python_block_hook(self, uc: object, address: int, size: int,
                           _user: object = None) -> None:  # fmt: skip
        reference = self.reference
        shift = self.line_shift
        if not size:
            return
        pages = self.accounting._pages
        for line in range(address >> shift, ((address + size - 1) >> shift) + 1):
            va = line << shift
            entry = pages.get((va >> QEMU_PAGE_SHIFT) + 1)
            if entry is None:
                reference.unknown_fetch_lines += 1
                continue
            reference.fetch_pa((entry[1] << QEMU_PAGE_SHIFT) | (va & PAGE_OFFSET_MASK), 1)

    def _python_mem_hook(self, uc: object, access: int, address: int, size: int, value: int,
                         _user: object = None) -> None:  # fmt: skip
        self.reference.access_pa(address, size, access == UC_MEM_WRITE)

    # --------------------------------------------------------- record feed
    def feed(self, cpus: Sequence[int], lines: Sequence[int], kinds: Sequence[int],
             homes: Sequence[int]) -> None:  # fmt: skip
        """Feed a stream of records: CPU, line address (PA >> line shift: one
        number per physical line, so two nodes' copies of a text line are two
        lines), kind (KIND_FETCH, KIND_READ, KIND_WRITE) and home node of the
        line (the node whose DRAM holds it).  A bad record is a ConfigError
        naming its index; the records before it were fed."""
        n = len(cpus)
        if not len(lines) == len(kinds) == len(homes) == n:
            raise ConfigError("cache feed: cpus, lines, kinds and homes differ in length")
        if self.reference is not None:
            saved = self.cpu
            try:
                for index, (cpu, line, kind, home) in enumerate(zip(cpus, lines, kinds, homes,
                                                                    strict=True)):  # fmt: skip
                    self._check_record(index, cpu, kind, home)
                    self.reference.select_cpu(cpu)
                    self.reference.access(line, home, kind)
            finally:
                self.select_cpu(saved)
            return
        cpu_a, line_a = array("I", cpus), array("Q", lines)
        kind_a, home_a = array("B", kinds), array("H", homes)
        function = ctypes.CFUNCTYPE(
            ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
        )(self._addresses["cache_feed"])  # fmt: skip

        def address(buffer: array) -> int:
            return buffer.buffer_info()[0]

        done = function(ctypes.addressof(self.state), address(cpu_a), address(line_a),
                        address(kind_a), address(home_a), n, ctypes.addressof(self._cpu_nodes_c),
                        self.topology.n_cpus)  # fmt: skip
        if done < n:
            self._check_record(done, cpu_a[done], kind_a[done], home_a[done])

    def _check_record(self, index: int, cpu: int, kind: int, home: int) -> None:
        if not 0 <= cpu < self.topology.n_cpus:
            raise ConfigError(f"cache feed: record {index}: CPU {cpu} does not exist")
        if kind not in (KIND_FETCH, KIND_READ, KIND_WRITE):
            raise ConfigError(f"cache feed: record {index}: kind {kind} is not 0, 1 or 2")
        if not 0 <= home < self.topology.nodes:
            raise ConfigError(f"cache feed: record {index}: home node {home} does not exist")

    # ------------------------------------------------------------- results
    def variant_index(self, variant: Variant) -> int:
        return self.variants.index(variant)

    def open_window(self, vcpu: Any) -> None:
        """A machine.window_listeners entry: ``vcpu``'s measurement window opens
        (sys_window), so its stats from now on are what stats() reports."""
        for variant in self.variants:
            self._window_base[(vcpu.index, variant)] = self.all_stats(vcpu.index, variant)

    def stats(self, cpu: int, variant: Variant | None = None) -> CacheStats:
        """CPU ``cpu``'s counts in ``variant`` (default: the primary one) inside
        its measurement window (all of them if it never opened one), scaled
        back by the sampling factor for a sampled hierarchy."""
        variant = variant or self.primary_variant
        now = self.all_stats(cpu, variant)
        base = self._window_base.get((cpu, variant))
        return now if base is None else now.minus(base)

    def all_stats(self, cpu: int, variant: Variant | None = None) -> CacheStats:
        """CPU ``cpu``'s counts in ``variant`` since the model was attached,
        boot and set-up included (stats() has the window's)."""
        variant = variant or self.primary_variant
        index = self.variant_index(variant)
        if self.reference is not None:
            return self.reference.hierarchies[index].stats(cpu)
        row = self._hiers[index].stats[cpu * self.row_len : (cpu + 1) * self.row_len]
        return CacheStats.from_row(row, self.topology.nodes, variant.scale)

    @property
    def primary_variant(self) -> Variant:
        """The hierarchy the point report uses: full size, structural options
        at their first listed value."""
        return self.variants[0]

    def variants_of(self, sampled: bool) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.sampled == sampled)

    @property
    def unknown_fetch_lines(self) -> int:
        """Fetched lines whose physical page was unknown: 0 unless something is broken."""
        if self.reference is not None:
            return self.reference.unknown_fetch_lines
        return self.state.unknown_fetch_lines

    @property
    def unknown_data_lines(self) -> int:
        if self.reference is not None:
            return self.reference.unknown_data_lines
        return self.state.unknown_data_lines

    def contents(self, level: str, index: int, variant: Variant | None = None
                 ) -> set[tuple[int, bool]]:  # fmt: skip
        """(line, dirty) of every line held by ``level`` ("l1i", "l1d", "l2":
        CPU ``index``; "llc": node ``index``)."""
        position = self.variant_index(variant or self.primary_variant)
        if self.reference is not None:
            return getattr(self.reference.hierarchies[position], level)[index].contents()
        return self._hiers[position].levels[level].contents(index)

    def cost_report(self, counts: Sequence[CpuCounts] | None = None,
                    variant: Variant | None = None, point: CostPoint | None = None) -> CostReport:  # fmt: skip
        """The CostReport of ``variant`` (default: the primary one) at
        ``point`` (default: every range at its midpoint), of the measurement
        windows; ``counts`` default to the accounting's window counts."""
        variant = variant or self.primary_variant
        params = self.parameters
        point = point or params.mid_point()
        n_cpus = self.topology.n_cpus
        if counts is None:
            counts = [self.accounting.window_counts(cpu) for cpu in range(n_cpus)]
        all_stats = [self.stats(cpu, variant) for cpu in range(n_cpus)]
        cycles, lines, detail = [], [], []
        for cpu, stats in enumerate(all_stats):
            node = self.cpu_nodes[cpu]
            cycles.append(hierarchy_cycles(stats, counts[cpu].instructions, node, point,
                                           self.llc_at_home, exact=True))  # fmt: skip
            row = []
            for memory in range(self.topology.nodes):
                moved = (stats.fetch_fills_by_node[memory] + stats.data_fills_by_node[memory]
                         + stats.prefetch_fills_by_node[memory] + stats.writebacks_by_node[memory])
                row.append(Fraction(moved))
            lines.append(tuple(row))
            detail.append({"cache": stats.to_json()})
        return CostReport(
            model=self.detail,
            parameters=params,
            cpu_nodes=self.cpu_nodes,
            instructions=tuple(c.instructions for c in counts),
            cycles=tuple(cycles),
            memory_lines=tuple(lines),
            detail=tuple(detail),
            hierarchy=HierarchyResult.of(self, counts),
        )


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
    for home in range(len(stats.fetch_fills_by_node)):
        llc = number(point.llc_cycles[node][home if llc_at_home else node]) - l1
        dram = number(point.dram_cycles[node][home])
        total += stats.llc_fetch_hits_by_node[home] * llc
        total += stats.llc_data_hits_by_node[home] * llc / mlp
        total += stats.fetch_fills_by_node[home] * dram
        total += stats.data_fills_by_node[home] * dram / mlp
    return total


def frontend_stall_cycles(stats: CacheStats, node: int, point: CostPoint, llc_at_home: bool) -> float:
    """The instruction-miss part of hierarchy_cycles (floats)."""
    l1 = float(point.l1_hit_cycles)
    total = stats.l2_fetch_hits * (float(point.l2_hit_cycles) - l1)
    for home in range(len(stats.fetch_fills_by_node)):
        llc = float(point.llc_cycles[node][home if llc_at_home else node]) - l1
        total += stats.llc_fetch_hits_by_node[home] * llc
        total += stats.fetch_fills_by_node[home] * float(point.dram_cycles[node][home])
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

    @classmethod
    def of(cls, model: CacheModel, counts: Sequence[CpuCounts]) -> HierarchyResult:
        n_cpus = model.topology.n_cpus
        return cls(
            variants=model.variants,
            stats=tuple(tuple(model.stats(cpu, v) for cpu in range(n_cpus)) for v in model.variants),
            cpu_nodes=model.cpu_nodes,
            instructions=tuple(c.instructions for c in counts),
            kernel_instructions=tuple(sum(c.kernel_fetches_by_node) for c in counts),
            llc_at_home=model.llc_at_home,
            primary=model.primary_variant,
        )

    def total_cycles(self, variant: Variant, point: CostPoint) -> float:
        index = self.variants.index(variant)
        return sum(
            hierarchy_cycles(stats, self.instructions[cpu], self.cpu_nodes[cpu], point,
                             self.llc_at_home)
            for cpu, stats in enumerate(self.stats[index])
        )  # fmt: skip


def attach_cache_model(system: System, backend: str = "auto", detail: str = MODEL_CACHE,
                       data_from_accounting: bool = True, sampled: bool = False) -> CacheModel:  # fmt: skip
    """Install the cache model on ``system``'s machine; call before
    ``system.run()``, then ``cost_of_run(system, model)`` (emu/hw/cost.py) or
    ``model.cost_report()`` for the CostReport.  ``data_from_accounting``
    False: the model's own block and memory hooks (what the tests compare the
    accounting-fed paths against)."""
    machine = system.machine
    state = machine.accounting.state
    model = CacheModel(system.config.topology, machine.accounting, state.ram_base,
                       state.bank_size, backend=backend, detail=detail, sampled=sampled)  # fmt: skip
    model.install(machine.uc, data_from_accounting=data_from_accounting)
    machine.switch_listeners.append(model.on_switch)
    machine.window_listeners.append(model.open_window)
    if machine.current is not None:
        model.select_cpu(machine.current.index)
    # Hooks apply only to blocks translated after they were added.
    machine.uc.ctl_flush_tb()
    return model


__all__ = [
    "KINDS",
    "KIND_FETCH",
    "KIND_READ",
    "KIND_WRITE",
    "PER_NODE",
    "SAMPLE_FACTOR",
    "STAT_NAMES",
    "CacheModel",
    "CacheStats",
    "HierarchyResult",
    "ReferenceCache",
    "ReferenceHierarchy",
    "ReferenceSim",
    "Variant",
    "attach_cache_model",
    "frontend_stall_cycles",
    "hierarchy_cycles",
    "load_cachesim",
    "structural_variants",
]
