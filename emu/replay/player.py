"""The player: turns trace records into per-CPU, per-node instruction-fetch
counts for replication off and on, and those into the RUNs of a report.

Model.  Each record is a block of instructions fetched at its kernel VA
(4 bytes each, by 64-byte line for the cache model).  Fetches from the
replicated range ``[_stext, __end_rodata)`` are served by node 0 with
replication off and by the CPU's own node with it on; every other kernel
address (modules, vmalloc, BPF) is node 0's in both.  Records outside kernel
space (user code, the boot's physical-address phase) are not played.  The
traces hold no data accesses: the RUN's data counts are absent, and the cost
is that of the fetches alone.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from emu.api import add_band, add_speedup
from emu.config import MachineConfig
from emu.hw.accounting import CpuCounts
from emu.hw.cachemodel import KIND_FETCH, CacheModel
from emu.hw.cost import CostReport
from emu.hw.topology import Topology
from emu.jsonfmt import sparse_by_node
from emu.replay.blocks import ImageBlocks, NextRecordSizer
from emu.replay.errors import TraceError
from emu.replay.records import INSN_BYTES, KERNEL_SPACE, Records
from emu.replay.symbols import KernelMap

# The published sanity ranges describe whole workloads, user side included;
# a trace is played for its kernel fetches alone, so these figures of it
# (kernel share 100% by construction) say nothing against them.
_KERNEL_ONLY = "the replay plays kernel instruction fetches only"
KERNEL_ONLY_FIGURES = {"kernel_share": _KERNEL_ONLY, "frontend_stall_share": _KERNEL_ONLY,
                       "cpi": _KERNEL_ONLY}

VA_MASK = (1 << 48) - 1


def cpu_map(topology: Topology, explicit: dict[int, int] | None = None) -> np.ndarray:
    """Trace CPU -> machine CPU, -1 where the trace may not use that number.

    Without ``explicit``, trace CPU c is machine CPU c (node c // cpus_per_node).
    With a ``{trace CPU: node}`` map, the trace CPUs of each node take that
    node's machine CPUs in order; a node given more trace CPUs than it has is
    an error, and unmapped trace CPUs may not appear in the trace.
    """
    if not explicit:
        return np.arange(topology.n_cpus, dtype=np.int64)
    size = max(explicit) + 1
    mapping = np.full(size, -1, np.int64)
    used = [0] * topology.nodes
    for trace_cpu in sorted(explicit):
        node = explicit[trace_cpu]
        if not 0 <= node < topology.nodes:
            raise TraceError(f"--cpu-node {trace_cpu}={node}: the machine has nodes "
                             f"0-{topology.nodes - 1}")  # fmt: skip
        if used[node] == topology.cpus_per_node:
            raise TraceError(f"--cpu-node: more than {topology.cpus_per_node} trace CPUs on "
                             f"node {node}, which has {topology.cpus_per_node} CPUs")  # fmt: skip
        mapping[trace_cpu] = node * topology.cpus_per_node + used[node]
        used[node] += 1
    return mapping


@dataclass
class FetchCounts:
    """Per machine CPU: instructions and cache lines fetched, by region."""

    n_cpus: int
    line_bytes: int
    text: np.ndarray = field(init=False)  # [_stext, _etext)
    rodata: np.ndarray = field(init=False)  # [_etext, __end_rodata): replicated, not text
    other: np.ndarray = field(init=False)  # any other kernel address: node 0's
    text_lines: np.ndarray = field(init=False)
    rodata_lines: np.ndarray = field(init=False)
    other_lines: np.ndarray = field(init=False)
    trace_cpus: set[int] = field(default_factory=set)
    machine_cpus: set[int] = field(default_factory=set)
    records_played: int = 0
    records_outside_kernel: int = 0

    def __post_init__(self) -> None:
        for name in ("text", "rodata", "other", "text_lines", "rodata_lines", "other_lines"):
            setattr(self, name, np.zeros(self.n_cpus, np.int64))

    def add(self, region: str, cpus: np.ndarray, insns: np.ndarray, lines: np.ndarray) -> None:
        getattr(self, region)[:] += np.bincount(cpus, insns, self.n_cpus).astype(np.int64)
        getattr(self, region + "_lines")[:] += np.bincount(cpus, lines, self.n_cpus).astype(np.int64)


# A consumer of each chunk's played blocks: (machine CPUs, PCs, sizes in bytes,
# replicated?) in trace order.
BlockSink = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def play(chunks: Iterable[Records], kernel: KernelMap, mapping: np.ndarray, n_cpus: int,
         path: str, image: ImageBlocks | None = None, sinks: Sequence[BlockSink] = (),
         line_bytes: int = 64) -> tuple[FetchCounts, NextRecordSizer]:  # fmt: skip
    """Count every chunk's kernel blocks (lines of ``line_bytes``, the
    machine's); unsized blocks are sized from the image, else from the next
    record (blocks.NextRecordSizer)."""
    counts = FetchCounts(n_cpus, line_bytes)
    sizer = NextRecordSizer()
    for records in chunks:
        if image is not None and len(records):
            unsized = np.flatnonzero(records.size == 0)
            if len(unsized):
                records.size[unsized] = image.sizes(records.pc[unsized])
        _count(sizer.feed(records), kernel, mapping, counts, path, sinks)
    _count(sizer.finish(), kernel, mapping, counts, path, sinks)
    return counts, sizer


def _count(records: Records, kernel: KernelMap, mapping: np.ndarray, counts: FetchCounts,
           path: str, sinks: Sequence[BlockSink]) -> None:  # fmt: skip
    if not len(records):
        return
    bad = (records.cpu < 0) | (records.cpu >= len(mapping))
    if not bad.any():
        machine_cpu = mapping[records.cpu]
        bad = machine_cpu < 0
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        cpu = int(records.cpu[first])
        raise TraceError(f"trace CPU {cpu} is not on the machine (CPUs 0-{counts.n_cpus - 1}; "
                         "--cpus-per-node N or --cpu-node CPU=NODE place more)", path,
                         int(records.line[first]))  # fmt: skip
    counts.trace_cpus.update(np.flatnonzero(np.bincount(records.cpu)).tolist())
    counts.machine_cpus.update(np.flatnonzero(np.bincount(machine_cpu)).tolist())
    pc = records.pc
    kernel_space = pc >= np.uint64(KERNEL_SPACE)
    counts.records_outside_kernel += int(len(pc) - np.count_nonzero(kernel_space))
    if not kernel_space.all():
        keep = np.flatnonzero(kernel_space)
        pc, machine_cpu, size = pc[keep], machine_cpu[keep], records.size[keep]
    else:
        size = records.size
    counts.records_played += len(pc)
    insns = size // INSN_BYTES
    shift = np.uint64(counts.line_bytes.bit_length() - 1)
    lines = ((pc + (size - 1).astype(np.uint64)) >> shift) - (pc >> shift) + np.uint64(1)
    text = (pc >= np.uint64(kernel.stext)) & (pc < np.uint64(kernel.etext))
    replicated = (pc >= np.uint64(kernel.stext)) & (pc < np.uint64(kernel.replicated_end))
    rodata = replicated & ~text
    other = ~replicated
    for region, mask in (("text", text), ("rodata", rodata), ("other", other)):
        if mask.any():
            counts.add(region, machine_cpu[mask], insns[mask], lines[mask])
    for sink in sinks:
        sink(machine_cpu, pc, size, replicated)


class FunctionProfile:
    """Instructions per kernel function (System.map symbols): a block sink."""

    def __init__(self, kernel: KernelMap) -> None:
        self.kernel = kernel
        self.addresses = np.array(kernel.addresses, np.uint64)
        self.instructions = np.zeros(len(self.addresses), np.int64)

    def __call__(self, cpus: np.ndarray, pcs: np.ndarray, sizes: np.ndarray,
                 replicated: np.ndarray) -> None:  # fmt: skip
        index = np.searchsorted(self.addresses, pcs, side="right") - 1
        known = index >= 0
        self.instructions += np.bincount(index[known], sizes[known] // INSN_BYTES,
                                         len(self.addresses)).astype(np.int64)  # fmt: skip

    def top(self, count: int) -> list[dict]:
        total = int(self.instructions.sum())
        order = np.argsort(-self.instructions, kind="stable")[:count]
        return [{"symbol": self.kernel.names[i], "address": f"{self.kernel.addresses[i]:#x}",
                 "instructions": int(self.instructions[i]),
                 "share": float(self.instructions[i]) / total if total else 0.0}
                for i in order.tolist() if self.instructions[i]]  # fmt: skip


# ------------------------------------------------------------ cache model


class CacheFeed:
    """The one adapter between replay and the cache model (emu/hw/cachemodel.py):
    blocks (CPU, VA, bytes, home node) in, each expanded into its fetched
    lines for ``CacheModel.feed``; a CostReport out.

    A line's number is its VA's low 48 bits over the line size with the home
    node above them: the sets of a contiguous mapping, and the same VA fetched
    from two nodes' copies is two lines, as on hardware.
    """

    def __init__(self, topology: Topology, detail: str) -> None:
        self.model = CacheModel(topology, None, 0, 1 << 48, detail=detail)
        self.line_shift = np.uint64(self.model.line_shift)
        self.home_shift = np.uint64(48 - self.model.line_shift)

    def feed(self, cpus: np.ndarray, pcs: np.ndarray, sizes: np.ndarray,
             homes: np.ndarray) -> None:  # fmt: skip
        first = (pcs & np.uint64(VA_MASK)) >> self.line_shift
        last = ((pcs + (sizes - 1).astype(np.uint64)) & np.uint64(VA_MASK)) >> self.line_shift
        count = (last - first + np.uint64(1)).astype(np.int64)
        starts = np.repeat(first, count)
        step = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count,
                                                                        count)  # fmt: skip
        line_homes = np.repeat(homes.astype(np.uint64), count)
        lines = (line_homes << self.home_shift) | (starts + step.astype(np.uint64))
        self.model.feed(_array("I", np.repeat(cpus, count).astype(np.uint32)),
                        _array("Q", lines), _array("B", np.full(len(lines), KIND_FETCH, np.uint8)),
                        _array("H", line_homes.astype(np.uint16)))  # fmt: skip

    def cost_report(self, counts: Sequence[CpuCounts]) -> CostReport:
        return self.model.cost_report(counts)


def _array(typecode: str, values: np.ndarray) -> array:
    """``values`` as an array.array (what CacheModel.feed copies from at C speed)."""
    result = array(typecode)
    result.frombytes(np.ascontiguousarray(values).tobytes())
    return result


def cache_sinks(topology: Topology, cpu_nodes: np.ndarray, detail: str,
                modes: Sequence[bool]) -> tuple[list[BlockSink], dict[bool, CacheFeed]]:  # fmt: skip
    """One cache model per replication setting in ``modes``, each fed every
    block with the home node that setting gives it."""
    feeds = {ktext: CacheFeed(topology, detail) for ktext in modes}

    def sink(ktext: bool) -> BlockSink:
        def feed(cpus: np.ndarray, pcs: np.ndarray, sizes: np.ndarray,
                 replicated: np.ndarray) -> None:  # fmt: skip
            homes = np.where(replicated, cpu_nodes[cpus], 0) if ktext else \
                np.zeros(len(cpus), np.int64)
            feeds[ktext].feed(cpus, pcs, sizes, homes)

        return feed

    return [sink(ktext) for ktext in modes], feeds


# ------------------------------------------------------------------ report


def cpu_counts(counts: FetchCounts, topology: Topology, ktext: bool) -> list[CpuCounts]:
    """The accounting's CpuCounts for one replication setting (data: none)."""
    result = []
    zeros = (0,) * topology.nodes
    for cpu in range(topology.n_cpus):
        home = topology.cpu_to_node(cpu) if ktext else 0
        kernel = [0] * topology.nodes
        other = [0] * topology.nodes
        kernel[home] += int(counts.text[cpu])
        other[home] += int(counts.rodata[cpu])
        other[0] += int(counts.other[cpu])
        result.append(CpuCounts(tuple(kernel), tuple(other), zeros, zeros))
    return result


def replay_runs(config: MachineConfig, kernel: KernelMap, counts: FetchCounts,
                source: dict, modes: Sequence[bool],
                feeds: dict[bool, CacheFeed]) -> tuple[list[dict], list[CostReport]]:  # fmt: skip
    """The RUNs (the keys of ``ktext-emu run``'s) and their CostReports."""
    topology = config.topology
    runs, costs = [], []
    for ktext in modes:
        per_cpu = cpu_counts(counts, topology, ktext)
        cost = feeds[ktext].cost_report(per_cpu)
        cpus = []
        for cpu, cpu_count in enumerate(per_cpu):
            home = topology.cpu_to_node(cpu) if ktext else 0
            lines: dict[int, int] = {home: int(counts.text_lines[cpu] + counts.rodata_lines[cpu])}
            lines[0] = lines.get(0, 0) + int(counts.other_lines[cpu])
            cpus.append({
                "cpu": cpu,
                "node": topology.cpu_to_node(cpu),
                "ttbr1": None,
                "instructions": cpu_count.instructions,
                "kernel_fetches_by_node": sparse_by_node(cpu_count.kernel_fetches_by_node),
                "fetches_by_node": sparse_by_node(cpu_count.fetches_by_node),
                "fetch_lines_by_node": sparse_by_node(lines),
            })  # fmt: skip
        runs.append({
            "machine": {
                "name": topology.name,
                "nodes": topology.nodes,
                "cpus_per_node": topology.cpus_per_node,
                "granule": config.granule,
                "va_bits": config.va_bits,
                "levels": config.pgtable_levels,
                "distances": [list(row) for row in topology.distances],
            },
            "kernel": kernel.to_json(),
            "ktext": ktext,
            "ktext_requested": ktext,
            "ktext_message": None,
            "workload": "replay",
            "stop_reason": "end of trace",
            "instructions": sum(c["instructions"] for c in cpus),
            "cpus": cpus,
            "nodes": [{"node": node, "pgd": None, "text_pa": None}
                      for node in range(topology.nodes)],
            # A trace has no page tables or copies to check: not checked, not failed.
            "checks": {"copies_identical": None, "roots_differ_only_in_kernel_slots": None,
                       "ttbr1_matches_node": None},
            "data_accesses": None,  # not in the trace: absent, not zero
            "source": source,
            "cost": cost.to_json(),
        })  # fmt: skip
        costs.append(cost)
    add_speedup(runs, costs)
    add_band(runs, costs, not_applicable=KERNEL_ONLY_FIGURES)
    return runs, costs
