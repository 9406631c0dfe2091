"""The instruction-side cache model of kernel text patching: what a CPU may
execute after another CPU (or the host) rewrites an instruction, what it must
execute, and checkers for both.  (The cost model's data caches are another
thing: emu/hw/cachemodel.py.)

The architecture (ARM ARM, "Concurrent modification and execution of
instructions" and the I/D coherence rules of CTR_EL0) says, for a store of
instruction NEW over OLD at physical address P:

  1. P is guaranteed to be fetched as NEW by a CPU only after the writer has
     cleaned P to the Point of Unification (``dc cvau``; not needed with
     CTR_EL0.IDC), completed that (``dsb ish``), invalidated the I-cache for
     P (``ic ivau`` by any VA of P; not needed with CTR_EL0.DIC) and
     completed that (``dsb ish``): P is then *published*;
  2. and only once that CPU has had a context synchronization event (``isb``,
     exception entry, exception return) after the publication;
  3. until then the CPU may execute OLD or NEW.  This is well defined only if
     OLD and NEW are both among B, BL, NOP, BRK, SVC, HVC, SMC (the
     "hot-patch safe" set); otherwise the result is CONSTRAINED
     UNPREDICTABLE, which is why multi-instruction or other patches go
     through stop_machine (``patching.patch_text``).

What the emulator does: every CPU runs on one Unicorn engine whose
translated code stands for every I-cache.  A guest store to any copy of
kernel text invalidates the translated code of that physical page at once
(``patching.patching_init`` makes sure Unicorn never skips that), so from
the store on every CPU executes NEW: the strongest outcome rule 3 allows.
``dc``/``ic`` do nothing in Unicorn.  A host write does not invalidate by
itself; ``patching.patch_text_nosync``/``patch_text`` invalidate all
translated code before returning, so once a host patch returns every CPU on
every node executes NEW.

Because the emulator is stronger than the architecture, a patch routine
that forgets a step still "works" here.  ``IcacheChecker`` finds it: it
follows every guest store into kernel text on any node (through any alias),
every ``dc``/``ic`` (translated to a PA by the issuing CPU), ``dsb``,
``isb``, exception entry and return, and reports

* at a *completion point* (a ``ret`` of a patch function, by default the
  guest's ``aarch64_insn_patch_text_nosync``, or an ``eret`` back to a lower
  level) every word the completing CPU wrote that is not published, or not
  followed by the writer's own ``isb``, naming the missing step;
* every execution of a watched site by a CPU for which the word is still
  *in flight* (rules 1-2 not met), and, as a violation, those where OLD or
  NEW is not hot-patch safe.

Installing the checker adds a memory-write hook over every copy of the
text, which sends every guest store through Unicorn's slow path: expect
runs about twice as slow while it is installed.

``JumpSiteObserver`` watches jump label sites while keys flip: every
executed instruction must be the site's NOP or its B (never anything
else), the path the CPU took must match it (no stale translated code), and
while no key update is in progress every CPU must run the instruction the
key's state calls for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_WRITE
from unicorn.arm64_const import UC_ARM64_REG_X0

from emu.hw.pagetable import Access
from emu.kernel import cpufeature
from emu.kernel.context import KernelContext
from emu.kernel.insn import (
    aarch64_insn_is_b,
    aarch64_insn_is_bl,
    aarch64_insn_is_nop,
    decode_insn,
)
from emu.kernel.jump_label import JumpEntry, jump_entries, update_in_progress
from emu.kernel.ktext import node_text_pas
from emu.kernel.patching import invalidate_text

CACHE_LINE = 64  # CTR_EL0.DminLine/IminLine of the emulated CPU: 16 words
RET = 0xD65F03C0
ERET = 0xD69F03E0
ISB = 0xD5033FDF
DSB_MASK, DSB_BITS = 0xFFFFF0FF, 0xD503309F  # DSB <option>: CRm in bits 8-11
DSB_LOCAL_ONLY = (0x3, 0x7)  # nshld/nsh style options (CRm 0b0x11): complete on this PE only
SYS_CACHE_MASK, SYS_CACHE_BITS = 0xFFF8F000, 0xD5087000  # SYS #op1, C7, Cm, #op2, Xt
VECTOR_ENTRIES = 16
VECTOR_STRIDE = 0x80


def hotpatch_safe(insn: int) -> bool:
    """B, BL, NOP, BRK, SVC, HVC or SMC: may change under a running CPU."""
    exception = insn & 0xFFE0001F
    return (
        aarch64_insn_is_b(insn) or aarch64_insn_is_bl(insn) or aarch64_insn_is_nop(insn)
        or exception in (0xD4200000, 0xD4000001, 0xD4000002, 0xD4000003)
    )  # fmt: skip


@dataclass
class WordState:
    """One word of kernel text a guest store changed."""

    pa: int
    node: int
    va: int  # the kernel text VA it backs
    writer: int
    old: int
    new: int
    written: int  # event time of the store
    clean_done: int | None = None  # time the clean completed (dsb after dc)
    published: int | None = None  # time the invalidation completed
    reported: bool = False


@dataclass(frozen=True)
class Violation:
    cpu: int
    va: int
    symbol: str
    node: int  # whose copy
    what: str

    def message(self) -> str:
        return f"CPU {self.cpu}: {self.va:#x} <{self.symbol}> (node {self.node}'s copy): {self.what}"


@dataclass(frozen=True)
class InFlight:
    """A CPU ran a word that was not yet guaranteed to be NEW for it (rules 1-2)."""

    cpu: int
    node: int
    va: int
    old: int
    new: int
    published: bool


@dataclass
class _CpuState:
    pending: list[tuple[str, int, int]] = field(default_factory=list)  # (op, line_pa, time)
    last_sync: int = -1


class IcacheChecker:
    """Checks guest patching against rules 1-3 of the module docstring.

    Install it before the run (it adds Unicorn hooks and flushes translated
    code so they apply); read ``violations`` and ``in_flight`` after.
    """

    def __init__(
        self,
        ctx: KernelContext,
        watch: Iterable[int] = (),
        completion: Iterable[str] = ("aarch64_insn_patch_text_nosync",),
    ) -> None:
        self.ctx = ctx
        image = ctx.image
        self.stext, self.etext = image.sym("_stext"), image.sym("_etext")
        caps = set(cpufeature.system_cpucaps(ctx.physmem, image))
        self.idc = "ARM64_HAS_CACHE_IDC" in caps
        self.dic = "ARM64_HAS_CACHE_DIC" in caps
        self.words: dict[int, WordState] = {}
        self.cpus = [_CpuState() for _ in ctx.machine.cpus]
        self.violations: list[Violation] = []
        self.in_flight: list[InFlight] = []
        self.time = 0
        self.stores = 0
        self._ranges = self._text_ranges()
        self._install(list(watch), list(completion))

    # ------------------------------------------------------------ set-up
    def _text_ranges(self) -> list[tuple[int, int, int]]:
        """(node, first PA, end PA) of every copy of [_stext, _etext)."""
        copies = self.ctx.kernel.replication.text_copies
        return [(node, pa, pa + self.etext - self.stext)
                for node, pa in node_text_pas(self.ctx.image, copies, self.stext)]  # fmt: skip

    def _scan(self, start: int, end: int) -> list[tuple[int, int]]:
        physmem, image = self.ctx.physmem, self.ctx.image
        data = physmem.read(image.pa_of(start), end - start)
        return [(start + i, int.from_bytes(data[i : i + 4], "little"))
                for i in range(0, len(data), 4)]  # fmt: skip

    def _install(self, watch: list[int], completion: list[str]) -> None:
        uc = self.ctx.machine.uc
        image = self.ctx.image
        for _node, lo, hi in self._ranges:
            uc.hook_add(UC_HOOK_MEM_WRITE, self._on_store, None, lo, hi - 1)
        points: dict[int, str] = {}
        maintenance: dict[int, int] = {}
        for va, word in self._scan(self.stext, self.etext):
            if word & SYS_CACHE_MASK == SYS_CACHE_BITS:
                maintenance[va] = word
            elif word == ISB:
                points[va] = "isb"
            elif word & DSB_MASK == DSB_BITS and (word >> 8) & 0xF not in DSB_LOCAL_ONLY:
                points[va] = "dsb"
            elif word == ERET:
                points[va] = "eret"
        vectors = image.sym("vectors") if image.has("vectors") else None
        if vectors is not None:
            for index in range(VECTOR_ENTRIES):
                points[vectors + index * VECTOR_STRIDE] = "exception"
        for name in completion:
            if not image.has(name):
                continue
            start = image.sym(name)
            size = image.elf.symbols[name].size or 4
            for va, word in self._scan(start, start + size):
                if word == RET:
                    points[va] = "complete"
        for va in watch:
            points.setdefault(va, "watch")
        self.watched = set(watch)
        for va, kind in points.items():
            uc.hook_add(UC_HOOK_CODE, self._on_point, kind, va, va)
        # Unicorn calls only the first SYS instruction hook (the machine's),
        # so cache maintenance is watched where it stands in the text.
        for va, word in maintenance.items():
            uc.hook_add(UC_HOOK_CODE, self._on_maintenance, word, va, va)
        invalidate_text(self.ctx.machine)  # hooks apply to code translated from now on

    # ------------------------------------------------------------ events
    def _tick(self) -> int:
        self.time += 1
        return self.time

    def _cpu(self) -> int:
        return self.ctx.machine.current.index

    def _on_store(self, uc: object, _access: int, address: int, size: int, value: int,
                  _user: object) -> None:  # fmt: skip
        cpu = self._cpu()
        physmem = self.ctx.physmem
        data = value.to_bytes(8, "little")[:size]
        for node, lo, hi in self._ranges:
            if not lo <= address < hi:
                continue
            first = address & ~3
            for word_pa in range(first, address + size, 4):
                old = physmem.read_u32(word_pa)
                new_bytes = bytearray(old.to_bytes(4, "little"))
                for i in range(4):
                    at = word_pa + i - address
                    if 0 <= at < size:
                        new_bytes[i] = data[at]
                new = int.from_bytes(new_bytes, "little")
                state = self.words.get(word_pa)
                if state is not None and state.published is None and not state.reported:
                    old = state.old  # still in flight: the CPU may hold the first value
                self.words[word_pa] = WordState(word_pa, node, self.stext + word_pa - lo, cpu,
                                                old, new, self._tick())  # fmt: skip
                self.stores += 1

    def _on_maintenance(self, uc: object, _address: int, _size: int, word: int) -> None:
        """dc/ic (SYS #op1, C7, Cm, #op2, Xt), before it executes: Xt holds its VA."""
        op1, crm, op2, rt = (word >> 16) & 7, (word >> 8) & 0xF, (word >> 5) & 7, word & 0x1F
        state = self.cpus[self._cpu()]
        if op1 == 0 and op2 == 0 and crm in (1, 5):
            state.pending.append(("ic_all", 0, self._tick()))
            return
        if op1 == 3 and op2 == 1 and crm in (10, 11, 12, 13, 14):
            op = "dc"
        elif op1 == 3 and op2 == 1 and crm == 5:
            op = "ic"
        else:
            return
        machine = self.ctx.machine
        va = 0 if rt == 31 else machine.uc.reg_read(UC_ARM64_REG_X0 + rt)
        pa = machine.mmu.translate(machine.uc, va, Access.READ)
        if pa is not None:
            state.pending.append((op, pa & ~(CACHE_LINE - 1), self._tick()))

    def _line_words(self, line: int) -> list[WordState]:
        return [w for pa in range(line, line + CACHE_LINE, 4) if (w := self.words.get(pa))]

    def _on_point(self, uc: object, address: int, _size: int, kind: str) -> None:
        cpu = self._cpu()
        now = self._tick()
        state = self.cpus[cpu]
        if kind == "dsb":
            self._complete(cpu, state, now)
        elif kind in ("isb", "exception"):
            state.last_sync = now
        elif kind == "eret":
            self._check_complete(cpu, now, need_isb=False)
            state.last_sync = now
        elif kind == "complete":
            self._check_complete(cpu, now, need_isb=True)
        if address in self.watched:
            self._on_watch(cpu, address)

    def _complete(self, cpu: int, state: _CpuState, now: int) -> None:
        """A dsb: this CPU's maintenance issued so far has completed."""
        for word in self.words.values():
            if word.writer == cpu and word.clean_done is None and self.idc:
                word.clean_done = now
        for op, line, issued in state.pending:
            words = self.words.values() if op == "ic_all" else self._line_words(line)
            for word in words:
                if word.written > issued:
                    continue  # written after the maintenance was issued
                if op == "dc" and word.clean_done is None:
                    word.clean_done = now
                elif (op != "dc" and word.published is None and word.clean_done is not None
                      and word.clean_done < issued):
                    word.published = now
        state.pending.clear()
        if self.dic:
            for word in self.words.values():
                if word.published is None and word.clean_done is not None:
                    word.published = now

    def _check_complete(self, cpu: int, now: int, need_isb: bool) -> None:
        image = self.ctx.image
        last_sync = self.cpus[cpu].last_sync
        for word in self.words.values():
            if word.writer != cpu or word.reported:
                continue
            if word.published is None:
                if word.clean_done is None:
                    missing = "never cleaned to the PoU (dc cvau, then dsb ish)"
                else:
                    missing = ("not invalidated in the I-cache after its clean completed "
                               "(ic ivau, then dsb ish)")  # fmt: skip
            elif need_isb and last_sync < word.published:
                missing = "no isb after the maintenance completed"
            else:
                continue
            word.reported = True
            self.violations.append(Violation(
                cpu, word.va, image.symbolize(word.va), word.node,
                f"patch of {decode_insn(word.old, word.va)} -> {decode_insn(word.new, word.va)} "
                f"completed but the word was {missing}",
            ))  # fmt: skip

    def _on_watch(self, cpu: int, va: int) -> None:
        machine = self.ctx.machine
        pa = machine.mmu.translate(machine.uc, va, Access.FETCH)
        word = self.words.get(pa) if pa is not None else None
        if word is None:
            return
        synced = word.published is not None and self.cpus[cpu].last_sync > word.published
        if synced:
            return
        self.in_flight.append(InFlight(cpu, machine.cpus[cpu].node, va, word.old, word.new,
                                       word.published is not None))  # fmt: skip
        if not (hotpatch_safe(word.old) and hotpatch_safe(word.new)):
            self.violations.append(Violation(
                cpu, va, self.ctx.image.symbolize(va), word.node,
                f"executed while {decode_insn(word.old, va)} -> {decode_insn(word.new, va)} was "
                "in flight: CONSTRAINED UNPREDICTABLE (not a hot-patch safe pair)",
            ))  # fmt: skip

    # ------------------------------------------------------------ results
    def unpublished(self) -> list[WordState]:
        return [w for w in self.words.values() if w.published is None]

    def summary(self) -> dict:
        return {
            "stores": self.stores,
            "words": len(self.words),
            "unpublished": len(self.unpublished()),
            "in_flight_executions": len(self.in_flight),
            "violations": [v.message() for v in self.violations],
        }


# ---------------------------------------------------------------- jump sites


@dataclass(frozen=True)
class SiteAnomaly:
    cpu: int
    node: int
    site: int
    what: str

    def message(self) -> str:
        return f"CPU {self.cpu} (node {self.node}) at {self.site:#x}: {self.what}"


@dataclass
class SiteStats:
    executions: int = 0
    taken: int = 0
    during_update: int = 0
    by_node: dict[int, int] = field(default_factory=dict)


class JumpSiteObserver:
    """Watches jump label sites while their keys change (see the module docstring)."""

    def __init__(self, ctx: KernelContext, entries: Iterable[JumpEntry] | None = None) -> None:
        self.ctx = ctx
        chosen = list(jump_entries(ctx) if entries is None else entries)
        self.entries = {entry.code: entry for entry in chosen}
        self.anomalies: list[SiteAnomaly] = []
        self.stats: dict[int, SiteStats] = {code: SiteStats() for code in self.entries}
        self._pending: dict[int, tuple[JumpEntry, int]] = {}  # cpu -> (entry, word executed)
        addresses = set(self.entries)
        for entry in self.entries.values():
            addresses.update((entry.code + 4, entry.target))
        uc = ctx.machine.uc
        # One hook per address: a site may also be another site's successor.
        for va in sorted(addresses):
            uc.hook_add(UC_HOOK_CODE, self._on_address, None, va, va)
        invalidate_text(ctx.machine)

    def _note(self, cpu: int, site: int, what: str) -> None:
        node = self.ctx.machine.cpus[cpu].node
        self.anomalies.append(SiteAnomaly(cpu, node, site, what))

    def _on_address(self, uc: object, address: int, _size: int, _user: object) -> None:
        vcpu = self.ctx.machine.current
        pending = self._pending.pop(vcpu.index, None)
        if pending is not None:
            self._resolve(vcpu.index, address, *pending)
        entry = self.entries.get(address)
        if entry is not None:
            self._on_site(vcpu.index, vcpu.node, entry)

    def _on_site(self, cpu: int, node: int, entry: JumpEntry) -> None:
        machine = self.ctx.machine
        address = entry.code
        pa = machine.mmu.translate(machine.uc, address, Access.FETCH)
        word = self.ctx.physmem.read_u32(pa)
        stats = self.stats[address]
        stats.executions += 1
        stats.by_node[node] = stats.by_node.get(node, 0) + 1
        nop, jump = entry.insn(entry.branch), entry.insn(not entry.branch)
        if word not in (nop, jump):
            self._note(cpu, address, f"executed {word:#010x} ({decode_insn(word, address)}), "
                       "neither the site's NOP nor its B")  # fmt: skip
        if update_in_progress(self.ctx):
            stats.during_update += 1
        else:
            enabled = bool(self.ctx.physmem.read_u32(self.ctx.image.pa_of(entry.key)))
            expected = entry.insn(enabled)
            if word != expected:
                self._note(cpu, address,
                           f"ran {decode_insn(word, address)} after the key update completed; "
                           f"the key ({'enabled' if enabled else 'disabled'}) calls for "
                           f"{decode_insn(expected, address)}")  # fmt: skip
        self._pending[cpu] = (entry, word)

    def _resolve(self, cpu: int, address: int, entry: JumpEntry, word: int) -> None:
        """The instruction after a site ran: it must be where the site's word leads."""
        if address not in (entry.target, entry.code + 4):
            self._note(cpu, entry.code, f"the instruction after the site ran at {address:#x}, "
                       "neither the site's target nor the next instruction")  # fmt: skip
            return
        if address == entry.target:
            self.stats[entry.code].taken += 1
        if entry.target == entry.code + 4:
            return  # both ways lead to the same place
        expected = entry.code + 4 if word == entry.insn(entry.branch) else entry.target
        if address != expected:
            self._note(cpu, entry.code,
                       f"memory held {decode_insn(word, entry.code)} but the CPU went to "
                       f"{address:#x}: it ran stale translated code")  # fmt: skip

    def total_executions(self) -> int:
        return sum(s.executions for s in self.stats.values())
