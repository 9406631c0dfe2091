"""Writes the guest's initramfs: a newc ("070701") cpio archive, in Python.

The format is the kernel's own (Documentation/driver-api/early-userspace/
buffer-format.rst): a 110-byte ASCII header of 13 hex fields, the NUL-ended
name, padding to 4 bytes, the data, padding to 4 bytes; "TRAILER!!!" ends it.
Device nodes are created by the kernel's unpacker itself, so the archive
carries /dev/console, /dev/null and /dev/zero without root on the host.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One archive member: a path inside the guest and what it is."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc_archive(entries: list[Entry]) -> bytes:
    """The entries as one newc cpio archive, trailer included."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.encode() + b"\0"
        fields = (
            ino, entry.mode, 0, 0, 1, 0, len(entry.data),
            0, 0, entry.rdev_major, entry.rdev_minor, len(name), 0,
        )
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        out += header + name + _pad4(len(header) + len(name))
        out += entry.data + _pad4(len(entry.data))
    return bytes(out)


def init_archive(init_elf: bytes) -> bytes:
    """The measurement guest's root: /init and the three device nodes it opens."""
    return newc_archive([
        Entry("dev", stat.S_IFDIR | 0o755),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev_major=5, rdev_minor=1),
        Entry("dev/null", stat.S_IFCHR | 0o666, rdev_major=1, rdev_minor=3),
        Entry("dev/zero", stat.S_IFCHR | 0o666, rdev_major=1, rdev_minor=5),
        Entry("init", stat.S_IFREG | 0o755, data=init_elf),
    ])
