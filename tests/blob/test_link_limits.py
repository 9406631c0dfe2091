"""The linker's location counter never wraps past 2^64 silently (issue 17,
low): a step of ``.`` past the top of memory (or below 0), in or outside
SECTIONS, is a LinkError naming the script line."""

from __future__ import annotations

import pytest

from emu.blob.ldscript import parse_script
from emu.blob.link import link
from emu.blob.objfile import ObjectFile, Section, SectionFlags
from emu.errors import LinkError

TOP = (1 << 64) - 0x10


def text_object() -> ObjectFile:
    obj = ObjectFile(path="a.o")
    obj.sections[".text"] = Section(".text", SectionFlags(execute=True), 4, bytearray(8))
    return obj


@pytest.mark.parametrize("script", [
    f"SECTIONS {{ . = {TOP:#x}; . = . + 0x20; .text : {{ *(.text) }} }}",
    f"SECTIONS {{ . = {TOP:#x}; . += 0x20; .text : {{ *(.text) }} }}",
    f"SECTIONS {{ .text {TOP:#x} : {{ *(.text) }} . = . + 0x10; .d : {{ *(.text) }} }}",
    f"SECTIONS {{ .pad {TOP:#x} : {{ . = . + 0x20; }} .text : {{ *(.text) }} }}",
    "SECTIONS { . = 0x10; . = . - 0x20; .text : { *(.text) } }",
], ids=["outside", "plus-assign", "after-a-section", "inside", "below-zero"])
def test_location_counter_past_the_top_is_an_error(script):
    with pytest.raises(LinkError, match=r"^t\.ld:1: location counter moved past the top of "
                       r"memory \(2\^64\) from 0x"):
        link([text_object()], parse_script(script, "t.ld"))


def test_steps_that_stay_in_range_still_work():
    script = f"SECTIONS {{ . = {TOP - 0x100:#x}; . = . + 0x80; . = . - 0x40; .text : {{ *(.text) }} }}"
    image = link([text_object()], parse_script(script, "t.ld"))
    assert image.sections[0].vaddr == TOP - 0xC0
