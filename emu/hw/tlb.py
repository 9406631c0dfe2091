"""The TLB model: what each CPU has cached, what CPUs share under CnP, and
what every EL1 ``tlbi`` form removes, on which CPUs.

Owns: ``TlbEntry`` (one cached translation); ``Tlb`` (a set of entries keyed
by translation regime, ASID and 4 KiB VA page: a CPU's private TLB or an
Inner Shareable domain's shared CnP TLB); ``decode_tlbi`` (the ``TLBI``
encodings as ``TlbiOp``s); ``Tlbs`` (the machine's TLBs: the Inner Shareable
domains, lookups and fills with TTBRn_EL1.CnP honoured, broadcast of the
``is``/``os`` forms, and the record of every translation a CPU used that a
CPU of another node had filled).

Why a model at all: the machine runs every CPU on one Unicorn engine and
empties Unicorn's TLB at every CPU switch (and Unicorn empties it on every
guest ``tlbi``), so Unicorn's TLB is only ever a cache of the current CPU's
entries here.  Staleness is real only through this model: entries stay
until a ``tlbi`` that covers them runs on (or is broadcast to) their CPU, so
a TTBR write without ``tlbi`` keeps using the old translations, as the
architecture allows.

Architectural choices (ARM DDI 0487, D8.13-D8.16) made here:
- One regime, EL1&0 with VMID 0: the machine has no EL2.  Keys carry the
  regime anyway, so an EL1 ``tlbi`` never matches anything else.
- Entries are leaves: no walk cache (intermediate table entries) is
  modelled, so the last-level forms (``vale1``, ``vaale1``) remove the same
  entries as ``vae1``/``vaae1``.  Invalid descriptors are never cached.
- A leaf larger than 4 KiB (a block, or a 16K/64K page) is cached per 4 KiB
  page it was used for; a ``tlbi`` by VA anywhere in the leaf removes every
  such page, as one entry for the whole leaf would be removed.  A leaf with
  the contiguous hint counts as its whole aligned group (16 4K pages, 128
  16K pages, 32 64K pages, ...: the walk's ``tlb_span``), as a TLB that
  uses the hint caches one entry for the group; ``Tlb.translations`` counts
  entries that way, which is how the TLB reach of a mapping shows.
- CnP: a CPU whose TTBR for the VA has CnP set fills into its Inner
  Shareable domain's shared TLB and may hit entries other CnP CPUs of the
  domain filled there (same regime and ASID: the CnP promise is that their
  tables are the same, and the hardware does not check it).  A CPU without
  CnP uses and fills only its private TLB.  A local ``tlbi`` removes the
  matching entries of the CPU's private TLB and of its domain's shared TLB
  (the shared entries are the same entries for every sharer; invalidating
  more than asked is always permitted).
- The ``is`` forms reach every CPU of the issuer's Inner Shareable domain
  and the domain's shared TLB; the ``os`` forms reach every CPU of the
  machine (one Outer Shareable domain).  The CPU modelled is ARMv8.0
  (Unicorn's Cortex-A72): FEAT_TLBIOS and FEAT_TLBIRANGE forms decode here
  (``decode_tlbi``) but the CPU treats them as UNDEFINED, so ``Tlbs`` leaves
  them to the caller (see ``Tlbs.implemented``).
- No capacity: nothing is evicted.  The architecture allows an entry to go
  at any time, so a model that never evicts shows every staleness hazard.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from emu.errors import ConfigError

REGIME_EL10 = 1  # EL1&0, VMID 0
GLOBAL = -1  # the "ASID" of a global (nG = 0) entry
PAGE_SHIFT = 12  # entries are per 4 KiB VA page, Unicorn's page
PAGE_MASK = ~((1 << PAGE_SHIFT) - 1)
_VA56 = (1 << 56) - 1
_UPPER_TOP = ((1 << 64) - 1) & ~_VA56

IS_DOMAIN_MACHINE = "machine"
IS_DOMAIN_NODE = "node"
IS_DOMAIN_CHOICES = (IS_DOMAIN_MACHINE, IS_DOMAIN_NODE)
# What "node" is: a what-if, said wherever it can be chosen or is reported.
IS_DOMAIN_NODE_CAVEAT = (
    "one Inner Shareable domain per node is a hypothetical hardware configuration, not one "
    "Linux can run on: its broadcast TLBI ...IS must reach every CPU"
)


def canonical_va(va: int) -> int:
    """``va`` with bits 63:56 a copy of bit 55, as a TLBI VA operand names it
    (the top byte is ignored by TBI and absent from the operand)."""
    return va | _UPPER_TOP if va >> 55 & 1 else va & _VA56


class TlbEntry(NamedTuple):
    """A cached translation of one 4 KiB virtual page (``asid`` GLOBAL: global)."""

    pa: int
    perms_el0: int
    perms_el1: int
    node: int  # memory node of ``pa``
    kind: int  # accounting kind (kernel text or other)
    asid: int
    level: int
    size: int  # the span one entry covers (leaf, or contiguous group): a TLBI by VA anywhere in it removes it
    filled_by: int = -1  # the CPU whose walk made the entry
    filler_node: int = -1  # that CPU's node
    contiguous: bool = False  # from a leaf with the contiguous hint (size is the group's)


TlbKey = tuple[int, int, int]  # (regime, ASID or GLOBAL, canonical VA page)


class TlbiScope(enum.Enum):
    ALL = "all"  # every entry of the regime (vmalle1)
    ASID = "asid"  # non-global entries of one ASID (aside1)
    VA = "va"  # one VA: global entries and those of one ASID (vae1, vale1)
    VA_ALL_ASID = "va, any ASID"  # one VA, every ASID (vaae1, vaale1)


class Shareability(enum.Enum):
    NONE = ""  # this CPU only
    INNER = "is"  # every CPU of the Inner Shareable domain
    OUTER = "os"  # every CPU of the Outer Shareable domain (the machine)


@dataclass(frozen=True)
class TlbiOp:
    """One decoded ``TLBI`` instruction and its operand."""

    name: str  # the mnemonic, e.g. "vae1is"
    scope: TlbiScope
    shareability: Shareability
    last_level: bool  # the *l* forms: leaf entries only (every modelled entry is one)
    asid: int | None  # ASID and VA scopes
    va: int | None  # canonical VA (page) for the VA scopes; range start for range forms
    va_end: int | None = None  # exclusive end of a range form; None: the leaf holding va
    feature: str | None = None  # the architecture feature the form needs beyond ARMv8.0

    def matches(self, key: TlbKey, entry: TlbEntry) -> bool:
        """Whether this operation removes ``entry`` (cached under ``key``)."""
        regime, asid, page = key
        if regime != REGIME_EL10:
            return False
        scope = self.scope
        if scope is TlbiScope.ALL:
            return True
        if scope is TlbiScope.ASID:
            return asid == self.asid
        if scope is TlbiScope.VA and asid != GLOBAL and asid != self.asid:
            return False
        base = page & ~(entry.size - 1)
        if self.va_end is None:
            return base == self.va & ~(entry.size - 1)
        return base < self.va_end and self.va < base + entry.size


# CRm of TLBI <op>, op1 = 0 (EL1), CRn = 8: shareability and whether a range form.
_TLBI_CRM = {
    7: (Shareability.NONE, False, None),
    3: (Shareability.INNER, False, None),
    1: (Shareability.OUTER, False, "FEAT_TLBIOS"),
    6: (Shareability.NONE, True, "FEAT_TLBIRANGE"),
    2: (Shareability.INNER, True, "FEAT_TLBIRANGE"),
    5: (Shareability.OUTER, True, "FEAT_TLBIRANGE"),
}
# op2 -> (name stem, scope, last level); range forms exist for the VA scopes only
_TLBI_OP2 = {
    0: ("vmalle1", TlbiScope.ALL, False),
    1: ("vae1", TlbiScope.VA, False),
    2: ("aside1", TlbiScope.ASID, False),
    3: ("vaae1", TlbiScope.VA_ALL_ASID, False),
    5: ("vale1", TlbiScope.VA, True),
    7: ("vaale1", TlbiScope.VA_ALL_ASID, True),
}
_RANGE_TG_SHIFT = {1: 12, 2: 14, 3: 16}  # TG field of a range operand: page size


def decode_tlbi(crm: int, op2: int, value: int, as16: bool = True) -> TlbiOp | None:
    """The EL1 ``TLBI`` with CRn 8, op1 0 and this CRm/op2, operand ``value``.

    Returns None for encodings that are not EL1 TLB invalidations (or whose
    range operand has a reserved TG).  ``as16`` is TCR_EL1.AS: with 8-bit
    ASIDs only the low 8 bits of the operand's ASID field count.
    """
    share = _TLBI_CRM.get(crm)
    kind = _TLBI_OP2.get(op2)
    if share is None or kind is None:
        return None
    shareability, ranged, feature = share
    stem, scope, last_level = kind
    if ranged and scope in (TlbiScope.ALL, TlbiScope.ASID):
        return None
    name = ("r" if ranged else "") + stem + shareability.value
    asid = value >> 48 & (0xFFFF if as16 else 0xFF)
    if scope is TlbiScope.ALL:
        return TlbiOp(name, scope, shareability, last_level, None, None, feature=feature)
    if scope is TlbiScope.ASID:
        return TlbiOp(name, scope, shareability, last_level, asid, None, feature=feature)
    if scope is TlbiScope.VA_ALL_ASID:
        asid = None
    if not ranged:
        # Xt[43:0] is VA[55:12]; VA[63:56] follow bit 55.
        va = canonical_va((value & ((1 << 44) - 1)) << PAGE_SHIFT)
        return TlbiOp(name, scope, shareability, last_level, asid, va, feature=feature)
    # Range operand: TG[47:46], SCALE[45:44], NUM[43:39], TTL[38:37] (a hint,
    # ignored: invalidating at every level is always correct), BaseADDR[36:0].
    shift = _RANGE_TG_SHIFT.get(value >> 46 & 3)
    if shift is None:
        return None
    scale, num = value >> 44 & 3, value >> 39 & 0x1F
    base = (value & ((1 << 37) - 1)) << shift
    # BaseADDR holds VA[36 + shift:shift]; the VA above follows its top bit.
    top = 36 + shift
    if base >> top & 1:
        base |= ((1 << 64) - 1) & ~((1 << top) - 1)
    pages = (num + 1) << (5 * scale + 1)
    return TlbiOp(name, scope, shareability, last_level, asid, base,
                  base + (pages << shift), feature)  # fmt: skip


class Tlb:
    """Cached translations keyed by (regime, ASID or GLOBAL, canonical 4 KiB VA page)."""

    __slots__ = ("_leaves", "entries")

    def __init__(self) -> None:
        self.entries: dict[TlbKey, TlbEntry] = {}
        # leaf size -> leaf base -> keys: finds every page of a leaf for a TLBI by VA
        self._leaves: dict[int, dict[int, set[TlbKey]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, va: int, asid: int, regime: int = REGIME_EL10) -> TlbEntry | None:
        """The entry translating ``va`` for ``asid`` (a global one first), or None."""
        page = canonical_va(va) & PAGE_MASK
        entries = self.entries
        hit = entries.get((regime, GLOBAL, page))
        if hit is None:
            hit = entries.get((regime, asid, page))
        return hit

    def insert(self, va: int, entry: TlbEntry, regime: int = REGIME_EL10) -> None:
        """Cache ``entry`` for the 4 KiB page of ``va`` (replacing one with the same key)."""
        page = canonical_va(va) & PAGE_MASK
        key = (regime, entry.asid, page)
        old = self.entries.get(key)
        if old is not None:
            self._unindex(key, old)
        self.entries[key] = entry
        size = entry.size
        self._leaves.setdefault(size, {}).setdefault(page & ~(size - 1), set()).add(key)

    def _unindex(self, key: TlbKey, entry: TlbEntry) -> None:
        bases = self._leaves[entry.size]
        base = key[2] & ~(entry.size - 1)
        keys = bases[base]
        keys.discard(key)
        if not keys:
            del bases[base]

    def _remove(self, key: TlbKey) -> None:
        self._unindex(key, self.entries.pop(key))

    def invalidate(self, op: TlbiOp) -> list[TlbKey]:
        """Remove every entry ``op`` covers; returns their keys."""
        if op.scope is TlbiScope.ALL:
            victims = [key for key in self.entries if key[0] == REGIME_EL10]
        elif op.scope is TlbiScope.ASID or op.va_end is not None:
            victims = [key for key, entry in self.entries.items() if op.matches(key, entry)]
        else:
            victims = []
            for size, bases in self._leaves.items():
                keys = bases.get(op.va & ~(size - 1))
                if keys:
                    victims += [key for key in keys if op.matches(key, self.entries[key])]
        for key in victims:
            self._remove(key)
        return victims

    def clear(self) -> None:
        self.entries.clear()
        self._leaves.clear()

    def translations(self, kind: int | None = None) -> int:
        """How many TLB entries a TLB that caches each leaf, or each
        contiguous-hint group, as one entry would hold for what is cached
        here (of accounting ``kind`` only, if given): the TLB reach a
        mapping costs.  Entries are stored per 4 KiB page; this counts the
        distinct (regime, ASID, span base) they belong to."""
        return len({(key[0], key[1], key[2] & ~(entry.size - 1))
                    for key, entry in self.entries.items()
                    if kind is None or entry.kind == kind})  # fmt: skip

    def items(self) -> list[tuple[TlbKey, TlbEntry]]:
        return list(self.entries.items())


@dataclass
class RemoteFill:
    """A translation ``cpu`` used that ``filled_by``, a CPU of another node, had
    filled into their domain's shared (CnP) TLB; ``uses`` counts the fills of
    Unicorn's TLB it served (at least one per quantum the page was used in)."""

    cpu: int
    node: int
    va: int  # the 4 KiB page
    pa: int
    pa_node: int
    filled_by: int
    filler_node: int
    kind: int
    uses: int = 0


def is_domains(cpu_nodes: Sequence[int], mode: str) -> list[int]:
    """Inner Shareable domain of each CPU: one for the machine (what Linux
    assumes: its broadcast TLBIs must reach every CPU), or one per node."""
    if mode == IS_DOMAIN_MACHINE:
        return [0] * len(cpu_nodes)
    if mode == IS_DOMAIN_NODE:
        return list(cpu_nodes)
    raise ConfigError(
        f"Inner Shareable domain {mode!r} is not one of {', '.join(IS_DOMAIN_CHOICES)}"
    )


@dataclass
class Tlbs:
    """Every TLB of the machine: one private per CPU, one shared per Inner
    Shareable domain (CnP entries), and the domains themselves."""

    private: list[Tlb]  # per CPU (the VCpu.tlb objects)
    cpu_nodes: list[int]
    domains: list[int] = field(default_factory=list)  # IS domain of each CPU
    shared: dict[int, Tlb] = field(default_factory=dict)  # IS domain -> CnP entries
    remote_fills: dict[tuple[int, int, int], RemoteFill] = field(default_factory=dict)
    # TLBI forms the CPU implements; the others are UNDEFINED and change nothing.
    implemented: frozenset[str | None] = frozenset({None})
    invalidations: int = 0  # TLBIs applied

    def __post_init__(self) -> None:
        if not self.domains:
            self.domains = is_domains(self.cpu_nodes, IS_DOMAIN_MACHINE)

    @property
    def mode(self) -> str:
        """"machine" when one domain holds every CPU, "node" when domains are nodes."""
        if len(set(self.domains)) == 1:
            return IS_DOMAIN_MACHINE
        return IS_DOMAIN_NODE if self.domains == list(self.cpu_nodes) else "custom"

    def set_domains(self, domains: Sequence[int]) -> None:
        """Regroup the CPUs into Inner Shareable domains (at boot: shared entries go)."""
        if len(domains) != len(self.private):
            raise ValueError(f"{len(domains)} domains for {len(self.private)} CPUs")
        self.domains = list(domains)
        self.shared.clear()

    def shared_tlb(self, cpu: int) -> Tlb:
        domain = self.domains[cpu]
        tlb = self.shared.get(domain)
        if tlb is None:
            tlb = self.shared[domain] = Tlb()
        return tlb

    def lookup(self, cpu: int, va: int, asid: int, cnp: bool, record: bool = True
               ) -> TlbEntry | None:  # fmt: skip
        """What ``cpu`` has cached for ``va``: its own entries, then (with CnP)
        its domain's shared ones.  A shared entry another node's CPU filled is
        recorded in ``remote_fills`` unless ``record`` is False."""
        hit = self.private[cpu].lookup(va, asid)
        if hit is None and cnp:
            hit = self.shared_tlb(cpu).lookup(va, asid)
            if hit is not None and record and hit.filler_node != self.cpu_nodes[cpu]:
                self._record_remote(cpu, va, hit)
        return hit

    def _record_remote(self, cpu: int, va: int, hit: TlbEntry) -> None:
        page = canonical_va(va) & PAGE_MASK
        key = (cpu, page, hit.filled_by)
        use = self.remote_fills.get(key)
        if use is None or use.pa != hit.pa:
            use = self.remote_fills[key] = RemoteFill(
                cpu, self.cpu_nodes[cpu], page, hit.pa, hit.node, hit.filled_by,
                hit.filler_node, hit.kind,
            )  # fmt: skip
        use.uses += 1

    def insert(self, cpu: int, va: int, entry: TlbEntry, cnp: bool) -> TlbEntry:
        """Cache ``entry`` (a walk ``cpu`` made) privately, or in the domain's
        shared TLB when the TTBR it came through has CnP set."""
        entry = entry._replace(filled_by=cpu, filler_node=self.cpu_nodes[cpu])
        (self.shared_tlb(cpu) if cnp else self.private[cpu]).insert(va, entry)
        return entry

    def reached(self, cpu: int, op: TlbiOp) -> list[int]:
        """The CPUs a TLBI ``op`` executed by ``cpu`` acts on."""
        if op.shareability is Shareability.NONE:
            return [cpu]
        if op.shareability is Shareability.OUTER:
            return list(range(len(self.private)))
        domain = self.domains[cpu]
        return [other for other, d in enumerate(self.domains) if d == domain]

    def tlbi(self, cpu: int, op: TlbiOp) -> list[int]:
        """Apply ``op`` as executed by ``cpu``; returns the CPUs it reached
        (none when the CPU does not implement the form: it is UNDEFINED)."""
        if op.feature not in self.implemented:
            return []
        targets = self.reached(cpu, op)
        self.invalidations += 1
        for target in targets:
            self.private[target].invalidate(op)
        for domain in sorted({self.domains[target] for target in targets}):
            shared = self.shared.get(domain)
            if shared is not None:
                shared.invalidate(op)
        return targets

    def clear_cpu(self, cpu: int) -> None:
        """A CPU powered on (or reset) starts with an empty private TLB."""
        self.private[cpu].clear()

    def remote_fill_summary(self) -> dict[str, int]:
        """Counts over ``remote_fills``: translations (distinct CPU, page, filler), uses."""
        return {
            "translations": len(self.remote_fills),
            "uses": sum(use.uses for use in self.remote_fills.values()),
            "cpus": len({use.cpu for use in self.remote_fills.values()}),
        }


__all__ = [
    "GLOBAL", "IS_DOMAIN_CHOICES", "IS_DOMAIN_MACHINE", "IS_DOMAIN_NODE",
    "IS_DOMAIN_NODE_CAVEAT", "REGIME_EL10",
    "RemoteFill", "Shareability", "Tlb", "TlbEntry", "TlbKey", "TlbiOp", "TlbiScope",
    "Tlbs", "canonical_va", "decode_tlbi", "is_domains",
]  # fmt: skip
