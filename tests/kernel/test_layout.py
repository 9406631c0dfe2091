"""Kernel VA layouts: the seven layouts against values worked out by hand from
ktext-series.md section 2.8 and memory.h, the series' sanity check (patch 05), and
the layouts that overflow (16K/48), overlap the linear map (64K/42) or cannot hold
the RAM."""

from __future__ import annotations

import pytest

from emu.errors import ConfigError
from emu.kernel.layout import (
    KCONFIG_REFUSAL_16K_48,
    LAYOUTS,
    SANITY_CHECK_MODULES,
    SANITY_CHECK_VMALLOC,
    SERIES,
    UPSTREAM,
    boot_layout,
    boot_layout_report,
    check_layout,
    format_layout_report,
    image_problems,
    kernel_layout,
    kernel_slot_indices,
    layout_checks,
    layout_problems,
    linear_map_problems,
    replication_refusal,
    replication_sanity_check,
)

MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40

# name: PAGE_OFFSET, PAGE_END, PGDIR_SIZE, KIMAGE_OFFSET, KIMAGE_VADDR, MODULES_VADDR,
#       VMALLOC_START  (series layout; 2.8: "modules [PAGE_END, +2G), kernel at
#       PAGE_END+2G, vmalloc at +4G" for 4K/39, "kernel at PAGE_END+512G, vmalloc at +1T"
#       for 4K/48, ...)
HAND = {
    "4k-39": (0xFFFF_FF80_0000_0000, 0xFFFF_FFC0_0000_0000, 1 * GIB, 2 * GIB,
              0xFFFF_FFC0_8000_0000, 0xFFFF_FFC0_0000_0000, 0xFFFF_FFC1_0000_0000),
    "4k-48": (0xFFFF_0000_0000_0000, 0xFFFF_8000_0000_0000, 512 * GIB, 512 * GIB,
              0xFFFF_8080_0000_0000, 0xFFFF_807F_8000_0000, 0xFFFF_8100_0000_0000),
    "16k-36": (0xFFFF_FFF0_0000_0000, 0xFFFF_FFF8_0000_0000, 32 * MIB, 2 * GIB,
               0xFFFF_FFF8_8000_0000, 0xFFFF_FFF8_0000_0000, 0xFFFF_FFF9_0000_0000),
    "16k-47": (0xFFFF_8000_0000_0000, 0xFFFF_C000_0000_0000, 64 * GIB, 64 * GIB,
               0xFFFF_C010_0000_0000, 0xFFFF_C00F_8000_0000, 0xFFFF_C020_0000_0000),
    "16k-48": (0xFFFF_0000_0000_0000, 0xFFFF_8000_0000_0000, 128 * TIB, 128 * TIB,
               0x0, 0xFFFF_FFFF_8000_0000, 0x0000_8000_0000_0000),  # wraps
    "64k-42": (0xFFFF_FC00_0000_0000, 0xFFFF_FE00_0000_0000, 512 * MIB, 512 * MIB,
               0xFFFF_FE00_2000_0000, 0xFFFF_FDFF_A000_0000, 0xFFFF_FE00_4000_0000),
    "64k-48": (0xFFFF_0000_0000_0000, 0xFFFF_8000_0000_0000, 4 * TIB, 4 * TIB,
               0xFFFF_8400_0000_0000, 0xFFFF_83FF_8000_0000, 0xFFFF_8800_0000_0000),
}


def test_the_seven_layouts() -> None:
    assert list(LAYOUTS) == ["4k-39", "4k-48", "16k-36", "16k-47", "16k-48", "64k-42",
                             "64k-48"]
    assert [g.levels for g in LAYOUTS.values()] == [3, 4, 2, 3, 4, 2, 3]


@pytest.mark.parametrize("name", list(HAND))
def test_series_layout_by_hand(name: str) -> None:
    offset, end, pgdir, kimage_offset, kimage, modules, vmalloc = HAND[name]
    lay = kernel_layout(LAYOUTS[name])
    assert lay.variant == SERIES and lay.name == name
    assert (lay.page_offset, lay.page_end, lay.pgdir_size, lay.kimage_offset) == (
        offset, end, pgdir, kimage_offset)
    assert (lay.kimage_vaddr, lay.modules_vaddr, lay.vmalloc_start) == (kimage, modules,
                                                                        vmalloc)
    assert lay.modules_end == lay.kimage_vaddr
    assert lay.modules_vsize == 2 * GIB
    assert lay.wrapped == (name == "16k-48")


def test_top_of_the_address_space_4k_48_matches_v6_7_memory_rst() -> None:
    lay = kernel_layout(LAYOUTS["4k-48"])
    assert lay.vmalloc_end == 0xFFFF_FBFF_F000_0000
    assert lay.fixaddr_top == 0xFFFF_FBFF_FE00_0000
    assert (lay.pci_io_start, lay.pci_io_end) == (0xFFFF_FBFF_FE80_0000, 0xFFFF_FBFF_FF80_0000)
    assert (lay.vmemmap_start, lay.vmemmap_end) == (0xFFFF_FC00_0000_0000,
                                                    0xFFFF_FE00_0000_0000)
    names = [row[0] for row in lay.regions()]
    assert names[0] == "linear map" and names[-1] == "vmemmap"


def test_upstream_layout_16k_48() -> None:
    lay = kernel_layout(LAYOUTS["16k-48"], UPSTREAM)
    assert (lay.modules_vaddr, lay.modules_end) == (0xFFFF_8000_0000_0000, 0xFFFF_8000_8000_0000)
    assert lay.kimage_vaddr == lay.vmalloc_start == 0xFFFF_8000_8000_0000
    assert not lay.wrapped and layout_problems(lay) == []
    assert boot_layout(LAYOUTS["16k-48"]) == lay


@pytest.mark.parametrize("name", [n for n in HAND if n != "16k-48"])
def test_boot_layout_is_the_series_layout_where_it_works(name: str) -> None:
    g = LAYOUTS[name]
    assert boot_layout(g) == kernel_layout(g, SERIES)
    assert replication_refusal(boot_layout(g)) is None


def test_16k_48_overflows_and_replication_is_refused() -> None:
    g = LAYOUTS["16k-48"]
    problems = layout_problems(kernel_layout(g))
    assert any("overflows 64 bits and wraps to 0x0" in p for p in problems)
    assert any("KIMAGE_VADDR 0x0 is below PAGE_OFFSET" in p for p in problems)
    refusal = replication_refusal(boot_layout(g))
    assert "!(ARM64_16K_PAGES && ARM64_VA_BITS_48)" in refusal and "2 entries" in refusal
    # The series' own sanity check agrees on the fallback layout: kernel and modules
    # share the second (and last) L0 entry.
    lay = boot_layout(g)
    assert replication_sanity_check(lay, lay.kimage_vaddr, lay.kimage_vaddr + 40 * MIB) == (
        SANITY_CHECK_MODULES)
    assert kernel_slot_indices(lay, lay.kimage_vaddr, lay.kimage_vaddr + 40 * MIB) == (1, 1)


def test_upstream_layout_is_refused_for_replication_everywhere() -> None:
    lay = kernel_layout(LAYOUTS["4k-48"], UPSTREAM)
    assert "pre-series" in replication_refusal(lay)
    assert replication_sanity_check(lay, lay.kimage_vaddr, lay.kimage_vaddr + MIB) == (
        SANITY_CHECK_MODULES)
    assert any("modules area" in p for p in image_problems(lay, lay.kimage_vaddr,
                                                           lay.kimage_vaddr + MIB))


def test_64k_42_modules_overlap_the_linear_map() -> None:
    lay = kernel_layout(LAYOUTS["64k-42"])
    problems = layout_problems(lay)
    assert problems == [
        "64k-42: MODULES_VADDR 0xfffffdffa0000000 is 1.5 GiB below PAGE_END "
        "0xfffffe0000000000: the modules area overlaps the linear map"]
    # ...which patch 05's check does not see: modules start three slots below the kernel.
    assert replication_sanity_check(lay, lay.kimage_vaddr, lay.kimage_vaddr + 40 * MIB) is None


@pytest.mark.parametrize("name", ["4k-39", "4k-48", "16k-36", "16k-47", "64k-48"])
def test_working_layouts_have_no_problems(name: str) -> None:
    lay = kernel_layout(LAYOUTS[name])
    start, end = lay.kimage_vaddr, lay.kimage_vaddr + 40 * MIB
    assert layout_checks(lay, kimage_vaddr=start, kimage_end=end, phys_offset=0x4000_0000,
                         ram_end=0x4000_0000 + 8 * GIB) == []


def test_kernel_slots_of_16k_36_span_two_pgdirs() -> None:
    lay = kernel_layout(LAYOUTS["16k-36"])
    # (0xFFFFFFF880000000 >> 25) & 2047: PAGE_END is slot 1024, +2 GiB = +64 slots.
    assert kernel_slot_indices(lay, lay.kimage_vaddr, lay.kimage_vaddr + 40 * MIB) == (1088,
                                                                                       1089)
    # As in patch 18 KERNEL_END is _end itself: ending on a boundary claims one more slot.
    assert kernel_slot_indices(lay, lay.kimage_vaddr, lay.kimage_vaddr + 64 * MIB) == (1088,
                                                                                       1090)
    with pytest.raises(ConfigError):
        kernel_slot_indices(lay, lay.kimage_vaddr, lay.kimage_vaddr)


def test_sanity_check_fires_when_the_image_reaches_vmalloc() -> None:
    lay = kernel_layout(LAYOUTS["4k-39"])  # vmalloc two 1 GiB slots above the kernel
    start = lay.kimage_vaddr
    assert replication_sanity_check(lay, start, start + GIB + MIB) is None
    assert replication_sanity_check(lay, start, start + 2 * GIB) == SANITY_CHECK_VMALLOC
    problems = image_problems(lay, start, start + 2 * GIB + MIB)
    assert any("runs past VMALLOC_START 0xffffffc100000000" in p for p in problems)
    assert any("vmalloc area" in p and "shares a top-level slot" in p for p in problems)


def test_linear_map_too_small_for_the_ram() -> None:
    lay = kernel_layout(LAYOUTS["16k-36"])  # 32 GiB linear map
    assert linear_map_problems(lay, 0x4000_0000, 0x4000_0000 + 32 * GIB) == []
    assert linear_map_problems(lay, 0x4000_0000, 0x4000_0000 + 64 * GIB) == [
        "16k-36: RAM [0x40000000, 0x1040000000) spans 64 GiB but the linear map "
        "[PAGE_OFFSET, PAGE_END) holds only 32 GiB"]


def test_linear_map_translation() -> None:
    lay = kernel_layout(LAYOUTS["4k-48"])
    va = lay.linear_va(0x4123_4567, 0x4000_0000)
    assert va == 0xFFFF_0000_0123_4567 and lay.is_linear(va)
    assert lay.linear_pa(va, 0x4000_0000) == 0x4123_4567
    assert lay.kimage_voffset(0x4020_0000) == 0xFFFF_8080_0000_0000 - 0x4020_0000
    with pytest.raises(ConfigError):
        lay.linear_va(0x3FFF_F000, 0x4000_0000)
    with pytest.raises(ConfigError):
        lay.linear_pa(lay.kimage_vaddr, 0x4000_0000)
    with pytest.raises(ConfigError):
        kernel_layout(LAYOUTS["4k-48"], "rfc")


def test_sanity_check_messages_are_the_series_two() -> None:
    # Patch 05 has two checks, each with its own pr_warn, modules first.
    assert SANITY_CHECK_MODULES == (
        "Kernel is located in the same L0 index as modules - text replication disabled")
    assert SANITY_CHECK_VMALLOC == (
        "Kernel is located in the same L0 index as vmalloc - text replication disabled")
    upstream = kernel_layout(LAYOUTS["4k-48"], UPSTREAM)  # modules, kernel, vmalloc: one slot
    start = upstream.kimage_vaddr
    assert upstream.pgd_index(upstream.vmalloc_start) == upstream.pgd_index(start)
    assert replication_sanity_check(upstream, start, start + MIB) == SANITY_CHECK_MODULES


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_run_layout_report_says_what_scenarios_layouts_says(name: str) -> None:
    # `run` reports the series' layout checked exactly as `scenarios layouts` does.
    report = boot_layout_report(LAYOUTS[name])
    series = check_layout(kernel_layout(LAYOUTS[name]))
    assert report["series_problems"] == list(series.problems) == layout_problems(series.layout)
    assert report["series_kimage_vaddr_overflows"] is (name == "16k-48")
    assert report["series_modules_overlap_linear_map"] is (name == "64k-42")
    assert report["booted"] == (UPSTREAM if name == "16k-48" else SERIES)
    lines = format_layout_report(report)
    if name == "16k-48":
        assert "pre-series (v6.7) layout" in lines[0]
        assert any("only 2 entries" in line for line in lines)
        assert report["replication_refusal"] == KCONFIG_REFUSAL_16K_48
    elif name == "64k-42":
        assert "the modules area overlaps the linear map" in lines[1]
    else:
        assert lines == [] and report["replication_refusal"] is None
