"""Building kernel images from assembly: the shipped kernel and user variants.

Owns where the shipped sources and script live (``emu/data/kernel_blob`` and
``emu/data/linker_scripts``, symlinks to the top-level directories, so a
plain install carries them), the source order (head.S first, then by name),
and the on-disk cache of the shipped kernel's ELF under ``$KTEXT_EMU_CACHE``
or ``~/.cache/ktext-emu/``.  A cache entry is keyed by a hash of every file
in kernel_blob/, the script, the --defsym values and the toolchain (ktext-emu
version, keystone version and every Python source of the blob toolchain as
found on disk), so any change rebuilds and nothing stale is ever loaded.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import emu
from emu.blob.cc import CFLAGS, compile_c, compiler_version, is_c_source
from emu.blob.elf import read_elf, write_elf
from emu.blob.ldscript import load_script
from emu.blob.link import LinkedImage, link
from emu.blob.objfile import ObjectFile
from emu.blob.synth import Footprint, write_source
from emu.blob.usercode import as_user_object
from emu.errors import BlobError, ElfError, OutputError

CACHE_ENV = "KTEXT_EMU_CACHE"

Assembler = Callable[[Path, Sequence[Path]], ObjectFile]


def data_dir() -> Path:
    return Path(emu.__file__).parent / "data"


def kernel_blob_dir() -> Path:
    return data_dir() / "kernel_blob"


def default_script() -> Path:
    return data_dir() / "linker_scripts" / "kernel.ld"


def kernel_sources(blob_dir: Path | None = None) -> list[Path]:
    """The shipped kernel's sources in link order: head.S first, then by name."""
    blob_dir = blob_dir or kernel_blob_dir()
    sources = sorted(blob_dir.glob("*.S"), key=lambda p: p.name)
    head = [p for p in sources if p.name == "head.S"]
    return head + [p for p in sources if p.name != "head.S"]


def _assembler() -> Assembler:
    # Imported on first use: the assembler pulls in keystone and its worker.
    from emu.blob.asm import assemble_file

    return assemble_file


def build_kernel(
    sources: Sequence[Path] | None = None,
    script: Path | None = None,
    extra: Sequence[Path] = (),
    defsyms: Mapping[str, int] | None = None,
    user: Sequence[Path] = (),
    objects: Sequence[ObjectFile] = (),
) -> LinkedImage:
    """Assemble and link a kernel.

    ``sources`` default to the shipped kernel_blob/*.S; ``extra`` files are
    appended (``build --add``), then the ``user`` files, whose .text, .rodata,
    .data and .bss become user sections (``--add-user``, emu/blob/usercode.py),
    then the already assembled ``objects``.
    A ``.c`` file among ``extra`` or ``user`` is compiled first (emu/blob/cc.py).
    kernel_blob/ is always an include directory, after each file's own directory.
    """
    if sources is None:
        sources = kernel_sources()
        if not sources:
            raise BlobError(f"no kernel sources (*.S) in {kernel_blob_dir()}")
    files = [(Path(p), False) for p in (*sources, *extra)] + [(Path(p), True) for p in user]
    if not files:
        raise BlobError("nothing to build: no source files")
    for path, _ in files:
        if not path.is_file():
            raise BlobError(f"source file {path} does not exist")
    script_path = Path(script) if script is not None else default_script()
    parsed = load_script(script_path)
    assemble = _assembler()
    assembled = []
    with tempfile.TemporaryDirectory(prefix="ktext-emu-cc-") as scratch:
        for path, is_user in files:
            source = compile_c(path, Path(scratch)) if is_c_source(path) else path
            obj = assemble(source, (path.parent, kernel_blob_dir()))
            assembled.append(as_user_object(obj) if is_user else obj)
    return link([*assembled, *objects], parsed, defsyms or {})


@functools.lru_cache(maxsize=4)
def _generated_object(footprint: Footprint) -> ObjectFile:
    """The generated source for ``footprint``, assembled once per process: every
    kernel built with it (each ``--add`` is a build of its own) links a copy."""
    with tempfile.TemporaryDirectory(prefix="ktext-synth-") as generated:
        source = write_source(footprint, Path(generated))
        return _assembler()(source, (source.parent, kernel_blob_dir()))


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "ktext-emu"


def toolchain_version() -> str:
    """ktext-emu and keystone versions plus a digest of the toolchain's own code."""
    try:
        import keystone

        ks = getattr(keystone, "__version__", "") or ".".join(map(str, keystone.ks_version()))
    except Exception:  # keystone missing or broken: the build itself will say so
        ks = "none"
    return f"ktext-emu {emu.__version__}; keystone {ks}; blob {toolchain_digest()[:16]}"


def toolchain_sources(package: Path | None = None) -> list[tuple[str, Path]]:
    """Every Python source of the blob toolchain (this package and its
    subpackages, the assembler's included), found on disk and sorted by
    relative path, so moving, adding or removing a module changes the key."""
    package = package or Path(__file__).parent
    sources = sorted((p.relative_to(package).as_posix(), p) for p in package.rglob("*.py"))
    if not sources:
        raise BlobError(f"no toolchain sources (*.py) in {package}")
    return sources


def toolchain_digest(package: Path | None = None) -> str:
    """A hash of the names and contents of ``toolchain_sources``."""
    digest = hashlib.sha256()
    for name, path in toolchain_sources(package):
        digest.update(b"\0source\0" + name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as err:
            raise BlobError(f"cannot read toolchain source {path}: {err.strerror or err}") from err
    return digest.hexdigest()


def build_key(
    blob_dir: Path,
    script: Path,
    defsyms: Mapping[str, int] | None = None,
    extra: Sequence[Path] = (),
    user: Sequence[Path] = (),
    footprint: Footprint | None = None,
) -> str:
    """The hash naming a cached build of ``blob_dir`` (+ ``extra`` and ``user``
    files, + the code generated for ``footprint``) with ``script`` and
    ``defsyms``; with a C file, the compiler too."""
    digest = hashlib.sha256()
    digest.update(toolchain_version().encode())
    if footprint is not None:
        digest.update(b"\0generated\0" + footprint.cache_token().encode())
    if any(is_c_source(Path(p)) for p in (*extra, *user)):
        digest.update(b"\0cc\0" + compiler_version().encode() + " ".join(CFLAGS).encode())
    for path in user:
        digest.update(b"\0user\0" + str(Path(path).resolve()).encode() + b"\0")
        try:
            digest.update(Path(path).read_bytes())
        except OSError as err:
            raise BlobError(f"cannot read {path}: {err.strerror or err}") from err
    for path in sorted(p for p in blob_dir.rglob("*") if p.is_file()):
        digest.update(b"\0file\0" + str(path.relative_to(blob_dir)).encode() + b"\0")
        digest.update(path.read_bytes())
    for path in extra:
        digest.update(b"\0extra\0" + str(Path(path).resolve()).encode() + b"\0")
        try:
            digest.update(Path(path).read_bytes())
        except OSError as err:
            raise BlobError(f"cannot read {path}: {err.strerror or err}") from err
    digest.update(b"\0script\0" + script.read_bytes())
    for name, value in sorted((defsyms or {}).items()):
        digest.update(f"\0defsym\0{name}={value & ((1 << 64) - 1):#x}".encode())
    return digest.hexdigest()


def shipped_kernel_elf(
    defsyms: Mapping[str, int] | None = None, extra: Sequence[Path] = (),
    user: Sequence[Path] = (), footprint: Footprint | None = None,
) -> Path:
    """The shipped kernel (plus ``extra`` sources, ``user`` sources made user
    code, and the paths and dbsim workload generated for ``footprint``) as an
    ELF file, built on first use and cached.

    A cached file is reused only if it still reads as a valid image; a
    corrupt one is rebuilt.
    """
    blob_dir, script = kernel_blob_dir(), default_script()
    if not kernel_sources(blob_dir):
        raise BlobError(f"no kernel sources (*.S) in {blob_dir}")
    key = build_key(blob_dir, script, defsyms, extra, user, footprint)
    directory = cache_dir()
    path = directory / f"kernel-{key[:24]}.elf"
    if path.is_file():
        try:
            read_elf(path)
            return path
        except ElfError:
            pass  # rebuilt below
    generated = () if footprint is None else (copy.deepcopy(_generated_object(footprint)),)
    image = build_kernel(None, script, extra, defsyms, user, generated)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create cache directory {directory}: {err.strerror}") from err
    write_elf(image, path)
    return path
