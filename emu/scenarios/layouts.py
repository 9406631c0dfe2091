"""layouts: every page-size/level layout the series computes, checked.

Patch 03 (KIMAGE_OFFSET rewritten by 17, VMALLOC_START by 18) is
unconditional.  With 16K pages and 48-bit VAs, PAGE_END + KIMAGE_OFFSET
(128 TiB) overflows to 0, even with REPLICATE_KTEXT off; with 64K pages and
2 levels, KIMAGE_OFFSET (512 MiB) is smaller than MODULES_VSIZE (2 GiB) and
the modules area starts 1.5 GiB inside the linear map.  Remedy: 64K with
fewer than 3 levels takes MODULES_VSIZE (the test patch 17 evidently
meant), and a layout where the series' overflows keeps v6.7's (the layout
change only where REPLICATE_KTEXT can be built).
"""

from __future__ import annotations

import dataclasses

from emu.hw.pagetable import Geometry
from emu.kernel.layout import (
    LAYOUTS,
    MODULES_VSIZE,
    SERIES,
    UPSTREAM,
    KernelLayout,
    check_layout,
    kernel_layout,
)
from emu.scenarios.base import Outcome, Role, Scenario, Setup

MASK64 = (1 << 64) - 1


def remedied_layout(geometry: Geometry) -> KernelLayout:
    """The layout with both fixes applied."""
    series = kernel_layout(geometry, SERIES)
    if series.wrapped:
        return kernel_layout(geometry, UPSTREAM)
    if geometry.granule == 65536 and geometry.levels < 3:
        offset = MODULES_VSIZE
        kimage = series.page_end + offset
        return dataclasses.replace(
            series, kimage_offset=offset, kimage_vaddr=kimage & MASK64,
            modules_end=kimage & MASK64, modules_vaddr=(kimage - MODULES_VSIZE) & MASK64,
            vmalloc_start=(kimage + offset) & MASK64, wrapped=kimage + offset > MASK64,
        )  # fmt: skip
    return series


def _check(layouts: dict[str, KernelLayout], role: Role, label: str) -> Outcome:
    checks = {name: check_layout(layout) for name, layout in layouts.items()}
    details = [problem for check in checks.values() for problem in check.problems]
    bad = [name for name, check in checks.items() if check.problems]
    flagged = len(bad)
    overflow = sum(check.overflows for check in checks.values())
    overlap = sum(check.modules_in_linear_map for check in checks.values())
    counts = {"layouts": len(layouts), "layouts_with_problems": flagged,
              "overflowing_kimage_vaddr": overflow, "modules_overlapping_linear_map": overlap}
    summary = (f"{flagged} of {len(layouts)} layouts broken"
               + (f" ({', '.join(bad)}): {overflow} overflowing KIMAGE_VADDR, "
                  f"{overlap} with modules in the linear map" if bad else ""))
    return Outcome(role, label, bool(flagged), counts, details, summary)


def run(_setup: Setup) -> list[Outcome]:
    series = {name: kernel_layout(geometry, SERIES) for name, geometry in LAYOUTS.items()}
    fixed = {name: remedied_layout(geometry) for name, geometry in LAYOUTS.items()}
    return [
        _check(series, Role.HAZARD, "v3 layout (patches 03, 17, 18) for every granule/levels"),
        _check(fixed, Role.REMEDY,
               "64K with < 3 levels: KIMAGE_OFFSET = MODULES_VSIZE; 16K/48 keeps v6.7's layout"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="layouts",
    title="every granule/level layout of the series",
    v3="KIMAGE_VADDR = PAGE_END + KIMAGE_OFFSET for every configuration (unconditional)",
    run=run,
)
