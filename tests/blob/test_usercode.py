"""--add-user: an assembled file's sections renamed to the user sections."""

from __future__ import annotations

import pytest

from emu.blob.objfile import ObjectFile, Relocation, RelocType, Section, SectionFlags, Symbol
from emu.blob.usercode import as_user_object, user_section_name
from emu.errors import LinkError


@pytest.mark.parametrize(("name", "user"), [
    (".text", ".user.text"), (".text.startup", ".user.text.startup"),
    (".rodata", ".user.rodata"), (".rodata.str1.8", ".user.rodata.str1.8"),
    (".rodata.cst16", ".user.rodata.cst16"), (".data.rel.ro.local", ".user.rodata.local"),
    (".data", ".user.data"), (".data.counters", ".user.data.counters"), (".bss", ".user.bss"),
    (".user.text", ".user.text"), (".user.data.x", ".user.data.x"),
    (".textual", None), (".init.text", None), ("__jump_table", None), (".altinstructions", None),
])
def test_user_section_names(name: str, user: str | None) -> None:
    assert user_section_name(name) == user


def test_sections_symbols_and_relocations_move_together() -> None:
    obj = ObjectFile("wl.s")
    obj.sections[".text"] = Section(".text", SectionFlags(execute=True), 4, bytearray(8),
                                    relocations=[Relocation(0, RelocType.ADR_PREL_PG_HI21,
                                                            ".LC0", 0)])
    obj.sections[".rodata.str1.8"] = Section(".rodata.str1.8", SectionFlags(), 8,
                                             bytearray(b"hi\0"))
    obj.sections[".bss"] = Section(".bss", SectionFlags(write=True, nobits=True), 8,
                                   nobits_size=16)
    obj.sections[".comment"] = Section(".comment", SectionFlags(alloc=False), 1,
                                       bytearray(b"GCC\0"))
    obj.symbols[".LC0"] = Symbol(".LC0", ".rodata.str1.8", 0)
    obj.symbols["count"] = Symbol("count", ".bss", 8)
    obj.symbols["K"] = Symbol("K", None, 5)
    user = as_user_object(obj)
    assert list(user.sections) == [".user.text", ".user.rodata.str1.8", ".user.bss", ".comment"]
    assert user.sections[".user.text"].relocations == obj.sections[".text"].relocations
    assert user.sections[".user.bss"].size == 16 and user.sections[".user.bss"].flags.nobits
    assert user.symbols[".LC0"].section == ".user.rodata.str1.8"
    assert user.symbols["count"].section == ".user.bss"
    assert user.symbols["K"].section is None
    assert obj.sections[".text"].name == ".text"  # the input is left alone


def test_a_kernel_only_section_is_refused_naming_the_file() -> None:
    obj = ObjectFile("mine.s")
    obj.sections["__jump_table"] = Section("__jump_table", SectionFlags(write=True), 8,
                                           bytearray(16))
    with pytest.raises(LinkError, match=r"^mine\.s: section __jump_table has no place in user"):
        as_user_object(obj)
