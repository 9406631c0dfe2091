"""Files in and out: every file ktext-emu writes (ELF images, reports,
plots, cached kernels) goes through ``atomic_output`` and every file a user
names as input is read through ``read_input_file`` (regular files only,
size-limited).  A command checks its outputs before any work with
``check_outputs``: each must be writable (a probe file is created and removed
in its directory) and none may be one of the command's inputs.

A regular file is written to a temporary sibling in the directory of its
final target (a symlink is followed, the link itself kept) and renamed over
it only once complete, so a reader never sees a partial file and a failure
leaves any existing file untouched.  A character device or a FIFO
(/dev/null, /dev/stdout, a pipe) is written directly, never renamed over;
``-`` is standard output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from emu.errors import OutputError, UsageError

STDOUT = "-"  # an output path meaning standard output


def is_stdout(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path) == STDOUT


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), so a path
    or a command line in a message stays one clean line on a terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def _shown(path: str | os.PathLike[str]) -> str:
    return printable(os.fspath(path))


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file an output really replaces: a symlink's final target (the
    link stays a link), else ``path`` itself."""
    target = Path(path)
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
            return None  # the open or the probe reports it
        raise


def _refuse_kind(path: str | os.PathLike[str], st: os.stat_result | None) -> None:
    """A directory, block device or socket is never an output."""
    if st is None:
        return
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            raise OutputError(f"cannot write {_shown(path)}: it is {what}")


def _is_stream(st: os.stat_result | None) -> bool:
    """Written in place: a character device (/dev/null, a terminal) or a FIFO."""
    return st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` when the block exits cleanly.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``mode`` is "wb" or "w" (text, UTF-8).  ``-`` is standard output, and a
    character device or FIFO is written directly (it cannot be replaced).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_output mode must be 'wb' or 'w', not {mode!r}")
    encoding = None if "b" in mode else "utf-8"
    if is_stdout(path):
        stream: IO = sys.stdout.buffer if "b" in mode else sys.stdout
        try:
            yield stream
            stream.flush()
        except OSError as err:
            raise OutputError(f"cannot write standard output: {err.strerror or err}") from err
        return
    target = output_target(path)
    st = _stat(target)
    _refuse_kind(path, st)
    if _is_stream(st):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise OutputError(f"cannot write {_shown(path)}: {err.strerror or err}") from err
        try:
            with os.fdopen(fd, mode, encoding=encoding) as handle:
                yield handle
        except OSError as err:
            raise OutputError(f"cannot write {_shown(path)}: {err.strerror or err}") from err
        return
    directory = target.parent if str(target.parent) else Path(".")
    tmp_name = str(directory / f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 lets the umask decide the final permissions, as a plain open() would.
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise OutputError(f"cannot write {_shown(path)}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {_shown(path)}: {err.strerror or err}") from err
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_output(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    with atomic_output(path, "w") as handle:
        handle.write(text)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse, before a long run, an output that could never be written: a
    probe file is created and removed where the output's temporary file
    will go (permissions, a read-only file system, a full inode table)."""
    if is_stdout(path):
        return
    target = output_target(path)
    st = _stat(target)
    _refuse_kind(path, st)
    if _is_stream(st):
        # Opening a device can have effects (a watchdog, a tape): ask instead.
        if not os.access(target, os.W_OK):
            raise OutputError(f"cannot write {_shown(path)}: Permission denied")
        return
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a directory"
        raise OutputError(f"cannot write {_shown(path)}: {_shown(parent)} {what}")
    probe = parent / f".{target.name}.{secrets.token_hex(6)}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise OutputError(f"cannot write {_shown(path)}: {err.strerror or err}") from err
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _identity(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int] | None]:
    """The resolved path and, for an existing file, its (st_dev, st_ino)."""
    resolved = os.path.realpath(path)
    try:
        st = os.stat(resolved)
    except OSError:
        return resolved, None
    return resolved, (st.st_dev, st.st_ino)


def _same(a: tuple[str, tuple[int, int] | None], b: tuple[str, tuple[int, int] | None]) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


Named = Sequence[tuple[str, "str | os.PathLike[str] | None"]]


def check_outputs(outputs: Named, inputs: Named = ()) -> None:
    """Before any work: refuse an output that is also an input (by resolved
    path and by device and inode, so a symlink or hard link is caught too) or
    that another output names, then check each output is writable.

    ``outputs`` and ``inputs`` are (what, path) pairs, e.g. ("--json", path);
    a None path is skipped.  A conflict is a UsageError (exit 2): the command
    line names one file for two jobs.
    """
    given_outputs = [(what, path) for what, path in outputs
                     if path is not None and not is_stdout(path)]
    files = []
    for what, path in given_outputs:
        st = _stat(output_target(path))
        if not _is_stream(st):  # /dev/null may well be named twice
            files.append((what, path, _identity(path)))
    sources = [(what, path, _identity(path)) for what, path in inputs if path is not None]
    for number, (what, path, ident) in enumerate(files):
        for in_what, _, in_ident in sources:
            if _same(ident, in_ident):
                raise UsageError(f"{what} {_shown(path)} is also an input ({in_what}): "
                                 "refusing to overwrite it")
        for other_what, _, other_ident in files[:number]:
            if _same(ident, other_ident):
                raise UsageError(f"{what} {_shown(path)} is also the output of {other_what}")
    for _, path in given_outputs:
        check_writable(path)


def read_input_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a file a user named as input, at most ``limit`` of them
    (linker scripts, assembly sources, ELF images, machine files, grids,
    reports).

    Only a regular file is read (a FIFO would block, a device such as /dev/zero
    would stream forever: the open never blocks and the type is checked on the
    open file) and a larger one is refused before it is read, both as an
    OSError whose ``strerror`` says why, so callers report it like any
    unreadable file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than the limit of {limit:,} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise OSError(errno.EFBIG, f"larger than the limit of {limit:,} bytes")
    return data
