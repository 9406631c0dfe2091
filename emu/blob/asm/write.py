"""Finishing an assembly, like GNU as's write.c: layout, fixups, the object.

Owns the end of an assembly: dumping the literal pools left open, laying
each section's subsections out one after the other, resolving every data
value (``DataFix``) to bytes or a relocation, handing the instructions to
the back end (``tc_aarch64``: ``plan`` then ``encode``) and storing their
words, and building the ``ObjectFile`` (sections, symbols, relocations,
undefined names). Errors found here are collected and the earliest in
source order is raised, so the message is the one GNU as would give first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.blob import expr as ex
from emu.blob.asm.common import NOP, Fail, hex_text
from emu.blob.asm.state import Chunk, DataFix, InsnRec, SectionState
from emu.blob.asm.tc_aarch64 import ABSOLUTE_SYMBOL, AArch64, Insn, Plan
from emu.blob.expr import ExprError, Value
from emu.blob.objfile import Binding, ObjectFile, Relocation, RelocType, Section, Symbol, SymbolType
from emu.errors import AsmError

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


class Writer:
    """The output side of an Assembler."""

    filename: str
    sections: dict[str, SectionState]
    records: list[InsnRec]
    target: AArch64
    absolute_symbol_used: bool

    def finish(self: AsmState) -> ObjectFile:
        for section in list(self.sections.values()):
            for chunk in list(section.chunks.values()):
                first = chunk.pool[0].stmt if chunk.pool else None
                try:
                    self.dump_pool(chunk)
                except Fail as fail:
                    raise self.error_at(str(fail), first) from None
        self.layout()
        errors: list[tuple[int, AsmError]] = []
        relocations: dict[str, list[tuple[int, Relocation]]] = {name: [] for name in self.sections}
        for fix in self.datafix:
            try:
                reloc = self.finish_data(fix)
            except (Fail, ExprError) as fail:
                errors.append((fix.seq, self.error_at(str(fail), fix.stmt)))
                continue
            if reloc is not None:
                relocations[fix.chunk.section.name].append((fix.seq, reloc))
        planned: list[tuple[InsnRec, Plan]] = []
        for rec in self.records:
            insn = Insn(rec.mnemonic, rec.operands, rec.chunk.start + rec.offset, rec.chunk.section.key, rec.stmt)
            try:
                planned.append((rec, self.target.plan(insn, self)))
            except (Fail, ExprError) as fail:
                errors.append((rec.seq, self.error_at(str(fail), rec.stmt)))
        self.absolute_symbol_used = any(p.reloc is not None and p.reloc.symbol == ABSOLUTE_SYMBOL for _, p in planned)
        words = self.target.encode([plan for _, plan in planned])
        for (rec, plan), word in zip(planned, words, strict=True):
            if isinstance(word, str):
                errors.append((rec.seq, self.error_at(word, rec.stmt)))
                continue
            rec.chunk.data[rec.offset : rec.offset + 4] = word.to_bytes(4, "little")
            if plan.reloc is not None:
                relocations[rec.chunk.section.name].append((rec.seq, plan.reloc))
        symbols = self.symbol_table(errors)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return self.build_object(relocations, symbols)

    def layout(self: AsmState) -> None:
        """Place each section's subsections one after the other, each at its alignment."""
        for section in self.sections.values():
            position = 0
            for sub in sorted(section.chunks):
                chunk = section.chunks[sub]
                position += -position % chunk.align
                chunk.start = position
                position += chunk.offset

    def section_value(self: AsmState, value: Value) -> Value:
        """Rewrite chunk bases as section bases plus the chunk's start."""
        if not any(k.count("\x00") == 2 for k, _ in value.terms):
            return value
        const = value.const
        terms: dict[str, int] = {}
        for key, coef in value.terms:
            chunk = self._chunk_by_key(key)
            if chunk is None:
                terms[key] = terms.get(key, 0) + coef
                continue
            terms[chunk.section.key] = terms.get(chunk.section.key, 0) + coef
            const += coef * chunk.start
        hints = []
        for key, (name, offset) in value.hints:
            chunk = self._chunk_by_key(key)
            if chunk is None:
                hints.append((key, (name, offset)))
            else:
                hints.append((chunk.section.key, (name, offset + chunk.start)))
        kept = tuple((k, c) for k, c in terms.items() if c)
        live = {k for k, _ in kept}
        seen: set[str] = set()
        unique = []
        for key, hint in hints:
            if key in live and key not in seen:
                seen.add(key)
                unique.append((key, hint))
        return Value(ex.wrap64(const), kept, tuple(unique))

    def _chunk_by_key(self: AsmState, key: str) -> Chunk | None:
        if key.count("\x00") != 2:
            return None
        _, name, sub = key.split("\x00")
        return self.sections[name].chunks[int(sub)]

    def finish_data(self: AsmState, fix: DataFix) -> Relocation | None:
        value = self.value_final(fix.node)
        chunk = fix.chunk
        position = chunk.start + fix.offset
        where = fix.offset
        if value.is_absolute:
            self.store(chunk, where, fix.size, value.const, fix.inst)
            return None
        if fix.inst:
            raise Fail(".inst needs an absolute value")
        terms = value.term_map()
        own = chunk.section.key
        if len(terms) == 1:
            (key, coef), = terms.items()
            if coef == 1:
                kind = {8: RelocType.ABS64, 4: RelocType.ABS32, 2: RelocType.ABS16}.get(fix.size)
                if kind is None:
                    raise Fail(f"no {fix.size * 8}-bit relocation for a symbolic value")
                name, addend = self.symbol_name_for(value, key)
                return Relocation(position, kind, name, addend, fix.stmt.where)
        if len(terms) == 2 and terms.get(own) == -1:
            (key, coef), = ((k, c) for k, c in terms.items() if k != own)
            if coef == 1:
                kind = {8: RelocType.PREL64, 4: RelocType.PREL32, 2: RelocType.PREL16}.get(fix.size)
                if kind is None:
                    raise Fail(f"no {fix.size * 8}-bit PC-relative relocation")
                name, addend = self.symbol_name_for(value, key)
                return Relocation(position, kind, name, ex.wrap64(addend + position), fix.stmt.where)
        if any(coef < 0 for coef in terms.values()):
            raise Fail("cannot relocate a difference of symbols in different sections")
        raise Fail("expression too complex for a relocation")

    def store(self: AsmState, chunk: Chunk, offset: int, size: int, value: int, inst: bool = False) -> None:
        bits = size * 8
        if size < 8 and not -(1 << (bits - 1)) <= value < (1 << bits):
            raise Fail(f"value {hex_text(value)} does not fit in {size} byte(s)")
        if size > 8 and value < 0:
            value &= (1 << bits) - 1
        chunk.data[offset : offset + size] = (value & ((1 << bits) - 1)).to_bytes(size, "little")

    # -- instruction encoding -----------------------------------------------------

    def build_object(self: AsmState, relocations: dict[str, list[tuple[int, Relocation]]], symbols: dict[str, Symbol]) -> ObjectFile:
        obj = ObjectFile(self.filename)
        for state in sorted(self.sections.values(), key=lambda s: s.order):
            if state.name == ".note.GNU-stack" and not any(c.offset for c in state.chunks.values()):
                continue
            data = bytearray()
            size = 0
            align = 1
            position = 0
            for sub in sorted(state.chunks):
                chunk = state.chunks[sub]
                align = max(align, chunk.align)
                if chunk.start > position and not state.flags.nobits:
                    gap = chunk.start - position
                    if state.code and gap % 4 == 0 and position % 4 == 0:
                        data += NOP.to_bytes(4, "little") * (gap // 4)
                    else:
                        data += bytes(gap)
                position = chunk.start + chunk.offset
                if not state.flags.nobits:
                    data += chunk.data
                size = position
            relocs = [r for _, r in sorted(relocations[state.name], key=lambda x: x[1].offset)]
            obj.sections[state.name] = Section(
                state.name,
                state.flags,
                align,
                data if not state.flags.nobits else bytearray(),
                size if state.flags.nobits else 0,
                relocs,
            )
        obj.symbols = symbols
        if self.absolute_symbol_used:
            symbols[ABSOLUTE_SYMBOL] = Symbol(ABSOLUTE_SYMBOL, None, 0)
        referenced = {r.symbol for s in obj.sections.values() for r in s.relocations}
        for name in sorted(referenced):
            if name in symbols:
                continue
            if name in self.sections:
                symbols[name] = Symbol(name, name, 0, Binding.LOCAL, SymbolType.SECTION)
                continue
            obj.undefined.add(name)
        for name, attrs in self.attrs.items():
            if name not in symbols and attrs.binding in (Binding.GLOBAL, Binding.WEAK):
                obj.undefined.add(name)
                if attrs.binding == Binding.WEAK:
                    # The model's weak reference: undefined, with a symbol entry carrying WEAK.
                    symbols[name] = Symbol(name, None, 0, Binding.WEAK, attrs.type or SymbolType.NOTYPE)
        return obj


# ---------------------------------------------------------------------------
# Helpers used by the directive handlers
