"""The detailed NUMA cost model (``--detail cache``): per-CPU L1I and L1D and a
shared last-level cache per node, set-associative with LRU, fed by every
instruction fetch and data access of the run; misses charged by distance.

Owns the cache state and statistics (CacheModel), their installation on the
machine's Unicorn engine (attach_cache_model), the pure-Python simulator with
the same semantics (ReferenceHierarchy: the fallback without a C compiler and
the reference the tests compare the C hooks against), and the detailed
CostReport of a run.  The semantics are written out at the top of
emu/hw/_cachesim.c; this module mirrors its structs in ctypes.

Cycles of CPU c on node n (see emu/hw/cost.py for the fast model):

    instructions x base_cpi + LLC hits x llc_hit_cycles
    + sum over memory nodes m of DRAM fills(c, m) x latency_cycles(n, m)

Write-backs to DRAM count as traffic but cost no cycles (they are buffered).
A CPU's L1s belong to it and its LLC is its node's, whoever ran before.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc

from emu.hw.accounting import QEMU_PAGE_SHIFT, Accounting, CpuCounts
from emu.hw.cost import MODEL_CACHE, CostReport, ModelParameters, resolve_parameters
from emu.hw.topology import CacheGeometry, Topology

if TYPE_CHECKING:
    from emu.system import System

UC_MEM_WRITE = 17
PAGE_OFFSET_MASK = (1 << QEMU_PAGE_SHIFT) - 1

# The statistics row of one CPU (the enum in _cachesim.c), then per node:
# DRAM fills for fetches, DRAM fills for data, write-backs to DRAM.
STAT_NAMES = (
    "fetch_lines", "l1i_misses", "read_lines", "write_lines", "l1d_misses",
    "llc_fetch_hits", "llc_fetch_misses", "llc_data_hits", "llc_data_misses",
    "l1d_writebacks", "llc_writebacks",
)  # fmt: skip
(ST_FETCH_LINES, ST_L1I_MISSES, ST_READ_LINES, ST_WRITE_LINES, ST_L1D_MISSES,
 ST_LLC_FETCH_HITS, ST_LLC_FETCH_MISSES, ST_LLC_DATA_HITS, ST_LLC_DATA_MISSES,
 ST_L1D_WRITEBACKS, ST_LLC_WRITEBACKS) = range(len(STAT_NAMES))  # fmt: skip
ST_FIXED = len(STAT_NAMES)

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


class _SimState(ctypes.Structure):
    # Must match sim_t in _cachesim.c field for field.
    _fields_ = [
        ("acct", ctypes.c_void_p),
        ("l1i", ctypes.POINTER(_CacheState)),
        ("l1d", ctypes.POINTER(_CacheState)),
        ("llc", ctypes.POINTER(_CacheState)),
        ("row", _u64p),
        ("line_shift", ctypes.c_uint64),
        ("n_nodes", ctypes.c_uint64),
        ("ram_base", ctypes.c_uint64),
        ("bank_size", ctypes.c_uint64),
        ("unknown_fetch_lines", ctypes.c_uint64),
        ("unknown_data_lines", ctypes.c_uint64),
    ]


def load_cachesim() -> dict[str, int] | None:
    """The C hooks' addresses, or None without the compiled extension."""
    try:
        from emu.hw import _cachesim  # type: ignore[attr-defined]
    except ImportError:
        return None
    addresses = _cachesim.addresses()
    if (addresses["sim_size"], addresses["cache_size"], addresses["stat_fixed"]) != (
        ctypes.sizeof(_SimState), ctypes.sizeof(_CacheState), ST_FIXED
    ):
        raise RuntimeError("emu/hw/_cachesim.c and cachemodel.py disagree on a layout")
    return addresses


@dataclass(frozen=True)
class CacheStats:
    """One CPU's cache statistics; the *_by_node tuples are indexed by memory node."""

    fetch_lines: int
    l1i_misses: int
    read_lines: int
    write_lines: int
    l1d_misses: int
    llc_fetch_hits: int
    llc_fetch_misses: int
    llc_data_hits: int
    llc_data_misses: int
    l1d_writebacks: int
    llc_writebacks: int
    fetch_fills_by_node: tuple[int, ...]
    data_fills_by_node: tuple[int, ...]
    writebacks_by_node: tuple[int, ...]

    @classmethod
    def from_row(cls, row: Sequence[int], nodes: int) -> CacheStats:
        fixed = {name: int(row[i]) for i, name in enumerate(STAT_NAMES)}
        per_node = [tuple(int(v) for v in row[ST_FIXED + k * nodes : ST_FIXED + (k + 1) * nodes])
                    for k in range(3)]  # fmt: skip
        return cls(**fixed, fetch_fills_by_node=per_node[0], data_fills_by_node=per_node[1],
                   writebacks_by_node=per_node[2])  # fmt: skip

    @property
    def llc_hits(self) -> int:
        return self.llc_fetch_hits + self.llc_data_hits

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in STAT_NAMES},
            "fetch_fills_by_node": list(self.fetch_fills_by_node),
            "data_fills_by_node": list(self.data_fills_by_node),
            "writebacks_by_node": list(self.writebacks_by_node),
        }


# ----------------------------------------------------------------- reference


class ReferenceCache:
    """One set-associative LRU cache, each set a list from most to least
    recently used: an implementation independent of the C one's timestamps."""

    def __init__(self, sets: int, ways: int) -> None:
        self.set_mask = sets - 1
        self.ways = ways
        self.sets: dict[int, list[list[int]]] = {}  # set -> [[line, dirty], ...], MRU first

    def lookup(self, line: int, make_dirty: bool) -> tuple[bool, int | None, bool]:
        """(hit, evicted line or None, evicted line was dirty); a miss installs ``line``."""
        entries = self.sets.setdefault(line & self.set_mask, [])
        for position, entry in enumerate(entries):
            if entry[0] == line:
                entries.insert(0, entries.pop(position))
                entry[1] = entry[1] or make_dirty
                return True, None, False
        evicted = entries.pop() if len(entries) == self.ways else None
        entries.insert(0, [line, make_dirty])
        if evicted is None:
            return False, None, False
        return False, evicted[0], evicted[1]

    def contents(self) -> set[tuple[int, bool]]:
        return {(line, dirty) for entries in self.sets.values() for line, dirty in entries}


class ReferenceHierarchy:
    """The whole cache model in plain Python (semantics: _cachesim.c's header)."""

    def __init__(self, geometry: CacheGeometry, n_cpus: int, cpu_nodes: Sequence[int],
                 ram_base: int, bank_size: int, n_nodes: int) -> None:  # fmt: skip
        self.line_shift = geometry.line_bytes.bit_length() - 1
        self.n_nodes = n_nodes
        self.ram_base = ram_base
        self.bank_size = bank_size
        self.cpu_nodes = tuple(cpu_nodes)
        self.l1i = [ReferenceCache(geometry.sets("l1i"), geometry.l1i_ways) for _ in range(n_cpus)]
        self.l1d = [ReferenceCache(geometry.sets("l1d"), geometry.l1d_ways) for _ in range(n_cpus)]
        self.llc = [ReferenceCache(geometry.sets("llc"), geometry.llc_ways)
                    for _ in range(n_nodes)]  # fmt: skip
        self.rows = [[0] * (ST_FIXED + 3 * n_nodes) for _ in range(n_cpus)]
        self.unknown_fetch_lines = 0
        self.unknown_data_lines = 0
        self.cpu = 0

    def select_cpu(self, cpu: int) -> None:
        self.cpu = cpu

    def node_of_line(self, line: int) -> int:
        pa = line << self.line_shift
        if pa < self.ram_base:
            return -1
        node = (pa - self.ram_base) // self.bank_size
        return node if node < self.n_nodes else -1

    def fetch_line(self, line: int) -> None:
        row = self.rows[self.cpu]
        row[ST_FETCH_LINES] += 1
        if self.l1i[self.cpu].lookup(line, False)[0]:
            return
        row[ST_L1I_MISSES] += 1
        self._llc_read(line, data=False)

    def data_line(self, line: int, write: bool) -> None:
        row = self.rows[self.cpu]
        row[ST_WRITE_LINES if write else ST_READ_LINES] += 1
        hit, victim, victim_dirty = self.l1d[self.cpu].lookup(line, write)
        if hit:
            return
        row[ST_L1D_MISSES] += 1
        self._llc_read(line, data=True)
        if victim_dirty:
            row[ST_L1D_WRITEBACKS] += 1
            hit, llc_victim, llc_victim_dirty = self._llc().lookup(victim, True)
            if not hit and llc_victim_dirty:
                self._writeback(llc_victim)

    def fetch_pa(self, pa: int, size: int) -> None:
        """Every line of [pa, pa + size) fetched, as the block hook does for one page."""
        for line in range(pa >> self.line_shift, ((pa + size - 1) >> self.line_shift) + 1):
            if self.node_of_line(line) < 0:
                self.unknown_fetch_lines += 1
            else:
                self.fetch_line(line)

    def access_pa(self, pa: int, size: int, write: bool) -> None:
        """The data hook: every line of [pa, pa + max(size, 1))."""
        last = (pa + max(size, 1) - 1) >> self.line_shift
        for line in range(pa >> self.line_shift, last + 1):
            if self.node_of_line(line) < 0:
                self.unknown_data_lines += 1
            else:
                self.data_line(line, write)

    def stats(self, cpu: int) -> CacheStats:
        return CacheStats.from_row(self.rows[cpu], self.n_nodes)

    def _llc(self) -> ReferenceCache:
        return self.llc[self.cpu_nodes[self.cpu]]

    def _llc_read(self, line: int, data: bool) -> None:
        row = self.rows[self.cpu]
        hit, victim, victim_dirty = self._llc().lookup(line, False)
        if hit:
            row[ST_LLC_DATA_HITS if data else ST_LLC_FETCH_HITS] += 1
            return
        row[ST_LLC_DATA_MISSES if data else ST_LLC_FETCH_MISSES] += 1
        node = self.node_of_line(line)
        if node >= 0:
            row[ST_FIXED + (self.n_nodes if data else 0) + node] += 1
        if victim_dirty:
            self._writeback(victim)

    def _writeback(self, line: int) -> None:
        row = self.rows[self.cpu]
        row[ST_LLC_WRITEBACKS] += 1
        node = self.node_of_line(line)
        if node >= 0:
            row[ST_FIXED + 2 * self.n_nodes + node] += 1


# ------------------------------------------------------------------ the model


def _zeroed(ctype: type, count: int) -> ctypes.Array:
    """A zeroed ctypes array in anonymous memory: pages are committed only when
    touched, so a node's 32 MiB LLC costs only the sets a run uses."""
    buffer = mmap.mmap(-1, max(ctypes.sizeof(ctype) * count, 1))
    array = (ctype * count).from_buffer(buffer)
    array._mapping = buffer  # keep the mapping as long as the array
    return array


class _CArrays:
    """The C simulator's state: ctypes arrays kept alive as long as the model."""

    def __init__(self, sets: int, ways: int) -> None:
        self.tags = _zeroed(ctypes.c_uint64, sets * ways)
        self.stamps = _zeroed(ctypes.c_uint64, sets * ways)
        self.dirty = _zeroed(ctypes.c_uint8, sets * ways)
        self.state = _CacheState(
            ctypes.cast(self.tags, _u64p), ctypes.cast(self.stamps, _u64p),
            ctypes.cast(self.dirty, _u8p), sets - 1, ways, 0,
        )  # fmt: skip

    def contents(self) -> set[tuple[int, bool]]:
        return {(tag - 1, bool(self.dirty[i])) for i, tag in enumerate(self.tags) if tag}


class CacheModel:
    """Cache state and statistics for one machine; C hooks when compiled.

    ``backend``: "c" (the compiled hooks; an error without them), "python"
    (ReferenceHierarchy behind Python hooks, about a microsecond per block
    and access) or "auto" (C when available).
    """

    def __init__(self, topology: Topology, accounting: Accounting, ram_base: int, bank_size: int,
                 parameters: ModelParameters | None = None, backend: str = "auto") -> None:  # fmt: skip
        self.topology = topology
        self.accounting = accounting
        self.parameters = parameters or resolve_parameters(topology)
        geometry = self.parameters.cache
        n_cpus, nodes = topology.n_cpus, topology.nodes
        self.cpu_nodes = tuple(topology.cpu_to_node(cpu) for cpu in range(n_cpus))
        addresses = load_cachesim() if backend in ("auto", "c") else None
        if backend == "c" and addresses is None:
            raise RuntimeError("the compiled cache model (emu.hw._cachesim) is not built")
        if backend not in ("auto", "c", "python"):
            raise ValueError(f"cache model backend {backend!r}: use auto, c or python")
        self._addresses = addresses
        self.line_shift = geometry.line_bytes.bit_length() - 1
        self.cpu = 0
        if addresses is None:
            self.reference: ReferenceHierarchy | None = ReferenceHierarchy(
                geometry, n_cpus, self.cpu_nodes, ram_base, bank_size, nodes
            )
            return
        self.reference = None
        self._l1i = [_CArrays(geometry.sets("l1i"), geometry.l1i_ways) for _ in range(n_cpus)]
        self._l1d = [_CArrays(geometry.sets("l1d"), geometry.l1d_ways) for _ in range(n_cpus)]
        self._llc = [_CArrays(geometry.sets("llc"), geometry.llc_ways) for _ in range(nodes)]
        self._row = ST_FIXED + 3 * nodes
        self._stats = (ctypes.c_uint64 * (n_cpus * self._row))()
        self.state = _SimState()
        state = self.state
        state.acct = ctypes.cast(ctypes.pointer(accounting.state), ctypes.c_void_p)
        state.line_shift = self.line_shift
        state.n_nodes = nodes
        state.ram_base = ram_base
        state.bank_size = bank_size
        self.select_cpu(0)

    @property
    def compiled(self) -> bool:
        return self._addresses is not None

    # ---------------------------------------------------------------- hooks
    def install(self, uc: Uc) -> None:
        """Add the fetch and data hooks to ``uc`` (flush its translations after)."""
        if self._addresses is None:
            uc.hook_add(UC_HOOK_BLOCK, self._python_block_hook)
            uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._python_mem_hook)
            return
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

        user = ctypes.cast(ctypes.pointer(self.state), ctypes.c_void_p)
        for htype, name in ((UC_HOOK_BLOCK, "cache_block"),
                            (UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, "cache_mem")):  # fmt: skip
            handle = uc_hook_h()
            status = uclib.uc_hook_add(
                uc._uch, ctypes.byref(handle), htype, ctypes.c_void_p(self._addresses[name]),
                user, ctypes.c_uint64(1), ctypes.c_uint64(0),
            )  # fmt: skip
            if status != 0:
                raise RuntimeError(f"uc_hook_add failed with {status}")

    def select_cpu(self, cpu: int) -> None:
        """Charge what follows to ``cpu`` (its L1s, its node's LLC)."""
        self.cpu = cpu
        if self.reference is not None:
            self.reference.select_cpu(cpu)
            return
        state = self.state
        state.l1i = ctypes.pointer(self._l1i[cpu].state)
        state.l1d = ctypes.pointer(self._l1d[cpu].state)
        state.llc = ctypes.pointer(self._llc[self.cpu_nodes[cpu]].state)
        state.row = ctypes.cast(ctypes.addressof(self._stats) + cpu * self._row * 8, _u64p)

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

    # ------------------------------------------------------------- results
    def stats(self, cpu: int) -> CacheStats:
        if self.reference is not None:
            return self.reference.stats(cpu)
        base = cpu * self._row
        return CacheStats.from_row(self._stats[base : base + self._row], self.topology.nodes)

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

    def contents(self, level: str, index: int) -> set[tuple[int, bool]]:
        """(line, dirty) of every line held by ``level`` ("l1i"/"l1d": CPU
        ``index``; "llc": node ``index``)."""
        if self.reference is not None:
            return getattr(self.reference, level)[index].contents()
        return {"l1i": self._l1i, "l1d": self._l1d, "llc": self._llc}[level][index].contents()

    def cost_report(self, counts: Sequence[CpuCounts] | None = None) -> CostReport:
        """The detailed CostReport; ``counts`` default to the accounting's."""
        params = self.parameters
        n_cpus = self.topology.n_cpus
        if counts is None:
            counts = [self.accounting.counts(cpu) for cpu in range(n_cpus)]
        cycles, lines, detail = [], [], []
        for cpu in range(n_cpus):
            stats = self.stats(cpu)
            node = self.cpu_nodes[cpu]
            total = counts[cpu].instructions * params.base_cpi + stats.llc_hits * params.llc_hit_cycles
            row = []
            for memory in range(self.topology.nodes):
                fills = stats.fetch_fills_by_node[memory] + stats.data_fills_by_node[memory]
                total += fills * params.latency_cycles(node, memory)
                row.append(Fraction(fills + stats.writebacks_by_node[memory]))
            cycles.append(total)
            lines.append(tuple(row))
            detail.append({"cache": stats.to_json()})
        return CostReport(
            model=MODEL_CACHE,
            parameters=params,
            cpu_nodes=self.cpu_nodes,
            instructions=tuple(c.instructions for c in counts),
            cycles=tuple(cycles),
            memory_lines=tuple(lines),
            detail=tuple(detail),
        )


def attach_cache_model(system: System, backend: str = "auto") -> CacheModel:
    """Install the detailed cache model on ``system``'s machine; call before
    ``system.run()``, then ``cost_of_run(system, model)`` (emu/hw/cost.py) or
    ``model.cost_report()`` for the CostReport."""
    machine = system.machine
    state = machine.accounting.state
    model = CacheModel(system.config.topology, machine.accounting, state.ram_base,
                       state.bank_size, backend=backend)  # fmt: skip
    model.install(machine.uc)
    machine.switch_listeners.append(model.on_switch)
    if machine.current is not None:
        model.select_cpu(machine.current.index)
    # Hooks apply only to blocks translated after they were added.
    machine.uc.ctl_flush_tb()
    return model


__all__ = [
    "STAT_NAMES",
    "CacheModel",
    "CacheStats",
    "ReferenceCache",
    "ReferenceHierarchy",
    "attach_cache_model",
    "load_cachesim",
]
