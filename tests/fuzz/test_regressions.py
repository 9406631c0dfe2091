"""Regression tests for the bugs the fuzz targets found, one per distinct failure.

Each names the fuzz target that found it and the exception that escaped
before the fix.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from emu.blob.asm import MAX_INCLUDE_BYTES, MAX_SECTION_BYTES, assemble_file, assemble_source
from emu.blob.commands import parse_defsym
from emu.blob.elf import read_elf
from emu.blob.ksworker import KeystoneWorker
from emu.blob.ldscript import load_script, parse_expression, parse_script
from emu.blob.link import MAX_IMAGE_BYTES, link
from emu.blob.objfile import ObjectFile, Section, SectionFlags
from emu.config import MAX_MACHINE_FILE_BYTES, load_machine_file
from emu.errors import AsmError, ConfigError, ElfError, GuestFault, LinkError, UsageError
from emu.hw.pagetable import Geometry, leaf_mappings, table_descriptor
from emu.kernel.mmu import create_pgd_mapping
from emu.kernel.pgtable_prot import PAGE_KERNEL

NOP = (0xD503201F).to_bytes(4, "little")


def text_object() -> ObjectFile:
    obj = ObjectFile("t.o")
    obj.sections[".text"] = Section(".text", SectionFlags(execute=True), 4, bytearray(NOP * 4))
    obj.sections[".data"] = Section(".data", SectionFlags(write=True), 8, bytearray(8))
    return obj


# -- ldscript: RecursionError from deep expressions --------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "(" * 2000 + "1" + ")" * 2000,  # parser recursion, one level per parenthesis
        "-" * 3000 + "1",  # parser recursion, one level per unary operator
        "1 ? " * 2000 + "1" + " : 0" * 2000,  # nested conditionals
    ],
    ids=["parentheses", "unary", "ternary"],
)
def test_deeply_nested_script_expression_is_a_link_error(expr: str) -> None:
    with pytest.raises(LinkError, match=r"^deep\.ld:3: expression nested too deeply$"):
        parse_script(f"SECTIONS {{\n .text : {{ *(.text) }}\n}} X = {expr};\n", "deep.ld")
    with pytest.raises(LinkError, match="nested too deeply"):
        parse_expression(expr, "--defsym")
    with pytest.raises(UsageError, match="nested too deeply"):
        parse_defsym(f"X={expr}")


def test_a_long_operator_chain_parses_and_fails_cleanly_only_when_evaluated() -> None:
    chain = "+".join(["1"] * 5000)  # parsed in a loop, but a left-deep tree
    script = parse_script(f"SECTIONS {{ .text : {{ *(.text .data) }} }}\nX = {chain};\n", "chain.ld")
    with pytest.raises(LinkError, match=r"^chain\.ld:2: expression nested too deeply$"):
        link([text_object()], script)


def test_a_moderate_chain_still_links_with_its_value() -> None:
    chain = "+".join(["1"] * 100)
    script = parse_script(f"SECTIONS {{ .text : {{ *(.text) }} .data : {{ *(.data) }} }}\n"
                          f"X = {chain};\nY = DEFINED(X) ? X * 2 : 0;\n", "ok.ld")  # fmt: skip
    image = link([text_object()], script)
    assert image.symbol_value("X") == 100 and image.symbol_value("Y") == 200


# -- link: MemoryError / OverflowError from a huge section with contents -----------


@pytest.mark.parametrize("move", ["0x10000000000", "0x7fffffffffffffff", "0x10000001"])
def test_a_huge_section_with_contents_is_a_link_error(move: str) -> None:
    script = parse_script(f"SECTIONS {{ .text : {{ *(.text) . += {move}; }} "
                          ".data : { *(.data) } }", "big.ld")  # fmt: skip
    with pytest.raises(LinkError, match=r"^big\.ld: output section \.text .* past 256 MiB$"):
        link([text_object()], script)


def test_the_limit_is_on_all_contents_together_and_bss_is_free() -> None:
    half = MAX_IMAGE_BYTES // 2
    over = parse_script(f"SECTIONS {{ .text : {{ *(.text) . += {half:#x}; }} "
                        f".data : {{ *(.data) . += {half:#x}; }} }}", "two.ld")  # fmt: skip
    with pytest.raises(LinkError, match=r"output section \.data .* past 256 MiB"):
        link([text_object()], over)
    obj = text_object()
    obj.sections[".bss"] = Section(".bss", SectionFlags(write=True, nobits=True), 16,
                                   nobits_size=1 << 40)  # fmt: skip
    fine = parse_script("SECTIONS { .text : { *(.text) } .data : { *(.data) } "
                        ".bss : { *(.bss) } }", "bss.ld")  # fmt: skip
    image = link([obj], fine)
    assert image.section(".bss").size == 1 << 40 and image.section(".bss").data is None


# -- ksworker: an interrupted exchange left answers in the pipe ---------------------

SLOW_WORKER = r"""
import sys, time
from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks
ks = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
for raw in sys.stdin:
    time.sleep(0.4)
    sys.stdout.write("+" + bytes(ks.asm(raw.strip(), 0)[0]).hex() + "\n")
    sys.stdout.flush()
"""


class _Interrupt(BaseException):
    pass


@pytest.mark.skipif(sys.platform != "linux", reason="uses SIGALRM")
def test_an_interrupted_exchange_never_hands_its_answer_to_the_next_text() -> None:
    """Before the fix, 'nop' came back as the encoding of the interrupted 'add'."""
    worker = KeystoneWorker(command=[sys.executable, "-c", SLOW_WORKER])

    def interrupt(signum, frame):  # type: ignore[no-untyped-def]
        raise _Interrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        assert worker.encode("isb").data == bytes.fromhex("df3f03d5")
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(_Interrupt):
            worker.encode("add x1, x2, #1")
        assert worker.encode("nop").data == bytes.fromhex("1f2003d5")
        assert worker.encode("add x1, x2, #1").data == bytes.fromhex("41040091")
        obj = assemble_source("nop\nadd x1, x2, #1\n", worker=worker)
        assert bytes(obj.sections[".text"].data) == bytes.fromhex("1f2003d541040091")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        worker.close()


# -- pagetable: leaf_mappings on a table tree with a loop ---------------------------


class _Ram:
    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.reads = 0

    def read_u64(self, pa: int) -> int:
        self.reads += 1
        if not 0x4000_0000 <= pa < 0x5000_0000:
            raise IndexError(pa)
        return self.words.get(pa, 0)

    def write_u64(self, pa: int, value: int) -> None:
        self.words[pa] = value


@pytest.mark.parametrize("granule", [4096, 16384, 65536])
def test_a_table_reached_twice_is_a_guest_fault_not_an_endless_listing(granule: int) -> None:
    """Every entry of a 4K/48 pgd pointing at the pgd itself meant 512**4 reads."""
    g = Geometry(granule, 48)
    ram = _Ram()
    pgd = 0x4000_0000
    for index in range(g.top_entries):
        ram.write_u64(pgd + 8 * index, table_descriptor(pgd))
    with pytest.raises(GuestFault, match=r"translation table at 0x40000000 is reached twice"):
        leaf_mappings(ram, g, pgd)
    assert ram.reads <= g.top_entries + g.entries


def test_two_entries_sharing_one_table_are_refused_and_a_clean_tree_still_lists() -> None:
    g = Geometry(4096, 48)
    ram = _Ram()
    tables = iter(range(0x4000_1000, 0x4010_0000, 0x1000))
    create_pgd_mapping(ram, g, 0x4000_0000, g.upper_base, 0x4100_0000, 0x4000, PAGE_KERNEL,
                       lambda: next(tables))  # fmt: skip
    leaves = leaf_mappings(ram, g, 0x4000_0000)
    assert [(m.va, m.pa) for m in leaves] == [
        (g.upper_base + i * 0x1000, 0x4100_0000 + i * 0x1000) for i in range(4)
    ]
    shared = ram.words[0x4000_0000 + 8 * g.pgd_index(g.upper_base)]
    ram.write_u64(0x4000_0000 + 8 * (g.pgd_index(g.upper_base) + 1), shared)
    with pytest.raises(GuestFault, match="reached twice"):
        leaf_mappings(ram, g, 0x4000_0000)


# -- asm: .incbin / .include of hostile files ---------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('.incbin "/proc/self/mem"\n', r"^x\.S:1: cannot read file /proc/self/mem: "),
        ('.include "/proc/self/mem"\n', r"^x\.S:1: cannot read include file /proc/self/mem: "),
        ('.incbin "/proc/self/maps", -8\n', r"^x\.S:1: \.incbin skip is negative$"),
        ('.incbin "/proc/self/maps", 0, -1\n', r"^x\.S:1: \.incbin count is negative$"),
    ],
)
def test_unreadable_or_negative_incbin_is_an_asm_error(source: str, message: str) -> None:
    """Before the fix: 'internal assembler error (OSError ...)', or the file's tail."""
    with pytest.raises(AsmError, match=message):
        assemble_source(source, "x.S")


def test_incbin_and_include_never_read_a_huge_file_whole(tmp_path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(MAX_SECTION_BYTES * 4)  # sparse: no disk used
    with pytest.raises(AsmError, match=r"section \.text larger than"):
        assemble_source(f'.incbin "{big}"\n', "x.S")
    include = tmp_path / "big.inc"
    with include.open("wb") as handle:
        handle.truncate(MAX_INCLUDE_BYTES + 1)
    with pytest.raises(AsmError, match=r"include file .* is larger than"):
        assemble_source(f'.include "{include}"\n', "x.S")
    small = tmp_path / "small.bin"
    small.write_bytes(bytes(range(16)))
    obj = assemble_source(f'.incbin "{small}", 4, 3\n.incbin "{small}", 99\n', "x.S")
    assert bytes(obj.sections[".text"].data) == bytes([4, 5, 6])


# -- every reader: a device, a FIFO or a huge file named as input -------------------

READERS = {
    "elf": (read_elf, ElfError),
    "ldscript": (load_script, LinkError),
    "asm": (assemble_file, AsmError),
    "toml": (load_machine_file, ConfigError),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_device_or_fifo_is_refused_at_once(reader: str, tmp_path) -> None:
    """Before the fix, /dev/zero streamed until memory ran out and a FIFO blocked."""
    read, error = READERS[reader]
    with pytest.raises(error, match="not a regular file"):
        read("/dev/zero")
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    with pytest.raises(error, match="not a regular file"):
        read(fifo)


@pytest.mark.parametrize(("reader", "limit"), [
    ("ldscript", 4 << 20), ("asm", MAX_INCLUDE_BYTES), ("toml", MAX_MACHINE_FILE_BYTES)])
def test_an_oversized_text_input_is_refused_without_reading_it_all(reader, limit, tmp_path):
    read, error = READERS[reader]
    big = tmp_path / "big.input"
    with big.open("wb") as handle:
        handle.truncate(limit + 1)
    with pytest.raises(error, match="larger than"):
        read(big)


# -- messages: text from a hostile file never carries line breaks or control codes ---


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[machine]\n"a\\nb" = 1\n', r"^m\.toml:\d*:? ?\[machine\] unknown key 'a\\nb'$"),
        ('["x\\u001b[2J"]\na = 1\n', r"^m\.toml: unknown table \[x\\x1b\[2J\]$"),
        ('"k\\rz" = 1\n', r"^m\.toml: unknown top-level key 'k\\rz'$"),
        ('[machine]\nname = "\\u0007x"\nnodes = 1\ncpus_per_node = 1\n',
         r"^m\.toml: topology name '\\x07x': must be printable text$"),
    ],
)
def test_toml_names_in_messages_are_escaped(toml: str, message: str) -> None:
    """Before the fix, a quoted key's newline split the CLI's one error line in two."""
    from emu.config import topology_from_toml

    with pytest.raises(ConfigError, match=message):
        topology_from_toml(toml, "m.toml")


def test_a_printable_unicode_machine_name_is_still_fine() -> None:
    from emu.config import topology_from_toml

    topo = topology_from_toml('[machine]\nname = "café-2s"\nnodes = 2\ncpus_per_node = 1\n', "m")
    assert topo.name == "café-2s"


def test_an_elf_section_name_in_a_message_is_escaped() -> None:
    from emu.blob.elf import elf_bytes, parse_elf
    from emu.blob.link import LinkedImage, OutputSection

    sec = OutputSection(".x\x1b[2J\n", 0x40000000, 0x40000000, 4, 4,
                        SectionFlags(execute=True), NOP)  # fmt: skip
    blob = bytearray(elf_bytes(LinkedImage(0x40000000, [sec], [])))
    shoff = int.from_bytes(blob[40:48], "little")
    offset_field = shoff + 64 + 24  # section 1's sh_offset
    blob[offset_field : offset_field + 8] = (len(blob) + 100).to_bytes(8, "little")
    with pytest.raises(ElfError) as err:
        parse_elf(bytes(blob), "k.elf")
    assert "section .x\\x1b[2J\\n" in str(err.value) and "\x1b" not in str(err.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('.error "a\\033[2Jb"\n', r"^x\.S:1: a\\x1b\[2Jb$"),
        ('.error "two\\nlines"\n', r"^x\.S:1: two\\nlines$"),
        ('.error "café"\n', r"^x\.S:1: café$"),
    ],
)
def test_an_error_directive_message_is_one_printable_line(source: str, message: str) -> None:
    """Before the fix, .error "\\033[2J" cleared the terminal the CLI printed it on."""
    with pytest.raises(AsmError, match=message):
        assemble_source(source, "x.S")


def test_an_assert_message_is_printed_with_control_codes_escaped() -> None:
    script = parse_script('SECTIONS { .text : { *(.text .data) } }\n'
                          'ASSERT(0, "stop\x1b[2J\x07")\n', "a.ld")  # fmt: skip
    with pytest.raises(LinkError, match=r"^a\.ld:2: ASSERT failed: stop\\x1b\[2J\\x07$"):
        link([text_object()], script)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('.unreq w1 .error "\x1b\r"\n', r"^x\.S:1: 'w1 \.error \"\\x1b\\r\"' is not a register alias$"),
        ('.purgem m .print "\x07"\n', r"^x\.S:1: macro 'm \.print \"\\x07\"' is not defined$"),
        ('.macro m\n.byte \\x\n.endm\nm\n', r"^x\.S:4: .*\(in macro 'm'"),
    ],
)
def test_asm_messages_quoting_the_source_escape_its_control_codes(source, message) -> None:
    """Found by the asm target once control codes were among its fragments."""
    with pytest.raises(AsmError, match=message) as err:
        assemble_source(source, "x.S")
    assert err.value.loc is not None and "\n" not in str(err.value)
