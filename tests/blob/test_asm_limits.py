"""The assembler's memory is bounded by its limits, not by the host (issue 17,
item 6): the total of all sections, an ``.incbin`` read only as far as the
room left, lines streamed and refused as soon as one is too long, and the
statement count checked while a file is read.  Each bomb runs in a child
whose address space is capped (``resource.setrlimit``): it must end in its
one-line AsmError, never in a MemoryError or a dead process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emu.blob.asm import assemble_source
from emu.blob.asm.common import MAX_LINE, MAX_OUTPUT_BYTES, MAX_STATEMENTS
from emu.errors import AsmError

ADDRESS_SPACE = 1 << 30  # the child's cap: far below what the old code took (4+ GiB)

CHILD = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    from emu.blob.asm import assemble_file
    from emu.errors import AsmError
    try:
        assemble_file(sys.argv[1])
    except AsmError as err:
        print(err)
        sys.exit(4)
    print("assembled")
""")


def assemble_capped(path: Path) -> tuple[int, str]:
    child = subprocess.run([sys.executable, "-c", CHILD.format(cap=ADDRESS_SPACE), str(path)],
                           capture_output=True, text=True, timeout=300)
    return child.returncode, child.stdout.strip() + child.stderr.strip()


def test_total_of_all_sections_is_capped(tmp_path):
    source = tmp_path / "fill.S"
    source.write_text("".join(f'.section .s{i}, "a"\n.fill 0x3fff000, 1, 0x5a\n'
                              for i in range(80)))
    status, out = assemble_capped(source)
    assert status == 4, out
    assert out == (f"{source}:6: assembly output larger than {MAX_OUTPUT_BYTES:#x} bytes "
                   "(all sections together)")


def test_incbin_reads_no_more_than_the_room_left(tmp_path):
    blob = tmp_path / "blob.bin"
    with blob.open("wb") as handle:
        handle.truncate(60 << 20)  # sparse: 60 MiB of zeros
    source = tmp_path / "incbin.S"
    source.write_text("".join(f'.section .s{i}, "a"\n.incbin "blob.bin"\n' for i in range(80)))
    status, out = assemble_capped(source)
    assert status == 4, out
    assert out.startswith(f"{source}:6: assembly output larger than")


def test_blank_lines_are_streamed_and_counted(tmp_path):
    source = tmp_path / "blank.S"
    source.write_text("\n" * (16 << 20))
    status, out = assemble_capped(source)
    assert status == 4, out
    assert out == f"{source}:{MAX_STATEMENTS + 1}: more than {MAX_STATEMENTS} statements in {source}"


@pytest.mark.parametrize("piece", ["a", "/ ", "'a'", '"x"'], ids=["text", "slashes", "chars", "strings"])
def test_a_huge_line_is_refused_before_it_is_held(tmp_path, piece):
    source = tmp_path / "line.S"
    source.write_text("nop\n" + piece * (((16 << 20) - 8) // len(piece)) + "\n")
    status, out = assemble_capped(source)
    assert status == 4, out
    assert out == f"{source}:2: line longer than {MAX_LINE} characters"


def test_a_section_is_capped_across_its_subsections():
    source = ".fill 0x3000000\n.subsection 1\n.fill 0x3000000\n"
    with pytest.raises(AsmError, match=r"^t\.S:3: section \.text larger than"):
        assemble_source(source, "t.S")

