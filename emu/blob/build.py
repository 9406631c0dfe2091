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

import atexit
import contextlib
import copy
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import emu
from emu.blob.cc import CFLAGS, compile_c, compiler_version, is_c_source
from emu.blob.elf import MAX_FILE_SIZE as MAX_ELF_BYTES
from emu.blob.elf import elf_bytes
from emu.blob.ldscript import load_script
from emu.blob.link import LinkedImage, link
from emu.blob.objfile import ObjectFile
from emu.blob.synth import Footprint, write_source
from emu.blob.usercode import as_user_object
from emu.errors import BlobError, OutputError
from emu.fileio import atomic_write_bytes, atomic_write_text, printable, read_input_file

CACHE_ENV = "KTEXT_EMU_CACHE"
# The kernel cache keeps at most this many entries (each ~1 MB): every
# --add source, footprint knob and sweep point is a key of its own, and an
# unbounded cache grew to 2,700 entries (1.6 GB) on the development host.
# The least recently used go first, but never one used within the grace
# period: another process (a sweep's workers) may be about to load it.
MAX_CACHE_ENTRIES = 64
CACHE_GRACE_SECONDS = 600
MAX_SOURCE_BYTES = 16 << 20  # an --add source hashed for the key: the assembler's own cap

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


def _hash_input(digest: hashlib._Hash, tag: bytes, path: Path) -> None:
    """One --add/--add-user source into the build key: its tag, resolved path and contents."""
    digest.update(b"\0" + tag + b"\0" + str(Path(path).resolve()).encode() + b"\0")
    try:
        digest.update(read_input_file(path, MAX_SOURCE_BYTES))
    except OSError as err:
        raise BlobError(f"cannot read {path}: {err.strerror or err}") from err


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
        _hash_input(digest, b"user", path)
    for path in sorted(p for p in blob_dir.rglob("*") if p.is_file()):
        digest.update(b"\0file\0" + str(path.relative_to(blob_dir)).encode() + b"\0")
        digest.update(path.read_bytes())
    for path in extra:
        _hash_input(digest, b"extra", path)
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

    An entry is used only if the SHA-256 of the ELF matches the one in its
    sidecar (``kernel-KEY.elf.sha256``, written after the ELF, both
    atomically): anything else (a flipped bit, a truncated file, no sidecar)
    is rebuilt, and said once on stderr.  When the cache directory cannot be
    written the kernel is built into a private temporary directory instead
    (removed at exit): the run goes on uncached.
    """
    blob_dir, script = kernel_blob_dir(), default_script()
    if not kernel_sources(blob_dir):
        raise BlobError(f"no kernel sources (*.S) in {blob_dir}")
    key = build_key(blob_dir, script, defsyms, extra, user, footprint)
    name = f"kernel-{key[:24]}.elf"
    private = _private_dir() / name
    if _entry_state(private) == "ok":  # this process already runs uncached
        return private
    directory = cache_dir()
    path = directory / name
    state = _entry_state(path)
    if state == "ok":
        _touch(path)
        return path
    if state != "absent":
        _note(f"cached kernel {path} {state}: rebuilding it")
    generated = () if footprint is None else (copy.deepcopy(_generated_object(footprint)),)
    data = elf_bytes(build_kernel(None, script, extra, defsyms, user, generated))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _store_entry(path, data)
        prune_cache(directory, keep=path)
        return path
    except (OSError, OutputError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        _note(f"cannot write the kernel cache {directory} ({reason}): running uncached")
    private.parent.mkdir(mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, private.parent, True)
    _store_entry(private, data)
    return private


DIGEST_SUFFIX = ".sha256"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _private_dir() -> Path:
    """Where this process keeps kernels it could not cache."""
    return Path(tempfile.gettempdir()) / f"ktext-emu-uncached-{os.getuid()}-{os.getpid()}"


def _entry_state(path: Path) -> str:
    """"ok", "absent", or what is wrong with a cache entry (for a message)."""
    if not path.exists():
        return "absent"
    try:
        data = read_input_file(path, MAX_ELF_BYTES)
        recorded = read_input_file(_digest_path(path), 4096).decode("ascii", "replace").split()
    except OSError as err:
        if err.filename is not None and str(err.filename).endswith(DIGEST_SUFFIX):
            return "has no digest"
        return f"cannot be read ({err.strerror or err})"
    if not recorded or recorded[0] != hashlib.sha256(data).hexdigest():
        return "does not match its SHA-256 digest"
    return "ok"


def _store_entry(path: Path, data: bytes) -> None:
    """The ELF, then its digest: a reader that sees the digest sees the ELF it names."""
    atomic_write_bytes(path, data)
    atomic_write_text(_digest_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def _touch(path: Path) -> None:
    """Mark an entry used now (its mtime is the cache's LRU clock)."""
    # a read-only cache still serves; it only forgets the order
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_cache(directory: Path, keep: Path | None = None, max_entries: int | None = None,
                grace_seconds: float | None = None) -> list[Path]:  # fmt: skip
    """Remove the least recently used entries (ELF and sidecar) beyond
    ``max_entries`` (MAX_CACHE_ENTRIES), except ``keep`` and any used within
    ``grace_seconds`` (CACHE_GRACE_SECONDS).  Only files named like entries
    are touched.  Returns the ELFs removed."""
    max_entries = MAX_CACHE_ENTRIES if max_entries is None else max_entries
    grace_seconds = CACHE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    entries = []
    for path in directory.glob("kernel-*.elf"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            continue  # removed meanwhile by another process
    entries.sort(reverse=True)
    recent = time.time() - grace_seconds
    removed = []
    for mtime, path in entries[max_entries:]:
        if path == keep or mtime >= recent:
            continue
        for victim in (_digest_path(path), path):  # the digest first: no sidecar, no use
            try:
                victim.unlink(missing_ok=True)
            except OSError:
                return removed  # not ours to remove (permissions): leave the rest too
        removed.append(path)
    return removed


def _note(message: str) -> None:
    print(f"ktext-emu: {printable(message)}", file=sys.stderr)
