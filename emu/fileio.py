"""Files in and out: every file ktext-emu writes (ELF images, reports,
plots, cached kernels) goes through here atomically, and every file a user
names as input is read through ``read_input_file`` (regular files only,
size-limited).

A file is written to a temporary sibling in the same directory and renamed
over the destination only once it is complete, so a reader never sees a
partial file and a failure leaves any existing file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from emu.errors import OutputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` when the block exits cleanly.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``mode`` is "wb" or "w" (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_output mode must be 'wb' or 'w', not {mode!r}")
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    tmp_name = str(directory / f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 lets the umask decide the final permissions, as a plain open() would.
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from err
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {target}: {err.strerror or err}") from err
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
    """Refuse, before a long run, an output that could never be written."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a directory"
        raise OutputError(f"cannot write {target}: {parent} {what}")


def read_input_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a file a user named as input, at most ``limit`` of them
    (linker scripts, assembly sources, ELF images, machine files).

    Only a regular file is read (a FIFO would block, a device such as /dev/zero
    would stream forever) and a larger one is refused, both as an OSError whose
    ``strerror`` says why, so callers report it like any unreadable file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit:#x} bytes")
    return data
