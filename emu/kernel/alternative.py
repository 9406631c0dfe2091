"""Alternatives, mirroring arch/arm64/kernel/alternative.c with the ktext
series' hook (patch 07, ``ktext_replication_patch_alternative``).

Owns the ``.altinstructions`` record format (Linux's ``struct alt_instr``:
s32 orig_offset, s32 alt_offset, u16 cpucap, u8 orig_len, u8 alt_len, each
offset relative to its own field), reading the records of an image, the
words a site receives (``get_alt_insn``: ``insn.relocate_alt_insn`` per
instruction), ``apply_boot_alternatives`` (the boot hook: what
``apply_boot_alternatives()`` does on the boot CPU, writing node 0's image and
every node's copy of a site in [_stext, _etext), then recording the
capabilities in ``system_cpucaps`` and ``applied_alternatives``), and
``check_alternatives``, which recomputes every site from the ELF file and
compares it with each node's text.

As in Linux, a record whose capability is absent leaves its site alone, and
the whole capability mask is marked applied after the pass.  Callback
alternatives (``ARM64_CB_BIT``) are not supported: the shipped kernel has none.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from emu.errors import PatchError
from emu.hw.machine import Machine
from emu.hw.physmem import PhysMem
from emu.kernel import cpufeature
from emu.kernel.image import KernelImage
from emu.kernel.insn import relocate_alt_insn
from emu.kernel.ktext import Replication, ktext_replication_patch_alternative, node_text_pas
from emu.kernel.layout import KernelLayout
from emu.kernel.patching import invalidate_text, patching_init

ALT_INSTR = struct.Struct("<iiHBB")
ARM64_CB_BIT = 1 << 15
ALT_START = "__alt_instructions"
ALT_END = "__alt_instructions_end"

Reader = Callable[[int, int], bytes]  # (va, size) -> bytes


@dataclass(frozen=True)
class AltInstr:
    """One ``struct alt_instr``, with its offsets resolved to addresses."""

    record: int  # VA of the record itself
    orig: int  # the site
    repl: int  # the replacement sequence
    cpucap: int
    orig_len: int
    alt_len: int

    @property
    def nr_inst(self) -> int:
        return self.orig_len // 4


def parse_alt_records(data: bytes, base: int) -> list[AltInstr]:
    """The records in ``data``, which sits at VA ``base``."""
    if len(data) % ALT_INSTR.size:
        raise PatchError(
            f".altinstructions at {base:#x} is {len(data)} bytes, not a whole number of "
            f"{ALT_INSTR.size}-byte records"
        )
    records = []
    for offset in range(0, len(data), ALT_INSTR.size):
        orig_off, alt_off, cpucap, orig_len, alt_len = ALT_INSTR.unpack_from(data, offset)
        va = base + offset
        records.append(AltInstr(va, va + orig_off, va + 4 + alt_off, cpucap, orig_len, alt_len))
    return records


def image_alt_records(image: KernelImage, read: Reader | None = None) -> list[AltInstr]:
    """The image's records, read from the ELF file (or through ``read``)."""
    if not (image.has(ALT_START) and image.has(ALT_END)):
        return []
    start, end = image.sym(ALT_START), image.sym(ALT_END)
    if end <= start:
        return []
    data = (read or image.elf.read)(start, end - start)
    return parse_alt_records(data, start)


def _check_record(alt: AltInstr, image: KernelImage) -> None:
    where = f"alternative at {alt.orig:#x} <{image.symbolize(alt.orig)}> (record {alt.record:#x})"
    if alt.cpucap & ARM64_CB_BIT:
        raise PatchError(f"{where}: callback alternatives (ARM64_CB_BIT) are not supported")
    if alt.alt_len != alt.orig_len:
        raise PatchError(
            f"{where}: replacement is {alt.alt_len} bytes but the site is {alt.orig_len}: "
            "alternatives replace like for like"
        )
    if alt.orig_len % 4 or alt.orig % 4 or alt.repl % 4:
        raise PatchError(f"{where}: not whole, aligned 32-bit instructions")
    lo, hi = image.kimage_vaddr, image.sym("_end")
    for va, what in ((alt.orig, "site"), (alt.repl, "replacement")):
        if not (lo <= va and va + alt.orig_len <= hi):
            raise PatchError(f"{where}: {what} {va:#x} is outside the kernel image")


def replacement_words(alt: AltInstr, read: Reader) -> list[int]:
    """What ``__apply_alternatives`` writes at the site: each replacement word,
    branches leaving the replacement re-pointed and ADRPs kept on their page."""
    data = read(alt.repl, alt.alt_len)
    words = []
    for index in range(alt.nr_inst):
        word = int.from_bytes(data[4 * index : 4 * index + 4], "little")
        words.append(
            relocate_alt_insn(word, alt.repl + 4 * index, alt.orig + 4 * index, alt.repl,
                              alt.alt_len)
        )  # fmt: skip
    return words


def site_words(alt: AltInstr, read: Reader) -> list[int]:
    data = read(alt.orig, alt.orig_len)
    return [int.from_bytes(data[i : i + 4], "little") for i in range(0, alt.orig_len, 4)]


@dataclass
class AppliedAlternatives:
    """What one alternatives pass did."""

    caps: dict[str, int]  # the capabilities applied, name -> number
    patched: list[AltInstr]
    skipped: list[AltInstr]


def apply_alternatives(
    physmem: PhysMem,
    image: KernelImage,
    replication: Replication,
    caps: dict[str, int],
) -> AppliedAlternatives:
    """__apply_alternatives() over the whole image for the capabilities ``caps``.

    Every site of a present capability gets its replacement in node 0's
    image and then, through the series' hook
    (``ktext.ktext_replication_patch_alternative``), for a site in
    [_stext, _etext), in every node's copy.  Records are validated first, so
    a bad one changes nothing.
    """
    records = image_alt_records(image, lambda va, n: physmem.read(image.pa_of(va), n))
    for alt in records:
        _check_record(alt, image)
    numbers = set(caps.values())

    def read_node0(va: int, n: int) -> bytes:
        return physmem.read(image.pa_of(va), n)

    patched, skipped = [], []
    planned = []
    for alt in records:
        if alt.cpucap not in numbers:
            skipped.append(alt)
            continue
        planned.append((alt, replacement_words(alt, read_node0)))
        patched.append(alt)
    for alt, words in planned:
        for index, word in enumerate(words):
            physmem.write_u32(image.pa_of(alt.orig + 4 * index), word)
        ktext_replication_patch_alternative(replication, physmem, image, alt.orig, alt.nr_inst)
    return AppliedAlternatives(dict(caps), patched, skipped)


def apply_boot_alternatives(
    machine: Machine,
    image: KernelImage,
    layout: KernelLayout,
    replication: Replication,
    cpu_features: Iterable[str],
) -> AppliedAlternatives:
    """The boot hook (after ktext_replication_init, as smp_prepare_boot_cpu()
    follows setup_arch()): the patching code's data, the system capabilities,
    and the alternatives of those capabilities on every node."""
    physmem = machine.physmem
    caps = cpufeature.parse_cpu_features(image, cpu_features)
    patching_init(machine, image, layout, replication.text_copies)
    mask = cpufeature.caps_mask(caps.values())
    if image.has(cpufeature.SYSTEM_CPUCAPS):
        physmem.write_u64(image.pa_of(image.sym(cpufeature.SYSTEM_CPUCAPS)), mask)
    applied = apply_alternatives(physmem, image, replication, caps)
    if image.has(cpufeature.APPLIED_ALTERNATIVES):
        pa = image.pa_of(image.sym(cpufeature.APPLIED_ALTERNATIVES))
        physmem.write_u64(pa, physmem.read_u64(pa) | mask)
    invalidate_text(machine)
    return applied


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class AltMismatch:
    """A site whose text on ``node`` is not what the records and caps make it."""

    node: int
    va: int
    symbol: str
    cpucap: str
    expected: int
    found: int

    def message(self) -> str:
        return (
            f"node {self.node}: alternative site {self.va:#x} <{self.symbol}> ({self.cpucap}) "
            f"holds {self.found:#010x}, expected {self.expected:#010x}"
        )


def expected_site(alt: AltInstr, image: KernelImage, caps_mask: int) -> list[int]:
    """A site's words after boot, from the ELF file alone."""
    if caps_mask >> alt.cpucap & 1:
        return replacement_words(alt, image.elf.read)
    return site_words(alt, image.elf.read)


def check_alternatives(
    physmem: PhysMem, image: KernelImage, text_copies: list[int | None]
) -> list[AltMismatch]:
    """Every site on every node against the records and the guest's system_cpucaps."""
    mask = cpufeature.read_bitmap(physmem, image, cpufeature.SYSTEM_CPUCAPS) or 0
    names = {number: name for name, number in cpufeature.image_cpucaps(image).items()}
    problems = []
    for alt in image_alt_records(image):
        expected = expected_site(alt, image, mask)
        for index, word in enumerate(expected):
            va = alt.orig + 4 * index
            for node, pa in node_text_pas(image, text_copies, va):
                found = physmem.read_u32(pa)
                if found != word:
                    problems.append(AltMismatch(
                        node, va, image.symbolize(va),
                        names.get(alt.cpucap, f"cpucap_{alt.cpucap}"), word, found,
                    ))  # fmt: skip
    return problems
