"""Test helper: assemble with GNU as and read the relocatable ELF into emu's ObjectFile.

GNU binutils are an independent oracle: objects they produce exercise the
linker without depending on emu's own assembler, and aarch64-linux-gnu-ld
links the same objects for comparison.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

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

GNU_AS = "aarch64-linux-gnu-as"
GNU_LD = "aarch64-linux-gnu-ld"
GNU_OBJDUMP = "aarch64-linux-gnu-objdump"
GNU_READELF = "aarch64-linux-gnu-readelf"

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def gnu_assemble(source: str, out: Path, include_dirs: tuple[Path, ...] = ()) -> Path:
    """Assemble ``source`` text to the object file ``out`` with GNU as."""
    src = out.with_suffix(".S" if "#include" in source else ".s")
    src.write_text(source)
    return gnu_assemble_file(src, out, include_dirs)


def gnu_assemble_file(src: Path, out: Path, include_dirs: tuple[Path, ...] = ()) -> Path:
    args = [GNU_AS]
    for inc in include_dirs:
        args += ["-I", str(inc)]
    if src.suffix == ".S":
        # Capital .S goes through the C preprocessor first, as the kernel build does.
        cpp = subprocess.run(
            ["aarch64-linux-gnu-gcc", "-E", "-P", "-x", "assembler-with-cpp",
             *[f"-I{inc}" for inc in include_dirs], str(src)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        pre = out.with_suffix(".i.s")
        pre.write_text(cpp.stdout)
        src = pre
    subprocess.run([*args, "-o", str(out), str(src)], check=True, capture_output=True, text=True)
    return out


def _symbol_type(st_type: str) -> SymbolType:
    return {
        "STT_FUNC": SymbolType.FUNC,
        "STT_OBJECT": SymbolType.OBJECT,
        "STT_SECTION": SymbolType.SECTION,
    }.get(st_type, SymbolType.NOTYPE)


def _binding(st_bind: str) -> Binding:
    return {"STB_GLOBAL": Binding.GLOBAL, "STB_WEAK": Binding.WEAK}.get(st_bind, Binding.LOCAL)


def read_gnu_object(path: Path) -> ObjectFile:
    """Read a GNU relocatable object: allocated sections, symbols and RELA relocations.

    Section symbols are named after their section (relocations against them
    then name the section); repeated local names (mapping symbols $x/$d) get
    unique keys "$x@SECTION+OFFSET" while keeping their ELF name.
    """
    obj = ObjectFile(path=str(path))
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        index_to_name: dict[int, str] = {}
        for idx, sec in enumerate(elf.iter_sections()):
            if sec["sh_type"] not in ("SHT_PROGBITS", "SHT_NOBITS"):
                continue
            flags = sec["sh_flags"]
            nobits = sec["sh_type"] == "SHT_NOBITS"
            section = Section(
                name=sec.name,
                flags=SectionFlags(
                    alloc=bool(flags & SHF_ALLOC),
                    write=bool(flags & SHF_WRITE),
                    execute=bool(flags & SHF_EXECINSTR),
                    nobits=nobits,
                ),
                align=max(sec["sh_addralign"], 1),
                data=bytearray() if nobits else bytearray(sec.data()),
                nobits_size=sec["sh_size"] if nobits else 0,
            )
            if sec.name in obj.sections:
                raise ValueError(f"{path}: two sections named {sec.name}")
            obj.sections[sec.name] = section
            index_to_name[idx] = sec.name

        symtab = elf.get_section_by_name(".symtab")
        keys: list[str | None] = []
        assert isinstance(symtab, SymbolTableSection)
        for sym in symtab.iter_symbols():
            st_type = sym["st_info"]["type"]
            shndx = sym["st_shndx"]
            if st_type == "STT_FILE" or (sym.name == "" and st_type != "STT_SECTION"):
                keys.append(None)
                continue
            if shndx == "SHN_UNDEF":
                obj.undefined.add(sym.name)
                if sym["st_info"]["bind"] == "STB_WEAK":
                    # An undefined weak reference: in `undefined`, with a WEAK entry
                    # in `symbols` that carries only the binding.
                    obj.symbols[sym.name] = Symbol(sym.name, None, 0, Binding.WEAK)
                keys.append(sym.name)
                continue
            if shndx == "SHN_COMMON":
                raise ValueError(f"{path}: COMMON symbol {sym.name} is not supported")
            section = None if shndx == "SHN_ABS" else index_to_name.get(shndx)
            if shndx != "SHN_ABS" and section is None:
                keys.append(None)  # a symbol in a section we do not model (e.g. .comment)
                continue
            name = section if st_type == "STT_SECTION" else sym.name
            key = name
            if key in obj.symbols:
                key = f"{name}@{section}+{sym['st_value']:#x}"
            obj.symbols[key] = Symbol(
                name=name,
                section=section,
                value=sym["st_value"],
                binding=_binding(sym["st_info"]["bind"]),
                type=_symbol_type(st_type),
                size=sym["st_size"],
            )
            keys.append(key)

        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection):
                continue
            target = elf.get_section(sec["sh_info"]).name
            if target not in obj.sections:
                continue
            for rel in sec.iter_relocations():
                kind = RelocType(rel["r_info_type"])
                key = keys[rel["r_info_sym"]]
                if key is None:
                    raise ValueError(f"{path}: relocation against an unmodelled symbol")
                obj.sections[target].relocations.append(
                    Relocation(rel["r_offset"], kind, key, rel["r_addend"])
                )
    return obj


def gnu_link(
    objects: list[Path], script: Path, out: Path, defsyms: dict[str, int] | None = None
) -> Path:
    args = [GNU_LD, "-T", str(script), "-o", str(out), "--no-warn-rwx-segments"]
    for name, value in (defsyms or {}).items():
        args += ["--defsym", f"{name}={value:#x}"]
    subprocess.run([*args, *map(str, objects)], check=True, capture_output=True, text=True)
    return out
