"""Fuzz target ``pagetable``: the stage-1 walk (emu.hw.pagetable.walk) and the
table lister (leaf_mappings) on random guest memory.

An input is a header (TCR_EL1, TTBR0, TTBR1, VA, access, EL, the size of the
RAM window) followed by RAM contents; RAM repeats its contents over the
window and every PA outside it is no memory (LookupError), so random table
pointers land both inside and outside RAM. Inputs are raw random bytes and
real tables built by create_pgd_mapping for one of the seven layouts, then
damaged: random descriptors, tables pointing at themselves or their parent
(loops), pointers past RAM, reserved encodings, flipped attribute bits.

Properties: the walk always returns a WalkResult (a translation or a fault,
never an exception, never a hang) that agrees field by field with the small
reference walk below, written from the ARM ARM rules and the modelling
choices pagetable.py documents; leaf_mappings gives mappings or GuestFault.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from emu.errors import GuestFault
from emu.hw.pagetable import FaultKind, Geometry, Walker, leaf_mappings, make_tcr, make_ttbr
from emu.kernel.mmu import create_pgd_mapping
from emu.kernel.pgtable_prot import PAGE_KERNEL, PAGE_KERNEL_ROX, PAGE_USER, PAGE_USER_EXEC
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import interesting_int

HEADER = struct.Struct("<QQQQBBB")
RAM_BASE = 0x4000_0000
LAYOUTS = ((4096, 39), (4096, 48), (16384, 36), (16384, 47), (16384, 48), (65536, 42),
           (65536, 48))  # fmt: skip
MASK64 = (1 << 64) - 1
LISTING_WINDOW = 4 << 20
"""leaf_mappings runs only on RAM windows up to this size: with every table reached once,
it reads each RAM word at most once, so window / 8 reads bound it."""


class Ram:
    """``data`` repeated over [base, base + window); LookupError elsewhere."""

    def __init__(self, data: bytes, base: int, window: int) -> None:
        self.data = data[: len(data) & ~7] or bytes(8)
        self.base = base
        self.window = window
        self.reads = 0

    def read_u64(self, pa: int) -> int:
        self.reads += 1
        if not self.base <= pa < self.base + self.window:
            raise IndexError(f"PA {pa:#x} is not RAM")
        at = (pa - self.base) % len(self.data) & ~7
        return int.from_bytes(self.data[at : at + 8], "little")


def decode_input(data: bytes) -> tuple[int, int, int, int, int, int, Ram]:
    head = data[: HEADER.size].ljust(HEADER.size, b"\0")
    tcr, ttbr0, ttbr1, va, access, el, window_log2 = HEADER.unpack(head)
    window = 1 << (12 + window_log2 % 37)  # 4 KiB .. 256 TiB
    return tcr, ttbr0, ttbr1, va, access % 3, el & 1, Ram(data[HEADER.size :], RAM_BASE, window)


# ---------------------------------------------------------------------------- inputs


class _DictRam:
    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def read_u64(self, pa: int) -> int:
        return self.words.get(pa, 0)

    def write_u64(self, pa: int, value: int) -> None:
        self.words[pa] = value


@st.composite
def built_tables(draw: st.DrawFn) -> bytes:
    """Real tables for one layout, damaged, with a VA near a mapping."""
    granule, va_bits = draw(st.sampled_from(LAYOUTS))
    g = Geometry(granule, va_bits)
    ram = _DictRam()
    size = 64 * granule  # room for a few tables; the RAM window repeats it
    tables = iter(range(RAM_BASE + granule, RAM_BASE + size, granule))
    upper = draw(st.booleans())
    base = g.upper_base if upper else 0
    pgd = RAM_BASE
    vas = []
    for _ in range(draw(st.integers(1, 3))):
        level = draw(st.sampled_from(g.leaf_levels))
        span = g.level_size(level) * draw(st.integers(1, 3))
        va = base + draw(st.integers(0, 7)) * g.level_size(g.start_level) // 8
        va -= va % g.level_size(level)
        prot = draw(st.sampled_from((PAGE_KERNEL, PAGE_KERNEL_ROX, PAGE_USER, PAGE_USER_EXEC)))
        try:
            create_pgd_mapping(ram, g, pgd, va, RAM_BASE + (va & 0xFFFFFFF), span, prot,
                               lambda: next(tables), block_mappings=draw(st.booleans()))  # fmt: skip
        except (Exception, StopIteration):  # out of table space, or a refused overlap
            continue
        vas.append(va + draw(st.integers(0, span - 1)))
    image = bytearray(size)
    for pa, value in ram.words.items():
        if RAM_BASE <= pa < RAM_BASE + size:
            image[pa - RAM_BASE : pa - RAM_BASE + 8] = value.to_bytes(8, "little")
    slots = sorted(ram.words) or [RAM_BASE]
    for _ in range(draw(st.integers(0, 4))):
        pa = draw(st.sampled_from(slots)) - RAM_BASE
        kind = draw(st.sampled_from(("random", "self", "parent", "outside", "flip", "block")))
        old = int.from_bytes(image[pa : pa + 8], "little")
        table_of_slot = RAM_BASE + pa - pa % granule
        value = {
            "random": draw(interesting_int(8)),
            "self": table_of_slot | 3,
            "parent": RAM_BASE | 3,
            "outside": (RAM_BASE + size + draw(st.integers(0, 1 << 40)) * granule) & (
                ((1 << 48) - 1) & ~(granule - 1)) | 3,
            "flip": old ^ (1 << draw(st.integers(0, 63))),
            "block": old & ~2,
        }[kind]
        image[pa : pa + 8] = value.to_bytes(8, "little")
    tcr = make_tcr(g, tbi1=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:
        tcr ^= 1 << draw(st.integers(0, 40))
    va = draw(st.one_of(st.sampled_from(vas or [base]), interesting_int(8)))
    ttbr = make_ttbr(pgd, asid=draw(st.integers(0, 0xFFFF)))
    window_log2 = draw(st.sampled_from((8, 10, 36)))  # RAM 1 MiB / 4 MiB / 256 TiB
    header = HEADER.pack(tcr, ttbr, ttbr, va, draw(st.integers(0, 2)), draw(st.integers(0, 1)),
                         window_log2)  # fmt: skip
    return header + bytes(image)


@st.composite
def random_memory(draw: st.DrawFn) -> bytes:
    granule, va_bits = draw(st.sampled_from(LAYOUTS))
    tcr = draw(st.one_of(interesting_int(8), st.just(make_tcr(Geometry(granule, va_bits)))))
    header = HEADER.pack(tcr, draw(interesting_int(8)), draw(interesting_int(8)),
                         draw(interesting_int(8)), draw(st.integers(0, 255)),
                         draw(st.integers(0, 255)), draw(st.integers(0, 255)))  # fmt: skip
    words = draw(st.lists(st.one_of(interesting_int(8), st.integers(0, 0xFFF).map(
        lambda low: RAM_BASE | low)), max_size=64))  # fmt: skip
    return header + b"".join(w.to_bytes(8, "little") for w in words)


def strategy() -> st.SearchStrategy[bytes]:
    return st.one_of(built_tables(), built_tables(), random_memory(), st.binary(max_size=200))


def seeds() -> list[bytes]:
    g = Geometry(4096, 48)
    ram = _DictRam()
    tables = iter(range(RAM_BASE + 4096, RAM_BASE + 64 * 4096, 4096))
    create_pgd_mapping(ram, g, RAM_BASE, g.upper_base, RAM_BASE, 0x20_0000, PAGE_KERNEL,
                       lambda: next(tables))  # fmt: skip
    image = bytearray(64 * 4096)
    for pa, value in ram.words.items():
        image[pa - RAM_BASE : pa - RAM_BASE + 8] = value.to_bytes(8, "little")
    ttbr = make_ttbr(RAM_BASE)
    return [HEADER.pack(make_tcr(g), ttbr, ttbr, g.upper_base + 0x1234, 0, 1, 10) + bytes(image)]


# ----------------------------------------------------------------- the reference walk

_PAGE_SHIFT = {4096: 12, 16384: 14, 65536: 16}
_TG0 = {0: 4096, 1: 65536, 2: 16384}
_TG1 = {2: 4096, 1: 16384, 3: 65536}
_IPS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}


@dataclass
class Expected:
    pa: int | None
    level: int
    size: int
    fault: tuple[FaultKind, int] | None
    perms: tuple[bool, bool, bool] | None
    descriptors: list[int]
    asid: int


def _bits(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def reference_walk(read_u64, tcr: int, ttbr0: int, ttbr1: int, va: int, access: int,
                   el: int) -> Expected:  # fmt: skip
    """The EL1&0 stage-1 walk written out step by step from the architecture's rules."""
    upper = _bits(va, 55, 55)
    a1, as16 = _bits(tcr, 22, 22), _bits(tcr, 36, 36)
    asid = _bits(ttbr1 if a1 else ttbr0, 63, 48) & (0xFFFF if as16 else 0xFF)
    if upper:
        txsz, epd, tbi = _bits(tcr, 21, 16), _bits(tcr, 23, 23), _bits(tcr, 38, 38)
        granule, ttbr = _TG1.get(_bits(tcr, 31, 30), 4096), ttbr1
    else:
        txsz, epd, tbi = _bits(tcr, 5, 0), _bits(tcr, 7, 7), _bits(tcr, 37, 37)
        granule, ttbr = _TG0.get(_bits(tcr, 15, 14), 4096), ttbr0
    oa_bits = min(_IPS.get(_bits(tcr, 34, 32), 48), 48)
    va_bits = 64 - txsz

    def fault(kind: FaultKind, level: int, descs: list[int], pa=None, size=0, perms=None):
        return Expected(pa, level, size, (kind, level), perms, descs, asid)

    if epd or not 25 <= va_bits <= 48:
        return fault(FaultKind.TRANSLATION, 0, [])
    top = _bits(va, 55 if tbi else 63, va_bits)
    if top != (((1 << ((56 if tbi else 64) - va_bits)) - 1) if upper else 0):
        return fault(FaultKind.TRANSLATION, 0, [])
    page_shift = _PAGE_SHIFT[granule]
    stride = page_shift - 3
    level = 3 - (va_bits - 1 - page_shift) // stride
    baddr = _bits(ttbr, 47, 1) << 1
    if baddr >> oa_bits:
        return fault(FaultKind.ADDRESS_SIZE, 0, [])
    shift = page_shift + stride * (3 - level)
    top_bytes = 8 << (va_bits - shift)
    table = baddr & ~(max(top_bytes, 2) - 1)
    ro = no_el0 = pxn_table = uxn_table = False
    descs: list[int] = []
    while True:
        shift = page_shift + stride * (3 - level)
        entries_bits = (va_bits - shift) if not descs else stride
        index = _bits(va, shift + entries_bits - 1, shift)
        try:
            desc = read_u64(table + 8 * index)
        except LookupError:
            return fault(FaultKind.WALK_EXTERNAL_ABORT, level, descs)
        descs.append(desc)
        if not desc & 1:
            return fault(FaultKind.TRANSLATION, level, descs)
        is_table_bit = bool(desc & 2)
        if level < 3 and is_table_bit:
            nxt = _bits(desc, 47, page_shift) << page_shift
            if nxt >> oa_bits:
                return fault(FaultKind.ADDRESS_SIZE, level, descs)
            ro |= bool(desc >> 62 & 1)
            no_el0 |= bool(desc >> 61 & 1)
            uxn_table |= bool(desc >> 60 & 1)
            pxn_table |= bool(desc >> 59 & 1)
            table = nxt
            level += 1
            continue
        block_ok = level in ((1, 2) if granule == 4096 else (2,))
        if (level == 3 and not is_table_bit) or (level < 3 and not block_ok):
            return fault(FaultKind.TRANSLATION, level, descs)
        break
    size = 1 << shift
    oa = _bits(desc, 47, shift) << shift
    if oa >> oa_bits:
        return fault(FaultKind.ADDRESS_SIZE, level, descs)
    read_only = bool(desc >> 7 & 1) or ro
    el0 = bool(desc >> 6 & 1) and not no_el0
    if el:
        perms = (True, not read_only,
                 not (desc >> 53 & 1 or pxn_table or (el0 and not read_only)))
    else:
        perms = (el0, el0 and not read_only, not (desc >> 54 & 1 or uxn_table))
    pa = oa | (va & (size - 1))
    if not desc >> 10 & 1:
        return fault(FaultKind.ACCESS_FLAG, level, descs, pa, size, perms)
    if not perms[access]:
        return fault(FaultKind.PERMISSION, level, descs, pa, size, perms)
    return Expected(pa, level, size, None, perms, descs, asid)


# ----------------------------------------------------------------------------- run


def run(data: bytes) -> str:
    tcr, ttbr0, ttbr1, va, access, el, ram = decode_input(data)
    # A fresh Walker, not the memoised one: a case must not depend on earlier cases.
    result = Walker(tcr).walk(ram.read_u64, ttbr0, ttbr1, va, access, el)
    want = reference_walk(ram.read_u64, tcr, ttbr0, ttbr1, va, access, el)
    got_fault = (result.fault.kind, result.fault.level) if result.fault else None
    got_perms = (result.readable, result.writable, result.executable)
    checks = (
        ("fault", got_fault, want.fault),
        ("pa", result.pa, want.pa),
        ("descriptors", [c[4] for c in result.chain], want.descriptors),
        ("asid", result.asid, want.asid),
    )
    for what, got, expected in checks:
        if got != expected:
            raise PropertyViolation(f"walk {what} differs from the reference: {got!r} != "
                                    f"{expected!r} (va {va:#x}, tcr {tcr:#x})")  # fmt: skip
    if want.pa is not None and (result.size, got_perms, result.level) != (
        want.size, want.perms, want.level
    ):
        raise PropertyViolation(f"walk size/permissions/level differ from the reference at "
                                f"va {va:#x}")  # fmt: skip
    levels = [c[0] for c in result.chain]
    if levels != sorted(set(levels)) or len(levels) > 4:
        raise PropertyViolation(f"walk chain levels {levels} are not one per level")
    listed = _list_tables(tcr, ttbr1, ram)
    return f"{'translated' if result.ok else 'fault'}; tables {listed}"


def _list_tables(tcr: int, ttbr1: int, ram: Ram) -> str:
    walker = Walker(tcr)
    try:
        g = walker.tcr.geometry1
    except Exception:  # a TCR no layout describes: nothing to list
        return "not listed"
    if ram.window > LISTING_WINDOW:
        return "not listed"
    budget = ram.reads + ram.window // 8 + g.top_entries

    def read(pa: int) -> int:
        if ram.reads > budget:
            raise PropertyViolation("leaf_mappings reads without end (a table loop?)")
        return ram.read_u64(pa)

    class View:
        read_u64 = staticmethod(read)

    try:
        leaf_mappings(View(), g, ttbr1 & ((1 << 48) - 1) & ~(g.top_table_size - 1))
    except GuestFault:
        return "listing refused"
    return "listed"


TARGET = Target(
    name="pagetable",
    summary="stage-1 walk against a reference walk, leaf_mappings, on random guest memory",
    documented=(GuestFault,),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=10.0,
)
