"""The pure-Python cache hierarchy simulator: the same semantics as
emu/hw/_cachesim.c (written out at its top), written independently of the C
one's timestamps (each set a list from most to least recently used).  The
fallback without a C compiler and the reference the tests compare the C
code against (CacheModel(backend="python") in emu/hw/cachemodel.py).

Owns ReferenceCache (one level), ReferenceHierarchy (one variant's levels
and statistics rows) and ReferenceSim (several hierarchies fed one stream,
sim_t's Python twin).
"""

from __future__ import annotations

from collections.abc import Sequence

from emu.hw.accounting import QEMU_PAGE_SHIFT
from emu.hw.cachestats import (
    CLASS_DATA,
    CLASS_FETCH,
    CLASS_PREFETCH,
    KIND_FETCH,
    KIND_READ,
    KIND_WRITE,
    SAMPLE_FACTOR,
    ST_BACK_INVALIDATIONS,
    ST_FETCH_LINES,
    ST_FIXED,
    ST_L1D_MISSES,
    ST_L1D_WRITEBACKS,
    ST_L1I_MISSES,
    ST_L2_DATA_HITS,
    ST_L2_DATA_MISSES,
    ST_L2_FETCH_HITS,
    ST_L2_FETCH_MISSES,
    ST_L2_PREFETCH_HITS,
    ST_L2_WRITEBACKS,
    ST_LLC_WRITEBACKS,
    ST_PREFETCH_L1_HITS,
    ST_PREFETCHES,
    ST_READ_LINES,
    ST_WRITE_LINES,
    CacheStats,
    Variant,
    stats_row_length,
)
from emu.hw.topology import CacheGeometry


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
