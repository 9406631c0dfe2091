"""ELF64 executables: write a LinkedImage by hand, read one back for loading.

``write_elf`` lays out a little-endian EM_AARCH64 ET_EXEC: one PT_LOAD per
run of address-adjacent output sections with the same R/W/X permissions
(p_vaddr the virtual, p_paddr the load address, p_align 64 KiB, file size
short of memory size for .bss), section headers, and a symbol table with
section symbols, per-file local symbols (after an STT_FILE) and globals.
The file appears atomically (emu/fileio.py).

``read_elf`` validates an executable before anything trusts it (class,
byte order, machine, type, header and segment bounds, overlaps, sizes) and
returns a ``LoadableImage``: entry, segments with their bytes, sections and
symbols.  Every problem is an ElfError with a one-line message.
"""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from emu.blob.link import LinkedImage, LinkedSymbol, OutputSection
from emu.blob.objfile import Binding, SymbolType
from emu.errors import ElfError
from emu.fileio import atomic_write_bytes, read_input_file

EM_AARCH64 = 183
ET_EXEC = 2
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4

SEGMENT_ALIGN = 0x10000
MAX_SEGMENT_SIZE = 256 << 20
"""No kernel image segment is larger; anything bigger is a corrupt or hostile file."""
MAX_FILE_SIZE = 1 << 30
"""Segments (256 MiB together) plus symbols and headers never come near this."""

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")

_TYPE_CODE = {
    SymbolType.NOTYPE: STT_NOTYPE,
    SymbolType.OBJECT: STT_OBJECT,
    SymbolType.FUNC: STT_FUNC,
    SymbolType.SECTION: STT_SECTION,
}
_BIND_CODE = {Binding.LOCAL: STB_LOCAL, Binding.GLOBAL: STB_GLOBAL, Binding.WEAK: STB_WEAK}


# ---------------------------------------------------------------------------
# Writing


class _StringTable:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        if text not in self.offsets:
            self.offsets[text] = len(self.data)
            self.data += text.encode("utf-8") + b"\0"
        return self.offsets[text]


def _perm(sec: OutputSection) -> int:
    return PF_R | (PF_W if sec.flags.write else 0) | (PF_X if sec.flags.execute else 0)


def _segments(sections: list[OutputSection]) -> list[list[OutputSection]]:
    """Group address-ordered sections into PT_LOAD runs."""
    runs: list[list[OutputSection]] = []
    for sec in sections:
        if runs:
            last = runs[-1][-1]
            same = (
                _perm(last) == _perm(sec)
                and last.paddr - last.vaddr == sec.paddr - sec.vaddr
                and last.end <= sec.vaddr < last.end + SEGMENT_ALIGN
                and (not last.nobits or sec.nobits)
            )
            if same:
                runs[-1].append(sec)
                continue
        runs.append([sec])
    return runs


def _symbol_entries(
    image: LinkedImage, shndx: dict[str, int], strtab: _StringTable
) -> tuple[list[bytes], int]:
    """Symbol table entries (locals first) and the index of the first global."""

    def entry(name: str, value: int, size: int, bind: int, typ: int, index: int) -> bytes:
        return _SYM.pack(strtab.add(name), (bind << 4) | typ, 0, index, value, size)

    def index_of(sym: LinkedSymbol) -> int:
        return shndx.get(sym.section, SHN_ABS) if sym.section else SHN_ABS

    out = [b"\0" * _SYM.size]
    for name, index in shndx.items():
        sec = image.section(name)
        out.append(entry("", sec.vaddr, 0, STB_LOCAL, STT_SECTION, index))
    locals_by_file: dict[str | None, list[LinkedSymbol]] = {}
    for sym in image.symbols:
        if sym.binding == Binding.LOCAL and sym.name and not sym.name.startswith(".L"):
            locals_by_file.setdefault(sym.file, []).append(sym)
    mapped = {s.value for s in image.symbols if s.name.startswith(("$x", "$d"))}
    for file, syms in locals_by_file.items():
        if file is not None:
            out.append(entry(Path(file).name, 0, 0, STB_LOCAL, STT_FILE, SHN_ABS))
        for sym in syms:
            out.append(
                entry(sym.name, sym.value, sym.size, STB_LOCAL, _TYPE_CODE[sym.type], index_of(sym))
            )
    # objdump decodes an executable section as code only after a $x mapping symbol
    # when the file has any mapping symbols; make sure every code section starts with one.
    for name, index in shndx.items():
        sec = image.section(name)
        if sec.flags.execute and sec.vaddr not in mapped:
            out.append(entry("$x", sec.vaddr, 0, STB_LOCAL, STT_NOTYPE, index))
    first_global = len(out)
    for sym in image.symbols:
        if sym.binding != Binding.LOCAL:
            bind = _BIND_CODE[sym.binding]
            out.append(
                entry(sym.name, sym.value, sym.size, bind, _TYPE_CODE[sym.type], index_of(sym))
            )
    return out, first_global


def elf_bytes(image: LinkedImage) -> bytes:
    """The complete ELF file for ``image``."""
    # Section headers in script order (as GNU ld writes them: user sections,
    # linked low, stay after the kernel's); PT_LOADs ascending by p_vaddr.
    sections = list(image.sections)
    by_address = sorted(sections, key=lambda s: s.vaddr)
    # Empty sections (kept by the script for their symbols) need no PT_LOAD.
    runs = _segments([s for s in by_address if s.size])
    phoff = _EHDR.size
    cursor = phoff + _PHDR.size * len(runs)
    body = bytearray(cursor)
    phdrs: list[bytes] = []
    sec_offset: dict[str, int] = {}
    for run in runs:
        vaddr, paddr = run[0].vaddr, run[0].paddr
        offset = cursor + ((vaddr - cursor) % SEGMENT_ALIGN)
        progbits = [s for s in run if not s.nobits]
        filesz = (progbits[-1].end - vaddr) if progbits else 0
        memsz = run[-1].end - vaddr
        body.extend(b"\0" * (offset + filesz - len(body)))
        for sec in run:
            sec_offset[sec.name] = offset + (sec.vaddr - vaddr)
            if sec.data is not None:
                start = sec_offset[sec.name]
                body[start : start + sec.size] = sec.data
        phdrs.append(
            _PHDR.pack(PT_LOAD, _perm(run[0]), offset, vaddr, paddr, filesz, memsz, SEGMENT_ALIGN)
        )
        cursor = offset + filesz
    for sec in sections:
        sec_offset.setdefault(sec.name, cursor)

    shstrtab, strtab = _StringTable(), _StringTable()
    shndx = {sec.name: i + 1 for i, sec in enumerate(sections)}
    symbols, first_global = _symbol_entries(image, shndx, strtab)

    def append_aligned(blob: bytes, align: int) -> int:
        body.extend(b"\0" * (-len(body) % align))
        start = len(body)
        body.extend(blob)
        return start

    symtab_off = append_aligned(b"".join(symbols), 8)
    strtab_off = append_aligned(bytes(strtab.data), 1)
    shdrs = [b"\0" * _SHDR.size]
    for sec in sections:
        flags = SHF_ALLOC | (SHF_WRITE if sec.flags.write else 0)
        flags |= SHF_EXECINSTR if sec.flags.execute else 0
        kind = SHT_NOBITS if sec.nobits else SHT_PROGBITS
        shdrs.append(
            _SHDR.pack(
                shstrtab.add(sec.name), kind, flags, sec.vaddr, sec_offset[sec.name],
                sec.size, 0, 0, sec.align, 0,
            )
        )  # fmt: skip
    symtab_index = len(shdrs)
    shdrs.append(
        _SHDR.pack(
            shstrtab.add(".symtab"), SHT_SYMTAB, 0, 0, symtab_off, len(symbols) * _SYM.size,
            symtab_index + 1, first_global, 8, _SYM.size,
        )
    )  # fmt: skip
    shdrs.append(
        _SHDR.pack(
            shstrtab.add(".strtab"), SHT_STRTAB, 0, 0, strtab_off, len(strtab.data), 0, 0, 1, 0
        )
    )
    shstrndx = len(shdrs)
    name = shstrtab.add(".shstrtab")
    shstr_off = append_aligned(bytes(shstrtab.data), 1)
    shdrs.append(_SHDR.pack(name, SHT_STRTAB, 0, 0, shstr_off, len(shstrtab.data), 0, 0, 1, 0))
    shoff = append_aligned(b"".join(shdrs), 8)

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header = _EHDR.pack(
        ident, ET_EXEC, EM_AARCH64, 1, image.entry, phoff, shoff, 0,
        _EHDR.size, _PHDR.size, len(phdrs), _SHDR.size, len(shdrs), shstrndx,
    )  # fmt: skip
    body[0 : _EHDR.size] = header
    body[phoff : phoff + _PHDR.size * len(phdrs)] = b"".join(phdrs)
    return bytes(body)


def write_elf(image: LinkedImage, path: str | os.PathLike[str]) -> None:
    """Write ``image`` to ``path`` atomically (a complete new file or no change)."""
    atomic_write_bytes(path, elf_bytes(image))


# ---------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD: ``data`` is the file part (p_filesz); the rest up to ``memsz`` is zero."""

    vaddr: int
    paddr: int
    data: bytes
    memsz: int
    flags: int  # PF_R | PF_W | PF_X

    @property
    def readable(self) -> bool:
        return bool(self.flags & PF_R)

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class ElfSection:
    name: str
    vaddr: int
    size: int
    flags: int  # SHF_*
    nobits: bool

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class ElfSymbol:
    name: str
    value: int
    size: int
    type: str  # "NOTYPE", "FUNC", "OBJECT", "SECTION", "FILE", ...
    binding: str  # "LOCAL", "GLOBAL", "WEAK"
    section: str | None  # None for absolute / undefined


@dataclass
class LoadableImage:
    """What the machine needs to load and describe a kernel ELF."""

    path: str
    entry: int
    segments: list[Segment]
    sections: list[ElfSection]
    all_symbols: list[ElfSymbol]
    symbols: dict[str, ElfSymbol] = field(default_factory=dict)

    def symbol_value(self, name: str) -> int:
        try:
            return self.symbols[name].value
        except KeyError:
            raise ElfError(f"{self.path}: no symbol {name}") from None

    def read(self, vaddr: int, size: int) -> bytes:
        """Bytes of the loaded image at [vaddr, vaddr+size) (zero past p_filesz)."""
        if size == 0:
            return b""  # an empty section may sit where no segment is (user sections)
        for seg in self.segments:
            if seg.vaddr <= vaddr and vaddr + size <= seg.end:
                start = vaddr - seg.vaddr
                chunk = seg.data[start : start + size]
                return chunk + b"\0" * (size - len(chunk))
        raise ElfError(f"{self.path}: [{vaddr:#x}, {vaddr + size:#x}) is not inside one segment")


_ST_TYPES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC", 3: "SECTION", 4: "FILE", 5: "COMMON", 6: "TLS"}
_ST_BINDS = {0: "LOCAL", 1: "GLOBAL", 2: "WEAK"}


def read_elf(path: str | os.PathLike[str]) -> LoadableImage:
    """Validate and load an AArch64 ELF64 executable; ElfError names the first problem."""
    name = str(path)
    try:
        blob = read_input_file(path, MAX_FILE_SIZE)
    except OSError as err:
        raise ElfError(f"cannot read {name}: {err.strerror or err}") from None
    return parse_elf(blob, name)


def _check_range(name: str, what: str, offset: int, size: int, total: int) -> None:
    if offset < 0 or size < 0 or offset + size > total:
        raise ElfError(
            f"{name}: truncated: {what} [{offset:#x}, {offset + size:#x}) "
            f"is outside the {total:#x}-byte file"
        )


def _cstring(blob: bytes, start: int, limit: int, name: str) -> str:
    if not 0 <= start < limit:
        raise ElfError(f"{name}: string offset {start:#x} is outside its string table")
    end = blob.find(b"\0", start, limit)
    if end < 0:
        raise ElfError(f"{name}: unterminated string in a string table")
    return blob[start:end].decode("utf-8", errors="replace")


def parse_elf(blob: bytes, name: str = "<elf>") -> LoadableImage:
    """Validate and decode ELF bytes (see read_elf)."""
    if len(blob) < 4 or blob[:4] != b"\x7fELF":
        raise ElfError(f"{name}: not an ELF file")
    if len(blob) < _EHDR.size:
        raise ElfError(f"{name}: truncated ELF header ({len(blob)} bytes)")
    (ident, e_type, e_machine, _version, entry, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(blob)  # fmt: skip
    if ident[4] != 2:
        raise ElfError(f"{name}: not a 64-bit ELF (class {ident[4]})")
    if ident[5] != 1:
        raise ElfError(f"{name}: not a little-endian ELF (data encoding {ident[5]})")
    if e_machine != EM_AARCH64:
        raise ElfError(f"{name}: not an AArch64 ELF (machine {e_machine})")
    if e_type != ET_EXEC:
        raise ElfError(f"{name}: not an executable ELF (type {e_type}, want ET_EXEC)")
    if phnum == 0:
        raise ElfError(f"{name}: no program headers")
    if phentsize != _PHDR.size:
        raise ElfError(f"{name}: program header entry size {phentsize}, want {_PHDR.size}")
    _check_range(name, "program headers", phoff, phnum * _PHDR.size, len(blob))
    if shnum == 0:
        raise ElfError(f"{name}: no section headers, so no symbol table")
    if shentsize != _SHDR.size:
        raise ElfError(f"{name}: section header entry size {shentsize}, want {_SHDR.size}")
    _check_range(name, "section headers", shoff, shnum * _SHDR.size, len(blob))

    segments = _read_segments(blob, name, phoff, phnum)
    shdrs = [_SHDR.unpack_from(blob, shoff + i * _SHDR.size) for i in range(shnum)]
    if not shstrndx < shnum:
        raise ElfError(f"{name}: section name table index {shstrndx} out of range")
    _, sh_type, _, _, str_off, str_size, *_ = shdrs[shstrndx]
    if sh_type != SHT_STRTAB:
        raise ElfError(f"{name}: section name table is not a string table")
    _check_range(name, "section name table", str_off, str_size, len(blob))

    names = [_cstring(blob, str_off + h[0], str_off + str_size, name) for h in shdrs]
    sections: list[ElfSection] = []
    for index, h in enumerate(shdrs):
        sh_name, sh_type, flags, addr, offset, size = h[:6]
        del sh_name
        if index and sh_type != 8 and sh_type != 0:
            _check_range(name, f"section {ascii(names[index])[1:-1]}", offset, size, len(blob))
        if flags & SHF_ALLOC:
            sections.append(ElfSection(names[index], addr, size, flags, sh_type == SHT_NOBITS))

    symtabs = [i for i, h in enumerate(shdrs) if h[1] == SHT_SYMTAB]
    if not symtabs:
        raise ElfError(f"{name}: no symbol table")
    all_symbols = _read_symbols(blob, name, shdrs, names, symtabs[0])
    by_name: dict[str, ElfSymbol] = {}
    for sym in all_symbols:
        if not sym.name or sym.type in ("SECTION", "FILE") or sym.name.startswith(("$x", "$d")):
            continue
        current = by_name.get(sym.name)
        if current is None or (current.binding == "LOCAL" and sym.binding != "LOCAL"):
            by_name[sym.name] = sym
    return LoadableImage(name, entry, segments, sections, all_symbols, by_name)


def _read_segments(blob: bytes, name: str, phoff: int, phnum: int) -> list[Segment]:
    segments: list[Segment] = []
    for i in range(phnum):
        p_type, p_flags, offset, vaddr, paddr, filesz, memsz, _align = _PHDR.unpack_from(
            blob, phoff + i * _PHDR.size
        )
        if p_type != PT_LOAD:
            continue
        if memsz > MAX_SEGMENT_SIZE:
            raise ElfError(
                f"{name}: segment at {vaddr:#x} is {memsz:#x} bytes, more than the "
                f"{MAX_SEGMENT_SIZE >> 20} MiB limit"
            )
        if filesz > memsz:
            raise ElfError(f"{name}: segment at {vaddr:#x} has p_filesz > p_memsz")
        if offset + filesz > len(blob):
            raise ElfError(
                f"{name}: segment at {vaddr:#x} file range [{offset:#x}, {offset + filesz:#x})"
                f" is outside the {len(blob):#x}-byte file"
            )
        if vaddr + memsz > 1 << 64 or paddr + memsz > 1 << 64:
            raise ElfError(f"{name}: segment at {vaddr:#x} wraps past the top of memory")
        segments.append(Segment(vaddr, paddr, blob[offset : offset + filesz], memsz, p_flags))
    if not segments:
        raise ElfError(f"{name}: no loadable segment")
    total = sum(s.memsz for s in segments)
    if total > MAX_SEGMENT_SIZE:
        raise ElfError(f"{name}: loadable segments total {total:#x} bytes, more than 256 MiB")
    for attr, what in (("vaddr", "virtual"), ("paddr", "physical")):
        ordered = sorted((s for s in segments if s.memsz), key=lambda s: getattr(s, attr))
        for a, b in itertools.pairwise(ordered):
            if getattr(a, attr) + a.memsz > getattr(b, attr):
                raise ElfError(
                    f"{name}: segments at {what} {getattr(a, attr):#x} and "
                    f"{getattr(b, attr):#x} overlap"
                )
    return segments


def _read_symbols(
    blob: bytes, name: str, shdrs: list[tuple], names: list[str], index: int
) -> list[ElfSymbol]:
    _, _, _, _, offset, size, link, _info, _, entsize = shdrs[index]
    if entsize != _SYM.size:
        raise ElfError(f"{name}: symbol table entry size {entsize}, want {_SYM.size}")
    if size % _SYM.size:
        raise ElfError(f"{name}: symbol table size {size:#x} is not a multiple of {_SYM.size}")
    if not 0 < link < len(shdrs) or shdrs[link][1] != SHT_STRTAB:
        raise ElfError(f"{name}: symbol table does not link to a string table")
    str_off, str_size = shdrs[link][4], shdrs[link][5]
    symbols: list[ElfSymbol] = []
    for i in range(1, size // _SYM.size):
        st_name, info, _other, shndx, value, sym_size = _SYM.unpack_from(
            blob, offset + i * _SYM.size
        )
        sym_name = _cstring(blob, str_off + st_name, str_off + str_size, name)
        section = names[shndx] if 0 < shndx < len(names) else None
        symbols.append(
            ElfSymbol(
                name=sym_name,
                value=value,
                size=sym_size,
                type=_ST_TYPES.get(info & 0xF, f"TYPE{info & 0xF}"),
                binding=_ST_BINDS.get(info >> 4, f"BIND{info >> 4}"),
                section=section,
            )
        )
    return symbols
