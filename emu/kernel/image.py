"""The kernel image as the boot code sees it: an ELF with the Linux boundary
symbols, its load address, and symbol lookup for reports.

Any ELF that defines ``REQUIRED_SYMBOLS`` boots, whether it is the shipped
kernel or a user's own blob.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from emu.blob.elf import LoadableImage, read_elf
from emu.errors import ElfError

REQUIRED_SYMBOLS = (
    "_text", "_stext", "_etext", "__start_rodata", "__start_ro_after_init", "__end_rodata",
    "__inittext_begin", "_data", "_end", "swapper_pg_dir", "reserved_pg_dir",
    "start_kernel", "secondary_entry", "vectors", "boot_regs", "ktext_pgd_phys",
    "kernel_texts", "__cpu_to_node", "cpu_stack_tops", "task_user_sp",
    "NR_CPUS", "MAX_NUMNODES", "BOOT_TCR", "BOOT_MAIR", "BOOT_SCTLR", "BOOT_IDMAP_TTBR0",
    "BOOT_KIMAGE_VOFFSET", "BOOT_USER_TTBR0", "BOOT_USER_PC", "BOOT_USER_ARG",
    "BOOT_NR_CPUS", "BOOT_NR_NODES",
)  # fmt: skip
WORKLOAD_PREFIX = "workload_"


@dataclass
class KernelImage:
    elf: LoadableImage
    _by_address: list[tuple[int, str]] = field(default_factory=list, repr=False)
    _addresses: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        missing = [name for name in REQUIRED_SYMBOLS if name not in self.elf.symbols]
        if missing:
            raise ElfError(
                f"{self.elf.path}: not a ktext-emu kernel: missing symbol(s) {', '.join(missing)}"
            )
        named = sorted(
            (sym.value, sym.name)
            for sym in self.elf.all_symbols
            if sym.section is not None and sym.type in ("FUNC", "OBJECT", "NOTYPE")
            and sym.name and not sym.name.startswith(("$", ".L"))
        )  # fmt: skip
        self._by_address = named
        self._addresses = [value for value, _ in named]
        text = self.elf.symbols["_text"].value
        if not any(seg.vaddr <= text < seg.vaddr + seg.memsz for seg in self.elf.segments):
            raise ElfError(f"{self.elf.path}: no segment holds _text ({text:#x})")

    @property
    def path(self) -> str:
        return self.elf.path

    def sym(self, name: str) -> int:
        return self.elf.symbol_value(name)

    def has(self, name: str) -> bool:
        return name in self.elf.symbols

    @property
    def kimage_vaddr(self) -> int:
        return self.sym("_text")

    @property
    def load_pa(self) -> int:
        text = self.sym("_text")
        for seg in self.elf.segments:
            if seg.vaddr <= text < seg.vaddr + max(seg.memsz, 1):
                return seg.paddr + (text - seg.vaddr)
        return self.elf.segments[0].paddr

    @property
    def kimage_voffset(self) -> int:
        return (self.kimage_vaddr - self.load_pa) & ((1 << 64) - 1)

    def pa_of(self, va: int) -> int:
        """__pa_symbol(): the load address of an image VA (user sections: their LMA)."""
        if va < 1 << 48 and self.is_user(va):
            return self.user_pa_of(va)
        return va - self.kimage_voffset & ((1 << 64) - 1)

    def is_user(self, va: int) -> bool:
        """Whether ``va`` lies in the user sections (linked at the user VA they run at)."""
        if not (self.has("__user_text_start") and self.has("__user_data_end")):
            return False
        return self.sym("__user_text_start") <= va < self.sym("__user_data_end")

    def user_pa_of(self, va: int) -> int:
        """The load address of a user-section VA: its segment's p_paddr + offset."""
        for seg in self.elf.segments:
            if seg.vaddr <= va < seg.vaddr + max(seg.memsz, 1):
                return seg.paddr + (va - seg.vaddr)
        # A range the script kept empty (e.g. no .user.rodata): where it would load.
        text = self.sym("__user_text_start")
        for seg in self.elf.segments:
            if seg.vaddr == text:
                return seg.paddr + (va - text)
        raise ElfError(f"{self.path}: no segment loads user address {va:#x}")

    @property
    def image_size(self) -> int:
        return self.sym("_end") - self.kimage_vaddr

    def workloads(self) -> list[str]:
        return sorted(
            name[len(WORKLOAD_PREFIX) :]
            for name, sym in self.elf.symbols.items()
            if name.startswith(WORKLOAD_PREFIX) and sym.section is not None
        )

    def symbolize(self, va: int) -> str:
        """``name+0xoff`` for an image address, ``0x...`` when nothing is near."""
        index = bisect.bisect_right(self._addresses, va) - 1
        if index < 0:
            return f"{va:#x}"
        value, name = self._by_address[index]
        if va - value > 0x10000:
            return f"{va:#x}"
        return name if va == value else f"{name}+{va - value:#x}"


def load_kernel_image(path: str | Path) -> KernelImage:
    return KernelImage(read_elf(path))
