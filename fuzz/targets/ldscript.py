"""Fuzz target ``ldscript``: the linker-script parser (emu.blob.ldscript), the linker
(emu.blob.link) on the shipped kernel's objects, the ELF writer on its result,
and the ``--defsym`` expression parser.

Inputs are kernel.ld and small scripts using the rest of the supported
syntax, damaged token- and line-wise with script fragments (deep nesting,
huge numbers and location-counter moves, division by zero, unknown
functions). Properties: only LinkError (or the ElfError of an image too big
to write, or --defsym's UsageError) comes out; a linked image has no
overlapping sections, 64-bit addresses, and survives elf_bytes -> parse_elf
with its section bytes intact.
"""

from __future__ import annotations

import contextlib
import functools

from hypothesis import strategies as st

from emu.blob.build import default_script, kernel_blob_dir, kernel_sources
from emu.blob.commands import parse_defsym
from emu.blob.elf import elf_bytes, parse_elf
from emu.blob.ldscript import parse_script
from emu.blob.link import LinkedImage, link
from emu.blob.objfile import ObjectFile
from emu.errors import ElfError, LinkError, UsageError
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_text, decode, utf8

MASK64 = (1 << 64) - 1

SMALL_SCRIPTS = (
    """ENTRY(start_kernel)
PROVIDE(BASE = 0x40000000);
SECTIONS {
  . = BASE;
  .text : AT(0x1000) { _stext = .; KEEP(*(.head.text)) *(.text .text.*) _etext = .; }
  .rodata ALIGN(0x1000) : { *(.rodata*) . = ALIGN(8); }
  .data : { *(.data .data.*) LONG_NAME = SIZEOF(.text) + ADDR(.rodata) - LOADADDR(.text); }
  /DISCARD/ : { *(.note*) *(.comment) }
  .bss : { *(.bss) }
  .rest : { *(*) }
}
ASSERT(_etext >= _stext, "text backwards")
""",
    """SECTIONS {
  . = 0xffff800008000000;
  .all : {
    x = DEFINED(start_kernel) ? 1 : 0;
    y = MAX(ALIGNOF(.all), CONSTANT(MAXPAGESIZE)) << 2 | 3 ^ ~0 & 0x10;
    *(*)
    . += 64K;
    z = (. - ADDR(.all)) / 2 % 7;
  }
  end = ABSOLUTE(.);
}
""",
)
FRAGMENTS = [
    ".", "=", "+=", "-=", "*=", "/=", "<<=", ";", "{", "}", "(", ")", ":", ",", "?", "*", "/", "%",
    "<<", ">>", "&&", "||", "!", "~", "-", "0", "1", "0x10", "64K", "1M", "08", "0x",
    "0xffffffffffffffff", "18446744073709551616", "99999999999999999999999", "ALIGN(64K)",
    "ALIGN(0)", "ALIGN(3)", "ALIGN(1 << 63)", "ADDR(.text)", "ADDR(.nosuch)", "SIZEOF(.data)",
    "LOADADDR(.bss)", "ALIGNOF(.text)", "DEFINED(_text)", "ABSOLUTE(.)", "MAX(1, 2)", "MIN(.)",
    "CONSTANT(MAXPAGESIZE)", "CONSTANT(BOGUS)", "FOO(1)", "AT(0)", "AT(. - 0x1000)", "KEEP(",
    "PROVIDE(", "PROVIDE_HIDDEN(", "HIDDEN(", "ASSERT(0, \"boom\")", "ENTRY(_text)", "ENTRY(",
    "ASSERT(0, \"\x1b[2J\x07\")", "\"\r\"",
    "OUTPUT_ARCH(aarch64)", "OUTPUT_FORMAT(\"elf64-littleaarch64\")", "SORT(", "EXCLUDE_FILE(",
    "/DISCARD/", "*(.text)", "*(*)", "*(.bss COMMON)", ". = 0;", ". = . + 0x100000000;",
    ". = 0xffffffffffffff00;", ". = . - 1;", "x = 1 / 0;", "x = 1 % 0;", "x = y;", "y = x;",
    ".extra : { *(.x) }", "/*", "*/", "\"", "((((((((((", "))))))))))", "-------", "1+1+1+1+1",
]  # fmt: skip


@functools.lru_cache(maxsize=1)
def kernel_objects() -> tuple[ObjectFile, ...]:
    from emu.blob.asm import assemble_file

    return tuple(
        assemble_file(path, (path.parent, kernel_blob_dir())) for path in kernel_sources()
    )


@functools.lru_cache(maxsize=1)
def seed_texts() -> tuple[str, ...]:
    return (default_script().read_text("utf-8"), *SMALL_SCRIPTS)


def strategy() -> st.SearchStrategy[bytes]:
    damaged = st.sampled_from(seed_texts()).flatmap(lambda t: damaged_text(t, FRAGMENTS))
    soup = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(" ".join)
    nested = st.integers(1, 3000).map(
        lambda n: f"X = {'(' * (n // 2)}1{')' * (n // 2)} + {'-' * n}1 + {'+'.join(['1'] * n)};"
    )
    return st.one_of(utf8(damaged), utf8(damaged), utf8(soup), utf8(nested),
                     st.binary(max_size=200))  # fmt: skip


def seeds() -> list[bytes]:
    return [t.encode("utf-8") for t in seed_texts()]


def check_image(image: LinkedImage) -> None:
    if not 0 <= image.entry <= MASK64:
        raise PropertyViolation(f"entry {image.entry:#x} is not 64-bit")
    live = [s for s in image.sections if s.size]
    for sec in image.sections:
        if sec.data is not None and len(sec.data) != sec.size:
            raise PropertyViolation(f"section {sec.name}: {len(sec.data)} bytes for size {sec.size}")
        if sec.vaddr + sec.size > 1 << 64 or sec.paddr + sec.size > 1 << 64:
            raise PropertyViolation(f"section {sec.name} wraps past 2^64")
    for a in live:
        for b in live:
            if a is not b and a.vaddr < b.vaddr + b.size and b.vaddr < a.vaddr + a.size:
                raise PropertyViolation(f"sections {a.name} and {b.name} overlap")
    for sym in image.symbols:
        if not 0 <= sym.value <= MASK64:
            raise PropertyViolation(f"symbol {sym.name} = {sym.value:#x} is not 64-bit")
    elf = parse_elf(elf_bytes(image), "linked.elf")
    for sec in image.sections:
        if sec.data is not None and sec.size and elf.read(sec.vaddr, sec.size) != sec.data:
            raise PropertyViolation(f"section {sec.name} does not read back from the ELF")


def run(data: bytes) -> str:
    text = decode(data)
    if len(text) < 300 and "\n" not in text:
        with contextlib.suppress(UsageError):
            parse_defsym(f"SYM={text}")
    script = parse_script(text, "fuzz.ld")
    image = link(kernel_objects(), script)
    check_image(image)
    return "linked and written"


TARGET = Target(
    name="ldscript",
    summary="linker-script parser, linker (shipped kernel objects), ELF writer, --defsym",
    documented=(LinkError, ElfError),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=20.0,
)
