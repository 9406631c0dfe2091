"""Shared fixtures for the blob toolchain tests.

``gnu_as`` / ``gnu_gcc`` run the GNU AArch64 tools (the independent oracle)
and skip the test, with a reason, when they are not installed.
``object_view`` reduces an emu ObjectFile and ``elf_object_view`` a GNU
relocatable ELF to the same comparable shape: section bytes, relocations
with their targets spelled the same way, and the non-local symbols.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from emu.blob.objfile import Binding, ObjectFile, SymbolType

GNU_AS = "aarch64-linux-gnu-as"
GNU_GCC = "aarch64-linux-gnu-gcc"
GCC_FLAGS = [
    "-S", "-ffreestanding", "-fno-pic", "-mgeneral-regs-only",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-ident",
]  # fmt: skip

# Relocation target: ("sec", section, offset) for anything local, ("abs", "", value) for an
# absolute one (GNU as uses symbol 0, we use a local absolute "*ABS*"), ("sym", name, addend) otherwise.
Target = tuple[str, str, int]


@dataclass
class ObjectView:
    sections: dict[str, bytes | int] = field(default_factory=dict)  # bytes, or size if nobits
    aligns: dict[str, int] = field(default_factory=dict)
    relocations: dict[str, list[tuple[int, int, Target]]] = field(default_factory=dict)
    symbols: dict[str, tuple[str | None, int, str, int]] = field(default_factory=dict)


def _named_symbol(name: str) -> bool:
    return bool(name) and not name.startswith((".L", "$", "*ABS*")) and "\x02" not in name


def elf_view(path: Path) -> ObjectView:
    view = ObjectView()
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        for sec in elf.iter_sections():
            kind = sec["sh_type"]
            if kind in ("SHT_PROGBITS", "SHT_NOBITS", "SHT_NOTE", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY") and sec.name:
                view.sections[sec.name] = sec["sh_size"] if kind == "SHT_NOBITS" else bytes(sec.data())
                view.aligns[sec.name] = sec["sh_addralign"]
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection):
                continue
            target_section = elf.get_section(sec["sh_info"]).name
            out = []
            for rel in sec.iter_relocations():
                sym = symtab.get_symbol(rel["r_info_sym"])
                local = sym["st_info"]["bind"] == "STB_LOCAL" and sym["st_shndx"] != "SHN_UNDEF"
                if rel["r_info_sym"] == 0 or (local and sym["st_shndx"] == "SHN_ABS"):
                    out.append((rel["r_offset"], rel["r_info_type"], ("abs", "", sym["st_value"] + rel["r_addend"])))
                elif local:
                    where = elf.get_section(sym["st_shndx"]).name
                    out.append((rel["r_offset"], rel["r_info_type"], ("sec", where, sym["st_value"] + rel["r_addend"])))
                else:
                    out.append((rel["r_offset"], rel["r_info_type"], ("sym", sym.name, rel["r_addend"])))
            view.relocations[target_section] = sorted(out)
        for sym in symtab.iter_symbols():
            info = sym["st_info"]
            if info["type"] in ("STT_SECTION", "STT_FILE") or sym["st_shndx"] == "SHN_UNDEF":
                continue
            if not _named_symbol(sym.name):
                continue
            shndx = sym["st_shndx"]
            section = elf.get_section(shndx).name if isinstance(shndx, int) else None
            view.symbols[sym.name] = (section, sym["st_value"], info["bind"][4:].lower(), sym["st_size"])
    return view


def object_view(obj: ObjectFile) -> ObjectView:
    view = ObjectView()
    for section in obj.sections.values():
        view.sections[section.name] = section.size if section.flags.nobits else bytes(section.data)
        view.aligns[section.name] = section.align
        out = []
        for rel in section.relocations:
            sym = obj.symbols.get(rel.symbol)
            if sym is not None and sym.binding == Binding.LOCAL and sym.section is None:
                out.append((rel.offset, int(rel.kind), ("abs", "", sym.value + rel.addend)))
            elif sym is not None and sym.binding == Binding.LOCAL and sym.section is not None:
                out.append((rel.offset, int(rel.kind), ("sec", sym.section, sym.value + rel.addend)))
            else:
                out.append((rel.offset, int(rel.kind), ("sym", rel.symbol, rel.addend)))
        if out:
            view.relocations[section.name] = sorted(out)
    for name, sym in obj.symbols.items():
        if sym.type == SymbolType.SECTION or not _named_symbol(name) or name in obj.undefined:
            continue
        view.symbols[name] = (sym.section, sym.value, sym.binding.value, sym.size)
    return view


@pytest.fixture(scope="session")
def elf_object_view() -> Callable[[Path], ObjectView]:
    return elf_view


@pytest.fixture(scope="session", name="object_view")
def object_view_fixture() -> Callable[[ObjectFile], ObjectView]:
    return object_view


@pytest.fixture(scope="session")
def gnu_as(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``gnu_as(source_text, march=None) -> Path`` of the object GNU as makes."""
    if shutil.which(GNU_AS) is None:
        pytest.skip(f"{GNU_AS} is not installed (Debian: binutils-aarch64-linux-gnu)")
    directory = tmp_path_factory.mktemp("gnu_as")
    counter = [0]

    def run(source: str, march: str | None = None) -> Path:
        counter[0] += 1
        src = directory / f"in{counter[0]}.s"
        obj = directory / f"in{counter[0]}.o"
        src.write_text(source)
        command = [GNU_AS, str(src), "-o", str(obj)] + ([f"-march={march}"] if march else [])
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            raise AssertionError(f"GNU as failed:\n{result.stderr}")
        return obj

    return run


@pytest.fixture(scope="session")
def gnu_gcc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """``gnu_gcc(c_file, "-O2 ...") -> assembly text`` from ``gcc -S -ffreestanding -fno-pic ...``."""
    if shutil.which(GNU_GCC) is None:
        pytest.skip(f"{GNU_GCC} is not installed (Debian: gcc-aarch64-linux-gnu)")
    directory = tmp_path_factory.mktemp("gnu_gcc")

    def run(c_file: Path, options: str = "-O2") -> str:
        out = directory / (c_file.stem + ".s")
        command = [GNU_GCC, *GCC_FLAGS, *options.split(), str(c_file), "-o", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            raise AssertionError(f"gcc failed:\n{result.stderr}")
        return out.read_text()

    return run
