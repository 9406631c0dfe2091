"""Fuzz target ``asm``: the assembler front end (emu.blob.asm) and the link of what it makes.

Inputs are the shipped kernel's sources and the assembler's test snippets,
damaged line- and token-wise with fragments that are known to be sharp
(relocation operators keystone dies on, directives, macro and loop syntax,
local labels), plus token soup. Keystone runs in this target's own guarded
worker, so a keystone crash or hang must come back as an AsmError naming the
line, and the fuzzer goes on. Properties: only AsmError (from the assembler)
or LinkError (from linking its object) comes out, every AsmError starts with
FILE:LINE and is never an "internal assembler error"; an object's sections,
symbols and relocations are consistent.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from hypothesis import strategies as st

from emu.blob.asm import MAX_NOBITS_BYTES, MAX_SECTION_BYTES, assemble_source
from emu.blob.build import kernel_blob_dir
from emu.blob.ksworker import KeystoneWorker
from emu.blob.ldscript import parse_script
from emu.blob.link import link
from emu.blob.objfile import ObjectFile
from emu.errors import AsmError, LinkError
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_text, decode, utf8

_REPO = Path(__file__).resolve().parents[2]
PLACE = re.compile(r"^[^\n]+:\d+: [^\n]+$")
FILENAME = "fuzz.S"
# Everything lands in one output section; the link checks symbols and relocations.
LINK_BASE = 0x4000_0000  # low enough for ABS32, near enough for every PC-relative form
CATCH_ALL_SCRIPT = f"SECTIONS {{ . = {LINK_BASE:#x}; .all : {{ *(*) }} }}"

FRAGMENTS = [
    "nop", "mov", "add", "ldr", "str", "b", "bl", "adrp", "adr", "cbz", "tbz", "ldp", "stp", "msr",
    "mrs", "movz", "movk", "ret", "eret", "svc #0", "smc #0", "tlbi vmalle1", "dsb ish", "isb",
    "x0", "w1", "sp", "xzr", "x31", "q0", "[x1", "]", "]!", "#", "#1", "#-1", "#0x10000", "-", "+",
    "*", "/", "%", "<<", ">>", "(", ")", ",", ":", ";", "=", "=sym", ":lo12:", ":abs_g0:",
    ":abs_g1_nc:", ":got:", ":pg_hi21:", "1f", "1b", "1:", "foo", "foo:", ".L1", ".", ". - foo",
    "0x", "0x10", "0xffffffffffffffff", "18446744073709551616", "'", '"', "\\", "\\@", "\\()",
    "//", "/*", "*/", "#", ".text", ".data", ".bss", ".section .x, \"ax\"", ".pushsection .y",
    ".popsection", ".previous", ".byte", ".hword", ".word", ".quad", ".ascii", ".asciz", ".string",
    ".align 3", ".balign 8", ".p2align 16", ".skip 8", ".fill 2, 4, 1", ".org 0x100", ".set",
    ".equ", ".globl", ".weak", ".type", ".size", ".macro m a", ".endm", ".exitm", ".rept 3",
    ".irp r, x0, x1", ".irpc c, 012", ".endr", ".if 1", ".ifdef foo", ".ifc a, b", ".ifb",
    ".ifnb", ".else", ".elseif 0", ".endif", ".ltorg", ".inst 0xd503201f", ".err", ".error \"e\"",
    ".subsection 1", ".comm c, 8", ".lcomm l, 8", ".uleb128 300", ".sleb128 -1", ".req",
    ".unreq", ".purgem m", ".include \"asm-offsets.inc\"", ".incbin \"missing.bin\"", ".end",
    ".incbin \"/proc/self/mem\"", ".incbin \"/proc/self/maps\", -8", ".include \"/proc/self/mem\"",
    ".incbin \"/proc/self/maps\", 0, -1", ".incbin \"/proc/self/maps\", 0x7fffffffffffffff",
    ".error \"\\033[2J\"", ".error \"\x1b\r\"", ".print \"\x07\"",
    "%function", "@nobits", "\"ax\"", "eq", "lsl #12", "uxtw", "ttbr1_el1", "daifset",
    "sctlr_el1", "\t", " ",
]  # fmt: skip


def _source_files() -> list[Path]:
    snippets = _REPO / "tests" / "blob" / "asm_snippets"
    files = sorted(kernel_blob_dir().glob("*.S"))
    if snippets.is_dir():
        files += sorted(snippets.glob("*.S"))
    return files


@functools.lru_cache(maxsize=1)
def seed_texts() -> tuple[str, ...]:
    return tuple(p.read_text("utf-8") for p in _source_files())


@st.composite
def damaged_source(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(seed_texts()))
    if draw(st.integers(0, 3)) == 0:  # a slice keeps cases fast and errors early
        lines = text.split("\n")
        start = draw(st.integers(0, len(lines) - 1))
        text = "\n".join(lines[start : start + draw(st.integers(1, 40))])
    return draw(damaged_text(text, FRAGMENTS))


def strategy() -> st.SearchStrategy[bytes]:
    soup = st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(" ".join)
    lines = st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map(" ".join),
                     max_size=30).map("\n".join)  # fmt: skip
    return st.one_of(
        utf8(damaged_source()), utf8(damaged_source()), utf8(soup), utf8(lines),
        st.binary(max_size=300),
    )  # fmt: skip


def seeds() -> list[bytes]:
    return [t.encode("utf-8") for t in seed_texts()]


@functools.lru_cache(maxsize=1)
def _worker() -> KeystoneWorker:
    return KeystoneWorker()


def reset() -> None:
    """A time box can interrupt an exchange with the worker: start a fresh one."""
    _worker().close()


def check_object(obj: ObjectFile) -> None:
    for name, sec in obj.sections.items():
        limit = MAX_NOBITS_BYTES if sec.flags.nobits else MAX_SECTION_BYTES
        if not 0 <= sec.size <= limit:
            raise PropertyViolation(f"section {name} has size {sec.size:#x}")
        if sec.align < 1 or sec.align & (sec.align - 1):
            raise PropertyViolation(f"section {name} has alignment {sec.align}")
        for rel in sec.relocations:
            if not 0 <= rel.offset < max(sec.size, 1):
                raise PropertyViolation(f"relocation at {rel.offset:#x} outside section {name}")
    for sym in obj.symbols.values():
        if sym.section is not None and sym.section not in obj.sections:
            raise PropertyViolation(f"symbol {sym.name} names unknown section {sym.section}")


def run(data: bytes) -> str:
    try:
        obj = assemble_source(decode(data), FILENAME, [kernel_blob_dir()], worker=_worker())
    except AsmError as err:
        if not PLACE.match(str(err)) or err.loc is None:
            raise PropertyViolation(f"AsmError without FILE:LINE: {err}") from None
        raise
    check_object(obj)
    # Symbols other files would define sit at the link base, so relocations against
    # them are in range and get applied like the kernel's own.
    external = obj.undefined | {rel.symbol for sec in obj.sections.values()
                                for rel in sec.relocations if rel.symbol not in obj.symbols}
    link([obj], parse_script(CATCH_ALL_SCRIPT, "all.ld"), dict.fromkeys(external, LINK_BASE))
    return "assembled and linked"


TARGET = Target(
    name="asm",
    summary="assembler front end (keystone in its guarded worker) and the link of its object",
    documented=(AsmError, LinkError),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=40.0,
    reset=reset,
)
