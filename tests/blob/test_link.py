"""The linker on hand-built ObjectFiles: placement, symbols, relocations, errors."""

from __future__ import annotations

import capstone
import pytest
from capstone import arm64_const
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.blob.build import default_script
from emu.blob.ldscript import load_script, parse_script
from emu.blob.link import LinkedImage, link
from emu.blob.objfile import (
    Binding,
    ObjectFile,
    Relocation,
    RelocType,
    Section,
    SectionFlags,
    Symbol,
    SymbolType,
)
from emu.errors import LinkError, SourceLoc

KERNEL_LD = default_script()
TEXT = SectionFlags(execute=True)
RODATA = SectionFlags()
DATA = SectionFlags(write=True)
BSS = SectionFlags(write=True, nobits=True)
NOTE = SectionFlags(alloc=False)
M64 = (1 << 64) - 1

_CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
_CS.detail = True


def make_obj(path: str, *sections: Section, symbols=(), undefined=()) -> ObjectFile:
    obj = ObjectFile(path=path)
    for sec in sections:
        obj.sections[sec.name] = sec
    for sym in symbols:
        obj.symbols[sym.name] = sym
    obj.undefined |= set(undefined)
    return obj


def sec(name: str, flags: SectionFlags, data: bytes | int = b"", align: int = 1, relocs=()):
    if flags.nobits:
        return Section(name, flags, align, nobits_size=int(data), relocations=list(relocs))
    return Section(name, flags, align, bytearray(data), relocations=list(relocs))


def gsym(name: str, section: str | None, value: int = 0, **kw) -> Symbol:
    return Symbol(name, section, value, kw.pop("binding", Binding.GLOBAL), **kw)


def lsym(name: str, section: str | None, value: int = 0) -> Symbol:
    return Symbol(name, section, value, Binding.LOCAL)


def script(text: str):
    return parse_script(text, "test.ld")


def word(image: LinkedImage, address: int) -> int:
    for out in image.sections:
        if out.vaddr <= address < out.end and out.data is not None:
            off = address - out.vaddr
            return int.from_bytes(out.data[off : off + 4], "little")
    raise AssertionError(f"{address:#x} not in any section")


def quad(image: LinkedImage, address: int) -> int:
    lo, hi = word(image, address), word(image, address + 4)
    return lo | hi << 32


def branch_target(image: LinkedImage, address: int) -> int:
    insn = next(_CS.disasm(word(image, address).to_bytes(4, "little"), address))
    return [op.imm for op in insn.operands if op.type == arm64_const.ARM64_OP_IMM][-1] & M64


NOP = (0xD503201F).to_bytes(4, "little")
BL = (0x94000000).to_bytes(4, "little")


# --------------------------------------------------------------------------- placement


def test_first_match_wins_and_inputs_keep_command_line_then_section_order() -> None:
    a = make_obj(
        "a.o",
        sec(".text.b", TEXT, NOP, 4),
        sec(".text", TEXT, NOP * 2, 4),
        symbols=[lsym("a_text", ".text"), lsym("a_b", ".text.b")],
    )
    b = make_obj("b.o", sec(".text", TEXT, NOP, 16), symbols=[lsym("b_text", ".text")])
    img = link(
        [a, b],
        script("SECTIONS { . = 0x1000; .text : { *(.text .text.*) } .other : { *(.text.b) } }"),
    )
    text = img.section(".text")
    assert [(p.file, p.section) for p in text.inputs] == [
        ("a.o", ".text.b"),
        ("a.o", ".text"),
        ("b.o", ".text"),
    ]
    assert text.vaddr == 0x1000 and text.align == 16
    assert img.symbol_value("a_b") == 0x1000
    assert img.symbol_value("a_text") == 0x1004
    assert img.symbol_value("b_text") == 0x1010  # aligned to its 16-byte input alignment
    assert text.size == 0x14
    assert [s.name for s in img.sections] == [".text"]  # .other got nothing: dropped


def test_explicit_address_at_and_header_align() -> None:
    objs = [make_obj("a.o", sec(".a", DATA, b"\1" * 3), sec(".b", DATA, b"\2" * 5, 2))]
    img = link(
        objs,
        script("""SECTIONS {
            .a 0x4000 : AT(0x9000) { *(.a) }
            .b : ALIGN(0x100) { *(.b) }
            .c 0x8000 : { c_start = .; . += 0x10; }
        }"""),
    )
    a, b, c = img.section(".a"), img.section(".b"), img.section(".c")
    assert (a.vaddr, a.paddr, a.data) == (0x4000, 0x9000, b"\1" * 3)
    assert (b.vaddr, b.paddr, b.align) == (0x4100, 0x9100, 0x100)  # LMA follows the offset
    assert (c.vaddr, c.paddr, c.size, c.nobits) == (0x8000, 0x8000, 0x10, True)
    assert c.flags.write and not c.flags.execute


def test_empty_sections_follow_gnu_rules() -> None:
    objs = [make_obj("a.o", sec(".text", TEXT, NOP, 4))]
    img = link(
        objs,
        script("""SECTIONS {
            . = 0x1000;
            .text : { *(.text) }
            .gone ALIGN(0x10000) : { *(.nothing) }
            after_gone = .;
            .named ALIGN(0x10000) : { named = .; *(.nothing) }
            after_named = .;
            .zero : { . = . + 0; }
            .kept : { . = ALIGN(16); }
        }"""),
    )
    assert img.symbol_value("after_gone") == 0x1004  # address of an empty section ignored
    assert img.symbol_value("named") == 0x10000  # ...unless it defines symbols
    assert img.symbol_value("after_named") == 0x10000
    names = [s.name for s in img.sections]
    assert names == [".text", ".kept"]
    assert img.section(".kept").size == 0


def test_location_counter_inside_sections_is_section_relative() -> None:
    img = link(
        [make_obj("a.o", sec(".data", DATA, b"\xff" * 4))],
        script("""PROVIDE(K = 0x100);
        SECTIONS { . = 0x2000; .data : { *(.data) a = 0x10; . = K; end = .; k = ABSOLUTE(K); } }"""),
    )
    assert img.symbol_value("a") == 0x2010
    assert img.symbol_value("end") == 0x2100
    assert img.symbol_value("k") == 0x100
    data = img.section(".data")
    assert data.size == 0x100 and data.data == b"\xff" * 4 + bytes(0xFC)


def test_bss_and_progbits_mix() -> None:
    obj = make_obj(
        "a.o",
        sec(".data", DATA, b"\x11" * 8, 8),
        sec(".bss", BSS, 0x30, 16),
        sec(".bss.more", BSS, 0x8, 8),
    )
    img = link(
        [obj],
        script("SECTIONS { . = 0x10000; .data : { *(.data) } .bss : { *(.bss .bss.*) } }"),
    )
    bss = img.section(".bss")
    assert bss.nobits and bss.data is None and (bss.vaddr, bss.size) == (0x10010, 0x38)
    mixed = link([obj], script("SECTIONS { . = 0x10000; .all : { *(.bss*) *(.data) } }"))
    assert mixed.section(".all").data == bytes(0x38) + b"\x11" * 8


def test_discard_and_orphans() -> None:
    obj = make_obj(
        "a.o",
        sec(".text", TEXT, NOP),
        sec(".note.x", NOTE, b"note"),
        sec(".comment", NOTE, b"c"),
        sec(".eh_frame", RODATA, b"eh"),
        symbols=[gsym("in_eh", ".eh_frame")],
    )
    text = "SECTIONS { .text : { *(.text) } /DISCARD/ : { *(.eh_frame .note.*) } }"
    img = link([obj], script(text))
    assert [s.name for s in img.sections] == [".text"]
    assert "in_eh" not in img.globals
    user = make_obj(
        "b.o",
        sec(".text.u", TEXT, BL, relocs=[Relocation(0, RelocType.CALL26, "in_eh", 0)]),
    )
    with pytest.raises(LinkError, match=r"in_eh .*discarded section \.eh_frame"):
        link([obj, user], script(text.replace("*(.text)", "*(.text .text.u)")))
    orphan = make_obj("c.o", sec(".weird", RODATA, b"1234"))
    with pytest.raises(LinkError, match=r"c\.o: section \.weird \(0x4 bytes\) is not placed"):
        link([obj, orphan], script(text))


# --------------------------------------------------------------------------- symbols


def test_locals_are_per_file_and_globals_shared() -> None:
    def caller(path: str) -> ObjectFile:
        return make_obj(
            path,
            sec(".text", TEXT, BL * 3 + NOP, 4, relocs=[
                Relocation(0, RelocType.CALL26, "helper", 0),
                Relocation(4, RelocType.CALL26, ".L1", 0),
                Relocation(8, RelocType.CALL26, "shared", 0),
            ]),
            symbols=[lsym("helper", ".text", 12), lsym(".L1", ".text", 12)],
        )  # fmt: skip

    lib = make_obj("lib.o", sec(".text", TEXT, NOP, 4), symbols=[gsym("shared", ".text")])
    img = link(
        [caller("x.o"), caller("y.o"), lib],
        script("SECTIONS { . = 0x4000; .text : { *(.text) } }"),
    )
    assert [branch_target(img, 0x4000 + i) for i in (0, 4, 8)] == [0x400C, 0x400C, 0x4020]
    assert [branch_target(img, 0x4010 + i) for i in (0, 4, 8)] == [0x401C, 0x401C, 0x4020]
    helpers = [s for s in img.symbols if s.name == "helper"]
    assert {(s.file, s.value, s.binding) for s in helpers} == {
        ("x.o", 0x400C, Binding.LOCAL),
        ("y.o", 0x401C, Binding.LOCAL),
    }


def test_duplicate_globals_and_weak_definitions() -> None:
    def definer(path: str, binding: Binding, line: int | None = None) -> ObjectFile:
        loc = SourceLoc(path.replace(".o", ".S"), line) if line else None
        return make_obj(
            path,
            sec(".data", DATA, bytes(8), 8),
            symbols=[gsym("thing", ".data", binding=binding, loc=loc)],
        )

    user = make_obj(
        "u.o",
        sec(".rodata", RODATA, bytes(8), 8, relocs=[Relocation(0, RelocType.ABS64, "thing", 0)]),
    )
    s = script("SECTIONS { . = 0x1000; .data : { *(.data) } .rodata : { *(.rodata) } }")
    with pytest.raises(LinkError) as err:
        link([definer("a.o", Binding.GLOBAL, 3), definer("b.o", Binding.GLOBAL, 7), user], s)
    assert "duplicate symbol thing" in str(err.value)
    assert "a.S:3" in str(err.value) and "b.S:7" in str(err.value)

    img = link([definer("a.o", Binding.WEAK), definer("b.o", Binding.GLOBAL), user], s)
    assert quad(img, img.section(".rodata").vaddr) == 0x1008  # the strong one in b.o
    assert img.globals["thing"].file == "b.o"
    img = link([definer("a.o", Binding.WEAK), definer("b.o", Binding.WEAK), user], s)
    assert quad(img, img.section(".rodata").vaddr) == 0x1000  # first weak wins


def test_undefined_symbol_names_site_and_source_line() -> None:
    obj = make_obj(
        "a.o",
        sec(".text", TEXT, NOP + BL, 4, relocs=[
            Relocation(4, RelocType.CALL26, "missing_func", 0, SourceLoc("a.S", 12)),
        ]),
    )  # fmt: skip
    with pytest.raises(LinkError) as err:
        link([obj], script("SECTIONS { .text : { *(.text) } }"))
    assert str(err.value) == "a.S:12: undefined symbol missing_func referenced at a.o:.text+0x4"


def test_provide_defsym_and_script_overrides() -> None:
    obj = make_obj(
        "a.o",
        sec(".rodata", RODATA, bytes(16), 8, relocs=[
            Relocation(0, RelocType.ABS64, "wanted", 0),
            Relocation(8, RelocType.ABS64, "overridden", 0),
        ]),
        symbols=[gsym("overridden", ".rodata", 4), gsym("mine", ".rodata", 0)],
        undefined=["wanted"],
    )  # fmt: skip
    s = script("""
        PROVIDE(wanted = 0x1111);
        PROVIDE(unwanted = 0x2222);
        PROVIDE(mine = 0x3333);
        SECTIONS { . = BASE; .rodata : { *(.rodata) } }
        overridden = 0x5555;
        PROVIDE(BASE = 0x8000);
    """)
    img = link([obj], s)
    assert quad(img, 0x8000) == 0x1111 and quad(img, 0x8008) == 0x5555
    assert "unwanted" not in img.globals
    assert img.symbol_value("mine") == 0x8000  # the object's definition, not PROVIDE's
    assert img.globals["overridden"].file is None  # the script's assignment won
    moved = link([obj], s, defsyms={"BASE": 0x20000, "wanted": 0x42})
    assert moved.section(".rodata").vaddr == 0x20000 and quad(moved, 0x20000) == 0x42


def test_forward_references_converge() -> None:
    obj = make_obj("a.o", sec(".a", DATA, bytes(0x20)), sec(".b", DATA, bytes(0x10)))
    img = link(
        [obj],
        script("""SECTIONS {
            size_b = SIZEOF(.b);
            . = 0x1000;
            .a : { b_at = ADDR(.b); *(.a) }
            .b ALIGN(0x100) : { *(.b) }
            late_use = later + 1;
            later = 0x40;
        }"""),
    )
    assert img.symbol_value("size_b") == 0x10
    assert img.symbol_value("b_at") == 0x1100
    assert img.symbol_value("late_use") == 0x41


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("SECTIONS { .a 0x1000 : { *(.a) } .b 0x1008 : { *(.b) } }", "overlaps section .b VMA"),
        (
            "SECTIONS { .a 0x1000 : AT(0x100) { *(.a) } .b 0x2000 : AT(0x108) { *(.b) } }",
            "overlaps section .b LMA",
        ),
        ("SECTIONS { .a 0x1000 : { *(.a) . = 0x4; } }", "test.ld:1: cannot move location counter"),
        ("SECTIONS { .a : { *(.a) } }\nASSERT(SIZEOF(.a) > 0x100, \"too small\")", "test.ld:2: ASSERT failed: too small"),
        ("SECTIONS {\n .a : { x = nowhere; *(.a) } }", "test.ld:2: undefined symbol nowhere"),
        ("SECTIONS { .a : { x = ADDR(.nope); *(.a) } }", "undefined section .nope"),
        ("SECTIONS { .a : { *(.a) } .b : { *(.b) } .a : { *(.c) } }", "output section .a defined twice"),
        ("ENTRY(nothing) SECTIONS { .a : { *(.a) *(.b) } }", "entry symbol nothing is not defined"),
        ("x = 1;\n. = 5;", "test.ld:2: assignment to . outside SECTIONS"),
        ("SECTIONS { .a : ALIGN(3) { *(.a) *(.b) } }", "not a power of two"),
        ("SECTIONS { .a 0xfffffffffffffff0 : { *(.a) *(.b) } }", "past"),
    ],
)  # fmt: skip
def test_layout_errors(text: str, pattern: str) -> None:
    obj = make_obj("a.o", sec(".a", DATA, bytes(16)), sec(".b", DATA, bytes(16)))
    # A second SECTIONS command discards whatever the case leaves unplaced.
    with pytest.raises(LinkError, match=pattern):
        link([obj], script(text + "\nSECTIONS { /DISCARD/ : { *(.a .b) } }"))


def test_out_of_range_relocation_message() -> None:
    obj = make_obj(
        "a.o",
        sec(".text", TEXT, BL, 4, relocs=[
            Relocation(0, RelocType.CALL26, "far_away", 8, SourceLoc("a.S", 5)),
        ]),
    )  # fmt: skip
    far = make_obj("b.o", sec(".far", TEXT, NOP, 4), symbols=[gsym("far_away", ".far")])
    s = script("SECTIONS { .text 0x1000 : { *(.text) } .far 0x8001000 : { *(.far) } }")
    with pytest.raises(LinkError) as err:
        link([obj, far], s)
    assert str(err.value) == (
        "a.S:5: R_AARCH64_CALL26 against far_away+0x8 at a.o:.text+0x0 (0x1000): "
        "branch offset 0x8000008 out of range [-0x8000000, 0x8000000)"
    )


def test_entry_point() -> None:
    obj = make_obj("a.o", sec(".text", TEXT, NOP * 2, 4), symbols=[gsym("go", ".text", 4)])
    assert (
        link([obj], script("ENTRY(go) SECTIONS { . = 0x100; .text : { *(.text) } }")).entry == 0x104
    )
    assert link([obj], script("SECTIONS { . = 0x100; .text : { *(.text) } }")).entry == 0x100


# --------------------------------------------------------------------------- relocations across boundaries

_INSNS = {
    # kind: (instruction, reach, alignment, immediate field)
    RelocType.CALL26: (0x94000000, 1 << 27, 4, 0x03FFFFFF),
    RelocType.JUMP26: (0x14000000, 1 << 27, 4, 0x03FFFFFF),
    RelocType.CONDBR19: (0x54000000, 1 << 20, 4, 0x7FFFF << 5),
    RelocType.LD_PREL_LO19: (0x58000000, 1 << 20, 4, 0x7FFFF << 5),
    RelocType.TSTBR14: (0x36000000, 1 << 15, 4, 0x3FFF << 5),
    RelocType.ADR_PREL_LO21: (0x10000000, 1 << 20, 1, (0x7FFFF << 5) | (3 << 29)),
}


@pytest.mark.parametrize("kind", list(_INSNS))
@settings(max_examples=40, deadline=None)
@given(
    gap_pages=st.integers(0, 40),
    site_slot=st.sampled_from(["first", "last"]),
    target_off=st.sampled_from([0, 4, 0xFFC]),
    addend=st.sampled_from([0, -4, 8, -0x1000]),
    backwards=st.booleans(),
)
def test_pc_relative_relocations_across_files_and_pages(
    kind, gap_pages, site_slot, target_off, addend, backwards
) -> None:
    template, reach, align, field = _INSNS[kind]
    site_off = 0 if site_slot == "first" else 0xFFC
    code = bytearray(NOP * 0x400)
    code[site_off : site_off + 4] = template.to_bytes(4, "little")
    a = make_obj(
        "a.o",
        sec(".text", TEXT, bytes(code), 4, [Relocation(site_off, kind, "target", addend)]),
    )
    b = make_obj(
        "b.o", sec(".text", TEXT, NOP * 0x400, 4), symbols=[gsym("target", ".text", target_off)]
    )
    text_base, far_base = 0x40000000, 0x40000000 + 0x1000 * (gap_pages + 1)
    if backwards:
        text_base, far_base = far_base, text_base
    s = script(
        f"SECTIONS {{ .t1 {text_base:#x} : {{ a.o(.text) }} .t2 {far_base:#x} : {{ b.o(.text) }} }}"
    )
    site = text_base + site_off
    target = far_base + target_off + addend
    offset = target - site
    if not -reach <= offset < reach or offset % align:
        with pytest.raises(LinkError, match="target"):
            link([a, b], s)
        return
    img = link([a, b], s)
    assert branch_target(img, site) == target
    assert word(img, site) & ~field == template


@settings(max_examples=60, deadline=None)
@given(
    data_page=st.integers(-(1 << 20), (1 << 20) - 1),
    data_off=st.sampled_from([0, 8, 0xFF8, 0x1000 - 16]),
    addend=st.sampled_from([0, 8, -8, 0x1000]),
)
def test_adrp_lo12_pairs_across_pages(data_page: int, data_off: int, addend: int) -> None:
    text_base = 0x80000000
    data_base = text_base + data_page * 0x1000 + 0x4000 * (1 if data_page >= 0 else -1)
    if not 0 <= data_base < 1 << 48:
        return
    code = (0x90000000).to_bytes(4, "little") + (0x91000000).to_bytes(4, "little")
    code += (0xF9400000).to_bytes(4, "little")
    a = make_obj(
        "a.o",
        sec(".text", TEXT, code, 4, [
            Relocation(0, RelocType.ADR_PREL_PG_HI21, "var", addend),
            Relocation(4, RelocType.ADD_ABS_LO12_NC, "var", addend),
            Relocation(8, RelocType.LDST64_ABS_LO12_NC, "var", addend),
        ]),
    )  # fmt: skip
    b = make_obj(
        "b.o", sec(".data", DATA, bytes(0x2000), 8), symbols=[gsym("var", ".data", data_off)]
    )
    s = script(
        f"SECTIONS {{ .text {text_base:#x} : {{ *(.text) }} .data {data_base:#x} : {{ *(.data) }} }}"
    )
    target = data_base + data_off + addend
    page_delta = (target >> 12) - (text_base >> 12)
    if not -(1 << 20) <= page_delta < 1 << 20:
        with pytest.raises(LinkError, match="adrp page delta"):
            link([a, b], s)
        return
    img = link([a, b], s)
    adrp = next(_CS.disasm(word(img, text_base).to_bytes(4, "little"), text_base))
    add = next(_CS.disasm(word(img, text_base + 4).to_bytes(4, "little"), text_base + 4))
    ldr = next(_CS.disasm(word(img, text_base + 8).to_bytes(4, "little"), text_base + 8))
    page = adrp.operands[1].imm
    assert page + add.operands[2].imm == target
    assert page + ldr.operands[1].mem.disp == target


def test_kernel_script_defaults_and_defsym_override() -> None:
    head = make_obj("head.o", sec(".head.text", TEXT, NOP * 4, 4))
    main = make_obj(
        "main.o",
        sec(".text", TEXT, NOP * 8, 4),
        sec(".rodata", RODATA, bytes(0x100), 8),
        sec(".data..ro_after_init", DATA, bytes(8), 8),
        sec(".init.text", TEXT, NOP, 4),
        sec(".data", DATA, bytes(32), 8),
        sec(".bss", BSS, 0x2000, 16),
        sec(".note.GNU-stack", NOTE, b""),
    )
    kernel = load_script(KERNEL_LD)
    img = link([head, main], kernel)
    v = img.symbol_value
    assert v("_text") == 0xFFFF808000000000 == img.entry
    assert img.section(".head.text").paddr == 0x40000000
    assert v("_stext") == v("_text") + 0x10000 and v("_etext") == v("_stext") + 0x10000
    assert v("__start_rodata") == v("_etext")
    # RO_DATA(PAGE_SIZE): ro_after_init right after .rodata (8-byte aligned),
    # __end_rodata at a page; then tramp, reserved and swapper dirs a page
    # each (PAGE_SIZE defaults to 64K)
    assert v("__start_ro_after_init") == v("__start_rodata") + 0x100
    assert v("__end_rodata") == v("__start_rodata") + 0x10000
    assert v("tramp_pg_dir") == v("__end_rodata")
    assert v("reserved_pg_dir") == v("tramp_pg_dir") + 0x10000
    assert v("swapper_pg_dir") == v("reserved_pg_dir") + 0x10000
    assert v("__inittext_begin") == v("swapper_pg_dir") + 0x10000
    small = link([head, main], kernel, {"PAGE_SIZE": 0x1000}).symbol_value
    assert small("__end_rodata") == small("__start_rodata") + 0x1000
    assert small("swapper_pg_dir") - small("tramp_pg_dir") == 0x2000
    for name in (
        "_stext",
        "_etext",
        "__start_rodata",
        "__end_rodata",
        "__inittext_begin",
        "_data",
        "_end",
    ):
        assert v(name) % 0x10000 == 0, name
    assert v("__bss_start") <= v("__bss_stop") <= v("_end")
    for out in img.sections:
        if out.name.startswith(".user."):
            # Linked at the user VA they run at, loaded right after _end.
            assert out.paddr - out.vaddr == v("_end") - v("_text") + 0x40000000 - 0x400000
        else:
            assert out.paddr - out.vaddr == 0x40000000 - 0xFFFF808000000000
    assert v("__user_text_start") == v("USER_BASE") == 0x400000
    moved = link(
        [head, main], kernel, {"KIMAGE_VADDR": 0xFFFF800008000000, "PHYS_OFFSET_LOAD": 0x80200000}
    )
    assert moved.symbol_value("_text") == 0xFFFF800008000000
    assert moved.section(".head.text").paddr == 0x80200000
    assert moved.symbol_value("_end") - moved.symbol_value("_text") == v("_end") - v("_text")
    with pytest.raises(
        LinkError, match=r"kernel\.ld:\d+: ASSERT failed: KIMAGE_VADDR is not 64 KiB"
    ):
        link([head, main], kernel, {"KIMAGE_VADDR": 0xFFFF800008000004})
    with pytest.raises(LinkError, match=r"ASSERT failed: PHYS_OFFSET_LOAD is not 64 KiB"):
        link([head, main], kernel, {"PHYS_OFFSET_LOAD": 0x40001000})


def test_gnu_note_sections_in_kernel_script_are_discarded() -> None:
    main = make_obj("m.o", sec(".text", TEXT, NOP, 4), sec(".note.gnu.property", RODATA, bytes(16)))
    img = link([main], load_script(KERNEL_LD))
    assert ".note.gnu.property" not in [s.name for s in img.sections]


def test_symbol_types_and_sizes_survive() -> None:
    obj = make_obj(
        "a.o",
        sec(".text", TEXT, NOP * 4, 4),
        symbols=[gsym("func", ".text", 4, type=SymbolType.FUNC, size=8), gsym("abs", None, 0x77)],
    )
    img = link([obj], script("SECTIONS { . = 0x100; .text : { *(.text) } }"))
    func = img.globals["func"]
    assert (func.value, func.size, func.type, func.section, func.file) == (
        0x104, 8, SymbolType.FUNC, ".text", "a.o",
    )  # fmt: skip
    assert img.globals["abs"].section is None and img.globals["abs"].value == 0x77


_DATA_KINDS = {
    # kind: (bytes, pc-relative, signed range or None)
    RelocType.ABS64: (8, False, None),
    RelocType.ABS32: (4, False, (-(1 << 31), 1 << 32)),
    RelocType.ABS16: (2, False, (-(1 << 15), 1 << 16)),
    RelocType.PREL64: (8, True, None),
    RelocType.PREL32: (4, True, (-(1 << 31), 1 << 32)),
    RelocType.PREL16: (2, True, (-(1 << 15), 1 << 16)),
}


@pytest.mark.parametrize("kind", list(_DATA_KINDS))
@settings(max_examples=40, deadline=None)
@given(
    site_base=st.sampled_from([0x1000, 0x7000, 0xFFFF0000, 0xFFFF808000010000]),
    target_base=st.sampled_from([0x2000, 0x8000, 0xFFFF1000, 0xFFFF808000020000]),
    target_off=st.sampled_from([0, 8, 0xFF8]),
    addend=st.sampled_from([0, 4, -8, -0x2000, 0x10000]),
)
def test_data_relocations_across_files(kind, site_base, target_base, target_off, addend) -> None:
    size, pcrel, bounds = _DATA_KINDS[kind]
    site_off = 0x1000 - size  # the last field of its section
    a = make_obj(
        "a.o", sec(".site", DATA, bytes(0x1000), 1, [Relocation(site_off, kind, "obj", addend)])
    )
    b = make_obj(
        "b.o", sec(".tgt", DATA, bytes(0x1000), 8), symbols=[gsym("obj", ".tgt", target_off)]
    )
    if abs(site_base - target_base) < 0x1000:
        return
    s = script(
        f"SECTIONS {{ .site {site_base:#x} : {{ *(.site) }} .tgt {target_base:#x} : {{ *(.tgt) }} }}"
    )
    site = site_base + site_off
    x = target_base + target_off + addend - (site if pcrel else 0)
    if bounds is not None and not bounds[0] <= x < bounds[1]:
        with pytest.raises(
            LinkError, match=rf"R_AARCH64_{kind.name} against obj.* at a\.o:\.site\+0x{site_off:x}"
        ):
            link([a, b], s)
        return
    img = link([a, b], s)
    field = img.section(".site").data[site_off : site_off + size]
    assert int.from_bytes(field, "little") == x & ((1 << (8 * size)) - 1)


@pytest.mark.parametrize(
    ("kind", "shift", "bound"),
    [
        (RelocType.MOVW_UABS_G0, 0, 1 << 16),
        (RelocType.MOVW_UABS_G1, 16, 1 << 32),
        (RelocType.MOVW_UABS_G2, 32, 1 << 48),
        (RelocType.MOVW_UABS_G3, 48, None),
        (RelocType.MOVW_UABS_G2_NC, 32, None),
    ],
)
@pytest.mark.parametrize("base", [0x8000, 0x7FFF0000, 0xFFFF_FFF0_0000, 0xFFFF808000000000])
def test_movw_against_symbols_of_another_file(kind, shift, bound, base) -> None:
    template = 0xD2800000 | (shift // 16) << 21  # movz x0, #0, lsl #shift
    a = make_obj(
        "a.o",
        sec(".text", TEXT, template.to_bytes(4, "little"), 4, [Relocation(0, kind, "far", -8)]),
    )
    b = make_obj("b.o", sec(".data", DATA, bytes(16), 8), symbols=[gsym("far", ".data", 8)])
    s = script(f"SECTIONS {{ .text 0x100 : {{ *(.text) }} .data {base:#x} : {{ *(.data) }} }}")
    if bound is not None and base >= bound:
        with pytest.raises(LinkError, match=f"R_AARCH64_{kind.name} against far-0x8"):
            link([a, b], s)
        return
    insn = next(_CS.disasm(word(link([a, b], s), 0x100).to_bytes(4, "little"), 0x100))
    assert insn.operands[1].imm & M64 == ((base >> shift) & 0xFFFF) << shift


def test_provisional_values_of_early_passes_do_not_fail_the_link() -> None:
    obj = make_obj("a.o", sec(".a", DATA, bytes(8)), sec(".b", DATA, bytes(8)))
    img = link(
        [obj],
        script("""SECTIONS {
            . = 0x1000;
            .a : { *(.a) . = b_end - 0x100; a_end = .; }
            .b 0x9000 : { *(.b) b_end = .; }
            q = 0x100 / SIZEOF(.b);
        }"""),
    )
    # `b_end` is read as 0 before .b is placed; the converged layout is valid.
    assert img.symbol_value("a_end") == 0x9008 - 0x100
    assert img.symbol_value("q") == 0x20


def test_a_layout_that_never_settles_is_an_error() -> None:
    obj = make_obj("a.o", sec(".a", DATA, bytes(8)), sec(".b", DATA, bytes(8)))
    flip = "SECTIONS { . = 0x1000; .a : { *(.a) . += (ABSOLUTE(ADDR(.b)) & 0x10) ? 0 : 0x10; } .b : { *(.b) } }"
    with pytest.raises(LinkError, match="does not converge"):
        link([obj], script(flip))


def test_undefined_weak_references_resolve_like_gnu_ld() -> None:
    code = BL + (0x14000000).to_bytes(4, "little") + (0x90000000).to_bytes(4, "little")
    code += (0x54000000).to_bytes(4, "little") + bytes(8)
    user = make_obj(
        "u.o",
        sec(".text", TEXT, code, 4, [
            Relocation(0, RelocType.CALL26, "opt", 0),
            Relocation(4, RelocType.JUMP26, "opt", 0),
            Relocation(8, RelocType.ADR_PREL_PG_HI21, "opt", 0),
            Relocation(12, RelocType.CONDBR19, "opt", 0),
            Relocation(16, RelocType.ABS64, "opt", 0x10),
        ]),
        symbols=[Symbol("opt", None, 0, Binding.WEAK)],
        undefined=["opt"],
    )  # fmt: skip
    s = script("SECTIONS { . = 0xFFFF808000000000; .text : { *(.text) } }")
    img = link([user], s)
    base = 0xFFFF808000000000
    assert word(img, base) == word(img, base + 4) == 0xD503201F  # calls become NOPs
    assert branch_target(img, base + 8) == base  # adrp of its own page
    assert branch_target(img, base + 12) == base + 12
    assert quad(img, base + 16) == 0x10
    assert "opt" not in img.globals
    definer = make_obj("d.o", sec(".data", DATA, bytes(8)), symbols=[gsym("opt", ".data")])
    s2 = script("SECTIONS { . = 0xFFFF808000000000; .text : { *(.text) } .data : { *(.data) } }")
    img = link([user, definer], s2)
    assert branch_target(img, base) == img.symbol_value("opt")
