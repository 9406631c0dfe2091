"""VMSAv8-64 stage-1 translation tables of the EL1&0 regime, with no Unicorn in sight.

Owns: the table geometry of a granule and VA size (Geometry); the descriptor formats
(table, block, page; 48-bit output addresses) and their attributes (Prot);
TCR_EL1 and TTBRn_EL1 fields (decode_tcr/make_tcr, decode_ttbr/make_ttbr) and the
ASID in force (current_asid); the
pure table walk (Walker.walk / walk) that the MMU hook, the verifier and the tests
share; and the read-only listing of a table tree (leaf_mappings). Linux's choices
on top of the architecture live in emu/kernel/: the protections (PAGE_KERNEL...)
in pgtable_prot.py, the builder mirroring __create_pgd_mapping() (create_pgd_mapping,
unmap_range) in mmu.py.

Architectural choices the ARM ARM leaves open, and what is not modelled:
- The implemented physical address size (PARange) is 48 bits; TCR.IPS above that is
  treated as 48. No FEAT_LPA/LPA2 (52-bit), so no level -1 and no L0/L1 blocks beyond
  the 48-bit rules. TTBR.BADDR bits below the top table's size are ignored.
- Reserved TGn encodings decode as 4 KiB (an IMPLEMENTATION DEFINED choice the
  architecture permits). TnSZ outside 16..39 is a level 0 translation fault, as on a
  CPU without FEAT_TTST.
- Not modelled: TCR.HA/HD (hardware AF/dirty update: AF=0 always faults), HPD,
  SCTLR.WXN, PSTATE.PAN, E0PD, permission indirection, big-endian tables.
- Permissions follow AArch64.S1DirectBasePermissions(): APTable is applied on top of
  AP, and "writable at EL0 means not executable at EL1" uses the EL0 write permission
  after APTable. (KVM's software walker in arch/arm64/kvm/at.c applies that rule
  before APTable; the two differ only for an EL0-writable leaf below an APTable that
  removes EL0 write, which Linux never builds.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Protocol

from emu.errors import ConfigError, GuestFault

MASK64 = (1 << 64) - 1
OA_BITS = 48
MIN_VA_BITS = 25
MAX_VA_BITS = 48
GRANULES = (4096, 16384, 65536)
_PAGE_SHIFT = {4096: 12, 16384: 14, 65536: 16}
# Levels at which a block descriptor is legal with 48-bit output addresses.
_BLOCK_LEVELS = {4096: (1, 2), 16384: (2,), 65536: (2,)}
# Entries in one contiguous-hint group, per level (CONT_PTES / CONT_PMDS in Linux).
_CONT_ENTRIES = {4096: {3: 16, 2: 16}, 16384: {3: 128, 2: 32}, 65536: {3: 32, 2: 32}}

# --- descriptor bits (arch/arm64/include/asm/pgtable-hwdef.h names in comments) ---
DESC_VALID = 1 << 0  # PTE_VALID
DESC_TABLE = 1 << 1  # PMD_TABLE_BIT; "page" at level 3
ATTRINDX_SHIFT = 2  # PTE_ATTRINDX(t)
DESC_NS = 1 << 5
AP_SHIFT = 6  # AP[2:1] sits in bits 7:6
DESC_USER = 1 << 6  # PTE_USER, AP[1]
DESC_RDONLY = 1 << 7  # PTE_RDONLY, AP[2]
SH_SHIFT = 8
DESC_AF = 1 << 10  # PTE_AF
DESC_NG = 1 << 11  # PTE_NG
DESC_GP = 1 << 50  # PTE_GP (BTI guarded page)
DESC_DBM = 1 << 51  # PTE_DBM, Linux's PTE_WRITE
DESC_CONT = 1 << 52  # PTE_CONT
DESC_PXN = 1 << 53  # PTE_PXN
DESC_UXN = 1 << 54  # PTE_UXN
TABLE_PXN = 1 << 59  # PMD_TABLE_PXN
TABLE_UXN = 1 << 60  # PMD_TABLE_UXN
TABLE_AP_SHIFT = 61
TABLE_AP_NO_EL0 = 1 << 61  # APTable[0]: no EL0 access below
TABLE_AP_RO = 1 << 62  # APTable[1]: no write access below
TABLE_NS = 1 << 63
TABLE_ATTR_MASK = TABLE_PXN | TABLE_UXN | TABLE_AP_NO_EL0 | TABLE_AP_RO | TABLE_NS
ADDR_MASK = ((1 << OA_BITS) - 1) & ~0xFFF
# Everything of a leaf except output address, type bits and the contiguous hint.
LEAF_ATTR_MASK = ~(ADDR_MASK | DESC_VALID | DESC_TABLE | DESC_CONT) & MASK64

# AP[2:1] values
AP_RW_EL1 = 0b00  # EL1 read/write, EL0 none
AP_RW_ALL = 0b01  # EL1 and EL0 read/write
AP_RO_EL1 = 0b10  # EL1 read-only, EL0 none
AP_RO_ALL = 0b11  # EL1 and EL0 read-only
# SH[1:0]
SH_NON = 0b00
SH_OUTER = 0b10
SH_INNER = 0b11

# MAIR_EL1 slots as Linux assigns them (arch/arm64/include/asm/memory.h) and the
# MAIR_EL1 value proc.S programs (MAIR_EL1_SET; NORMAL_TAGGED stays 0xff without MTE).
MT_NORMAL = 0
MT_NORMAL_TAGGED = 1
MT_NORMAL_NC = 2
MT_DEVICE_nGnRnE = 3
MT_DEVICE_nGnRE = 4
MAIR_EL1_LINUX = 0xFF | 0xFF << 8 | 0x44 << 16 | 0x00 << 24 | 0x04 << 32


class Access(IntEnum):
    """What the access that needs the translation wants to do."""

    READ = 0
    WRITE = 1
    FETCH = 2


class FaultKind(IntEnum):
    """Stage-1 fault classes a walk can report (each carries a level)."""

    TRANSLATION = 0
    ACCESS_FLAG = 1
    PERMISSION = 2
    ADDRESS_SIZE = 3
    WALK_EXTERNAL_ABORT = 4  # a table read that hit no memory (DFSC 0b0101LL)


_FAULT_NAMES = {
    FaultKind.TRANSLATION: "translation fault",
    FaultKind.ACCESS_FLAG: "access flag fault",
    FaultKind.PERMISSION: "permission fault",
    FaultKind.ADDRESS_SIZE: "address size fault",
    FaultKind.WALK_EXTERNAL_ABORT: "synchronous external abort on translation table walk",
}


@dataclass(frozen=True)
class Fault:
    """A stage-1 fault: what went wrong and at which lookup level (0-3)."""

    kind: FaultKind
    level: int

    def __str__(self) -> str:
        return f"{_FAULT_NAMES[self.kind]} level {self.level}"


# Every possible fault, built once so the walk never constructs one.
_FAULTS = {(kind, level): Fault(kind, level) for kind in FaultKind for level in range(4)}


def fault(kind: FaultKind, level: int) -> Fault:
    """The shared Fault value for (kind, level)."""
    try:
        return _FAULTS[(kind, level)]
    except KeyError:
        raise ConfigError(f"no {kind.name} fault at level {level}") from None


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Table layout of one translation granule and VA size (TnSZ = 64 - va_bits).

    Levels are numbered as in the ARM ARM: the walk starts at ``start_level`` and
    always ends at level 3. ``shifts[level]`` is the VA bit where that level's index
    starts, so one entry at that level maps ``1 << shifts[level]`` bytes.
    """

    granule: int
    va_bits: int
    page_shift: int = field(init=False, repr=False, compare=False)
    bits_per_level: int = field(init=False, repr=False, compare=False)
    levels: int = field(init=False, repr=False, compare=False)
    start_level: int = field(init=False, repr=False, compare=False)
    shifts: tuple[int, int, int, int] = field(init=False, repr=False, compare=False)
    entries: int = field(init=False, repr=False, compare=False)
    top_entries: int = field(init=False, repr=False, compare=False)
    table_size: int = field(init=False, repr=False, compare=False)
    top_table_size: int = field(init=False, repr=False, compare=False)
    block_levels: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.granule not in _PAGE_SHIFT:
            raise ConfigError(f"translation granule {self.granule} is not 4096, 16384 or 65536")
        if not isinstance(self.va_bits, int) or not MIN_VA_BITS <= self.va_bits <= MAX_VA_BITS:
            raise ConfigError(
                f"VA size {self.va_bits} bits is outside {MIN_VA_BITS}..{MAX_VA_BITS}"
            )
        page_shift = _PAGE_SHIFT[self.granule]
        stride = page_shift - 3
        # AArch64.S1StartLevel(): 3 - ((va_bits - 1 - page_shift) DIV stride)
        start_level = 3 - (self.va_bits - 1 - page_shift) // stride
        shifts = tuple(page_shift + stride * (3 - level) for level in range(4))
        top_entries = 1 << (self.va_bits - shifts[start_level])
        values = {
            "page_shift": page_shift,
            "bits_per_level": stride,
            "levels": 4 - start_level,
            "start_level": start_level,
            "shifts": shifts,
            "entries": 1 << stride,
            "top_entries": top_entries,
            "table_size": self.granule,
            "top_table_size": top_entries * 8,
            "block_levels": tuple(
                lv for lv in _BLOCK_LEVELS[self.granule] if lv >= start_level
            ),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_name(cls, name: str) -> Geometry:
        """Parse "4k-48" style names (granule in KiB, VA bits)."""
        try:
            gran, bits = name.lower().split("-")
            if not gran.endswith("k"):
                raise ValueError(name)
            return cls(int(gran[:-1]) * 1024, int(bits))
        except ValueError:
            raise ConfigError(f"layout name {name!r} is not of the form 4k-48") from None

    @property
    def name(self) -> str:
        return f"{self.granule // 1024}k-{self.va_bits}"

    @property
    def pgdir_shift(self) -> int:
        """Linux PGDIR_SHIFT: what one top-level entry spans."""
        return self.shifts[self.start_level]

    @property
    def pgdir_size(self) -> int:
        return 1 << self.shifts[self.start_level]

    @property
    def leaf_levels(self) -> tuple[int, ...]:
        return (*self.block_levels, 3)

    def level_size(self, level: int) -> int:
        """Bytes mapped by one entry at ``level``."""
        self._check_level(level)
        return 1 << self.shifts[level]

    def entries_at(self, level: int) -> int:
        self._check_level(level)
        return self.top_entries if level == self.start_level else self.entries

    def index(self, va: int, level: int) -> int:
        """The table index ``va`` selects at ``level``."""
        return (va >> self.shifts[level]) & (self.entries_at(level) - 1)

    def pgd_index(self, va: int) -> int:
        """Linux pgd_index(): the top-level slot of ``va``."""
        return (va >> self.pgdir_shift) & (self.top_entries - 1)

    def block_allowed(self, level: int) -> bool:
        return level in self.block_levels

    def cont_entries(self, level: int) -> int:
        """Entries in a contiguous-hint group at ``level`` (0: no hint at that level)."""
        return _CONT_ENTRIES[self.granule].get(level, 0)

    @property
    def upper_base(self) -> int:
        """Lowest VA of the TTBR1 half: 0xffff... with va_bits low bits clear."""
        return MASK64 & ~((1 << self.va_bits) - 1)

    @property
    def lower_end(self) -> int:
        """One past the highest VA of the TTBR0 half."""
        return 1 << self.va_bits

    def region_of(self, va: int) -> int:
        """0 for a TTBR0 VA, 1 for a TTBR1 VA; ConfigError for a VA in neither."""
        if 0 <= va < self.lower_end:
            return 0
        if self.upper_base <= va <= MASK64:
            return 1
        raise ConfigError(f"VA {va:#x} is in neither half of a {self.va_bits}-bit address space")

    def _check_level(self, level: int) -> None:
        if not self.start_level <= level <= 3:
            raise ConfigError(
                f"level {level} is outside {self.start_level}..3 for {self.name} tables"
            )


# ---------------------------------------------------------------------------- descriptors


@dataclass(frozen=True)
class Prot:
    """The attribute bits of a block or page descriptor (Linux's pgprot_t, minus type).

    ``ap`` is AP[2:1] (AP_RW_EL1, AP_RW_ALL, AP_RO_EL1, AP_RO_ALL); ``dbm`` is
    Linux's PTE_WRITE (ignored by the walk: TCR.HD is not modelled).
    """

    attr_index: int = MT_NORMAL
    ap: int = AP_RW_EL1
    sh: int = SH_INNER
    af: bool = True
    ng: bool = False
    ns: bool = False
    pxn: bool = False
    uxn: bool = False
    dbm: bool = False
    contiguous: bool = False
    gp: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.attr_index <= 7:
            raise ConfigError(f"AttrIndx {self.attr_index} is outside 0..7")
        if not 0 <= self.ap <= 3 or not 0 <= self.sh <= 3:
            raise ConfigError(f"AP {self.ap} / SH {self.sh} is not a 2-bit value")

    def bits(self) -> int:
        """The descriptor bits these attributes set (no address, no type bits)."""
        return (
            self.attr_index << ATTRINDX_SHIFT
            | self.ns * DESC_NS
            | self.ap << AP_SHIFT
            | self.sh << SH_SHIFT
            | self.af * DESC_AF
            | self.ng * DESC_NG
            | self.gp * DESC_GP
            | self.dbm * DESC_DBM
            | self.contiguous * DESC_CONT
            | self.pxn * DESC_PXN
            | self.uxn * DESC_UXN
        )

    @classmethod
    def from_desc(cls, desc: int) -> Prot:
        """The attributes of a block or page descriptor."""
        return cls(
            attr_index=(desc >> ATTRINDX_SHIFT) & 7,
            ap=(desc >> AP_SHIFT) & 3,
            sh=(desc >> SH_SHIFT) & 3,
            af=bool(desc & DESC_AF),
            ng=bool(desc & DESC_NG),
            ns=bool(desc & DESC_NS),
            pxn=bool(desc & DESC_PXN),
            uxn=bool(desc & DESC_UXN),
            dbm=bool(desc & DESC_DBM),
            contiguous=bool(desc & DESC_CONT),
            gp=bool(desc & DESC_GP),
        )

    def permissions(self, el: int, table_attrs: int = 0) -> tuple[bool, bool, bool]:
        """(readable, writable, executable) at ``el`` under the given table bits."""
        return leaf_permissions(self.bits(), table_attrs, el)

    def __str__(self) -> str:
        el1 = "".join(c if ok else "-" for c, ok in zip("rwx", self.permissions(1), strict=True))
        el0 = "".join(c if ok else "-" for c, ok in zip("rwx", self.permissions(0), strict=True))
        return f"EL1 {el1} EL0 {el0} attr{self.attr_index}{' nG' if self.ng else ''}"


def leaf_permissions(desc: int, table_attrs: int, el: int) -> tuple[bool, bool, bool]:
    """(readable, writable, executable) of a leaf at ``el`` (0 or 1).

    ``table_attrs`` is the OR of the table descriptors' bits on the way down
    (only TABLE_AP_*, TABLE_UXN and TABLE_PXN matter).
    """
    read_only = desc & DESC_RDONLY or table_attrs & TABLE_AP_RO
    el0 = desc & DESC_USER and not table_attrs & TABLE_AP_NO_EL0
    if el == 0:
        return (bool(el0), bool(el0 and not read_only),
                not (desc & DESC_UXN or table_attrs & TABLE_UXN))
    el0_writable = el0 and not read_only
    return (True, not read_only,
            not (desc & DESC_PXN or table_attrs & TABLE_PXN or el0_writable))


class DescKind(IntEnum):
    INVALID = 0
    TABLE = 1
    BLOCK = 2
    PAGE = 3
    RESERVED = 4  # valid bit set, but an encoding the level does not allow


@dataclass(frozen=True)
class Descriptor:
    """A decoded descriptor: its kind, output or next-table address and attributes."""

    kind: DescKind
    level: int
    raw: int
    address: int = 0
    prot: Prot | None = None
    table_attrs: int = 0  # TABLE_* bits of a table descriptor

    @property
    def ap_table(self) -> int:
        return (self.table_attrs >> TABLE_AP_SHIFT) & 3


def table_descriptor(
    next_table_pa: int,
    *,
    ns_table: bool = False,
    ap_table: int = 0,
    uxn_table: bool = False,
    pxn_table: bool = False,
) -> int:
    """A table descriptor pointing at ``next_table_pa`` (granule-aligned by the caller)."""
    if next_table_pa & ~ADDR_MASK:
        raise ConfigError(f"table address {next_table_pa:#x} is not a 4 KiB-aligned 48-bit PA")
    if not 0 <= ap_table <= 3:
        raise ConfigError(f"APTable {ap_table} is not a 2-bit value")
    return (
        next_table_pa | DESC_VALID | DESC_TABLE
        | ns_table * TABLE_NS | ap_table << TABLE_AP_SHIFT
        | uxn_table * TABLE_UXN | pxn_table * TABLE_PXN
    )


def leaf_descriptor(geometry: Geometry, level: int, oa: int, prot: Prot) -> int:
    """A block (levels 1-2) or page (level 3) descriptor mapping ``oa``."""
    size = geometry.level_size(level)
    if level != 3 and not geometry.block_allowed(level):
        raise ConfigError(f"{geometry.name} tables allow no block descriptor at level {level}")
    if oa & (size - 1) or not 0 <= oa < 1 << OA_BITS:
        raise ConfigError(f"output address {oa:#x} is not a {size:#x}-aligned 48-bit PA")
    return oa | prot.bits() | DESC_VALID | (DESC_TABLE if level == 3 else 0)


def decode_descriptor(geometry: Geometry, level: int, desc: int) -> Descriptor:
    """Classify a descriptor read at ``level`` the way the walk does."""
    geometry._check_level(level)
    if not desc & DESC_VALID:
        return Descriptor(DescKind.INVALID, level, desc)
    if desc & DESC_TABLE:
        if level == 3:
            return Descriptor(DescKind.PAGE, level, desc, desc & ADDR_MASK & ~(geometry.granule - 1),
                              Prot.from_desc(desc))
        addr = desc & ADDR_MASK & ~(geometry.granule - 1)
        return Descriptor(DescKind.TABLE, level, desc, addr, table_attrs=desc & TABLE_ATTR_MASK)
    if not geometry.block_allowed(level):
        return Descriptor(DescKind.RESERVED, level, desc)
    addr = desc & ADDR_MASK & ~(geometry.level_size(level) - 1)
    return Descriptor(DescKind.BLOCK, level, desc, addr, Prot.from_desc(desc))


# ---------------------------------------------------------------------------- TCR / TTBR

_TG0 = {0b00: 4096, 0b01: 65536, 0b10: 16384}
_TG1 = {0b10: 4096, 0b01: 16384, 0b11: 65536}
_TG0_ENC = {v: k for k, v in _TG0.items()}
_TG1_ENC = {v: k for k, v in _TG1.items()}
_IPS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
_IPS_ENC = {v: k for k, v in _IPS_BITS.items()}
TTBR_BADDR_MASK = ((1 << 48) - 1) & ~1  # BADDR, bits 47:1
TTBR_CNP = 1
TTBR_ASID_SHIFT = 48


@dataclass(frozen=True)
class Tcr:
    """The TCR_EL1 fields the EL1&0 walk uses (granules in bytes, ips in bits)."""

    raw: int
    t0sz: int
    epd0: bool
    tg0: int
    t1sz: int
    epd1: bool
    tg1: int
    a1: bool
    ips_bits: int
    as16: bool
    tbi0: bool
    tbi1: bool
    irgn0: int
    orgn0: int
    sh0: int
    irgn1: int
    orgn1: int
    sh1: int
    ha: bool
    hd: bool

    @property
    def oa_bits(self) -> int:
        """The output address size in force: IPS capped at the 48-bit PARange."""
        return min(self.ips_bits, OA_BITS)

    @property
    def geometry0(self) -> Geometry:
        return Geometry(self.tg0, 64 - self.t0sz)

    @property
    def geometry1(self) -> Geometry:
        return Geometry(self.tg1, 64 - self.t1sz)


def decode_tcr(tcr: int) -> Tcr:
    """Split a TCR_EL1 value into fields; never raises (reserved values are documented)."""
    return Tcr(
        raw=tcr,
        t0sz=tcr & 0x3F,
        epd0=bool(tcr >> 7 & 1),
        irgn0=tcr >> 8 & 3,
        orgn0=tcr >> 10 & 3,
        sh0=tcr >> 12 & 3,
        tg0=_TG0.get(tcr >> 14 & 3, 4096),
        t1sz=tcr >> 16 & 0x3F,
        a1=bool(tcr >> 22 & 1),
        epd1=bool(tcr >> 23 & 1),
        irgn1=tcr >> 24 & 3,
        orgn1=tcr >> 26 & 3,
        sh1=tcr >> 28 & 3,
        tg1=_TG1.get(tcr >> 30 & 3, 4096),
        ips_bits=_IPS_BITS.get(tcr >> 32 & 7, 48),
        as16=bool(tcr >> 36 & 1),
        tbi0=bool(tcr >> 37 & 1),
        tbi1=bool(tcr >> 38 & 1),
        ha=bool(tcr >> 39 & 1),
        hd=bool(tcr >> 40 & 1),
    )


def make_tcr(
    geometry1: Geometry,
    *,
    geometry0: Geometry | None = None,
    ips_bits: int = 48,
    epd0: bool = False,
    epd1: bool = False,
    tbi0: bool = True,
    tbi1: bool = False,
    a1: bool = True,
    as16: bool = True,
) -> int:
    """A TCR_EL1 value as Linux's __cpu_setup builds it: TTBR1 regime ``geometry1``,
    TTBR0 regime ``geometry0`` (default the same), walks write-back cacheable and
    inner shareable, ASID in TTBR1 (A1), 16-bit ASIDs, TBI0."""
    g0 = geometry0 or geometry1
    if ips_bits not in _IPS_ENC:
        raise ConfigError(f"IPS of {ips_bits} bits is not an architected size")
    wbwa, inner = 0b01, 0b11
    return (
        (64 - g0.va_bits)
        | epd0 << 7 | wbwa << 8 | wbwa << 10 | inner << 12 | _TG0_ENC[g0.granule] << 14
        | (64 - geometry1.va_bits) << 16 | a1 << 22 | epd1 << 23
        | wbwa << 24 | wbwa << 26 | inner << 28 | _TG1_ENC[geometry1.granule] << 30
        | _IPS_ENC[ips_bits] << 32 | as16 << 36 | tbi0 << 37 | tbi1 << 38
    )


@dataclass(frozen=True)
class Ttbr:
    baddr: int
    asid: int
    cnp: bool


def decode_ttbr(ttbr: int) -> Ttbr:
    """BADDR (bits 47:1, unmasked by table alignment), ASID (63:48) and CnP (0)."""
    return Ttbr(ttbr & TTBR_BADDR_MASK, ttbr >> TTBR_ASID_SHIFT & 0xFFFF, bool(ttbr & TTBR_CNP))


def make_ttbr(table_pa: int, asid: int = 0, cnp: bool = False) -> int:
    """A TTBRn_EL1 value (Linux phys_to_ttbr() | ASID | CnP) for a 48-bit table PA."""
    if table_pa & ~TTBR_BADDR_MASK:
        raise ConfigError(f"translation table base {table_pa:#x} is not an even 48-bit PA")
    if not 0 <= asid <= 0xFFFF:
        raise ConfigError(f"ASID {asid} is not a 16-bit value")
    return table_pa | asid << TTBR_ASID_SHIFT | cnp * TTBR_CNP


def current_asid(tcr: Tcr, ttbr0: int, ttbr1: int) -> int:
    """The ASID in force: TCR_EL1.A1 picks the TTBR that holds it, TCR_EL1.AS
    says whether it has 16 bits or 8 (ARM ARM D8.15, "ASID size")."""
    return ((ttbr1 if tcr.a1 else ttbr0) >> TTBR_ASID_SHIFT) & (0xFFFF if tcr.as16 else 0xFF)


# ----------------------------------------------------------------------------------- walk


@dataclass(slots=True, eq=False)
class WalkResult:
    """What one translation found.

    ``chain`` lists every descriptor read as (level, table_pa, index, descriptor_pa,
    descriptor). ``pa``, ``size`` and the permissions are set whenever a leaf with an
    in-range output address was reached, so also on access-flag and permission faults;
    otherwise ``pa`` is None. ``descriptor`` is the last descriptor read (the leaf
    when there is one). ``region`` is 0 for TTBR0, 1 for TTBR1. ``asid`` comes from
    the TTBR that TCR.A1 selects and matters only when ``ng`` is set.
    """

    va: int
    pa: int | None
    level: int
    size: int
    chain: list[tuple[int, int, int, int, int]]
    descriptor: int
    readable: bool
    writable: bool
    executable: bool
    asid: int
    ng: bool
    region: int
    fault: Fault | None
    table_attrs: int = 0
    # The leaf has the contiguous hint (PTE_CONT): it is one of ``cont_entries``
    # adjacent entries the TLB may cache as one, covering ``tlb_span`` bytes.
    contiguous: bool = False
    cont_entries: int = 1

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def tlb_span(self) -> int:
        """Bytes one TLB entry for this leaf may cover: the leaf, or with the
        contiguous hint its whole aligned group (ARM DDI 0487, D8.6.1)."""
        return self.size * self.cont_entries if self.contiguous else self.size

    @property
    def attrs(self) -> Prot | None:
        """Decoded attributes of the leaf (None when no leaf was reached)."""
        return Prot.from_desc(self.descriptor) if self.pa is not None else None

    @property
    def block(self) -> bool:
        return self.pa is not None and self.level < 3


ReadU64 = Callable[[int], int]

_NO_LEAF = (None, 0, (False, False, False), 0)


def _walk_result(va: int, asid: int, region: int, kind: FaultKind | None, level: int = 0,
                 chain: list[tuple[int, int, int, int, int]] | None = None, descriptor: int = 0,
                 ng: bool = False,
                 leaf: tuple[int, int, tuple[bool, bool, bool], int] = _NO_LEAF,
                 cont_group: int = 0) -> WalkResult:
    """The one place a walk builds its WalkResult: a fault of ``kind`` at ``level``
    (None: no fault) and, when a leaf was reached, ``leaf`` = (pa, size,
    (readable, writable, executable), table attributes); ``cont_group`` is the
    entries of the leaf's contiguous-hint group (0: no hint honoured)."""
    pa, size, (readable, writable, executable), table_attrs = leaf
    return WalkResult(va, pa, level, size, [] if chain is None else chain, descriptor,
                      readable, writable, executable, asid, ng, region,
                      None if kind is None else _FAULTS[(kind, level)], table_attrs,
                      cont_group > 0, cont_group or 1)


# Region states
_REGION_OK = 0
_REGION_FAULT_L0 = 1  # TnSZ out of range or EPDn set


class Walker:
    """The EL1&0 stage-1 walk for one TCR_EL1 value, with its constants precomputed.

    Keep one per TCR value on a hot path (the MMU hook); ``walk()`` below caches them.
    """

    __slots__ = ("_regions", "tcr")

    def __init__(self, tcr: int) -> None:
        t = decode_tcr(tcr)
        self.tcr = t
        oa_bits = t.oa_bits
        self._regions = (
            self._region(t.t0sz, t.tg0, t.epd0, t.tbi0, oa_bits, 0),
            self._region(t.t1sz, t.tg1, t.epd1, t.tbi1, oa_bits, 1),
        )

    @staticmethod
    def _region(txsz: int, granule: int, epd: bool, tbi: bool, oa_bits: int, upper: int):
        va_bits = 64 - txsz
        if epd or not MIN_VA_BITS <= va_bits <= MAX_VA_BITS:
            return (_REGION_FAULT_L0,)
        g = Geometry(granule, va_bits)
        top_mask = (1 << ((56 if tbi else 64) - va_bits)) - 1
        expected_top = top_mask if upper else 0
        oa_excess = ~((1 << oa_bits) - 1) & ((1 << OA_BITS) - 1)
        # TTBR.BADDR bits below the top table's size are ignored (RES0).
        align = max(g.top_table_size, 2)
        baddr_mask = TTBR_BADDR_MASK & ~(align - 1)
        table_mask = ADDR_MASK & ~(g.granule - 1)
        steps = []
        for level in range(g.start_level, 4):
            shift = g.shifts[level]
            index_mask = g.entries_at(level) - 1
            # kind: 0 = table or reserved block, 1 = table or block, 2 = page level
            kind = 2 if level == 3 else (1 if g.block_allowed(level) else 0)
            leaf_mask = ADDR_MASK & ~((1 << shift) - 1)
            steps.append((level, shift, index_mask, kind, leaf_mask, 1 << shift,
                          g.cont_entries(level)))
        return (_REGION_OK, va_bits, top_mask, expected_top, baddr_mask, oa_excess,
                table_mask, tuple(steps))

    def walk(self, read_u64: ReadU64, ttbr0: int, ttbr1: int, va: int, access: int,
             el: int) -> WalkResult:
        """Translate ``va`` for ``access`` (Access: 0 read, 1 write, 2 fetch; anything
        else raises ConfigError once a leaf is reached) at ``el`` (0, or non-zero = EL1).

        ``read_u64(pa)`` reads a descriptor from physical memory; a LookupError from it
        (PA outside RAM) becomes a synchronous external abort on the walk.
        """
        upper = (va >> 55) & 1
        asid = current_asid(self.tcr, ttbr0, ttbr1)
        region = self._regions[upper]
        if region[0]:
            return _walk_result(va, asid, upper, FaultKind.TRANSLATION)
        _, va_bits, top_mask, expected_top, baddr_mask, oa_excess, table_mask, steps = region
        if (va >> va_bits) & top_mask != expected_top:
            return _walk_result(va, asid, upper, FaultKind.TRANSLATION)
        table = (ttbr1 if upper else ttbr0) & TTBR_BADDR_MASK
        if table & oa_excess:
            return _walk_result(va, asid, upper, FaultKind.ADDRESS_SIZE)
        table &= baddr_mask
        chain = []
        append = chain.append
        table_attrs = 0
        # The leaf code after the loop uses the last step's leaf_mask and size.
        for level, shift, index_mask, kind, leaf_mask, size, cont in steps:  # noqa: B007
            index = (va >> shift) & index_mask
            dpa = table + index * 8
            try:
                desc = read_u64(dpa)
            except LookupError:
                return _walk_result(va, asid, upper, FaultKind.WALK_EXTERNAL_ABORT, level, chain,
                                    chain[-1][4] if chain else 0)
            append((level, table, index, dpa, desc))
            if not desc & DESC_VALID:
                return _walk_result(va, asid, upper, FaultKind.TRANSLATION, level, chain, desc)
            if desc & DESC_TABLE:
                if kind != 2:
                    table_attrs |= desc
                    table = desc & table_mask
                    if table & oa_excess:
                        return _walk_result(va, asid, upper, FaultKind.ADDRESS_SIZE, level,
                                            chain, desc)
                    continue
            elif kind != 1:
                # A block encoding where the granule allows none is reserved.
                return _walk_result(va, asid, upper, FaultKind.TRANSLATION, level, chain, desc)
            break
        # The leaf: a block, or a page at level 3.
        oa = desc & leaf_mask
        ng = bool(desc & DESC_NG)
        if oa & oa_excess:
            return _walk_result(va, asid, upper, FaultKind.ADDRESS_SIZE, level, chain, desc, ng)
        # AArch64.S1DirectBasePermissions(), see the module docstring.
        read_only = desc & DESC_RDONLY or table_attrs & TABLE_AP_RO
        el0 = desc & DESC_USER and not table_attrs & TABLE_AP_NO_EL0
        if el:
            r = True
            w = not read_only
            x = not (desc & DESC_PXN or table_attrs & TABLE_PXN or (el0 and not read_only))
        else:
            r = bool(el0)
            w = r and not read_only
            x = not (desc & DESC_UXN or table_attrs & TABLE_UXN)
        if access == 0:
            allowed = r
        elif access == 1:
            allowed = w
        elif access == 2:
            allowed = x
        else:
            raise ConfigError(f"access {access!r} is not Access.READ, WRITE or FETCH")
        if not desc & DESC_AF:
            fault_kind = FaultKind.ACCESS_FLAG
        elif not allowed:
            fault_kind = FaultKind.PERMISSION
        else:
            fault_kind = None
        # The hint is honoured only where the granule defines a group size for
        # the level (0: none, e.g. a 1 GiB block); a hint elsewhere is ignored.
        group = cont if desc & DESC_CONT else 0
        return _walk_result(va, asid, upper, fault_kind, level, chain, desc, ng,
                            (oa | (va & (size - 1)), size, (r, w, x),
                             table_attrs & TABLE_ATTR_MASK), group)


@lru_cache(maxsize=16)
def walker_for(tcr: int) -> Walker:
    """The Walker of a TCR value, memoised (a pure function of ``tcr``)."""
    return Walker(tcr)


def walk(read_u64: ReadU64, tcr: int, ttbr0: int, ttbr1: int, va: int, access: int,
         el: int) -> WalkResult:
    """Translate ``va`` through the tables TCR/TTBR0/TTBR1 describe; see Walker.walk."""
    return walker_for(tcr).walk(read_u64, ttbr0, ttbr1, va, access, el)


# -------------------------------------------------------------------------------- listing


class TableMemory(Protocol):
    """Physical memory as the table lister (and emu.kernel.mmu's builder) needs it."""

    def read_u64(self, pa: int) -> int: ...

    def write_u64(self, pa: int, value: int) -> None: ...


@dataclass(frozen=True)
class Mapping:
    """One valid leaf of a table tree (or, from coalesce_mappings, a run of them)."""

    va: int
    pa: int
    size: int
    level: int
    descriptor: int
    table_attrs: int = 0

    @property
    def prot(self) -> Prot:
        return Prot.from_desc(self.descriptor)

    @property
    def end(self) -> int:
        return self.va + self.size

    def permissions(self, el: int) -> tuple[bool, bool, bool]:
        """(readable, writable, executable) at ``el``, table attributes included."""
        return leaf_permissions(self.descriptor, self.table_attrs, el)


def leaf_mappings(mem: TableMemory, geometry: Geometry, pgd_pa: int, *,
                  upper: bool = True) -> list[Mapping]:
    """Every valid leaf reachable from ``pgd_pa``, in VA order.

    ``upper`` says whether the tree is a TTBR1 (kernel) or TTBR0 tree, which fixes
    the VAs reported. Reserved encodings are skipped as the walk would fault on
    them. A table pointer outside RAM raises GuestFault, and so does a table
    reached twice (a loop, or one table shared by two entries, which Linux never
    builds): listing such a tree would take time exponential in its depth.
    """
    out: list[Mapping] = []
    base = geometry.upper_base if upper else 0
    _list_level(mem, geometry, pgd_pa, geometry.start_level, base, 0, out, {pgd_pa})
    return out


def _list_level(mem, g, table_pa, level, va_base, table_attrs, out, seen) -> None:
    shift = g.shifts[level]
    granule_mask = ~(g.granule - 1)
    leaf_mask = ADDR_MASK & ~((1 << shift) - 1)
    for index in range(g.entries_at(level)):
        dpa = table_pa + index * 8
        try:
            desc = mem.read_u64(dpa)
        except LookupError:
            raise GuestFault(
                f"level-{level} translation table at {table_pa:#x} is outside RAM"
            ) from None
        if not desc & DESC_VALID:
            continue
        va = va_base + (index << shift)
        if level < 3 and desc & DESC_TABLE:
            next_table = desc & ADDR_MASK & granule_mask
            if next_table in seen:
                raise GuestFault(
                    f"level-{level + 1} translation table at {next_table:#x} is reached twice "
                    f"(from the level-{level} table at {table_pa:#x})"
                )
            seen.add(next_table)
            _list_level(mem, g, next_table, level + 1, va,
                        table_attrs | (desc & TABLE_ATTR_MASK), out, seen)
        elif level == 3 or g.block_allowed(level):
            out.append(Mapping(va, desc & leaf_mask, 1 << shift, level, desc, table_attrs))


def coalesce_mappings(mappings: list[Mapping]) -> list[Mapping]:
    """Merge neighbours that continue each other in VA and PA with equal attributes.

    A merged Mapping keeps the level and descriptor of its first leaf.
    """
    out: list[Mapping] = []
    for m in mappings:
        if out:
            last = out[-1]
            if (last.end == m.va and last.pa + last.size == m.pa
                    and (last.descriptor ^ m.descriptor) & LEAF_ATTR_MASK == 0
                    and last.table_attrs == m.table_attrs):
                out[-1] = Mapping(last.va, last.pa, last.size + m.size, last.level,
                                  last.descriptor, last.table_attrs)
                continue
        out.append(m)
    return out
