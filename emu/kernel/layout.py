"""The arm64 kernel virtual memory layout (arch/arm64/include/asm/memory.h, pgtable.h).

Owns the layout constants per page size and VA size, as the REPLICATE_KTEXT v3 series
computes them (patches 03, 17, 18) and as upstream v6.7 did before it; the kernel
image's top-level slot range (kidx_base..kidx_end); and the checks that say, as
messages, why a layout cannot host replication or cannot work at all.

Series layout (patch 03, KIMAGE_OFFSET rewritten by 17, VMALLOC_START by 18):
    PAGE_OFFSET   = -(1 << VA_BITS)             linear map [PAGE_OFFSET, PAGE_END)
    PAGE_END      = -(1 << (VA_BITS_MIN - 1))   (VA_BITS_MIN = VA_BITS: no 52-bit VA)
    KIMAGE_OFFSET = MODULES_VSIZE for 4K < 4 levels, 16K < 3, 64K < 2; else PGDIR_SIZE
    KIMAGE_VADDR  = PAGE_END + KIMAGE_OFFSET
    MODULES_END   = KIMAGE_VADDR,  MODULES_VADDR = MODULES_END - MODULES_VSIZE (2 GiB)
    VMALLOC_START = MODULES_END + KIMAGE_OFFSET
Upstream v6.7 layout (the fallback that still boots 16K/48):
    MODULES_VADDR = PAGE_END, MODULES_END = MODULES_VADDR + 2 GiB,
    KIMAGE_VADDR = VMALLOC_START = MODULES_END
Both share the top of the address space as v6.7 has it (STRUCT_PAGE_MAX_SHIFT = 6):
    VMEMMAP_START = -(1 << (VA_BITS - VMEMMAP_SHIFT)), VMEMMAP_SHIFT = PAGE_SHIFT - 6
    VMALLOC_END   = VMEMMAP_START - 256 MiB   (the fixmap and PCI I/O sit in between)
    FIXADDR_TOP   = VMEMMAP_START - 32 MiB,  PCI_IO = [VMEMMAP_START - 24 MiB, -8 MiB)
Addresses are stored as the C code computes them, modulo 2**64, so a layout that
overflows shows the wrapped values and says so in ``wrapped``. KASAN, KASLR and
52-bit VAs are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.errors import ConfigError
from emu.hw.pagetable import MASK64, Geometry

SERIES = "series"
UPSTREAM = "upstream"
MODULES_VSIZE = 2 << 30
STRUCT_PAGE_MAX_SHIFT = 6
SZ_8M = 8 << 20
SZ_16M = 16 << 20
SZ_32M = 32 << 20
SZ_256M = 256 << 20

LAYOUTS: dict[str, Geometry] = {
    g.name: g
    for g in (
        Geometry(4096, 39),
        Geometry(4096, 48),
        Geometry(16384, 36),
        Geometry(16384, 47),
        Geometry(16384, 48),
        Geometry(65536, 42),
        Geometry(65536, 48),
    )
}

# Patch 05's two pr_warn()s in ktext_replication_init(), worded as the series has them.
SANITY_CHECK_MODULES = (
    "Kernel is located in the same L0 index as modules - text replication disabled"
)
SANITY_CHECK_VMALLOC = (
    "Kernel is located in the same L0 index as vmalloc - text replication disabled"
)
KCONFIG_REFUSAL_16K_48 = (
    "REPLICATE_KTEXT depends on NUMA && !(ARM64_16K_PAGES && ARM64_VA_BITS_48): with 16K "
    "pages and 48-bit VAs the top level (L0) has only 2 entries of 128 TiB each, one for "
    "the linear map and one for everything else, so the kernel cannot own a top-level "
    "entry (and PAGE_END + 128 TiB wraps to 0)"
)
UPSTREAM_REFUSAL = (
    "the pre-series (v6.7) layout puts the kernel image in the modules' top-level slot; "
    "text replication needs the series' layout (patch 03)"
)


def _u64(value: int) -> int:
    return value & MASK64


@dataclass(frozen=True)
class KernelLayout:
    """Kernel VA layout of one geometry; every address is a 64-bit value as C has it."""

    geometry: Geometry
    variant: str
    page_offset: int
    page_end: int
    kimage_offset: int  # upstream: KIMAGE_VADDR - PAGE_END (no such macro there)
    kimage_vaddr: int
    modules_vaddr: int
    modules_end: int
    vmalloc_start: int
    vmalloc_end: int
    fixaddr_top: int
    pci_io_start: int
    pci_io_end: int
    vmemmap_start: int
    vmemmap_end: int
    wrapped: bool  # some address above exceeded 64 bits and wrapped, as it would in C

    @property
    def name(self) -> str:
        return self.geometry.name

    @property
    def va_bits(self) -> int:
        return self.geometry.va_bits

    @property
    def pgdir_size(self) -> int:
        return self.geometry.pgdir_size

    @property
    def modules_vsize(self) -> int:
        return MODULES_VSIZE

    @property
    def linear_map_size(self) -> int:
        return _u64(self.page_end - self.page_offset)

    def pgd_index(self, va: int) -> int:
        return self.geometry.pgd_index(va)

    def fix_to_virt(self, idx: int) -> int:
        """__fix_to_virt(idx): FIXADDR_TOP - (idx << PAGE_SHIFT)."""
        return _u64(self.fixaddr_top - idx * self.geometry.granule)

    def fix_text_poke0(self) -> int:
        """FIX_TEXT_POKE0 of v6.7's enum fixed_addresses: after FIX_HOLE,
        FIX_FDT_END, the FDT's DIV_ROUND_UP(MAX_FDT_SIZE = 2 MiB, PAGE_SIZE) + 1
        slots and FIX_EARLYCON_MEM_BASE."""
        fix_fdt = 1 + -(-(2 << 20) // self.geometry.granule) + 1
        return fix_fdt + 2

    def fix_entry_tramp_text1(self) -> int:
        """FIX_ENTRY_TRAMP_TEXT1 (TRAMP_VALIAS): after FIX_TEXT_POKE0 and the
        TEXT4 (RELOCATABLE), TEXT3, TEXT2 slots; no APEI GHES slots."""
        return self.fix_text_poke0() + 4

    def is_linear(self, va: int) -> bool:
        return self.page_offset <= va < self.page_end

    def linear_va(self, pa: int, phys_offset: int) -> int:
        """__phys_to_virt(): the linear-map alias of ``pa``."""
        offset = pa - phys_offset
        if not 0 <= offset < self.linear_map_size:
            raise ConfigError(
                f"PA {pa:#x} is outside the linear map (PHYS_OFFSET {phys_offset:#x}, "
                f"{self.linear_map_size:#x} bytes)"
            )
        return offset | self.page_offset

    def linear_pa(self, va: int, phys_offset: int) -> int:
        """__lm_to_phys(): the PA behind a linear-map VA."""
        if not self.is_linear(va):
            raise ConfigError(f"VA {va:#x} is not a linear-map address")
        return va - self.page_offset + phys_offset

    def kimage_voffset(self, load_pa: int) -> int:
        """kimage_voffset for an image linked at KIMAGE_VADDR and loaded at ``load_pa``."""
        return _u64(self.kimage_vaddr - load_pa)

    def regions(self) -> list[tuple[str, int, int]]:
        """(name, start, end) of each area, in address order, for reports."""
        rows = [
            ("linear map", self.page_offset, self.page_end),
            ("modules", self.modules_vaddr, self.modules_end),
            ("kernel image", self.kimage_vaddr, self.vmalloc_start
             if self.variant == SERIES else self.kimage_vaddr),
            ("vmalloc", self.vmalloc_start, self.vmalloc_end),
            ("fixmap top", self.fixaddr_top, self.fixaddr_top),
            ("PCI I/O", self.pci_io_start, self.pci_io_end),
            ("vmemmap", self.vmemmap_start, self.vmemmap_end),
        ]
        return sorted(rows, key=lambda row: row[1])


def _kimage_offset(geometry: Geometry) -> int:
    levels_below = {4096: 4, 16384: 3, 65536: 2}[geometry.granule]
    return MODULES_VSIZE if geometry.levels < levels_below else geometry.pgdir_size


def kernel_layout(geometry: Geometry, variant: str = SERIES) -> KernelLayout:
    """The layout of ``geometry`` as the series (default) or upstream v6.7 computes it."""
    va_bits = geometry.va_bits
    page_offset = _u64(-(1 << va_bits))
    page_end = _u64(-(1 << (va_bits - 1)))
    if variant == SERIES:
        kimage_offset = _kimage_offset(geometry)
        kimage_raw = page_end + kimage_offset
        modules_end_raw = kimage_raw
        modules_vaddr_raw = modules_end_raw - MODULES_VSIZE
        vmalloc_start_raw = modules_end_raw + kimage_offset
    elif variant == UPSTREAM:
        modules_vaddr_raw = page_end
        modules_end_raw = page_end + MODULES_VSIZE
        kimage_raw = modules_end_raw
        vmalloc_start_raw = modules_end_raw
        kimage_offset = MODULES_VSIZE
    else:
        raise ConfigError(f"layout variant {variant!r} is not {SERIES!r} or {UPSTREAM!r}")
    raw = (kimage_raw, modules_end_raw, modules_vaddr_raw, vmalloc_start_raw)
    vmemmap_shift = geometry.page_shift - STRUCT_PAGE_MAX_SHIFT
    vmemmap_start = _u64(-(1 << (va_bits - vmemmap_shift)))
    vmemmap_size = (1 << (va_bits - 1)) >> vmemmap_shift
    pci_io_end = vmemmap_start - SZ_8M
    return KernelLayout(
        geometry=geometry,
        variant=variant,
        page_offset=page_offset,
        page_end=page_end,
        kimage_offset=kimage_offset,
        kimage_vaddr=_u64(kimage_raw),
        modules_vaddr=_u64(modules_vaddr_raw),
        modules_end=_u64(modules_end_raw),
        vmalloc_start=_u64(vmalloc_start_raw),
        vmalloc_end=vmemmap_start - SZ_256M,
        fixaddr_top=vmemmap_start - SZ_32M,
        pci_io_start=pci_io_end - SZ_16M,
        pci_io_end=pci_io_end,
        vmemmap_start=vmemmap_start,
        vmemmap_end=vmemmap_start + vmemmap_size,
        wrapped=any(not 0 <= value <= MASK64 for value in raw),
    )


def boot_layout(geometry: Geometry) -> KernelLayout:
    """The layout a kernel of ``geometry`` boots with: the series' unless that cannot
    work at all (16K/48 overflows), then upstream v6.7's, with replication refused."""
    layout = kernel_layout(geometry, SERIES)
    if layout.wrapped:
        return kernel_layout(geometry, UPSTREAM)
    return layout


def replication_refusal(layout: KernelLayout) -> str | None:
    """Why REPLICATE_KTEXT cannot be built for this layout (Kconfig level), or None."""
    g = layout.geometry
    if g.granule == 16384 and g.va_bits == 48:
        return KCONFIG_REFUSAL_16K_48
    if layout.variant == UPSTREAM:
        return UPSTREAM_REFUSAL
    return None


def kernel_slot_indices(layout: KernelLayout, kimage_vaddr: int, kimage_end: int
                        ) -> tuple[int, int]:
    """(kidx_base, kidx_end) = (pgd_index(KERNEL_START), pgd_index(KERNEL_END)), inclusive.

    As in patch 18, KERNEL_END is ``_end`` itself, so an image ending exactly on a
    slot boundary also claims the next slot.
    """
    if kimage_end <= kimage_vaddr:
        raise ConfigError(f"kernel image [{kimage_vaddr:#x}, {kimage_end:#x}) is empty")
    return layout.pgd_index(kimage_vaddr), layout.pgd_index(kimage_end)


def replication_sanity_check(layout: KernelLayout, kimage_vaddr: int, kimage_end: int
                             ) -> str | None:
    """Patch 05's checks in ktext_replication_init(), in its order: the warning of
    the first that fails (init returns after printing it), or None if both pass.
    v3 compares the modules' slot with kidx_base and vmalloc's with kidx_end."""
    kidx_base, kidx_end = kernel_slot_indices(layout, kimage_vaddr, kimage_end)
    if layout.pgd_index(layout.modules_vaddr) == kidx_base:
        return SANITY_CHECK_MODULES
    if layout.pgd_index(layout.vmalloc_start) == kidx_end:
        return SANITY_CHECK_VMALLOC
    return None


def layout_problems(layout: KernelLayout) -> list[str]:
    """What is wrong with the layout itself, whatever the image: overflow, areas outside
    the kernel half, modules overlapping the linear map, an empty vmalloc area."""
    problems = []
    if layout.wrapped:
        problems.append(
            f"{layout.name}: KIMAGE_VADDR = PAGE_END {layout.page_end:#x} + KIMAGE_OFFSET "
            f"{layout.kimage_offset:#x} overflows 64 bits and wraps to "
            f"{layout.kimage_vaddr:#x}"
        )
    for name, va in (("KIMAGE_VADDR", layout.kimage_vaddr),
                     ("MODULES_VADDR", layout.modules_vaddr),
                     ("VMALLOC_START", layout.vmalloc_start)):
        if va < layout.page_offset:
            problems.append(
                f"{layout.name}: {name} {va:#x} is below PAGE_OFFSET {layout.page_offset:#x}, "
                "outside the kernel (TTBR1) half"
            )
    if layout.page_offset <= layout.modules_vaddr < layout.page_end:
        problems.append(
            f"{layout.name}: MODULES_VADDR {layout.modules_vaddr:#x} is "
            f"{_size(layout.page_end - layout.modules_vaddr)} below PAGE_END "
            f"{layout.page_end:#x}: the modules area overlaps the linear map"
        )
    if not layout.wrapped and layout.vmalloc_start >= layout.vmalloc_end:
        problems.append(
            f"{layout.name}: vmalloc area [{layout.vmalloc_start:#x}, "
            f"{layout.vmalloc_end:#x}) is empty"
        )
    return problems


@dataclass(frozen=True)
class LayoutCheck:
    """One layout checked (``layout_problems``) with the two breakages of the
    series counted apart; ``scenarios layouts`` and ``run`` both use it."""

    layout: KernelLayout
    problems: tuple[str, ...]

    @property
    def overflows(self) -> bool:
        """KIMAGE_VADDR (or an address after it) wrapped past 2**64 (16K/48)."""
        return self.layout.wrapped

    @property
    def modules_in_linear_map(self) -> bool:
        """MODULES_VADDR is inside [PAGE_OFFSET, PAGE_END) (64K/42)."""
        return self.layout.is_linear(self.layout.modules_vaddr)


def check_layout(layout: KernelLayout) -> LayoutCheck:
    return LayoutCheck(layout, tuple(layout_problems(layout)))


def boot_layout_report(geometry: Geometry) -> dict:
    """What ``run`` reports about its layout (the run's ``layout`` JSON object):
    the layout it booted (``series`` or ``upstream``), the series' layout for
    this geometry checked as ``scenarios layouts`` checks it, and why
    REPLICATE_KTEXT cannot be built for the booted layout (or None)."""
    booted = boot_layout(geometry)
    series = check_layout(kernel_layout(geometry, SERIES))
    return {
        "name": geometry.name,
        "booted": booted.variant,
        "kimage_vaddr": f"{booted.kimage_vaddr:#x}",
        "modules_vaddr": f"{booted.modules_vaddr:#x}",
        "vmalloc_start": f"{booted.vmalloc_start:#x}",
        "series_problems": list(series.problems),
        "series_kimage_vaddr_overflows": series.overflows,
        "series_modules_overlap_linear_map": series.modules_in_linear_map,
        "replication_refusal": replication_refusal(booted),
    }


def format_layout_report(report: dict) -> list[str]:
    """The lines ``run`` prints for its ``layout`` object; none for a layout
    the series gets right."""
    name = report["name"]
    if report["booted"] != SERIES:
        lines = [f"layout {name}: the series' layout cannot work here, so this kernel boots "
                 f"the pre-series (v6.7) layout, where replication cannot be built:"]
    elif report["series_problems"]:
        lines = [f"layout {name}: the series' layout boots but is broken "
                 f"(as `ktext-emu scenarios layouts` reports):"]
    else:
        return []
    lines += [f"  {problem}" for problem in report["series_problems"]]
    if report["booted"] != SERIES and report["replication_refusal"]:
        lines.append(f"  {report['replication_refusal']}")
    return lines


def image_problems(layout: KernelLayout, kimage_vaddr: int, kimage_end: int) -> list[str]:
    """Problems of an image [kimage_vaddr, kimage_end) in this layout, beyond patch 05:
    an image that runs into vmalloc, and any top-level slot it shares with the modules
    or vmalloc areas (patch 05 compares only their first slot)."""
    problems = []
    if kimage_vaddr < layout.kimage_vaddr:
        problems.append(
            f"kernel image starts at {kimage_vaddr:#x}, below KIMAGE_VADDR "
            f"{layout.kimage_vaddr:#x}"
        )
    if layout.variant == SERIES and kimage_end > layout.vmalloc_start:
        problems.append(
            f"kernel image end {kimage_end:#x} runs past VMALLOC_START "
            f"{layout.vmalloc_start:#x}"
        )
    g = layout.geometry
    first = kimage_vaddr >> g.pgdir_shift
    last = (kimage_end - 1) >> g.pgdir_shift
    for area, start, end in (("modules", layout.modules_vaddr, layout.modules_end),
                             ("vmalloc", layout.vmalloc_start, layout.vmalloc_end)):
        if start >= end:
            continue
        shared = max(first, start >> g.pgdir_shift) <= min(last, (end - 1) >> g.pgdir_shift)
        if shared:
            problems.append(
                f"the {area} area [{start:#x}, {end:#x}) shares a top-level slot with the "
                f"kernel image [{kimage_vaddr:#x}, {kimage_end:#x})"
            )
    return problems


def linear_map_problems(layout: KernelLayout, phys_offset: int, ram_end: int) -> list[str]:
    """Whether [phys_offset, ram_end) fits the linear map [PAGE_OFFSET, PAGE_END)."""
    span = ram_end - phys_offset
    if span > layout.linear_map_size:
        return [
            f"{layout.name}: RAM [{phys_offset:#x}, {ram_end:#x}) spans {_size(span)} but "
            f"the linear map [PAGE_OFFSET, PAGE_END) holds only {_size(layout.linear_map_size)}"
        ]
    return []


def layout_checks(
    layout: KernelLayout,
    *,
    kimage_vaddr: int | None = None,
    kimage_end: int | None = None,
    phys_offset: int | None = None,
    ram_end: int | None = None,
) -> list[str]:
    """Every message that applies: the layout, then (given the image) patch 05's
    check and the image checks, then (given the RAM) the linear map."""
    messages = layout_problems(layout)
    if kimage_vaddr is not None and kimage_end is not None:
        verdict = replication_sanity_check(layout, kimage_vaddr, kimage_end)
        if verdict:
            messages.append(verdict)
        messages += image_problems(layout, kimage_vaddr, kimage_end)
    if phys_offset is not None and ram_end is not None:
        messages += linear_map_problems(layout, phys_offset, ram_end)
    return messages


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} bytes"
