"""Fixtures for the translation-table tests: a sparse guest RAM and a table allocator.

The RAM is deliberately independent of emu.hw.physmem so the walk and builder are
tested against nothing but their own contract (read_u64/write_u64, LookupError
outside RAM); one test in test_pagetable_walk.py also runs on the real PhysMem.
"""

from __future__ import annotations

import pytest

from emu.hw.pagetable import Geometry

RAM_BASE = 0x4000_0000
RAM_SIZE = 1 << 30
# The seven (granule, VA bits) layouts of the project (emu.kernel.layout.LAYOUTS),
# repeated here so hw tests do not depend on the kernel package.
GEOMETRIES = [Geometry(g, v) for g, v in
              ((4096, 39), (4096, 48), (16384, 36), (16384, 47), (16384, 48),
               (65536, 42), (65536, 48))]


class SparseRam:
    """Guest RAM [base, base + size) holding 64-bit words, zero until written."""

    def __init__(self, base: int = RAM_BASE, size: int = RAM_SIZE) -> None:
        self.base = base
        self.end = base + size
        self.words: dict[int, int] = {}
        self.reads = 0

    def _check(self, pa: int) -> None:
        if not self.base <= pa <= self.end - 8:
            raise IndexError(f"PA {pa:#x} is not RAM")
        if pa & 7:
            raise ValueError(f"PA {pa:#x} is not 8-byte aligned")

    def read_u64(self, pa: int) -> int:
        self._check(pa)
        self.reads += 1
        return self.words.get(pa, 0)

    def write_u64(self, pa: int, value: int) -> None:
        self._check(pa)
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{value:#x} is not a 64-bit value")
        self.words[pa] = value


class TableAllocator:
    """Hands out zeroed, granule-aligned tables from the top of a SparseRam, downwards."""

    def __init__(self, ram: SparseRam, granule: int) -> None:
        self.ram = ram
        self.granule = granule
        self.next = ram.end
        self.allocated: list[int] = []

    def __call__(self) -> int:
        self.next -= self.granule
        if self.next < self.ram.base:
            raise MemoryError("test RAM exhausted")
        self.allocated.append(self.next)
        return self.next


@pytest.fixture
def ram() -> SparseRam:
    return SparseRam()


@pytest.fixture(params=GEOMETRIES, ids=[g.name for g in GEOMETRIES])
def layout_geometry(request: pytest.FixtureRequest) -> Geometry:
    """Each of the seven geometries the project supports (4k-39 ... 64k-48)."""
    return request.param


@pytest.fixture
def new_ram():
    """Factory for further SparseRam instances: new_ram(base=..., size=...)."""
    return SparseRam


@pytest.fixture
def table_allocator():
    """Factory: table_allocator(ram, granule) -> a TableAllocator (callable -> table PA)."""
    return TableAllocator
