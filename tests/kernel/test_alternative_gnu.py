"""GNU binutils as the oracle for the patching macros: the shipped kernel
assembled and linked by GNU as + GNU ld has the same .altinstructions,
.altinstr_replacement, __jump_table and text as ktext-emu's own build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from emu.blob.build import build_kernel, default_script, kernel_blob_dir, kernel_sources
from emu.blob.elf import write_elf

AS, LD = "aarch64-linux-gnu-as", "aarch64-linux-gnu-ld"
pytestmark = pytest.mark.skipif(
    not (shutil.which(AS) and shutil.which(LD)), reason="GNU binutils for AArch64 not installed"
)


def _sections(path: Path) -> dict[str, tuple[int, bytes]]:
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        return {s.name: (s["sh_addr"], s.data()) for s in elf.iter_sections()
                if s["sh_flags"] & 2 and s["sh_type"] != "SHT_NOBITS"}  # fmt: skip


def _symbols(path: Path, names: list[str]) -> dict[str, int]:
    with path.open("rb") as handle:
        table = ELFFile(handle).get_section_by_name(".symtab")
        return {name: table.get_symbol_by_name(name)[0]["st_value"] for name in names}


def test_patching_sections_match_gnu(tmp_path):
    blob = kernel_blob_dir()
    objects = []
    for source in kernel_sources():
        obj = tmp_path / f"{source.stem}.o"
        subprocess.run([AS, "-I", str(blob), "-o", str(obj), str(source)], check=True,
                       capture_output=True, text=True)  # fmt: skip
        objects.append(str(obj))
    gnu = tmp_path / "gnu.elf"
    subprocess.run([LD, "-T", str(default_script()), "-o", str(gnu), *objects], check=True,
                   capture_output=True, text=True)  # fmt: skip
    ours = tmp_path / "emu.elf"
    write_elf(build_kernel(), ours)
    theirs, mine = _sections(gnu), _sections(ours)
    for name in (".text", ".rodata", ".altinstructions", ".altinstr_replacement"):
        assert mine[name][0] == theirs[name][0], f"{name} placed differently"
        assert mine[name][1] == theirs[name][1], f"{name} differs from GNU as + ld"
    names = ["__alt_instructions", "__alt_instructions_end", "__start___jump_table",
             "__stop___jump_table", "ARM64_NCAPS", "static_key_storm_site"]  # fmt: skip
    assert _symbols(ours, names) == _symbols(gnu, names)
