"""Geometry: levels, shifts, table sizes and block levels per granule and VA size,
checked against values worked out by hand from the ARM ARM tables."""

from __future__ import annotations

import pytest

from emu.errors import ConfigError
from emu.hw.pagetable import MASK64, Geometry

KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# name: (levels, start level, PGDIR_SIZE, top-level entries, block levels)
HAND = {
    "4k-39": (3, 1, 1 * GIB, 512, (1, 2)),
    "4k-48": (4, 0, 512 * GIB, 512, (1, 2)),
    "16k-36": (2, 2, 32 * MIB, 2048, (2,)),
    "16k-47": (3, 1, 64 * GIB, 2048, (2,)),
    "16k-48": (4, 0, 128 * TIB, 2, (2,)),
    "64k-42": (2, 2, 512 * MIB, 8192, (2,)),
    "64k-48": (3, 1, 4 * TIB, 64, (2,)),
}

# Per-level span of one entry, by granule (level 0..3), from the ARM ARM.
ENTRY_SPAN = {
    4096: (512 * GIB, 1 * GIB, 2 * MIB, 4 * KIB),
    16384: (128 * TIB, 64 * GIB, 32 * MIB, 16 * KIB),
    65536: (None, 4 * TIB, 512 * MIB, 64 * KIB),
}


def test_the_seven_layouts_match_hand_values(layout_geometry: Geometry) -> None:
    g = layout_geometry
    levels, start, pgdir, top_entries, blocks = HAND[g.name]
    assert (g.levels, g.start_level, g.pgdir_size, g.top_entries, g.block_levels) == (
        levels, start, pgdir, top_entries, blocks)
    assert g.top_table_size == top_entries * 8
    assert g.table_size == g.granule and g.entries == g.granule // 8
    for level in range(start, 4):
        assert g.level_size(level) == ENTRY_SPAN[g.granule][level]
    assert Geometry.from_name(g.name) == g


def _hand_start_level(granule: int, va_bits: int) -> int:
    # ARM ARM initial lookup level by TnSZ, written out per granule.
    if granule == 4096:
        return 0 if va_bits >= 40 else 1 if va_bits >= 31 else 2
    if granule == 16384:
        return 0 if va_bits == 48 else 1 if va_bits >= 37 else 2 if va_bits >= 26 else 3
    return 1 if va_bits >= 43 else 2 if va_bits >= 30 else 3


@pytest.mark.parametrize("granule", [4096, 16384, 65536])
@pytest.mark.parametrize("va_bits", range(25, 49))
def test_every_va_size_covers_exactly_its_bits(granule: int, va_bits: int) -> None:
    g = Geometry(granule, va_bits)
    assert g.start_level == _hand_start_level(granule, va_bits)
    index_bits = sum((g.entries_at(level) - 1).bit_length() for level in range(g.start_level, 4))
    assert index_bits + g.page_shift == va_bits
    assert 1 <= (g.top_entries - 1).bit_length() + 1 <= g.bits_per_level + 1
    assert g.upper_base == MASK64 ^ ((1 << va_bits) - 1)
    assert g.region_of(0) == 0 and g.region_of(MASK64) == 1


@pytest.mark.parametrize(("granule", "va_bits"), [(8192, 39), (4096, 24), (4096, 49),
                                                  (65536, 52), (16384, 0)])
def test_invalid_geometry_is_a_config_error(granule: int, va_bits: int) -> None:
    with pytest.raises(ConfigError):
        Geometry(granule, va_bits)


@pytest.mark.parametrize("name", ["4k", "4-48", "4k-abc", "k-48", "8k-48"])
def test_bad_layout_names(name: str) -> None:
    with pytest.raises(ConfigError):
        Geometry.from_name(name)


def test_indices_of_a_kernel_address_4k_48() -> None:
    g = Geometry(4096, 48)
    va = 0xFFFF_8080_1234_5678
    # bits 47:39, 38:30, 29:21, 20:12 worked out by hand
    assert [g.index(va, level) for level in range(4)] == [0x101, 0x000, 0x091, 0x145]
    assert g.pgd_index(va) == 0x101
    assert g.cont_entries(3) == 16 and g.cont_entries(1) == 0


def test_16k_48_top_level_has_two_entries() -> None:
    g = Geometry(16384, 48)
    assert g.pgd_index(0xFFFF_0000_0000_0000) == 0
    assert g.pgd_index(0xFFFF_8000_0000_0000) == 1
    assert g.cont_entries(3) == 128 and g.cont_entries(2) == 32


def test_region_of_rejects_the_hole() -> None:
    g = Geometry(4096, 39)
    assert g.region_of((1 << 39) - 1) == 0
    with pytest.raises(ConfigError, match="neither half"):
        g.region_of(1 << 39)
    with pytest.raises(ConfigError):
        g.level_size(0)
