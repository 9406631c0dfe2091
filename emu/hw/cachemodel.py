"""The cost model's cache hierarchy: per CPU a private L1I, L1D and unified
L2, per node a last-level cache (SLC slice) at the memory's home node or at
the requester; set-associative, LRU, fed by every instruction fetch and data
access of the run (or by a stream of records: ``CacheModel.feed``).

Owns the C simulator's binding (its structs mirrored in ctypes, checked
against emu/hw/_cachesim.c by load_cachesim), the model of one machine over
it (CacheModel: the hierarchies' arrays, the hooks or the accounting feed,
the CostReport of one structural variant at one parameter point) and its
installation on a machine (attach_cache_model).  The semantics are written
out at the top of emu/hw/_cachesim.c.  The statistics rows, the variants and
the cycle formula below are emu/hw/cachestats.py's; the pure-Python
simulator with the same semantics (the fallback without a C compiler and
the tests' reference) is emu/hw/cacheref.py's.  Every name of the three is
importable from here.

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

Cycles of CPU c on node n at one parameter point (CostPoint, emu/hw/costtypes.py):

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
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc

from emu.errors import ConfigError
from emu.hw.accounting import QEMU_PAGE_SHIFT, Accounting, CpuCounts, zeroed_array
from emu.hw.bynode import NodeCounts
from emu.hw.cacheref import ReferenceCache, ReferenceHierarchy, ReferenceSim
from emu.hw.cachestats import (
    KIND_FETCH,
    KIND_READ,
    KIND_WRITE,
    KINDS,
    PER_NODE,
    SAMPLE_FACTOR,
    ST_FIXED,
    STAT_NAMES,
    CacheStats,
    HierarchyResult,
    Variant,
    can_sample,
    frontend_stall_cycles,
    hierarchy_cycles,
    structural_variants,
)
from emu.hw.cost import (
    MODEL_CACHE,
    MODEL_FAST,
    CostPoint,
    CostReport,
    ModelParameters,
    resolve_parameters,
)
from emu.hw.costtypes import RunningSystem
from emu.hw.topology import Topology

UC_MEM_WRITE = 17
# _cachesim.c's node record: the home node, then its PER_NODE counts.
NODE_RECORD = 1 + len(PER_NODE)
PAGE_OFFSET_MASK = (1 << QEMU_PAGE_SHIFT) - 1
HOME_BITS = 10  # _cachesim.c: keys are (line + 1) << HOME_BITS | home

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
        ("node_slot", ctypes.POINTER(ctypes.c_uint16)),
        ("node_used", _u64p),
        ("node_rows", _u64p),
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
                ST_FIXED, NODE_RECORD)  # fmt: skip
    found = (addresses["sim_size"], addresses["hier_size"], addresses["cache_size"],
             addresses["stat_fixed"], addresses["node_rec"])  # fmt: skip
    if found != expected:
        raise RuntimeError("emu/hw/_cachesim.c and cachemodel.py disagree on a layout")
    return addresses



# ------------------------------------------------------------------ the model


class _CLevel:
    """One C cache_t per CPU or node; each array (tags, stamps, dirty bits)
    is one mapping for all of them: a 1024-node, 4096-CPU machine has 13k
    caches per variant, and a mapping each would pass the kernel's limit on
    mappings per process (vm.max_map_count, 65530 by default)."""

    def __init__(self, count: int, sets: int, ways: int) -> None:
        self.states = (_CacheState * count)()
        self.size = sets * ways
        self.tags = zeroed_array(ctypes.c_uint64, count * self.size)
        self.stamps = zeroed_array(ctypes.c_uint64, count * self.size)
        self.dirty = zeroed_array(ctypes.c_uint8, count * self.size)
        tags, stamps, dirty = (ctypes.addressof(a) for a in (self.tags, self.stamps, self.dirty))
        for i in range(count):
            self.states[i] = _CacheState(
                ctypes.cast(tags + 8 * i * self.size, _u64p),
                ctypes.cast(stamps + 8 * i * self.size, _u64p),
                ctypes.cast(dirty + i * self.size, _u8p), sets - 1, ways, 0,
            )  # fmt: skip

    def contents(self, index: int) -> set[tuple[int, bool]]:
        start, end = index * self.size, (index + 1) * self.size
        dirty = self.dirty[start:end]
        return {((tag >> HOME_BITS) - 1, bool(dirty[i]))
                for i, tag in enumerate(self.tags[start:end]) if tag}  # fmt: skip


@dataclass
class _CHierarchy:
    """One hier_t's arrays, kept alive as long as the model.  ``stats``: the
    ST_FIXED counts per CPU; ``node_slot``, ``node_used``, ``node_rows``: the
    per-home counts of the homes each CPU touched (_cachesim.c, node_rec)."""

    levels: dict[str, _CLevel]
    stats: ctypes.Array
    row_len: int
    variant: Variant
    last: tuple[ctypes.Array, ctypes.Array]
    node_slot: ctypes.Array
    node_used: ctypes.Array
    node_rows: ctypes.Array

    def cpu_stats(self, cpu: int, nodes: int) -> CacheStats:
        """CPU ``cpu``'s counts, scaled back by the variant's sampling factor."""
        scale = self.variant.scale
        fixed = self.stats[cpu * self.row_len : (cpu + 1) * self.row_len]
        base = cpu * nodes * NODE_RECORD
        records = self.node_rows[base : base + self.node_used[cpu] * NODE_RECORD]
        per_node: list[dict[int, int]] = [{} for _ in PER_NODE]
        for start in range(0, len(records), NODE_RECORD):
            home = records[start]
            for k, counts in enumerate(per_node):
                value = records[start + 1 + k]
                if value:
                    counts[home] = value * scale
        return CacheStats.from_parts(fixed, per_node, nodes, scale)


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
        self.row_len = ST_FIXED
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
            # Sized for every CPU touching every home; only touched pages are committed.
            node_slot = zeroed_array(ctypes.c_uint16, n_cpus * nodes)
            node_used = (ctypes.c_uint64 * n_cpus)()
            node_rows = zeroed_array(ctypes.c_uint64, n_cpus * nodes * NODE_RECORD)
            hierarchy = _CHierarchy(levels, stats, self.row_len, variant, last, node_slot,
                                    node_used, node_rows)  # fmt: skip
            self._hiers.append(hierarchy)
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
            state.node_slot = ctypes.cast(node_slot, ctypes.POINTER(ctypes.c_uint16))
            state.node_used = ctypes.cast(node_used, _u64p)
            state.node_rows = ctypes.cast(node_rows, _u64p)
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
        return self._hiers[index].cpu_stats(cpu, self.topology.nodes)

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

    def hierarchy_result(self, counts: Sequence[CpuCounts]) -> HierarchyResult:
        """Every variant's per-CPU counts so far, for the band and the sanity figures."""
        n_cpus = self.topology.n_cpus
        return HierarchyResult(
            variants=self.variants,
            stats=tuple(tuple(self.stats(cpu, v) for cpu in range(n_cpus)) for v in self.variants),
            cpu_nodes=self.cpu_nodes,
            instructions=tuple(c.instructions for c in counts),
            kernel_instructions=tuple(sum(c.kernel_fetches_by_node) for c in counts),
            llc_at_home=self.llc_at_home,
            primary=self.primary_variant,
        )

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
        nodes = self.topology.nodes
        cycles, lines, detail = [], [], []
        for cpu, stats in enumerate(all_stats):
            node = self.cpu_nodes[cpu]
            cycles.append(hierarchy_cycles(stats, counts[cpu].instructions, node, point,
                                           self.llc_at_home, exact=True))  # fmt: skip
            moved: dict[int, int] = {}
            for by_node in (stats.fetch_fills_by_node, stats.data_fills_by_node,
                            stats.prefetch_fills_by_node, stats.writebacks_by_node):  # fmt: skip
                for memory, count in by_node.items():  # the nodes this CPU touched
                    moved[memory] = moved.get(memory, 0) + count
            lines.append(NodeCounts(nodes, {m: Fraction(v) for m, v in moved.items()}))
            detail.append({"cache": stats.to_json()})
        return CostReport(
            model=self.detail,
            parameters=params,
            cpu_nodes=self.cpu_nodes,
            instructions=tuple(c.instructions for c in counts),
            cycles=tuple(cycles),
            memory_lines=tuple(lines),
            detail=tuple(detail),
            hierarchy=self.hierarchy_result(counts),
        )


def attach_cache_model(system: RunningSystem, backend: str = "auto", detail: str = MODEL_CACHE,
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
