"""ELF writer and reader: checked by readelf/objdump, lief, and corruption."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import lief
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.blob import elf as elfmod
from emu.blob.build import default_script
from emu.blob.elf import SEGMENT_ALIGN, parse_elf, read_elf, write_elf
from emu.blob.ldscript import load_script
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
from emu.errors import ElfError, OutputError
from emu.fileio import atomic_output

KERNEL_LD = default_script()
READELF, OBJDUMP = "aarch64-linux-gnu-readelf", "aarch64-linux-gnu-objdump"
NOP = (0xD503201F).to_bytes(4, "little")
RET = (0xD65F03C0).to_bytes(4, "little")
BL = (0x94000000).to_bytes(4, "little")


def _have(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


def kernel_like_image() -> LinkedImage:
    """A small image through kernel.ld: code, rodata, init, data and bss."""
    head = ObjectFile("head.o")
    head.sections[".head.text"] = Section(
        ".head.text", SectionFlags(execute=True), 4, bytearray(BL + NOP),
        relocations=[Relocation(0, RelocType.CALL26, "start_kernel", 0)],
    )  # fmt: skip
    head.symbols["_head"] = Symbol("_head", ".head.text", 0, Binding.GLOBAL)
    main = ObjectFile("dir/main.o")
    text = NOP * 3 + RET + b"\x78\x56\x34\x12"  # a literal word after the code
    main.sections[".text"] = Section(".text", SectionFlags(execute=True), 4, bytearray(text))
    main.sections[".rodata"] = Section(".rodata", SectionFlags(), 8, bytearray(b"ktext\0\0\0"))
    main.sections[".init.text"] = Section(
        ".init.text", SectionFlags(execute=True), 4, bytearray(RET)
    )
    main.sections[".data"] = Section(
        ".data", SectionFlags(write=True), 8, bytearray(8),
        relocations=[Relocation(0, RelocType.ABS64, "banner", 0)],
    )  # fmt: skip
    main.sections[".bss"] = Section(
        ".bss", SectionFlags(write=True, nobits=True), 16, nobits_size=0x3000
    )
    main.symbols.update(
        {
            "start_kernel": Symbol("start_kernel", ".text", 0, Binding.GLOBAL, SymbolType.FUNC, 16),
            "$x": Symbol("$x", ".text", 0),
            "$d": Symbol("$d", ".text", 16),
            "banner": Symbol("banner", ".rodata", 0, Binding.LOCAL, SymbolType.OBJECT, 6),
            ".Ltmp": Symbol(".Ltmp", ".text", 8),
            "weakling": Symbol("weakling", ".init.text", 0, Binding.WEAK, SymbolType.FUNC, 4),
            "stack": Symbol("stack", ".bss", 0x1000, Binding.GLOBAL, SymbolType.OBJECT, 0x2000),
            "ABS_CONST": Symbol("ABS_CONST", None, 0x1234, Binding.GLOBAL),
        }
    )
    return link([head, main], load_script(KERNEL_LD))


@pytest.fixture(scope="module")
def image() -> LinkedImage:
    return kernel_like_image()


@pytest.fixture
def elf_path(image: LinkedImage, tmp_path: Path) -> Path:
    path = tmp_path / "kernel.elf"
    write_elf(image, path)
    return path


def test_segments_follow_permissions_and_alignment(image: LinkedImage, elf_path: Path) -> None:
    loaded = read_elf(elf_path)
    assert loaded.entry == image.entry == image.symbol_value("_text")
    perms = [(seg.readable, seg.writable, seg.executable) for seg in loaded.segments]
    assert perms == [
        (True, False, True),  # .head.text + .text
        (True, False, False),  # .rodata (with its page directories)
        (True, False, True),  # .init.text
        (True, True, False),  # .data + .bss
    ]
    raw = elf_path.read_bytes()
    for i, seg in enumerate(loaded.segments):
        p_type, _flags, offset, vaddr, paddr, filesz, memsz, align = struct.unpack_from(
            "<IIQQQQQQ", raw, 64 + i * 56
        )
        assert (p_type, align) == (1, SEGMENT_ALIGN)
        assert offset % SEGMENT_ALIGN == vaddr % SEGMENT_ALIGN
        assert paddr - vaddr == 0x40000000 - 0xFFFF808000000000
        assert (filesz, memsz) == (len(seg.data), seg.memsz)
    data_seg = loaded.segments[-1]
    assert len(data_seg.data) < data_seg.memsz  # .bss is memory only
    assert data_seg.end == image.symbol_value("_end")
    for out in image.sections:
        expected = out.data if out.data is not None else bytes(out.size)
        assert loaded.read(out.vaddr, out.size) == expected


def test_symbols_round_trip(image: LinkedImage, elf_path: Path) -> None:
    loaded = read_elf(elf_path)
    for name, sym in image.globals.items():
        got = loaded.symbols[name]
        assert (got.value, got.size) == (sym.value, sym.size)
        assert got.binding == ("WEAK" if sym.binding == Binding.WEAK else "GLOBAL")
        assert got.section == sym.section
    assert loaded.symbols["start_kernel"].type == "FUNC"
    assert loaded.symbols["banner"].binding == "LOCAL"
    assert loaded.symbols["ABS_CONST"].section is None
    assert ".Ltmp" not in {s.name for s in loaded.all_symbols}
    files = [s.name for s in loaded.all_symbols if s.type == "FILE"]
    assert files == ["main.o"]
    sections = {s.section for s in loaded.all_symbols if s.type == "SECTION"}
    assert sections == {s.name for s in image.sections}


def test_lief_reads_the_same_symbols_and_segments(image: LinkedImage, elf_path: Path) -> None:
    binary = lief.parse(str(elf_path))
    assert binary is not None
    assert binary.header.machine_type == lief.ELF.ARCH.AARCH64
    assert binary.header.file_type == lief.ELF.Header.FILE_TYPE.EXEC
    assert binary.entrypoint == image.entry
    lief_globals = {
        s.name: (s.value, s.size)
        for s in binary.symbols
        if s.binding in (lief.ELF.Symbol.BINDING.GLOBAL, lief.ELF.Symbol.BINDING.WEAK)
    }
    assert lief_globals == {n: (s.value, s.size) for n, s in image.globals.items()}
    lief_locals = {
        (s.name, s.value) for s in binary.symbols if s.binding == lief.ELF.Symbol.BINDING.LOCAL
    }
    for sym in image.symbols:
        if sym.binding == Binding.LOCAL and not sym.name.startswith(".L"):
            assert (sym.name, sym.value) in lief_locals
    loads = [seg for seg in binary.segments if seg.type == lief.ELF.Segment.TYPE.LOAD]
    assert [(s.virtual_address, s.physical_address) for s in loads] == [
        (seg.vaddr, seg.paddr) for seg in read_elf(elf_path).segments
    ]
    for out in image.sections:
        section = binary.get_section(out.name)
        assert (section.virtual_address, section.size) == (out.vaddr, out.size)
        if out.data is not None:
            assert bytes(section.content) == out.data


@pytest.mark.oracle
@pytest.mark.skipif(not _have(READELF), reason="aarch64-linux-gnu-readelf not installed")
def test_readelf_reads_it_without_warnings(elf_path: Path) -> None:
    result = subprocess.run([READELF, "-aW", str(elf_path)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "Warning" not in result.stdout and "Error" not in result.stdout
    assert "AArch64" in result.stdout and "EXEC (Executable file)" in result.stdout
    assert (
        " _stext" in result.stdout and "FUNC    GLOBAL DEFAULT    2 start_kernel" in result.stdout
    )


@pytest.mark.oracle
@pytest.mark.skipif(not _have(OBJDUMP), reason="aarch64-linux-gnu-objdump not installed")
def test_objdump_disassembles_it_without_warnings(elf_path: Path) -> None:
    result = subprocess.run([OBJDUMP, "-d", str(elf_path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout
    assert "<_head>:" in out and "bl\tffff808000010000 <start_kernel>" in out
    assert ".word\t0x12345678" in out  # the $d mapping symbol marks the literal as data
    assert "<_sinittext>:" in out or "<weakling>:" in out


def test_write_is_atomic(image: LinkedImage, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "kernel.elf"
    path.write_bytes(b"old content")

    def exploding(_image):
        raise RuntimeError("disk on fire")

    def write_half(target, data):
        with atomic_output(target) as fh:
            fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(elfmod, "elf_bytes", exploding)
    with pytest.raises(RuntimeError):
        write_elf(image, path)
    assert path.read_bytes() == b"old content"
    monkeypatch.undo()
    monkeypatch.setattr(elfmod, "atomic_write_bytes", write_half)
    with pytest.raises(OutputError, match="No space left"):
        write_elf(image, path)
    assert path.read_bytes() == b"old content"
    assert sorted(os.listdir(tmp_path)) == ["kernel.elf"]  # no temporary left behind
    monkeypatch.undo()
    write_elf(image, path)
    assert read_elf(path).entry == image.entry
    assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    with pytest.raises(OutputError, match="is a directory"):
        write_elf(image, tmp_path)
    with pytest.raises(OutputError, match="cannot write"):
        write_elf(image, tmp_path / "missing-dir" / "k.elf")


# --------------------------------------------------------------------------- validation


def _current_umask() -> int:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc/self/status to read the umask from")
    line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Umask:"))
    return int(line.split()[1], 8)


def _patch(blob: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _phdr(i: int) -> int:
    return 64 + 56 * i


@pytest.fixture(scope="module")
def good_blob(image: LinkedImage) -> bytes:
    return elfmod.elf_bytes(image)


CORRUPTIONS = {
    "not elf": (lambda b: b"\x7fBAD" + b[4:], "not an ELF file"),
    "empty": (lambda b: b"", "not an ELF file"),
    "short header": (lambda b: b[:40], "truncated ELF header"),
    "elf32": (lambda b: _patch(b, 4, "B", 1), "not a 64-bit ELF"),
    "big endian": (lambda b: _patch(b, 5, "B", 2), "not a little-endian ELF"),
    "x86-64": (lambda b: _patch(b, 18, "<H", 62), "not an AArch64 ELF (machine 62)"),
    "relocatable": (lambda b: _patch(b, 16, "<H", 1), "not an executable ELF"),
    "no phdrs": (lambda b: _patch(b, 56, "<H", 0), "no program headers"),
    "phdrs past end": (lambda b: _patch(b, 32, "<Q", len(b)), "truncated: program headers"),
    "shdrs past end": (lambda b: _patch(b, 40, "<Q", len(b) - 10), "truncated: section headers"),
    "file cut": (lambda b: b[: len(b) // 2], "truncated"),
    "segment past file": (
        lambda b: _patch(b, _phdr(0) + 8, "<Q", len(b) - 16),
        "file range",
    ),
    "filesz > memsz": (lambda b: _patch(b, _phdr(3) + 40, "<Q", 0), "p_filesz > p_memsz"),
    "huge segment": (lambda b: _patch(b, _phdr(3) + 40, "<Q", 1 << 40), "256 MiB limit"),
    "overlapping VA": (
        lambda b: _patch(b, _phdr(1) + 16, "<Q", struct.unpack_from("<Q", b, _phdr(0) + 16)[0] + 8),
        "overlap",
    ),
    "overlapping PA": (
        lambda b: _patch(b, _phdr(1) + 24, "<Q", struct.unpack_from("<Q", b, _phdr(0) + 24)[0]),
        "physical",
    ),
    "wrapping segment": (lambda b: _patch(b, _phdr(3) + 16, "<Q", (1 << 64) - 16), "wraps"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_files_are_rejected_with_one_line(good_blob: bytes, case: str) -> None:
    mutate, fragment = CORRUPTIONS[case]
    with pytest.raises(ElfError) as err:
        parse_elf(mutate(good_blob), "k.elf")
    message = str(err.value)
    assert fragment in message and message.startswith("k.elf: ") and "\n" not in message


def test_missing_symbol_table(good_blob: bytes) -> None:
    (shoff,) = struct.unpack_from("<Q", good_blob, 40)
    (shnum,) = struct.unpack_from("<H", good_blob, 60)
    blob = bytearray(good_blob)
    for i in range(shnum):
        base = shoff + 64 * i
        if struct.unpack_from("<I", blob, base + 4)[0] == elfmod.SHT_SYMTAB:
            struct.pack_into("<I", blob, base + 4, 0x70000000)  # some processor-specific type
    with pytest.raises(ElfError, match="no symbol table"):
        parse_elf(bytes(blob), "k.elf")


def test_read_elf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match="cannot read"):
        read_elf(tmp_path / "nope.elf")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_corruption_never_escapes_as_another_exception(good_blob: bytes, data) -> None:
    blob = bytearray(good_blob)
    # Aim at the headers, where corruption changes what the reader trusts.
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, 64 + 56 * 4 - 1) | st.integers(0, len(blob) - 1))
        blob[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    try:
        loaded = parse_elf(bytes(blob), "fuzz.elf")
    except ElfError as err:
        assert "\n" not in str(err)
        return
    for seg in loaded.segments:
        assert len(seg.data) <= seg.memsz <= elfmod.MAX_SEGMENT_SIZE


def test_empty_sections_get_headers_but_no_segment(tmp_path: Path) -> None:
    obj = ObjectFile("a.o")
    obj.sections[".text"] = Section(".text", SectionFlags(execute=True), 4, bytearray(RET))
    script = load_script(KERNEL_LD)
    image = link([obj], script)
    empty = [s.name for s in image.sections if s.size == 0]
    assert ".user.bss" in empty  # kept (its ALIGN moves the counter) but zero-sized
    path = tmp_path / "k.elf"
    write_elf(image, path)
    loaded = read_elf(path)
    assert all(seg.memsz for seg in loaded.segments)
    assert {s.name for s in loaded.sections} == {s.name for s in image.sections}


def test_atomic_text_output(tmp_path: Path) -> None:
    from emu.fileio import atomic_write_text

    target = tmp_path / "report.json"
    atomic_write_text(target, '{"runs": []}\n')
    atomic_write_text(target, "ünïcode\n")
    assert target.read_text(encoding="utf-8") == "ünïcode\n"
    with pytest.raises(ValueError), atomic_output(target, "a"):
        pass
    assert sorted(os.listdir(tmp_path)) == ["report.json"]
