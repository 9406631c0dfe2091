"""``ktext-emu build``, ``disasm`` and ``symbols`` through emu.cli.main."""

from __future__ import annotations

from pathlib import Path

import pytest
from gnu_objects import GNU_AS, gnu_assemble_file, have, read_gnu_object

from emu.blob import build
from emu.blob.commands import parse_address, parse_defsym
from emu.blob.elf import read_elf, write_elf
from emu.blob.ldscript import load_script
from emu.blob.link import link
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
from emu.cli import main
from emu.errors import UsageError

KERNEL_LD = build.default_script()
NOP = (0xD503201F).to_bytes(4, "little")
RET = (0xD65F03C0).to_bytes(4, "little")
BL = (0x94000000).to_bytes(4, "little")
B = (0x14000000).to_bytes(4, "little")


@pytest.fixture(scope="module")
def elf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    head = ObjectFile("head.o")
    head.sections[".head.text"] = Section(
        ".head.text", SectionFlags(execute=True), 4, bytearray(B),
        relocations=[Relocation(0, RelocType.JUMP26, "start_kernel", 0)],
    )  # fmt: skip
    main_obj = ObjectFile("main.o")
    main_obj.sections[".text"] = Section(
        ".text", SectionFlags(execute=True), 4, bytearray(BL + NOP + RET + RET + b"\xef\xbe\xad\xde"),
        relocations=[Relocation(0, RelocType.CALL26, "helper", 0)],
    )  # fmt: skip
    main_obj.symbols.update(
        {
            "start_kernel": Symbol("start_kernel", ".text", 0, Binding.GLOBAL, SymbolType.FUNC, 12),
            "helper": Symbol("helper", ".text", 12, Binding.LOCAL),
            "$x": Symbol("$x", ".text", 0),
            "$d": Symbol("$d", ".text", 16),
            "magic": Symbol("magic", ".text", 16, Binding.GLOBAL, SymbolType.OBJECT, 4),
        }
    )
    path = tmp_path_factory.mktemp("cli") / "k.elf"
    write_elf(link([head, main_obj], load_script(KERNEL_LD)), path)
    return path


def test_symbols_table_is_sorted_by_address(elf_file: Path, capsys) -> None:
    assert main(["symbols", str(elf_file), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VALUE", "SIZE", "TYPE", "BIND", "SECTION", "NAME"]
    rows = [line.split() for line in lines[1:]]
    values = [int(r[0], 16) for r in rows]
    assert values == sorted(values)
    by_name = {r[5]: r for r in rows}
    assert by_name["start_kernel"][1:5] == ["12", "FUNC", "GLOBAL", ".text"]
    assert by_name["helper"][3] == "LOCAL"
    assert by_name["KIMAGE_VADDR"][4] == "*ABS*"
    assert "$x" not in by_name and "$d" not in by_name


def test_disasm_whole_image_labels_and_targets(elf_file: Path, capsys) -> None:
    assert main(["disasm", str(elf_file)]) == 0
    out = capsys.readouterr().out
    assert "ffff808000000000 <_text>:" in out
    assert "\t...\n" in out and out.count("\n") < 100  # the 64K padding is collapsed
    assert "\tb\t#0xffff808000010000\t// <start_kernel>" in out
    assert "\tbl\t#0xffff80800001000c\t// <helper>" in out
    assert "ffff80800001000c <helper>:" in out
    assert ".word 0xdeadbeef" in out  # $d region shown as data


def test_disasm_symbol_and_range(elf_file: Path, capsys) -> None:
    assert main(["disasm", str(elf_file), "--symbol", "start_kernel"]) == 0
    out = capsys.readouterr().out
    assert len([ln for ln in out.splitlines() if ln.startswith("  ")]) == 3
    assert "ret" in out and "deadbeef" not in out
    start = "0xffff808000010004"
    assert main(["disasm", str(elf_file), "--start", start, "--end", "ffff80800001000c"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert len(lines) == 2 and "nop" in lines[0]
    assert lines[0].startswith("  ffff808000010004:")


@pytest.mark.parametrize(
    ("argv", "status", "fragment"),
    [
        (["disasm", "{elf}", "--symbol", "nope"], 2, "no symbol nope"),
        (["disasm", "{elf}", "--symbol", "KIMAGE_VADDR"], 2, "absolute symbol"),
        (["disasm", "{elf}", "--start", "0x10"], 2, "--start and --end go together"),
        (["disasm", "{elf}", "--symbol", "x", "--start", "1", "--end", "2"], 2, "not both"),
        (["disasm", "{elf}", "--start", "0x20", "--end", "0x10"], 2, "empty address range"),
        (["disasm", "{elf}", "--start", "zz", "--end", "0x10"], 2, "not an address"),
        (["disasm", "{elf}", "--start", "0x10", "--end", "0x20"], 4, "not inside one segment"),
        (["symbols", "{junk}"], 4, "not an ELF file"),
        (["symbols", "{missing}"], 4, "cannot read"),
        (["build", "--defsym", "KIMAGE_VADDR"], 2, "expected SYMBOL=VALUE"),
        (["build", "--defsym", "1x=3"], 2, "not a symbol name"),
        (["build", "--defsym", "A=foo"], 2, "only constants"),
        (["build", "nonexistent.S"], 4, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    elf_file: Path, tmp_path: Path, capsys, argv: list[str], status: int, fragment: str
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an elf at all")
    subst = {"{elf}": str(elf_file), "{junk}": str(junk), "{missing}": str(tmp_path / "none")}
    assert main([subst.get(a, a) for a in argv]) == status
    err = capsys.readouterr().err
    assert err.startswith("ktext-emu: error: ") and err.count("\n") == 1
    assert fragment in err


def test_defsym_and_address_parsing() -> None:
    assert parse_defsym("KIMAGE_VADDR=0xffff800008000000") == ("KIMAGE_VADDR", 0xFFFF800008000000)
    assert parse_defsym("X=64K") == ("X", 0x10000)
    assert parse_defsym("X = 1 << 20") == ("X", 1 << 20)
    with pytest.raises(UsageError):
        parse_defsym("=5")
    assert parse_address("0x10") == 16 and parse_address("ffff") == 0xFFFF
    with pytest.raises(UsageError):
        parse_address("0x1" + "0" * 17)


@pytest.mark.skipif(not have(GNU_AS), reason="GNU as for AArch64 not installed")
def test_build_command(tmp_path: Path, monkeypatch, capsys) -> None:
    calls: list[str] = []

    def assemble(path: Path, include_dirs):
        calls.append(Path(path).name)
        out = tmp_path / f"{len(calls)}.o"
        return read_gnu_object(gnu_assemble_file(Path(path), out, tuple(include_dirs)))

    monkeypatch.setattr(build, "_assembler", lambda: assemble)
    head = tmp_path / "head.S"
    head.write_text('\t.section .head.text, "ax"\n\tb\tstart\n')
    body = tmp_path / "body.S"
    body.write_text("\t.text\n\t.globl start\nstart:\n\tret\n\t.bss\n\t.skip 64\n")
    extra = tmp_path / "extra.S"
    extra.write_text("\t.text\n\t.globl extra\nextra:\n\tb\tstart\n")
    out = tmp_path / "out" / "k.elf"
    out.parent.mkdir()
    argv = ["build", str(head), str(body), "--add", str(extra), "-o", str(out),
            "--defsym", "KIMAGE_VADDR=0xffff800008000000", "-T", str(KERNEL_LD)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert calls == ["head.S", "body.S", "extra.S"]
    assert ".head.text" in printed and ".bss" in printed and "nobits" in printed
    assert f"written to {out}" in printed
    image = read_elf(out)
    assert image.entry == 0xFFFF800008000000
    assert image.symbol_value("extra") > image.symbol_value("start")


def test_build_default_output_and_missing_sources(tmp_path: Path, monkeypatch, capsys) -> None:
    empty = tmp_path / "blob"
    empty.mkdir()
    monkeypatch.setattr(build, "kernel_blob_dir", lambda: empty)
    monkeypatch.chdir(tmp_path)
    assert main(["build"]) == 4
    assert "no kernel sources" in capsys.readouterr().err
    assert not (tmp_path / "kernel.elf").exists()


def test_symbols_default_hides_constants_and_local_duplicates(tmp_path, capsys) -> None:
    """Issue 13 defect 9: 552 asm-offsets constants among 680 rows, with local duplicates."""
    elf = tmp_path / "k.elf"
    assert main(["build", "-o", str(elf)]) == 0
    capsys.readouterr()
    assert main(["symbols", str(elf)]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()[1:]
    assert not any("*ABS*" in row for row in rows)
    assert any(row.endswith(" start_kernel") for row in rows)
    names = [row.split()[-1] for row in rows]
    assert len(names) == len(set(zip(names, [row.split()[0] for row in rows], strict=True)))
    assert "of other kinds (--kind)" in captured.err

    assert main(["symbols", str(elf), "--kind", "abs", "--name", "__NR_*"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert rows and all("*ABS*" in row and row.split()[-1].startswith("__NR_") for row in rows)
    assert len({row.split()[-1] for row in rows}) == len(rows)  # each constant once

    assert main(["symbols", str(elf), "--kind", "func", "--name", "sys_*"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert rows and all(" FUNC " in row and row.split()[-1].startswith("sys_") for row in rows)

    assert main(["symbols", str(elf), "--all"]) == 0
    everything = capsys.readouterr().out.splitlines()[1:]
    assert sum("*ABS*" in row for row in everything) > 400  # the constants, per file
