"""Sections, subsections and literal pools, like GNU as's subsegs.c (and the
frag-growing half of frags.c).

Owns the sections an assembly makes (``SectionState``: the records of
this module are state.py's; flags from
``.section`` or GNU's defaults by name), their subsections (``Chunk``: the
bytes of one subsection until write.py lays the sections out), where the
next byte goes (``chunk``, ``.previous``, the ``.pushsection`` stack),
emitting data, fill and alignment padding, the records of values and
instructions to finish at the end (``DataFix``, ``InsnRec``), and literal
pools (``ldr xN, =value``: one pool per subsection, dumped at ``.ltorg``
and at the end).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from emu.blob import expr as ex
from emu.blob.asm.common import MAX_NOBITS_BYTES, MAX_OUTPUT_BYTES, MAX_SECTION_BYTES, NOP, Fail
from emu.blob.asm.read import Stmt, kept, split_top, unquote
from emu.blob.asm.state import Chunk, DataFix, LabelDef, PoolEntry, SectionState
from emu.blob.expr import Evaluator, ExprError, Node, Value
from emu.blob.objfile import SectionFlags

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


_DEFAULT_FLAGS = (
    (".text", "ax"),
    (".data", "aw"),
    (".data1", "aw"),
    (".rodata", "a"),
    (".rodata1", "a"),
    (".bss", "aw"),
    (".tbss", "awT"),
    (".tdata", "awT"),
    (".init_array", "aw"),
    (".fini_array", "aw"),
    (".preinit_array", "aw"),
    (".init", "ax"),
    (".fini", "ax"),
)


def default_section_flags(name: str) -> str:
    """GNU as's flags for a section named without flags (unknown names get none)."""
    for prefix, flags in _DEFAULT_FLAGS:
        if name == prefix or name.startswith(prefix + "."):
            return flags
    return ""


def _pool_key(node: Node) -> object:
    """Equal for literal expressions GNU as shares a pool entry for (``sym+8``, ``sym+4+4``)."""
    try:
        value = Evaluator(lambda name: Value.base("\x01" + name))(node)
    except ExprError:
        return ex.fold(node)
    return (value.const, tuple(sorted(value.terms)))


class Sections:
    """The section side of an AsmState: where bytes go while the source is read."""

    sections: dict[str, SectionState]
    section_stack: list[tuple[Chunk, Chunk | None]]
    chunk: Chunk
    previous: Chunk | None
    datafix: list[DataFix]
    pool_count: int
    seq: int

    def _section(self: AsmState, name: str, flags: str, kind: str) -> SectionState:
        state = self.sections.get(name)
        if state is not None:
            return state
        nobits = kind == "nobits" or name == ".bss" or name.startswith(".bss.") or name == ".tbss" or name.startswith(".tbss.")
        if not flags and not kind:
            flags = default_section_flags(name)
        unknown = set(flags) - set("awxMSGTRoed?")
        if unknown:
            raise Fail(f"unknown section flag(s) {''.join(sorted(unknown))!r}")
        state = SectionState(
            name,
            SectionFlags(alloc="a" in flags, write="w" in flags, execute="x" in flags, nobits=nobits),
            len(self.sections),
        )
        self.sections[name] = state
        return state

    def _chunk(self: AsmState, section: SectionState, sub: int) -> Chunk:
        chunk = section.chunks.get(sub)
        if chunk is None:
            chunk = section.chunks[sub] = Chunk(section, sub)
        return chunk

    def switch(self: AsmState, chunk: Chunk) -> None:
        # Like GNU as, even a switch to the current section makes it the .previous one.
        self.previous, self.chunk = self.chunk, chunk

    def parse_section_args(self: AsmState, args: list[str], allow_subsection: bool) -> tuple[str, int, str, str]:
        if not args or not args[0]:
            raise Fail("missing section name")
        name = unquote(args[0])
        if not name or not re.fullmatch(r"[A-Za-z0-9_.$\-]+", name):
            raise Fail(f"bad section name {args[0]!r}")
        rest = args[1:]
        sub = 0
        if allow_subsection and rest and rest[0] and rest[0][0] not in "\"@%#":
            sub = self.absolute(rest[0], "subsection")
            rest = rest[1:]
        flags = ""
        kind = ""
        if rest:
            if not (rest[0].startswith('"') and rest[0].endswith('"') and len(rest[0]) >= 2):
                raise Fail(f"section flags must be a quoted string, not {rest[0]!r}")
            flags = rest[0][1:-1]
        if len(rest) > 1:
            kind = rest[1].lstrip("@%").lower()
            if kind not in ("progbits", "nobits", "note", "init_array", "fini_array", "preinit_array"):
                raise Fail(f"unsupported section type {rest[1]!r}")
        return name, sub, flags, kind

    def enter_section(self: AsmState, name: str, sub: int, flags: str, kind: str, stmt: Stmt) -> Chunk:
        if not 0 <= sub < 8192:
            raise Fail(f"subsection {sub} out of range [0, 8192)")
        section = self._section(name, flags, kind)
        return self._chunk(section, sub)

    # -- symbols -------------------------------------------------------------------

    def emit(self: AsmState, data: bytes | bytearray) -> None:
        chunk = self.chunk
        if chunk.section.flags.nobits:
            if any(data):
                raise Fail(f"non-zero data in nobits section {chunk.section.name}")
            chunk.nobits_size += len(data)
            if chunk.nobits_size > MAX_NOBITS_BYTES:
                raise Fail(f"section {chunk.section.name} larger than {MAX_NOBITS_BYTES:#x} bytes")
            return
        self.reserve_output(chunk, len(data))
        chunk.data += data

    def emit_fill(self: AsmState, count: int, pattern: bytes) -> None:
        if count < 0:
            raise Fail(f"negative size {count}")
        chunk = self.chunk
        if chunk.section.flags.nobits:
            if count and any(pattern):
                raise Fail(f"non-zero data in nobits section {chunk.section.name}")
            chunk.nobits_size += count
            if chunk.nobits_size > MAX_NOBITS_BYTES:
                raise Fail(f"section {chunk.section.name} larger than {MAX_NOBITS_BYTES:#x} bytes")
            return
        self.reserve_output(chunk, count)
        if len(pattern) == 1:
            chunk.data += pattern * count
        else:
            chunk.data += (pattern * (count // len(pattern) + 1))[:count]

    def output_room(self: AsmState, chunk: Chunk) -> int:
        """Bytes ``chunk`` may still grow by: within its section's limit and
        the assembly's total (checked before anything is read or allocated)."""
        section_room = MAX_SECTION_BYTES - chunk.section.data_size
        return max(0, min(section_room, MAX_OUTPUT_BYTES - self.output_bytes))

    def reserve_output(self: AsmState, chunk: Chunk, size: int) -> None:
        """Account ``size`` more bytes of ``chunk``, or Fail if a limit would be passed."""
        if size > self.output_room(chunk):
            if chunk.section.data_size + size > MAX_SECTION_BYTES:
                raise Fail(f"section {chunk.section.name} larger than {MAX_SECTION_BYTES:#x} bytes")
            raise Fail(f"assembly output larger than {MAX_OUTPUT_BYTES:#x} bytes "
                       "(all sections together)")
        self.output_bytes += size
        chunk.section.data_size += size

    def align_to(self: AsmState, align: int, fill: bytes | None, max_skip: int | None, fill_size: int = 1) -> None:
        chunk = self.chunk
        chunk.align = max(chunk.align, align)
        pad = -chunk.offset % align
        if pad == 0 or (max_skip is not None and pad > max_skip):
            return
        if fill is not None:
            if pad % fill_size:
                raise Fail(f"alignment padding ({pad} bytes) not a multiple of {fill_size}")
            self.emit_fill(pad, fill)
        elif chunk.section.code and not chunk.section.flags.nobits:
            self.emit_fill(pad % 4, b"\0")
            self.emit_fill(pad - pad % 4, NOP.to_bytes(4, "little"))
        else:
            self.emit_fill(pad, b"\0")

    def code_align(self: AsmState) -> None:
        chunk = self.chunk
        chunk.align = max(chunk.align, 4)
        if chunk.section.code and chunk.offset % 4:
            self.emit_fill(-chunk.offset % 4, b"\0")

    def next_seq(self: AsmState) -> int:
        self.seq += 1
        return self.seq

    def data_values(self: AsmState, size: int, args: str, stmt: Stmt, inst: bool = False) -> None:
        stmt = kept(stmt)
        items = split_top(args)
        if items == [""]:
            return
        for item in items:
            if not item:
                raise Fail("missing value")
            node = self.pre(item)
            if inst:
                self.code_align()
            fix = DataFix(self.chunk, self.chunk.offset, size, node, stmt, self.next_seq(), inst)
            if self.chunk.section.flags.nobits:
                value = self.value_now(node)
                if not value.is_absolute or value.const:
                    raise Fail(f"non-zero data in nobits section {self.chunk.section.name}")
                self.emit(bytes(size))
                continue
            self.emit(bytes(size))
            self.datafix.append(fix)

    # -- macros ------------------------------------------------------------------

    def pool_literal(self: AsmState, register: str, node: Node, stmt: Stmt) -> str:
        kind = register[0]
        size = {"x": 8, "w": 4, "s": 4, "d": 8, "q": 16}.get(kind)
        if size is None or register in ("sp", "wsp"):
            raise Fail(f"no literal pool load into {register}")
        chunk = self.chunk
        key = (size, _pool_key(node))
        entry = chunk.pool_index.get(key)
        if entry is None:
            self.pool_count += 1
            label = f"\x00pool{self.pool_count}"
            self.internal.add(label)
            entry = PoolEntry(size, node, label, kept(stmt), self.next_seq())
            chunk.pool.append(entry)
            chunk.pool_index[key] = entry
        return entry.label

    def dump_pool(self: AsmState, chunk: Chunk) -> None:
        if not chunk.pool:
            return
        saved = self.chunk
        self.chunk = chunk
        try:
            for size in (4, 8, 16):
                entries = [e for e in chunk.pool if e.size == size]
                if not entries:
                    continue
                self.align_to(size, b"\0", None)
                for entry in entries:
                    self.labels[entry.label] = LabelDef(chunk, chunk.offset, entry.stmt.loc)
                    self.datafix.append(DataFix(chunk, chunk.offset, size, entry.node, entry.stmt, entry.seq))
                    self.emit(bytes(size))
        finally:
            self.chunk = saved
        chunk.pool = []
        chunk.pool_index = {}

    # -- finishing -------------------------------------------------------------------
