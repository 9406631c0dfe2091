"""Turns a QEMU `-d in_asm,exec,nochain` log of the measurement guest into figures.

The log holds, per translation block (TB), an `IN:` listing of its
instructions when it is translated and a `Trace N:` line each time CPU N runs
it (format: tests/replay/data/README-qemu-exec.md).  Per
CPU, the records between two user-mode blocks form one kernel *excursion*;
an excursion whose preceding user block ends in the `svc` of the guest's
wrapper `sc_NAME` is one call of NAME.  Others are interrupts or faults
(classified by their vector) or control traffic of the guest (sc_ctl_*).

Pure functions only: no QEMU here, so tests run this on a committed excerpt.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# arm64 kernel VAs have the top bits set; user VAs (48-bit) do not.
KERNEL_VA_MIN = 0xFFFF_0000_0000_0000
LINE_BYTES = 64  # cache line of the Neoverse N1 / Cortex-A72 L1I (TRMs)
INSN_BYTES = 4

# Offsets of the EL0 64-bit entries in the arm64 vector table (ARM ARM D1.10.2).
EL0_SYNC_OFFSET = 0x400
EL0_IRQ_OFFSET = 0x480
VECTOR_SLOT_BYTES = 0x80

_TRACE = re.compile(r"^Trace (\d+): 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/([0-9a-f]+)\]")
# Low bits of a TB's cflags (the Trace line's last field): a translation cut
# to that many instructions (0: no cut), e.g. when the -icount budget runs out
# (QEMU 7.2 include/exec/exec-all.h CF_COUNT_MASK).
CF_COUNT_MASK = 0x1FF
_STOPPED = re.compile(r"^Stopped execution of TB chain before 0x[0-9a-f]+ \[([0-9a-f]+)\]")
_REWOUND = re.compile(r"^cpu_io_recompile: rewound execution of TB to ([0-9a-f]+)")
_INSN = re.compile(r"^0x([0-9a-f]+):\s+[0-9a-f]+\s+(\S+)")


class LogFormatError(ValueError):
    """The log is not what `-d in_asm,exec,nochain` writes; names the line."""


@dataclass(frozen=True)
class Block:
    """One run of a translation block by one CPU."""

    cpu: int
    pc: int
    insns: int


@dataclass
class TranslationTable:
    """Instruction count and last mnemonic of each translated block, by pc.

    The `IN:` listing does not say which translation of a pc it is; a pc's
    full block is the longest listed, shorter ones are cut translations whose
    Trace line carries their count in cflags."""

    insns: dict[int, int] = field(default_factory=dict)
    last_mnemonic: dict[int, str] = field(default_factory=dict)


def parse_log(lines: Iterable[str], table: TranslationTable | None = None,
              unknown: Counter | None = None) -> Iterator[Block]:
    """The blocks each CPU ran, in per-CPU order.

    A `Trace` line is logged when a block is looked up; "Stopped execution of
    TB chain before ... [pc]" (no CPU number) means that block was not run
    after all, so each CPU's latest record is held back one step and the one
    with that pc is dropped; "cpu_io_recompile: rewound execution of TB to pc"
    (-icount) means it ran only up to the pc of that CPU's next block.
    Blocks whose `IN:` listing is not in the log
    (translated before logging began) are counted in `unknown` and skipped.
    """
    table = table if table is not None else TranslationTable()
    pending: dict[int, tuple[int, Block]] = {}  # cpu -> (sequence, block)
    rewound: set[int] = set()  # CPUs whose pending block stopped at an I/O access
    seq = 0
    in_block: list[tuple[int, str]] | None = None
    for lineno, line in enumerate(lines, start=1):
        if in_block is not None:
            m = _INSN.match(line)
            if m:
                in_block.append((int(m.group(1), 16), m.group(2)))
                continue
            if line.strip() == "":
                if in_block:
                    start = in_block[0][0]
                    if len(in_block) >= table.insns.get(start, 0):
                        table.insns[start] = len(in_block)
                        table.last_mnemonic[start] = in_block[-1][1]
                in_block = None
                continue
            raise LogFormatError(f"line {lineno}: expected an instruction of an IN: block, "
                                 f"got {line.rstrip()[:80]!r}")
        if line.startswith("Trace "):
            m = _TRACE.match(line)
            if not m:
                raise LogFormatError(f"line {lineno}: malformed Trace line {line.rstrip()[:80]!r}")
            cpu, pc = int(m.group(1)), int(m.group(2), 16)
            n = table.insns.get(pc)
            if n is None:
                if unknown is not None:
                    unknown[pc] += 1
                continue
            cut = int(m.group(3), 16) & CF_COUNT_MASK
            if cut:
                n = min(n, cut)
            if cpu in pending:
                prev = pending[cpu][1]
                if cpu in rewound:
                    # -icount: the block ran up to the I/O instruction, which
                    # runs again as a block of its own: this one.
                    rewound.discard(cpu)
                    done = (pc - prev.pc) // INSN_BYTES
                    prev = Block(cpu, prev.pc, done) if 0 <= done < prev.insns else prev
                if prev.insns:
                    yield prev
            seq += 1
            pending[cpu] = (seq, Block(cpu, pc, n))
        elif line.startswith("IN:"):
            in_block = []
        elif line.startswith("Stopped execution"):
            m = _STOPPED.match(line)
            if not m:
                raise LogFormatError(f"line {lineno}: malformed line {line.rstrip()[:80]!r}")
            pc = int(m.group(1), 16)
            match = [(s, cpu) for cpu, (s, b) in pending.items() if b.pc == pc]
            if match:
                del pending[max(match)[1]]
        elif line.startswith("cpu_io_recompile"):
            m = _REWOUND.match(line)
            if not m:
                raise LogFormatError(f"line {lineno}: malformed line {line.rstrip()[:80]!r}")
            pc = int(m.group(1), 16)
            match = [(s, cpu) for cpu, (s, b) in pending.items() if b.pc == pc]
            if match:
                rewound.add(max(match)[1])
        elif line.startswith("----------------") or not line.strip():
            continue
        else:
            raise LogFormatError(f"line {lineno}: unexpected line {line.rstrip()[:80]!r}")
    for _, block in sorted(pending.values(), key=lambda sb: sb[0]):
        yield block


@dataclass(frozen=True)
class SymbolTable:
    """Sorted symbol starts and names: the function containing an address."""

    starts: list[int]
    names: list[str]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, str]]) -> SymbolTable:
        ordered = sorted(pairs)
        return cls([a for a, _ in ordered], [n for _, n in ordered])

    def index(self, addr: int) -> int:
        """Index of the symbol containing addr (-1 below the first): a function's
        identity, since static functions of different files share names."""
        return bisect.bisect_right(self.starts, addr) - 1

    def lookup(self, addr: int) -> str | None:
        i = self.index(addr)
        return self.names[i] if i >= 0 else None

    def address(self, name: str) -> int:
        return self.starts[self.names.index(name)]


def parse_system_map(lines: Iterable[str]) -> tuple[SymbolTable, dict[str, int]]:
    """Text symbols (t/T/w/W) of a System.map, and every symbol's address by name."""
    text, every = [], {}
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        addr, kind, name = int(parts[0], 16), parts[1], parts[2]
        every.setdefault(name, addr)
        if kind in "tTwW":
            text.append((addr, name))
    return SymbolTable.from_pairs(text), every


def parse_nm_sizes(lines: Iterable[str]) -> dict[int, tuple[str, int]]:
    """`nm -S` output: address -> (name, size) of sized text symbols."""
    sizes = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            size = int(parts[1], 16)
            if size:
                sizes.setdefault(int(parts[0], 16), (parts[3], size))
    return sizes


@dataclass
class Excursion:
    """One stay of one CPU in the kernel, from a user block to the next."""

    cpu: int
    kind: str  # a syscall name, "control", "el0_irq", "el0_sync_other", ...
    insns: int = 0
    pcs: set[int] = field(default_factory=set)  # starts of the blocks run
    # An exception was taken inside the kernel (interrupt, fault): entry
    # through the current-EL half of the vector table.
    interrupted: bool = False


def excursions(blocks: Iterable[Block], table: TranslationTable, user_syms: SymbolTable,
               vectors: int) -> Iterator[Excursion]:
    """Each CPU's kernel excursions, named by what entered the kernel.

    `vectors` (System.map) is only the first guess at the vector base: with
    Spectre-BHB mitigations VBAR_EL1 points at a variant (such as
    __bp_harden_el1_vectors on Neoverse N1), so each CPU's base is learnt
    from where its svc calls land (base + 0x400).  The excursion each CPU is
    in when the log starts or ends is incomplete and is not yielded.
    """
    current: dict[int, Excursion | None] = {}
    last_user: dict[int, Block] = {}
    vbar: dict[int, int] = {}
    for block in blocks:
        if block.pc < KERNEL_VA_MIN:
            exc = current.get(block.cpu)
            if exc is not None and exc.insns:
                yield exc
            current[block.cpu] = None
            last_user[block.cpu] = block
            continue
        base = vbar.get(block.cpu, vectors)
        slot = _vector_slot(block.pc, base)
        exc = current.get(block.cpu)
        if exc is not None and exc.insns and slot is not None and slot >= EL0_SYNC_OFFSET:
            # An interrupt taken on the way out, before any user instruction
            # ran: it is an excursion of its own, not part of the call.
            yield exc
            exc = current[block.cpu] = Excursion(block.cpu, _slot_kind(slot))
        if exc is None:
            if block.cpu not in last_user:
                continue  # entered before the log began
            kind = _svc_kind(last_user.pop(block.cpu), table, user_syms)
            if kind is not None:
                vbar[block.cpu] = base = block.pc - EL0_SYNC_OFFSET
            else:
                kind = _slot_kind(_vector_slot(block.pc, base))
            exc = current[block.cpu] = Excursion(block.cpu, kind)
        elif slot is not None and slot < EL0_SYNC_OFFSET:
            exc.interrupted = True
        exc.insns += block.insns
        exc.pcs.add(block.pc)


def _svc_kind(user: Block, table: TranslationTable, user_syms: SymbolTable) -> str | None:
    """The call a user block ending in svc makes, None if it does not end so."""
    if table.last_mnemonic.get(user.pc) != "svc" or user.insns < table.insns[user.pc]:
        return None  # a cut block stops short of its svc: an interrupt came
    sym = user_syms.lookup(user.pc + INSN_BYTES * (user.insns - 1)) or ""
    if sym.startswith("sc_ctl_"):
        return "control"
    if sym.startswith("sc_"):
        return sym[3:]
    return "svc_outside_wrappers"


def _vector_slot(pc: int, base: int) -> int | None:
    """The vector-table offset pc starts, None if pc is not a slot's first
    instruction (only taking an exception lands there)."""
    offset = pc - base
    if 0 <= offset < 2 * EL0_SYNC_OFFSET and offset % VECTOR_SLOT_BYTES == 0:
        return offset
    return None


def _slot_kind(slot: int | None) -> str:
    if slot == EL0_IRQ_OFFSET:
        return "el0_irq"
    if slot == EL0_SYNC_OFFSET:
        return "el0_sync_other"
    return "other"


def _pct(sorted_values: list[int], q: float) -> float:
    """Percentile by linear interpolation between closest ranks."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def size_distribution(sizes: Iterable[int]) -> dict[str, float]:
    """count, mean and p10..p99 of function sizes in bytes."""
    values = sorted(sizes)
    out: dict[str, float] = {"count": len(values),
                             "mean": round(statistics.fmean(values), 1) if values else 0.0}
    for q in (10, 25, 50, 75, 90, 99):
        out[f"p{q}"] = round(_pct(values, q / 100), 1)
    return out


@dataclass
class Footprint:
    """Accumulated per-kind figures over all excursions of the log."""

    calls: dict[str, list[tuple[int, int, int, int]]] = field(
        default_factory=lambda: defaultdict(list))  # (insns, bytes, lines, functions)
    addrs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    # The same over calls that took no exception inside the kernel (no entry
    # through the current-EL half of the vector table: no interrupt, no fault).
    uninterrupted: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    uninterrupted_addrs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    calls_by_cpu: Counter = field(default_factory=Counter)
    function_insns: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))


def accumulate(excs: Iterable[Excursion], table: TranslationTable,
               kernel_syms: SymbolTable) -> Footprint:
    """Per excursion: instructions, distinct bytes, 64-byte lines, functions."""
    fp = Footprint()
    for exc in excs:
        addrs: set[int] = set()
        for pc in exc.pcs:
            addrs.update(range(pc, pc + INSN_BYTES * table.insns[pc], INSN_BYTES))
        lines = {a // LINE_BYTES for a in addrs}
        funcs = Counter(kernel_syms.index(a) for a in addrs)
        fp.calls[exc.kind].append((exc.insns, len(addrs) * INSN_BYTES, len(lines), len(funcs)))
        fp.addrs[exc.kind] |= addrs
        fp.calls_by_cpu[(exc.kind, exc.cpu)] += 1
        fp.function_insns[exc.kind].update(funcs)
        if not exc.interrupted:
            fp.uninterrupted[exc.kind].append(exc.insns)
            fp.uninterrupted_addrs[exc.kind] |= addrs
    return fp


def syscall_figures(fp: Footprint, kinds: Iterable[str], kernel_syms: SymbolTable) -> dict:
    """The JSON "syscalls" section: per name, means and medians over its calls."""
    out = {}
    for kind in kinds:
        rows = fp.calls.get(kind)
        if not rows:
            continue
        insns = [r[0] for r in rows]
        union = fp.addrs[kind]
        out[kind] = {
            "instructions_per_call": round(statistics.fmean(insns), 1),
            "text_bytes_per_call": int(statistics.median_low([r[1] for r in rows])),
            "lines_per_call": int(statistics.median_low([r[2] for r in rows])),
            "functions_per_call": int(statistics.median_low([r[3] for r in rows])),
            "calls": len(rows),
            "instructions_per_call_median": int(statistics.median_low(insns)),
            "instructions_per_call_min": min(insns),
            "instructions_per_call_max": max(insns),
            "text_bytes_per_call_max": max(r[1] for r in rows),
            "union_text_bytes": len(union) * INSN_BYTES,
            "union_lines": len({a // LINE_BYTES for a in union}),
            "union_functions": len({kernel_syms.index(a) for a in union}),
            "uninterrupted_calls": len(fp.uninterrupted[kind]),
            "uninterrupted_instructions_per_call": round(
                statistics.fmean(fp.uninterrupted[kind]), 1) if fp.uninterrupted[kind] else None,
            "uninterrupted_union_text_bytes": len(fp.uninterrupted_addrs[kind]) * INSN_BYTES,
            # Functions by instruction bytes touched summed over calls: the spine first.
            "functions": [kernel_syms.names[i] for i, _ in fp.function_insns[kind].most_common(40)],
        }
    return out


def text_share(addrs: set[int], every_symbol: dict[str, int]) -> dict[str, int]:
    """Executed kernel bytes inside [_stext, _etext), inside init text, elsewhere."""
    stext, etext = every_symbol["_stext"], every_symbol["_etext"]
    sinit, einit = every_symbol.get("_sinittext", 0), every_symbol.get("_einittext", 0)
    main = sum(1 for a in addrs if stext <= a < etext)
    init = sum(1 for a in addrs if sinit <= a < einit)
    return {"stext_etext_bytes": main * INSN_BYTES, "init_text_bytes": init * INSN_BYTES,
            "other_bytes": (len(addrs) - main - init) * INSN_BYTES}


def function_size_figures(nm_sizes: dict[int, tuple[str, int]], every_symbol: dict[str, int],
                          executed_addrs: set[int], kernel_syms: SymbolTable) -> dict:
    """Size distributions of all text functions and of the functions executed."""
    stext, etext = every_symbol["_stext"], every_symbol["_etext"]
    in_text = {a: ns for a, ns in nm_sizes.items() if stext <= a < etext}
    executed_starts = {kernel_syms.starts[kernel_syms.index(a)] for a in executed_addrs}
    executed = [in_text[s][1] for s in executed_starts if s in in_text]
    return {
        "all": size_distribution(ns[1] for ns in in_text.values()),
        "executed": size_distribution(executed),
        "executed_without_size": sum(1 for s in executed_starts if s not in nm_sizes),
        "text_bytes_total": etext - stext,
    }
