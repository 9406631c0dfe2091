"""Emulated CPU capabilities (arch/arm64/kernel/cpufeature.c, tools/cpucaps).

Owns the names a user gives to ``--cpu-features`` / ``RunSpec.cpu_features``
and their numbers, and the guest's ``system_cpucaps`` bitmap.  The numbers
come from the kernel image: ``kernel_blob/cpucaps.inc`` exports every
``ARM64_*`` capability as an absolute symbol, so the host and the guest can
never disagree.  ``CPUCAPS`` below documents the shipped ones (a test checks
it against the image).

Names are Linux's (``ARM64_HAS_CACHE_DIC``); a user may drop the ``ARM64_``
prefix and write them in any case (``has_cache_dic``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from emu.errors import ConfigError
from emu.hw.physmem import PhysMem
from emu.kernel.image import KernelImage

CAP_PREFIX = "ARM64_"
NCAPS_SYMBOL = "ARM64_NCAPS"
SYSTEM_CPUCAPS = "system_cpucaps"
APPLIED_ALTERNATIVES = "applied_alternatives"


@dataclass(frozen=True)
class Cpucap:
    name: str
    number: int
    summary: str


# What each shipped capability changes in the synthetic kernel.
CPUCAPS: tuple[Cpucap, ...] = (
    Cpucap("ARM64_WORKAROUND_CLEAN_CACHE", 0,
           "cache maintenance errata: the patching code cleans with DC CIVAC, not DC CVAU"),
    Cpucap("ARM64_HAS_CACHE_IDC", 1,
           "CTR_EL0.IDC: no D-cache clean to the PoU is needed before the I-cache sees a store"),
    Cpucap("ARM64_HAS_CACHE_DIC", 2,
           "CTR_EL0.DIC: no I-cache invalidation is needed after a store to text"),
    Cpucap("ARM64_HAS_CNP", 3, "Common not Private translations (no alternative sites)"),
    Cpucap("ARM64_HAS_PAN", 4, "Privileged Access Never (selects alternative_selftest's PAN paths)"),
    Cpucap("ARM64_HAS_LSE_ATOMICS", 5,
           "LSE atomics (selects alternative_selftest's LSE path; no atomics are emulated)"),
)  # fmt: skip


def image_cpucaps(image: KernelImage) -> dict[str, int]:
    """The capabilities the kernel image defines: name -> number (empty if none)."""
    caps = {}
    for name, sym in image.elf.symbols.items():
        if name.startswith(CAP_PREFIX) and name != NCAPS_SYMBOL and sym.section is None:
            caps[name] = sym.value
    return caps


def canonical_cap_name(name: str, known: Iterable[str]) -> str:
    """``name`` as the image spells it; ConfigError naming the known ones if unknown."""
    known = sorted(known)
    wanted = name.strip().upper()
    for candidate in (wanted, CAP_PREFIX + wanted):
        if candidate in known:
            return candidate
    listing = ", ".join(known) if known else "none: this kernel defines no ARM64_* cpucaps"
    raise ConfigError(f"unknown CPU feature {name!r} (this kernel has: {listing})")


def parse_cpu_features(image: KernelImage, names: Iterable[str]) -> dict[str, int]:
    """The capabilities ``names`` select, name -> number, in the image's numbering."""
    caps = image_cpucaps(image)
    selected = {}
    for name in names:
        canonical = canonical_cap_name(name, caps)
        selected[canonical] = caps[canonical]
    limit = image.sym(NCAPS_SYMBOL) if image.has(NCAPS_SYMBOL) else 64
    for canonical, number in selected.items():
        if not 0 <= number < min(limit, 64):
            raise ConfigError(
                f"{image.path}: cpucap {canonical} = {number} does not fit the 64-bit "
                f"system_cpucaps bitmap (ARM64_NCAPS {limit})"
            )
    return selected


def caps_mask(numbers: Iterable[int]) -> int:
    mask = 0
    for number in numbers:
        mask |= 1 << number
    return mask


def cap_names(image: KernelImage, mask: int) -> list[str]:
    """Names of the capabilities set in ``mask``, by number; unnamed bits as ``cpucap_<n>``."""
    by_number = {number: name for name, number in image_cpucaps(image).items()}
    return [by_number.get(bit, f"cpucap_{bit}") for bit in range(64) if mask >> bit & 1]


def read_bitmap(physmem: PhysMem, image: KernelImage, symbol: str) -> int | None:
    """A 64-bit capability bitmap of the guest (None if the image has no such symbol)."""
    if not image.has(symbol):
        return None
    return physmem.read_u64(image.pa_of(image.sym(symbol)))


def system_cpucaps(physmem: PhysMem, image: KernelImage) -> list[str]:
    """The capabilities the guest kernel believes the system has (system_cpucaps)."""
    mask = read_bitmap(physmem, image, SYSTEM_CPUCAPS)
    return [] if mask is None else cap_names(image, mask)


def applied_alternatives(physmem: PhysMem, image: KernelImage) -> list[str]:
    """The capabilities whose alternatives were applied at boot (applied_alternatives)."""
    mask = read_bitmap(physmem, image, APPLIED_ALTERNATIVES)
    return [] if mask is None else cap_names(image, mask)
