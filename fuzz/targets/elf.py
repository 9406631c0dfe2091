"""Fuzz target ``elf``: emu.blob.elf.parse_elf, KernelImage on top, and what the
``symbols``/``disasm`` commands do with an accepted file.

Inputs are the shipped kernel's ELF and small generated images (random
sections, overlapping or huge segments, a random subset of the symbols a
kernel needs), damaged at header, program-header, section-header and
symbol fields more often than elsewhere. Properties: only ElfError comes
out; an accepted file's segments respect the reader's own limits (p_filesz
<= p_memsz <= 256 MiB, no wrap, no overlap) and every segment can be read
back; an accepted kernel answers every KernelImage query.
"""

from __future__ import annotations

import contextlib
import functools
import struct

from hypothesis import strategies as st

from emu.blob import disasm
from emu.blob.elf import MAX_SEGMENT_SIZE, LoadableImage, elf_bytes, parse_elf
from emu.blob.link import LinkedImage, LinkedSymbol, OutputSection
from emu.blob.objfile import Binding, SectionFlags, SymbolType
from emu.errors import ElfError
from emu.kernel.image import REQUIRED_SYMBOLS, KernelImage
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_bytes, interesting_int

MASK64 = (1 << 64) - 1
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR_SIZE, _SHDR_SIZE, _SYM_SIZE = 56, 64, 24
DISASM_LIMIT = 256
"""Bytes disassembled per executable range: enough to reach every decoder path."""


@functools.lru_cache(maxsize=1)
def shipped_kernel() -> bytes:
    from emu.blob.build import shipped_kernel_elf

    return shipped_kernel_elf().read_bytes()


def hot_offsets(blob: bytes) -> tuple[int, ...]:
    """File offsets of the header fields worth damaging most (ELF, program and
    section headers, the first symbols)."""
    hot = list(range(4, 64, 2))
    try:
        (_, _, _, _, _, phoff, shoff, _, _, _, phnum, _, shnum, _) = _EHDR.unpack_from(blob)
    except struct.error:
        return tuple(hot)
    for i in range(min(phnum, 16)):
        hot += [phoff + i * _PHDR_SIZE + f for f in (0, 4, 8, 16, 24, 32, 40)]
    for i in range(min(shnum, 32)):
        base = shoff + i * _SHDR_SIZE
        hot += [base + f for f in (0, 4, 8, 16, 24, 32, 40, 44, 56)]
        if base + 64 <= len(blob) and struct.unpack_from("<I", blob, base + 4)[0] == 2:
            symtab = struct.unpack_from("<Q", blob, base + 24)[0]
            for k in range(1, 40):
                hot += [symtab + k * _SYM_SIZE + f for f in (0, 4, 6, 8, 16)]
    return tuple(h for h in hot if 0 <= h < len(blob))


_SECTION_NAMES = (".head.text", ".text", ".rodata", ".init.text", ".data", ".bss", ".user.text",
                  ".x\x1b[2J\n")  # fmt: skip


@st.composite
def generated_image(draw: st.DrawFn) -> bytes:
    """An ELF written by the project's own writer from a random LinkedImage."""
    base = draw(st.sampled_from((0xFFFF800008000000, 0x40000000, 0, MASK64 - 0xFFFFF)))
    sections: list[OutputSection] = []
    cursor = base
    for name in draw(st.lists(st.sampled_from(_SECTION_NAMES), min_size=1, max_size=5,
                              unique=True)):  # fmt: skip
        size = draw(st.one_of(st.integers(0, 0x400), st.sampled_from((0x10000, MAX_SEGMENT_SIZE,
                                                                       MAX_SEGMENT_SIZE + 1))))
        nobits = name == ".bss" or size > 0x10000
        gap = draw(st.sampled_from((0, 0x1000, 0x10000, -0x800, 1 << 40)))
        vaddr = (cursor + gap) & MASK64
        paddr = draw(st.one_of(st.just((vaddr - base + 0x40000000) & MASK64),
                               interesting_int(8)))  # fmt: skip
        flags = SectionFlags(write=draw(st.booleans()), execute=draw(st.booleans()), nobits=nobits)
        data = None if nobits else draw(st.binary(min_size=size, max_size=size))
        sections.append(OutputSection(name, vaddr, paddr, size, 8, flags, data))
        cursor = vaddr + size
    chosen = draw(st.sets(st.sampled_from(REQUIRED_SYMBOLS)))
    wanted = [*chosen, *draw(st.lists(st.sampled_from(("workload_x", "workload_", "main")),
                                      max_size=2))]  # fmt: skip
    symbols = []
    for name in wanted:
        sec = draw(st.sampled_from(sections))
        value = draw(st.one_of(st.integers(sec.vaddr, sec.vaddr + sec.size), interesting_int(8)))
        section = draw(st.sampled_from((sec.name, None)))
        symbols.append(LinkedSymbol(name, value & MASK64, draw(st.integers(0, 64)),
                                    SymbolType.FUNC, Binding.GLOBAL, section))  # fmt: skip
    try:
        return elf_bytes(LinkedImage(draw(interesting_int(8)), sections, symbols))
    except (ValueError, OverflowError, struct.error):
        # The writer is only ever given linker output; an image no linker makes
        # (a 64-bit field overflowing) is skipped, not a finding.
        return b"\x7fELF"


@st.composite
def damaged_kernel(draw: st.DrawFn) -> bytes:
    blob = shipped_kernel()
    return draw(damaged_bytes(blob, max_edits=4, hot=hot_offsets(blob)))


@st.composite
def damaged_generated(draw: st.DrawFn) -> bytes:
    blob = draw(generated_image())
    if draw(st.booleans()):
        return blob
    return draw(damaged_bytes(blob, max_edits=4, hot=hot_offsets(blob)))


def strategy() -> st.SearchStrategy[bytes]:
    return st.one_of(damaged_kernel(), damaged_generated(), st.binary(max_size=256))


def seeds() -> list[bytes]:
    return [shipped_kernel()]


def check_loadable(elf: LoadableImage, size: int) -> None:
    if not 0 <= elf.entry <= MASK64:
        raise PropertyViolation(f"entry {elf.entry:#x} is not a 64-bit address")
    live = []
    for seg in elf.segments:
        if not len(seg.data) <= seg.memsz <= MAX_SEGMENT_SIZE or len(seg.data) > size:
            raise PropertyViolation(f"segment at {seg.vaddr:#x}: sizes break the reader's limits")
        if seg.vaddr + seg.memsz > 1 << 64 or seg.paddr + seg.memsz > 1 << 64:
            raise PropertyViolation(f"segment at {seg.vaddr:#x} wraps past 2^64")
        if seg.memsz:
            live.append(seg)
            if elf.read(seg.vaddr, min(seg.memsz, 16))[: len(seg.data)] != seg.data[:16]:
                raise PropertyViolation(f"segment at {seg.vaddr:#x} does not read back")
    for a in live:
        for b in live:
            if a is not b and a.vaddr < b.end and b.vaddr < a.end:
                raise PropertyViolation(f"segments at {a.vaddr:#x} and {b.vaddr:#x} overlap")
    for name, sym in elf.symbols.items():
        if sym.name != name or sym not in elf.all_symbols:
            raise PropertyViolation(f"symbol index entry {name!r} is not a symbol of the file")


def check_kernel(image: KernelImage) -> None:
    image.kimage_vaddr, image.load_pa, image.kimage_voffset, image.image_size  # noqa: B018
    if not 0 <= image.kimage_voffset <= MASK64:
        raise PropertyViolation("kimage_voffset is not a 64-bit value")
    for name in REQUIRED_SYMBOLS:
        if not 0 <= image.pa_of(image.sym(name)) <= MASK64:
            raise PropertyViolation(f"pa_of({name}) is not a 64-bit address")
    image.workloads()
    for va in (0, MASK64, image.kimage_vaddr, image.kimage_vaddr - 1, image.sym("_end")):
        if not isinstance(image.symbolize(va & MASK64), str):
            raise PropertyViolation("symbolize did not give text")


def run(data: bytes) -> str:
    elf = parse_elf(data, "fuzz.elf")
    check_loadable(elf, len(data))
    disasm.format_symbols(elf)
    for _name, lo, hi in disasm.executable_ranges(elf)[:4]:
        # ElfError: a section header that no segment backs, the documented answer.
        with contextlib.suppress(ElfError):
            disasm.format_disassembly(elf, lo, min(hi, lo + DISASM_LIMIT))
    # A file that is no kernel ends here with its ElfError: the documented answer.
    check_kernel(KernelImage(elf))
    return "kernel image"


TARGET = Target(
    name="elf",
    summary="ELF reader (parse_elf), KernelImage, symbols/disasm listings",
    documented=(ElfError,),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=10.0,
)
