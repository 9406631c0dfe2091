"""Kernel builds and the shipped-kernel cache.

The assembler seam (``build._assembler``) is pointed at GNU as here so that the
build and cache logic is tested independently of emu's own assembler; one
test runs the real assembler.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gnu_objects import GNU_AS, gnu_assemble_file, have, read_gnu_object

from emu.blob import build
from emu.blob.elf import read_elf
from emu.errors import BlobError

HEAD_S = """
	.section .head.text, "ax"
	.globl _head
_head:
	b	start_kernel
"""
MAIN_S = """
	.text
	.globl start_kernel
	.type start_kernel, %function
start_kernel:
	adrp	x0, swapper_pg_dir
	bl	helper
	ret
	.size start_kernel, . - start_kernel
	.data
	.quad	start_kernel
"""
HELPER_S = """
	.text
	.globl helper
helper:
	ret
"""

needs_gnu = pytest.mark.skipif(not have(GNU_AS), reason="GNU as for AArch64 not installed")


@pytest.fixture
def blob_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "kernel_blob"
    directory.mkdir()
    (directory / "main.S").write_text(MAIN_S)
    (directory / "head.S").write_text(HEAD_S)
    (directory / "aaa_helper.S").write_text(HELPER_S)
    monkeypatch.setattr(build, "kernel_blob_dir", lambda: directory)
    return directory


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(build.CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def gnu_assembler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Route build's assembler to GNU as; returns the list of files it assembled."""
    calls: list[Path] = []
    out_dir = tmp_path / "objs"
    out_dir.mkdir()

    def assemble(path: Path, include_dirs) -> object:
        calls.append(Path(path))
        obj = out_dir / f"{len(calls)}_{Path(path).stem}.o"
        return read_gnu_object(gnu_assemble_file(Path(path), obj, tuple(include_dirs)))

    monkeypatch.setattr(build, "_assembler", lambda: assemble)
    return calls


def test_source_order_is_head_first_then_by_name(blob_dir: Path) -> None:
    assert [p.name for p in build.kernel_sources()] == ["head.S", "aaa_helper.S", "main.S"]


def test_package_data_points_at_the_shipped_files() -> None:
    assert build.default_script().name == "kernel.ld" and build.default_script().is_file()
    assert build.kernel_blob_dir().is_dir()


@needs_gnu
def test_build_kernel_from_shipped_sources(blob_dir: Path, gnu_assembler: list[Path]) -> None:
    image = build.build_kernel()
    assert [p.name for p in gnu_assembler] == ["head.S", "aaa_helper.S", "main.S"]
    assert image.entry == image.symbol_value("_text") == 0xFFFF808000000000
    assert image.symbol_value("start_kernel") > image.symbol_value("helper")  # link order


@needs_gnu
def test_build_with_explicit_sources_extra_and_defsyms(
    tmp_path: Path, blob_dir: Path, gnu_assembler: list[Path]
) -> None:
    extra = tmp_path / "extra.S"
    extra.write_text("\t.text\n\t.globl extra_fn\nextra_fn:\n\tb\thelper\n")
    image = build.build_kernel(
        [blob_dir / "head.S", blob_dir / "main.S", blob_dir / "aaa_helper.S"],
        extra=[extra],
        defsyms={"KIMAGE_VADDR": 0xFFFF800010000000},
    )
    assert image.symbol_value("_text") == 0xFFFF800010000000
    assert "extra_fn" in image.globals
    assert gnu_assembler[-1] == extra


def test_build_errors(tmp_path: Path, blob_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BlobError, match="does not exist"):
        build.build_kernel([tmp_path / "nope.S"])
    for path in blob_dir.iterdir():
        path.unlink()
    with pytest.raises(BlobError, match="no kernel sources"):
        build.build_kernel()
    with pytest.raises(BlobError, match="no kernel sources"):
        build.shipped_kernel_elf()


@needs_gnu
def test_shipped_kernel_is_built_once_and_cached(
    blob_dir: Path, cache: Path, gnu_assembler: list[Path]
) -> None:
    first = build.shipped_kernel_elf()
    assert first.parent == cache and first.name.startswith("kernel-")
    built = len(gnu_assembler)
    assert built == 3
    assert read_elf(first).symbol_value("start_kernel") > 0
    again = build.shipped_kernel_elf()
    assert again == first and len(gnu_assembler) == built  # no rebuild

    moved = build.shipped_kernel_elf({"KIMAGE_VADDR": 0xFFFF800008000000})
    assert moved != first and len(gnu_assembler) == 2 * built
    assert read_elf(moved).symbol_value("_text") == 0xFFFF800008000000

    (blob_dir / "main.S").write_text(MAIN_S + "\n\tnop\n")
    changed = build.shipped_kernel_elf()
    assert changed != first and len(gnu_assembler) == 3 * built

    changed.write_bytes(b"garbage")  # a corrupt cache entry is rebuilt, not trusted
    assert build.shipped_kernel_elf() == changed and len(gnu_assembler) == 4 * built
    assert read_elf(changed).entry == 0xFFFF808000000000


def test_cache_key_covers_inputs_and_toolchain(
    tmp_path: Path, blob_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = build.default_script()
    base = build.build_key(blob_dir, script)
    assert build.build_key(blob_dir, script) == base
    assert build.build_key(blob_dir, script, {"KIMAGE_VADDR": 1}) != base
    (blob_dir / "macros.h").write_text("/* included */\n")
    with_header = build.build_key(blob_dir, script)
    assert with_header != base
    other_script = tmp_path / "other.ld"
    other_script.write_text(script.read_text() + "\n/* changed */\n")
    assert build.build_key(blob_dir, other_script) != with_header
    monkeypatch.setattr(build, "toolchain_version", lambda: "another toolchain")
    assert build.build_key(blob_dir, script) != with_header


def test_toolchain_key_follows_the_modules_on_disk(tmp_path: Path) -> None:
    names = [name for name, _ in build.toolchain_sources()]
    assert names == sorted(names)
    for name in ("build.py", "asm/__init__.py", "asm/read.py", "asm/tc_aarch64.py", "ksworker.py"):
        assert name in names
    package = tmp_path / "blob"
    shutil.copytree(Path(build.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    original = build.toolchain_digest(package)
    assert original == build.toolchain_digest(package)
    (package / "asm" / "read.py").rename(package / "asm" / "reader.py")
    moved = build.toolchain_digest(package)
    assert moved != original
    (package / "asm" / "extra.py").write_text("")
    assert build.toolchain_digest(package) not in (original, moved)


def test_toolchain_key_never_hashes_a_missing_file(tmp_path: Path) -> None:
    package = tmp_path / "blob"
    package.mkdir()
    with pytest.raises(BlobError, match="no toolchain sources"):
        build.toolchain_digest(package)
    (package / "gone.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(BlobError, match="cannot read toolchain source"):
        build.toolchain_digest(package)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(build.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build.cache_dir() == tmp_path / ".cache" / "ktext-emu"
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert build.cache_dir() == tmp_path / "elsewhere"


def test_real_assembler_builds_a_small_kernel(tmp_path: Path) -> None:
    head = tmp_path / "head.S"
    head.write_text(HEAD_S)
    main = tmp_path / "main.S"
    main.write_text(MAIN_S)
    helper = tmp_path / "helper.S"
    helper.write_text(HELPER_S)
    image = build.build_kernel([head, main, helper])
    assert image.symbol_value("_text") == 0xFFFF808000000000
    text = image.section(".head.text")
    branch = int.from_bytes(text.data[:4], "little")
    assert branch >> 26 == 0b000101  # b
    offset = (branch & 0x3FFFFFF) << 2
    assert text.vaddr + offset == image.symbol_value("start_kernel")
