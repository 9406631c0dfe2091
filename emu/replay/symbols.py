"""A kernel's System.map: the text and rodata bounds replication copies
(``_stext``, ``_etext``, ``__start_rodata``, ``__end_rodata``) and the
symbol table for naming addresses.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from emu.fileio import read_input_file
from emu.replay.errors import TraceError

# "ffff800008010000 T _stext": address, type letter, name (nm's format)
_LINE = re.compile(r"^([0-9a-fA-F]{1,16}) ([A-Za-z?]) (\S+)\s*$")
REQUIRED = ("_stext", "_etext")
# Kernel space on arm64 is the TTBR1 half: the top address bit set.
KERNEL_SPACE = 1 << 63
MAX_SYSTEM_MAP = 256 << 20  # an allyesconfig System.map is about 30 MiB


@dataclass(frozen=True)
class KernelMap:
    """Bounds of the replicated region and the sorted function symbols."""

    stext: int
    etext: int
    text: int | None = None  # _text: where the Image file starts
    start_rodata: int | None = None
    end_rodata: int | None = None
    addresses: tuple[int, ...] = field(default=(), repr=False)
    names: tuple[str, ...] = field(default=(), repr=False)
    path: str = ""

    @property
    def replicated_end(self) -> int:
        """End of what replication copies: ``__end_rodata``, else ``_etext``."""
        return self.end_rodata if self.end_rodata is not None else self.etext

    def symbolize(self, va: int) -> str:
        """``name+0xoff`` of the nearest symbol at or below ``va``, or the hex address."""
        index = bisect.bisect_right(self.addresses, va) - 1
        if index < 0:
            return f"{va:#x}"
        offset = va - self.addresses[index]
        return self.names[index] if offset == 0 else f"{self.names[index]}+{offset:#x}"

    def to_json(self) -> dict:
        """The RUN's ``kernel`` object (the keys ``ktext-emu run`` uses)."""
        return {
            "sha256": None,  # no kernel ELF is loaded: the System.map is in the RUN's source
            "kimage_vaddr": None if self.text is None else f"{self.text:#x}",
            "stext": f"{self.stext:#x}",
            "etext": f"{self.etext:#x}",
            "end_rodata": None if self.end_rodata is None else f"{self.end_rodata:#x}",
        }


def load_system_map(path: str | Path) -> KernelMap:
    """Parse ``path``; a malformed line or a missing ``_stext``/``_etext`` is a TraceError."""
    shown = str(path)
    try:
        text = read_input_file(path, MAX_SYSTEM_MAP).decode("ascii", errors="replace")
    except OSError as err:
        raise TraceError(f"cannot read System.map: {err.strerror or err}", shown) from None
    bounds: dict[str, int] = {}
    symbols: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None and "System.map is in" in line:
            raise TraceError("this is Debian's placeholder System.map; the real one is in the "
                             "linux-image-*-dbg package", shown, number)
        if match is None:
            raise TraceError(f"not a System.map line (ADDRESS TYPE NAME): {line[:60]!r}",
                             shown, number)  # fmt: skip
        address, kind, name = int(match[1], 16), match[2], match[3]
        if name in ("_text", "_stext", "_etext", "__start_rodata", "__end_rodata"):
            bounds[name] = address
        if kind in "tTwW" and address >= KERNEL_SPACE:
            symbols.append((address, name))
    missing = [name for name in REQUIRED if name not in bounds]
    if missing:
        raise TraceError(f"no {' or '.join(missing)} symbol", shown)
    if bounds["_etext"] <= bounds["_stext"]:
        raise TraceError(f"_etext {bounds['_etext']:#x} is not above _stext "
                         f"{bounds['_stext']:#x}", shown)  # fmt: skip
    symbols.sort()
    return KernelMap(
        text=bounds.get("_text"),
        stext=bounds["_stext"],
        etext=bounds["_etext"],
        start_rodata=bounds.get("__start_rodata"),
        end_rodata=bounds.get("__end_rodata"),
        addresses=tuple(a for a, _ in symbols),
        names=tuple(n for _, n in symbols),
        path=shown,
    )
