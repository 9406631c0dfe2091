"""Pseudo-ops, like the s_* handlers of GNU as's read.c and obj-elf.c.

Owns the directives that are neither conditionals (cond.py), macros and
loops (macro.py) nor AArch64's own (tc_aarch64.py): sections
(``.section``, ``.pushsection``, ``.previous``, ``.text``...), symbol
binding and attributes (``.globl``, ``.type``, ``.size``, ``.set``,
``.comm``), data (``.byte`` to ``.octa``, ``.inst``, ``.ascii``,
``.uleb128``), space and alignment (``.skip``, ``.fill``, ``.align``,
``.org``), ``.ltorg``, ``.end``, ``.error``, ``.include``, ``.incbin``, and
those accepted and ignored (``.cfi_*``, ``.file``, ``.ident``...). Each
registers itself in read.py's table with ``@pseudo_op``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from emu.blob.asm.common import (
    MAX_ALIGN_LOG2,
    MAX_INCLUDE_BYTES,
    Fail,
    printable,
)
from emu.blob.asm.read import PSEUDO_OPS, Stmt, parse_strings, pseudo_op, split_top, unquote
from emu.blob.expr import Num
from emu.blob.objfile import Binding, SymbolType

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


@pseudo_op(".file", ".ident", ".loc", ".arch", ".cpu", ".arch_extension", ".addrsig", ".addrsig_sym",
           ".variant_pcs", ".hidden", ".protected", ".internal", ".print", ".warning", ".loc_mark_labels",
           ".tlsdesccall", ".noaltmacro")  # fmt: skip
def _ignored(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if name in (".hidden", ".protected", ".internal"):
        for sym in split_top(args):
            asm.check_name(sym)


def _cfi(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    pass


@pseudo_op(".section", ".pushsection")
def _section_directive(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    push = name == ".pushsection"
    sec, sub, flags, kind = asm.parse_section_args(split_top(args), push)
    chunk = asm.enter_section(sec, sub, flags, kind, stmt)
    if push:
        asm.section_stack.append((asm.chunk, asm.previous))
    asm.switch(chunk)


@pseudo_op(".popsection")
def _popsection(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if not asm.section_stack:
        raise Fail(".popsection without .pushsection")
    asm.chunk, asm.previous = asm.section_stack.pop()


@pseudo_op(".previous")
def _previous(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if asm.previous is None:
        raise Fail(".previous without an earlier section")
    asm.chunk, asm.previous = asm.previous, asm.chunk


@pseudo_op(".text", ".data", ".bss")
def _simple_section(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    sub = asm.absolute(args, "subsection") if args else 0
    asm.switch(asm.enter_section(name, sub, "", "", stmt))


@pseudo_op(".subsection")
def _subsection(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    sub = asm.absolute(args, "subsection")
    asm.switch(asm.enter_section(asm.chunk.section.name, sub, "", "", stmt))


@pseudo_op(".globl", ".global", ".local", ".weak")
def _binding(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    binding = {".globl": Binding.GLOBAL, ".global": Binding.GLOBAL, ".local": Binding.LOCAL, ".weak": Binding.WEAK}[name]
    names = [n for n in re.split(r"[\s,]+", args) if n]
    if not names:
        raise Fail(f"{name} needs a symbol name")
    for sym in names:
        attrs = asm.attrs_of(sym)
        if attrs.binding == Binding.WEAK and binding == Binding.GLOBAL:
            continue
        attrs.binding = binding


_TYPES = {
    "function": SymbolType.FUNC, "stt_func": SymbolType.FUNC, "object": SymbolType.OBJECT,
    "stt_object": SymbolType.OBJECT, "notype": SymbolType.NOTYPE, "stt_notype": SymbolType.NOTYPE,
}  # fmt: skip


@pseudo_op(".type")
def _type(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) != 2:
        raise Fail(".type needs a symbol and a type")
    kind = parts[1].strip().strip('"').lstrip("%@").lower()
    if kind not in _TYPES:
        raise Fail(f"unsupported symbol type {parts[1]!r}")
    asm.attrs_of(parts[0]).type = _TYPES[kind]


@pseudo_op(".size")
def _size(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) != 2 or not parts[1]:
        raise Fail(".size needs a symbol and an expression")
    attrs = asm.attrs_of(parts[0])
    attrs.size = asm.pre(parts[1])
    attrs.size_stmt = stmt


@pseudo_op(".set", ".equ", ".eqv", ".equiv")
def _set(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) < 2:
        raise Fail(f"{name} needs a symbol and a value")
    asm.set_symbol(parts[0], ",".join(parts[1:]), stmt, redefine=name != ".equiv")


@pseudo_op(".comm", ".lcomm")
def _comm(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) not in (2, 3):
        raise Fail(f"{name} needs a symbol, a size and an optional alignment")
    sym = asm.check_name(parts[0])
    size = asm.absolute(parts[1], "size")
    if size < 0:
        raise Fail(f"negative size {size}")
    if len(parts) == 3:
        align = asm.absolute(parts[2], "alignment")
    else:
        # GNU as: the largest power of two not above the size, at most 8 (.lcomm) or 16 (.comm).
        align = 1
        while align * 2 <= size and align * 2 <= (8 if name == ".lcomm" else 16):
            align *= 2
    if align <= 0 or align & (align - 1):
        raise Fail(f"alignment {align} is not a power of 2")
    saved, previous = asm.chunk, asm.previous
    asm.chunk = asm.enter_section(".bss", 0, "", "", stmt)
    asm.align_to(align, b"\0", None)
    asm.define_label(sym, stmt)
    asm.emit_fill(size, b"\0")
    asm.chunk, asm.previous = saved, previous
    attrs = asm.attrs_of(sym)
    if name == ".comm" and attrs.binding is None:
        attrs.binding = Binding.GLOBAL
    if attrs.type is None:
        attrs.type = SymbolType.OBJECT
    if attrs.size is None:
        attrs.size = Num(size)


_DATA_SIZES = {
    ".byte": 1, ".dc.b": 1, ".hword": 2, ".short": 2, ".2byte": 2, ".dc.w": 2, ".word": 4, ".long": 4,
    ".int": 4, ".4byte": 4, ".dc.l": 4, ".quad": 8, ".8byte": 8, ".xword": 8, ".dword": 8, ".dc.a": 8,
    ".octa": 16,
}  # fmt: skip


@pseudo_op(*_DATA_SIZES)
def _data(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    asm.data_values(_DATA_SIZES[name], args, stmt)


def _leb128(value: int, signed: bool) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40) if signed else value == 0
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


@pseudo_op(".uleb128", ".sleb128")
def _leb(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    # The size depends on the value, so it must be known where the directive stands.
    for item in split_top(args):
        value = asm.absolute(item, f"{name} value")
        if name == ".uleb128" and value < 0:
            value &= 0xFFFFFFFFFFFFFFFF
        asm.emit(_leb128(value, name == ".sleb128"))


@pseudo_op(".inst")
def _inst(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    if not args:
        raise Fail(".inst needs a value")
    asm.data_values(4, args, stmt, inst=True)


@pseudo_op(".ascii", ".asciz", ".string")
def _ascii(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    for data in parse_strings(args):
        asm.emit(data + (b"\0" if name != ".ascii" else b""))


@pseudo_op(".zero", ".skip", ".space")
def _skip(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 2 or (name == ".zero" and len(parts) > 1):
        raise Fail(f"{name} needs a size" + ("" if name == ".zero" else " and an optional fill byte"))
    count = asm.absolute(parts[0], "size")
    fill = asm.absolute(parts[1], "fill value") & 0xFF if len(parts) > 1 else 0
    asm.emit_fill(count, bytes([fill]))


@pseudo_op(".fill")
def _fill(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 3:
        raise Fail(".fill needs a repeat count, and optionally a size and a value")
    repeat = asm.absolute(parts[0], "repeat count")
    size = asm.absolute(parts[1], "size") if len(parts) > 1 and parts[1] else 1
    value = asm.absolute(parts[2], "value") if len(parts) > 2 and parts[2] else 0
    if repeat < 0 or size < 0:
        raise Fail(".fill needs a non-negative repeat count and size")
    size = min(size, 8)
    pattern = ((value & 0xFFFFFFFF).to_bytes(8, "little"))[:size]
    asm.emit_fill(repeat * size, pattern if size else b"\0")


@pseudo_op(".align", ".p2align", ".p2alignw", ".p2alignl", ".balign", ".balignw", ".balignl")
def _align(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args) if args else [""]
    if not parts[0] or len(parts) > 3:
        raise Fail(f"{name} needs an alignment, and optionally a fill value and a maximum skip")
    amount = asm.absolute(parts[0], "alignment")
    fill = asm.absolute(parts[1], "fill value") if len(parts) > 1 and parts[1] else None
    max_skip = asm.absolute(parts[2], "maximum skip") if len(parts) > 2 and parts[2] else None
    fill_size = {"w": 2, "l": 4}.get(name[-1], 1)
    if name.startswith(".balign"):
        if amount <= 0 or amount & (amount - 1):
            raise Fail(f"alignment {amount} is not a power of 2")
        if amount > 1 << MAX_ALIGN_LOG2:
            raise Fail(f"alignment {amount} larger than {1 << MAX_ALIGN_LOG2}")
        align = amount
    else:
        if not 0 <= amount <= MAX_ALIGN_LOG2:
            raise Fail(f"alignment 2**{amount} out of range [0, {MAX_ALIGN_LOG2}]")
        align = 1 << amount
    pattern = None if fill is None else (fill & ((1 << (8 * fill_size)) - 1)).to_bytes(fill_size, "little")
    asm.align_to(align, pattern, max_skip, fill_size)


@pseudo_op(".org")
def _org(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 2:
        raise Fail(".org needs a location and an optional fill byte")
    value = asm.value_now(asm.pre(parts[0]))
    here = asm.chunk.offset
    if value.is_absolute or value.terms == ((asm.chunk.key, 1),):
        target = value.const
    else:
        raise Fail(".org needs a location in the current section (known when it is reached)")
    fill = asm.absolute(parts[1], "fill value") & 0xFF if len(parts) > 1 else 0
    if target < here:
        raise Fail(
            f".org moves the location backwards, from {here:#x} to {target:#x}"
            " (alternative sequences of different lengths?)"
        )
    asm.emit_fill(target - here, bytes([fill]))


@pseudo_op(".ltorg", ".pool")
def _ltorg(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    asm.dump_pool(asm.chunk)


@pseudo_op(".end")
def _end(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    asm.ended = True


@pseudo_op(".err")
def _err(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    raise Fail(".err encountered")


@pseudo_op(".error")
def _error(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    message = unquote(args) if args else ".error directive invoked"
    message = message if message.strip() else ".error directive invoked"
    raise Fail(printable(message))


def _search_path(asm: AsmState, stmt: Stmt, target: str) -> list[Path]:
    """Beside the including file, then the include directories, then the working directory."""
    here = Path(stmt.loc.file)
    candidates = [here.parent / target] if here.is_file() else []
    return [*candidates, *(d / target for d in asm.include_dirs), Path(target)]


def _read_limited(path: Path, skip: int, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path`` from ``skip`` on: a huge or endless file (a
    /proc or device file) is never read whole, and a read error is the user's error."""
    try:
        # Never blocks (a FIFO) and reads only regular files (not /dev/zero).
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if skip:
                handle.seek(min(skip, 1 << 62))  # past the end reads nothing
            return handle.read(limit)
    except OSError as err:
        raise Fail(f"cannot read {what} {path}: {err.strerror or err}") from None


@pseudo_op(".include")
def _include(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    target = unquote(args)
    if not target:
        raise Fail(".include needs a file name")
    for path in _search_path(asm, stmt, target):
        if path.exists() and not path.is_dir():  # a device is refused when read
            raw = _read_limited(path, 0, MAX_INCLUDE_BYTES + 1, "include file")
            if len(raw) > MAX_INCLUDE_BYTES:
                raise Fail(f"include file {path} is larger than {MAX_INCLUDE_BYTES:#x} bytes")
            asm.push_file(raw.decode("utf-8", "surrogateescape"), str(path))
            return
    raise Fail(f"cannot find include file {target!r}")


@pseudo_op(".incbin")
def _incbin(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    target = unquote(parts[0])
    skip = asm.absolute(parts[1], "skip") if len(parts) > 1 else 0
    count = asm.absolute(parts[2], "count") if len(parts) > 2 else None
    if skip < 0 or (count is not None and count < 0):
        raise Fail(f".incbin {'skip' if skip < 0 else 'count'} is negative")
    # One byte past what the section and the assembly may still hold is
    # enough for emit() to refuse an oversized file: never read more.
    room = asm.output_room(asm.chunk) + 1
    limit = room if count is None else min(count, room)
    for path in _search_path(asm, stmt, target):
        if path.exists() and not path.is_dir():  # a device is refused when read
            asm.emit(_read_limited(path, skip, limit, "file"))
            return
    raise Fail(f"cannot find file {target!r}")


for _name in (".cfi_startproc", ".cfi_endproc", ".cfi_def_cfa", ".cfi_def_cfa_offset", ".cfi_def_cfa_register",
              ".cfi_offset", ".cfi_restore", ".cfi_remember_state", ".cfi_restore_state", ".cfi_sections",
              ".cfi_rel_offset", ".cfi_adjust_cfa_offset", ".cfi_undefined", ".cfi_same_value", ".cfi_register",
              ".cfi_return_column", ".cfi_signal_frame", ".cfi_escape", ".cfi_negate_ra_state",
              ".cfi_personality", ".cfi_lsda", ".cfi_window_save", ".cfi_b_key_frame", ".cfi_val_offset"):  # fmt: skip
    PSEUDO_OPS[_name] = _cfi
