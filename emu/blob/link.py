"""The static linker: ObjectFiles + a linker script -> LinkedImage.

Owns input-section placement by the script (first matching statement wins,
inputs in command-line then section order, GNU ld's rules for empty output
sections and load addresses), symbol resolution across files (a file's
locals first, then globals, weak definitions, script assignments overriding
object definitions, PROVIDE only for referenced undefined names, --defsym),
relocation application through emu/blob/reloc.py, and the checks that turn a
bad link into one LinkError: undefined or duplicate symbols, overlapping
sections, a location counter moving backwards, failed ASSERTs and
out-of-range or misaligned relocations.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from emu.blob import ldscript
from emu.blob.ldscript import (
    ABS,
    MASK64,
    Assert,
    Assignment,
    InputSpec,
    OutputSectionDef,
    Script,
    SourceLoc,
    Value,
    evaluate,
)
from emu.blob.objfile import (
    Binding,
    ObjectFile,
    RelocType,
    Section,
    SectionFlags,
    Symbol,
    SymbolType,
)
from emu.blob.reloc import FieldRangeError, apply_relocation, is_pc_relative
from emu.errors import LinkError

MAX_PASSES = 10
MAX_IMAGE_BYTES = 256 << 20
"""The most bytes of section contents an image may hold (the ELF reader's limit): a
location counter moved further is a script error, not a request for that much memory."""


@dataclass
class InputPlacement:
    """Where one input section landed."""

    file: str
    section: str
    vaddr: int
    size: int


@dataclass
class OutputSection:
    """One output section of the image: ``data`` is None for NOBITS (``.bss``)."""

    name: str
    vaddr: int
    paddr: int
    size: int
    align: int
    flags: SectionFlags
    data: bytes | None
    inputs: list[InputPlacement] = field(default_factory=list)

    @property
    def nobits(self) -> bool:
        return self.data is None

    @property
    def end(self) -> int:
        return self.vaddr + self.size


@dataclass
class LinkedSymbol:
    """A symbol of the linked image; ``section`` is None for absolute symbols,
    ``file`` None for symbols the script or --defsym defined."""

    name: str
    value: int
    size: int = 0
    type: SymbolType = SymbolType.NOTYPE
    binding: Binding = Binding.GLOBAL
    section: str | None = None
    file: str | None = None


@dataclass
class LinkedImage:
    entry: int
    sections: list[OutputSection]
    symbols: list[LinkedSymbol]

    def section(self, name: str) -> OutputSection:
        for sec in self.sections:
            if sec.name == name:
                return sec
        raise KeyError(name)

    @property
    def globals(self) -> dict[str, LinkedSymbol]:
        return {s.name: s for s in self.symbols if s.binding != Binding.LOCAL}

    def symbol(self, name: str) -> LinkedSymbol:
        """The global (or weak) symbol ``name``; else the only local of that name."""
        found = self.globals.get(name)
        if found is not None:
            return found
        locals_ = [s for s in self.symbols if s.name == name]
        if len(locals_) == 1:
            return locals_[0]
        raise KeyError(name)

    def symbol_value(self, name: str) -> int:
        return self.symbol(name).value


# ---------------------------------------------------------------------------
# Internal layout state


@dataclass
class _SectionLayout:
    name: str
    vma: int = 0
    lma: int = 0
    size: int = 0
    align: int = 1
    kept: bool = False
    flags: SectionFlags = field(default_factory=lambda: SectionFlags(write=True, nobits=True))


@dataclass
class _ScriptSymbol:
    value: int  # absolute
    section: str | None  # output section it is relative to, None when absolute
    loc: SourceLoc | None
    # Assigned from the location counter outside output sections: an address, not a number.
    from_dot: bool = False


@dataclass
class _PassResult:
    sections: dict[str, _SectionLayout]
    placement: dict[tuple[int, str], int]
    script_syms: dict[str, _ScriptSymbol]
    undefined: list[tuple[str, SourceLoc]]
    failed_asserts: list[Assert]
    errors: list[LinkError]

    def signature(self) -> tuple:
        secs = tuple(
            (s.name, s.vma, s.lma, s.size, s.align, s.kept) for s in self.sections.values()
        )
        syms = tuple(sorted((n, s.value, s.section) for n, s in self.script_syms.items()))
        return secs, syms, tuple(sorted(self.placement.items()))


@dataclass
class _ObjectDef:
    obj_index: int
    key: str
    symbol: Symbol


class _Linker:
    def __init__(self, objects: Sequence[ObjectFile], script: Script, defsyms: Mapping[str, int]):
        self.objects = list(objects)
        self.script = script
        self.defsyms = {name: value & MASK64 for name, value in defsyms.items()}
        self.osec_defs = [c for c in script.commands if isinstance(c, OutputSectionDef)]
        names = [d.name for d in self.osec_defs if not d.discard]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise LinkError(f"{script.path}: output section {sorted(dupes)[0]} defined twice")
        self.osec_names = set(names)
        # (statement id) -> matched input sections, in placement order
        self.matched: dict[int, list[tuple[int, Section]]] = {}
        self.discarded: set[tuple[int, str]] = set()
        self.assigned: dict[tuple[int, str], str] = {}
        self.globals: dict[str, _ObjectDef] = {}

    # -- input section assignment ---------------------------------------
    def assign_inputs(self) -> None:
        taken: set[tuple[int, str]] = set()
        for osec in self.osec_defs:
            for item in osec.items:
                if not isinstance(item, InputSpec):
                    continue
                matched: list[tuple[int, Section]] = []
                for index, obj in enumerate(self.objects):
                    for sec in obj.sections.values():
                        key = (index, sec.name)
                        if key in taken or not item.matches(obj.path, sec.name):
                            continue
                        taken.add(key)
                        matched.append((index, sec))
                        if osec.discard:
                            self.discarded.add(key)
                        else:
                            self.assigned[key] = osec.name
                self.matched[id(item)] = matched
        for index, obj in enumerate(self.objects):
            for sec in obj.sections.values():
                key = (index, sec.name)
                if key in taken or sec.size == 0:
                    continue
                if not sec.flags.alloc:
                    # Non-allocated orphans (comments, notes) do not reach the image.
                    self.discarded.add(key)
                    continue
                raise LinkError(
                    f"{obj.path}: section {sec.name} ({sec.size:#x} bytes) is not placed "
                    f"by linker script {self.script.path}"
                )

    # -- symbols --------------------------------------------------------
    def collect_globals(self) -> None:
        for index, obj in enumerate(self.objects):
            for key, sym in obj.symbols.items():
                if sym.section is not None and sym.section not in obj.sections:
                    raise LinkError(
                        f"{obj.path}: symbol {sym.name} is defined in unknown section {sym.section}"
                    )
                if sym.binding == Binding.LOCAL or key in obj.undefined:
                    continue  # locals, and weak references (declared, not defined here)
                existing = self.globals.get(key)
                if existing is None:
                    self.globals[key] = _ObjectDef(index, key, sym)
                    continue
                old = existing.symbol
                if sym.binding == Binding.GLOBAL and old.binding == Binding.GLOBAL:
                    raise LinkError(
                        f"duplicate symbol {key}: defined in {self._where(existing.obj_index, old)}"
                        f" and in {self._where(index, sym)}"
                    )
                if sym.binding == Binding.GLOBAL:
                    self.globals[key] = _ObjectDef(index, key, sym)

    def _where(self, index: int, sym: Symbol) -> str:
        if sym.loc is not None:
            return str(sym.loc)
        return self.objects[index].path

    def referenced_names(self) -> set[str]:
        names = self.script.referenced_symbols()
        for obj in self.objects:
            names |= obj.undefined
            for sec in obj.sections.values():
                for rel in sec.relocations:
                    local = obj.symbols.get(rel.symbol)
                    if local is None or local.binding != Binding.LOCAL:
                        names.add(rel.symbol)
        return names

    def object_symbol_address(
        self, index: int, sym: Symbol, placement: Mapping[tuple[int, str], int]
    ) -> int | None:
        if sym.section is None:
            return sym.value & MASK64
        base = placement.get((index, sym.section))
        if base is None:
            return None
        return (base + sym.value) & MASK64

    # -- layout ---------------------------------------------------------
    def layout(self) -> _PassResult:
        referenced = self.referenced_names()
        previous: _PassResult | None = None
        for _ in range(MAX_PASSES):
            result = _LayoutPass(self, previous, referenced).run()
            if previous is not None and result.signature() == previous.signature():
                return result
            previous = result
        if previous is not None and previous.errors:
            raise previous.errors[0]
        raise LinkError(f"{self.script.path}: section layout does not converge")


class _LayoutPass:
    """One evaluation of the script; forward references read the previous pass."""

    def __init__(self, linker: _Linker, previous: _PassResult | None, referenced: set[str]):
        self.linker = linker
        self.previous = previous
        self.referenced = referenced
        self.dot = 0
        self.current_section: str | None = None
        self.sections: dict[str, _SectionLayout] = {}
        self.placement: dict[tuple[int, str], int] = {}
        self.script_syms: dict[str, _ScriptSymbol] = {}
        self.undefined: list[tuple[str, SourceLoc]] = []
        self.failed_asserts: list[Assert] = []
        # Errors are kept, not raised, until the layout has converged: a forward
        # reference read as 0 in an early pass must not fail the link.
        self.errors: list[LinkError] = []
        self.prev_lma_delta = 0

    # -- EvalContext ----------------------------------------------------
    def symbol_value(self, name: str, loc: SourceLoc) -> tuple[int, str | None]:
        sym = self.script_syms.get(name)
        if sym is not None:
            return sym.value, sym.section
        odef = self.linker.globals.get(name)
        if odef is not None:
            index, osym = odef.obj_index, odef.symbol
            address = self.linker.object_symbol_address(index, osym, self.placement)
            if address is None and self.previous is not None:
                address = self.linker.object_symbol_address(index, osym, self.previous.placement)
            if osym.section is None:
                return osym.value & MASK64, None
            out = self.linker.assigned.get((index, osym.section))
            if out is None:
                raise LinkError(
                    f"{loc}: symbol {name} is defined in discarded section {osym.section} "
                    f"of {self.linker.objects[index].path}"
                )
            return (address or 0), out
        if self.previous is not None and name in self.previous.script_syms:
            prev = self.previous.script_syms[name]
            return prev.value, prev.section
        self.undefined.append((name, loc))
        return 0, None

    def is_defined(self, name: str) -> bool:
        return name in self.script_syms or name in self.linker.globals

    def _layout_of(self, name: str) -> _SectionLayout | None:
        if name in self.sections:
            return self.sections[name]
        if self.previous is not None:
            return self.previous.sections.get(name)
        return None

    def section_vma(self, name: str) -> int:
        lay = self._layout_of(name)
        return lay.vma if lay else 0

    def section_lma(self, name: str, loc: SourceLoc) -> int:
        lay = self._layout_of(name)
        return lay.lma if lay else 0

    def section_size(self, name: str, loc: SourceLoc) -> int:
        if name == self.current_section:
            # Not sized yet in this pass: GNU ld answers with the previous estimate.
            prev = self.previous.sections.get(name) if self.previous else None
            return prev.size if prev else 0
        lay = self._layout_of(name)
        return lay.size if lay else 0

    def section_align(self, name: str, loc: SourceLoc) -> int:
        lay = self._layout_of(name)
        return lay.align if lay else 1

    def check_section(self, name: str, loc: SourceLoc) -> None:
        if name not in self.linker.osec_names:
            raise LinkError(f"{loc}: undefined section {name} referenced in expression")

    # -- statements -----------------------------------------------------
    def run(self) -> _PassResult:
        for name, value in self.linker.defsyms.items():
            self.script_syms[name] = _ScriptSymbol(value, None, None)
        script = self.linker.script
        for cmd, in_sections in zip(script.commands, script.in_sections, strict=True):
            try:
                if isinstance(cmd, OutputSectionDef):
                    if not cmd.discard:
                        self.output_section(cmd)
                elif isinstance(cmd, Assert):
                    self.check_assert(cmd)
                else:
                    self.assign(cmd, allow_dot=in_sections)
            except LinkError as err:
                self.errors.append(err)
        return _PassResult(
            self.sections,
            self.placement,
            self.script_syms,
            self.undefined,
            self.failed_asserts,
            self.errors,
        )

    def guarded(self, action, stmt):  # type: ignore[no-untyped-def]
        try:
            return action(stmt)
        except LinkError as err:
            self.errors.append(err)
            return None

    def check_assert(self, stmt: Assert) -> None:
        if not evaluate(stmt.expr, self).value:
            self.failed_asserts.append(stmt)

    def assign(self, stmt: Assignment, allow_dot: bool = True) -> bool:
        """Run one assignment; True when it moved the location counter by a non-trivial expression."""
        if stmt.target == ".":
            if not allow_dot:
                raise LinkError(f"{stmt.loc}: assignment to . outside SECTIONS")
            value = evaluate(stmt.expr, self)
            if value.section is None:
                base = self.section_vma(self.current_section) if self.current_section else 0
            elif value.section == ABS:
                base = 0
            else:
                base = self.section_vma(value.section)
            if self._dot_step_wraps(stmt.expr):
                raise LinkError(f"{stmt.loc}: location counter moved past the top of memory "
                                f"(2^64) from {self.dot:#x}")
            new_dot = (value.value + base) & MASK64
            if self.current_section is not None and new_dot < self.dot:
                raise LinkError(
                    f"{stmt.loc}: cannot move location counter backwards "
                    f"(from {self.dot:#x} to {new_dot:#x}) in {self.current_section}"
                )
            self.dot = new_dot
            return not _trivially_zero_move(stmt.expr)
        if stmt.provide:
            if stmt.target not in self.referenced:
                return False
            if stmt.target in self.linker.globals or stmt.target in self.script_syms:
                return False
        value = evaluate(stmt.expr, self)
        self.define(stmt.target, value, stmt.loc)
        if self.current_section is None and ldscript.uses_dot(stmt.expr):
            self.script_syms[stmt.target].from_dot = True
        return False

    def define(self, name: str, value: Value, loc: SourceLoc) -> None:
        section = value.section
        if section is None:
            section = self.current_section or ABS
        if section == ABS:
            self.script_syms[name] = _ScriptSymbol(value.value & MASK64, None, loc)
        else:
            absolute = (value.value + self.section_vma(section)) & MASK64
            self.script_syms[name] = _ScriptSymbol(absolute, section, loc)

    def _dot_step_wraps(self, expr: ldscript.Expr) -> bool:
        """Whether ``. + N`` / ``. - N`` (``. += N``, N an absolute number read
        as signed) steps the location counter past 2^64 or below 0: 64-bit
        expression arithmetic wraps, an address space does not."""
        if not (isinstance(expr, ldscript.Binary) and expr.op in ("+", "-")
                and isinstance(expr.lhs, ldscript.Name) and expr.lhs.name == "."):
            return False
        step = evaluate(expr.rhs, self)
        if step.section not in (None, ABS):
            return False
        signed = step.value - (1 << 64) if step.value >> 63 else step.value
        moved = self.dot + (signed if expr.op == "+" else -signed)
        return not 0 <= moved <= MASK64 + 1

    def output_section(self, osec: OutputSectionDef) -> None:
        inputs = [sec for item in osec.items if isinstance(item, InputSpec)
                  for _, sec in self.linker.matched[id(item)]]  # fmt: skip
        input_align = max((max(sec.align, 1) for sec in inputs), default=1)
        header_align = 1
        if osec.align is not None:
            header_align = evaluate(osec.align, self).absolute(self)
            if header_align & (header_align - 1):
                raise LinkError(f"{osec.loc}: ALIGN({header_align:#x}) is not a power of two")
        dot_before = self.dot
        if osec.address is not None:
            vma = evaluate(osec.address, self).absolute(self)
            vma = _align_up(vma, header_align)
        else:
            vma = _align_up(self.dot, max(input_align, header_align))
        lay = _SectionLayout(osec.name, vma=vma, align=max(input_align, header_align))
        self.sections[osec.name] = lay
        if osec.lma is not None:
            lay.lma = evaluate(osec.lma, self).absolute(self)
        elif osec.address is not None:
            lay.lma = vma
        else:
            lay.lma = (vma + self.prev_lma_delta) & MASK64

        self.current_section = osec.name
        self.dot = vma
        moved_dot = False
        has_symbols = False
        flags = {"alloc": True, "write": False, "execute": False}
        any_progbits = False
        for item in osec.items:
            if isinstance(item, InputSpec):
                for index, sec in self.linker.matched[id(item)]:
                    self.dot = _align_up(self.dot, max(sec.align, 1))
                    self.placement[(index, sec.name)] = self.dot
                    self.dot += sec.size
                    flags["write"] |= sec.flags.write
                    flags["execute"] |= sec.flags.execute
                    any_progbits |= not sec.flags.nobits
            elif isinstance(item, Assert):
                self.guarded(self.check_assert, item)
            else:
                has_symbols |= item.target != "."
                moved_dot |= bool(self.guarded(self.assign, item))
        self.current_section = None
        if self.dot > MASK64 + 1:
            raise LinkError(
                f"{osec.loc}: output section {osec.name} extends past the top of memory"
            )
        lay.size = self.dot - vma
        lay.kept = lay.size > 0 or moved_dot
        if not inputs:
            # GNU ld makes a section holding only location-counter moves a writable NOBITS one.
            flags["write"] = True
        lay.flags = SectionFlags(
            alloc=True, write=flags["write"], execute=flags["execute"], nobits=not any_progbits
        )
        if lay.kept:
            self.prev_lma_delta = (lay.lma - lay.vma) & MASK64
        elif not has_symbols:
            # An empty section with no symbols in it: its address is ignored.
            self.dot = dot_before


def _trivially_zero_move(expr: ldscript.Expr) -> bool:
    """`. = 0` and `. = . + 0` do not keep an otherwise empty output section (GNU ld)."""
    if isinstance(expr, ldscript.Num):
        return expr.value == 0
    return (
        isinstance(expr, ldscript.Binary)
        and expr.op == "+"
        and isinstance(expr.lhs, ldscript.Name)
        and expr.lhs.name == "."
        and isinstance(expr.rhs, ldscript.Num)
        and expr.rhs.value == 0
    )


def _align_up(value: int, align: int) -> int:
    if align <= 1:
        return value
    return (value + align - 1) // align * align


# ---------------------------------------------------------------------------
# Image construction


def _check_overlaps(sections: Iterable[OutputSection], script: Script) -> None:
    live = [s for s in sections if s.size > 0]
    for attr, what in (("vaddr", "VMA"), ("paddr", "LMA")):
        ordered = sorted(live, key=lambda s: getattr(s, attr))
        for a, b in itertools.pairwise(ordered):
            a_start, b_start = getattr(a, attr), getattr(b, attr)
            if a_start + a.size > b_start:
                raise LinkError(
                    f"{script.path}: section {a.name} {what} [{a_start:#x}, {a_start + a.size:#x})"
                    f" overlaps section {b.name} {what} [{b_start:#x}, {b_start + b.size:#x})"
                )
        for sec in live:
            if getattr(sec, attr) + sec.size > MASK64 + 1:
                raise LinkError(f"{script.path}: section {sec.name} {what} wraps past 2^64")


def link(
    objects: Sequence[ObjectFile],
    script: Script,
    defsyms: Mapping[str, int] | None = None,
) -> LinkedImage:
    """Place ``objects`` by ``script``, resolve symbols, apply relocations.

    ``defsyms`` are absolute symbols defined before the script runs, like
    ``ld --defsym``; they override PROVIDEd defaults.
    """
    linker = _Linker(objects, script, defsyms or {})
    linker.assign_inputs()
    linker.collect_globals()
    result = linker.layout()
    if result.errors:
        raise result.errors[0]
    if result.undefined:
        name, loc = result.undefined[0]
        raise LinkError(f"{loc}: undefined symbol {name} referenced in expression")
    if result.failed_asserts:
        stmt = result.failed_asserts[0]
        # The message comes from the script: control codes are shown, not sent to a terminal.
        shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in stmt.message)
        raise LinkError(f"{stmt.loc}: ASSERT failed: {shown}")

    by_name: dict[str, OutputSection] = {}
    sections: list[OutputSection] = []
    contents = 0
    for name, lay in result.sections.items():
        if not lay.kept:
            continue
        contents += 0 if lay.flags.nobits else lay.size
        if contents > MAX_IMAGE_BYTES:
            raise LinkError(
                f"{script.path}: output section {name} ({lay.size:#x} bytes) takes the image's "
                f"section contents past {MAX_IMAGE_BYTES >> 20} MiB"
            )
        data = None if lay.flags.nobits else bytearray(lay.size)
        out = OutputSection(name, lay.vma, lay.lma, lay.size, lay.align, lay.flags, data)
        by_name[name] = out
        sections.append(out)
    _check_overlaps(sections, script)

    for (index, sec_name), vaddr in sorted(result.placement.items(), key=lambda kv: kv[1]):
        out_name = linker.assigned[(index, sec_name)]
        out = by_name.get(out_name)
        obj = linker.objects[index]
        sec = obj.sections[sec_name]
        if out is None:
            continue  # an empty input section in a dropped output section
        out.inputs.append(InputPlacement(obj.path, sec_name, vaddr, sec.size))
        if out.data is not None and not sec.flags.nobits:
            start = vaddr - out.vaddr
            out.data[start : start + sec.size] = sec.data

    symbols = _resolve_symbols(linker, result)
    _apply_relocations(linker, result, by_name)
    for out in sections:
        if out.data is not None:
            out.data = bytes(out.data)

    entry = 0
    globals_ = {s.name: s for s in symbols if s.binding != Binding.LOCAL}
    if script.entry is not None:
        if script.entry not in globals_:
            raise LinkError(f"{script.path}: entry symbol {script.entry} is not defined")
        entry = globals_[script.entry].value
    elif "_start" in globals_:
        entry = globals_["_start"].value
    else:
        entry = next((s.vaddr for s in sections if s.flags.execute), 0)
    return LinkedImage(entry=entry, sections=sections, symbols=symbols)


def _output_section_of(linker: _Linker, index: int, section: str) -> str | None:
    return linker.assigned.get((index, section))


def _resolve_symbols(linker: _Linker, result: _PassResult) -> list[LinkedSymbol]:
    symbols: list[LinkedSymbol] = []
    for index, obj in enumerate(linker.objects):
        for sym in obj.symbols.values():
            if sym.binding != Binding.LOCAL or sym.type == SymbolType.SECTION:
                continue
            resolved = _object_symbol(linker, result, index, sym)
            if resolved is not None:
                symbols.append(resolved)
    for name, odef in linker.globals.items():
        if name in result.script_syms:
            continue  # the script's assignment overrides the object's definition
        resolved = _object_symbol(linker, result, odef.obj_index, odef.symbol)
        if resolved is not None:
            resolved.name = name
            symbols.append(resolved)
    kept = [lay for lay in result.sections.values() if lay.kept]
    for name, ssym in result.script_syms.items():
        section = ssym.section if ssym.section in _kept(result) else None
        if section is None and (ssym.from_dot or ssym.section is not None):
            section = _section_for_address(ssym.value, kept)
        symbols.append(LinkedSymbol(name=name, value=ssym.value, section=section, file=None))
    # Undefined weak references are not symbols of the image (GNU ld drops them too).
    return symbols


def _section_for_address(address: int, kept: list[_SectionLayout]) -> str | None:
    """The output section an address-valued script symbol belongs to (for its ELF index):
    the one containing it, else one ending or starting exactly there."""
    for lay in kept:
        if lay.vma <= address < lay.vma + lay.size:
            return lay.name
    for lay in kept:
        if lay.vma + lay.size == address:
            return lay.name
    for lay in kept:
        if lay.vma == address:
            return lay.name
    return None


def _kept(result: _PassResult) -> set[str]:
    return {name for name, lay in result.sections.items() if lay.kept}


def _object_symbol(
    linker: _Linker, result: _PassResult, index: int, sym: Symbol
) -> LinkedSymbol | None:
    obj = linker.objects[index]
    if sym.section is None:
        value, out = sym.value & MASK64, None
    else:
        out = _output_section_of(linker, index, sym.section)
        if out is None:
            return None  # defined in a discarded section
        value = (result.placement[(index, sym.section)] + sym.value) & MASK64
        if out not in _kept(result):
            out = None
    return LinkedSymbol(
        name=sym.name,
        value=value,
        size=sym.size,
        type=sym.type,
        binding=sym.binding,
        section=out,
        file=obj.path,
    )


USER_SECTION_PREFIX = ".user."  # EL0 code and data (linker_scripts/kernel.ld)


def _kernel_section_at(address: int, by_name: Mapping[str, OutputSection]) -> str | None:
    """The allocated non-user output section holding ``address``, if any."""
    for name, out in by_name.items():
        if not name.startswith(USER_SECTION_PREFIX) and out.vaddr <= address < out.vaddr + out.size:
            return name
    return None


def _apply_relocations(
    linker: _Linker, result: _PassResult, by_name: Mapping[str, OutputSection]
) -> None:
    """Apply every relocation.  One rule beyond GNU ld's: user code or data
    (a ``.user.*`` output section, run at EL0) may not hold the address of
    kernel memory, which no task can reach; it is refused with file:line."""
    for index, obj in enumerate(linker.objects):
        for sec in obj.sections.values():
            key = (index, sec.name)
            if not sec.relocations or key in linker.discarded:
                continue
            out_name = linker.assigned.get(key)
            out = by_name.get(out_name) if out_name else None
            if out is None:
                if sec.size == 0:
                    continue
                raise LinkError(f"{obj.path}: relocations in unplaced section {sec.name}")
            base = result.placement[key]
            for rel in sec.relocations:
                site = f"{obj.path}:{sec.name}+{rel.offset:#x}"
                prefix = f"{rel.loc}: " if rel.loc else ""
                if out.data is None:
                    raise LinkError(f"{prefix}relocation in NOBITS section at {site}")
                if not 0 <= rel.offset < max(sec.size, 1):
                    raise LinkError(f"{prefix}relocation offset outside its section at {site}")
                s = _relocation_target(linker, result, index, rel.symbol, prefix, site)
                p = (base + rel.offset) & MASK64
                if s is None:  # an undefined weak reference: resolve as GNU ld does
                    s = _undefined_weak_value(rel.kind, p, rel.addend)
                    if s is None:
                        at = base - out.vaddr + rel.offset
                        out.data[at : at + 4] = NOP_BYTES
                        continue
                if out.name.startswith(USER_SECTION_PREFIX):
                    kernel = _kernel_section_at((s + rel.addend) & MASK64, by_name)
                    if kernel is not None:
                        raise LinkError(
                            f"{prefix}user code at {site} refers to {rel.symbol}, which is in "
                            f"kernel section {kernel}: a task at EL0 cannot reach kernel "
                            "memory; put the data in a user section or reach the kernel "
                            "through a syscall"
                        )
                try:
                    apply_relocation(
                        rel.kind, out.data, base - out.vaddr + rel.offset, s, rel.addend, p
                    )
                except FieldRangeError as err:
                    raise LinkError(
                        f"{prefix}R_AARCH64_{rel.kind.name} against {rel.symbol}"
                        f"{_addend(rel.addend)} at {site} ({p:#x}): {err.detail}"
                    ) from None


def _addend(addend: int) -> str:
    if addend == 0:
        return ""
    return f"+{addend:#x}" if addend > 0 else f"-{-addend:#x}"


NOP_BYTES = (0xD503201F).to_bytes(4, "little")


def is_undefined_weak(obj: ObjectFile, name: str) -> bool:
    """The model's undefined weak reference: listed in ``undefined`` and present in
    ``symbols`` with WEAK binding (the symbol entry only carries the binding)."""
    sym = obj.symbols.get(name)
    return name in obj.undefined and sym is not None and sym.binding == Binding.WEAK


def _undefined_weak_value(kind: RelocType, p: int, addend: int) -> int | None:
    """S for a relocation against an undefined weak symbol, None to turn a BL/B into NOP.

    Like GNU ld: absolute forms see 0; PC-relative forms get a zero offset
    (the instruction addresses itself), and calls or jumps become NOPs.
    """
    if kind in (RelocType.CALL26, RelocType.JUMP26):
        return None
    if is_pc_relative(kind):
        return (p - addend) & MASK64
    return 0


def _relocation_target(
    linker: _Linker, result: _PassResult, index: int, name: str, prefix: str, site: str
) -> int | None:
    obj = linker.objects[index]
    local = obj.symbols.get(name)
    if local is not None and local.binding == Binding.LOCAL:
        if local.section is None:
            return local.value & MASK64
        if (index, local.section) in linker.discarded or (
            index,
            local.section,
        ) not in result.placement:
            raise LinkError(f"{prefix}{name} at {site} refers to discarded section {local.section}")
        return (result.placement[(index, local.section)] + local.value) & MASK64
    if name in result.script_syms:
        return result.script_syms[name].value
    odef = linker.globals.get(name)
    if odef is not None:
        address = linker.object_symbol_address(odef.obj_index, odef.symbol, result.placement)
        if address is None:
            raise LinkError(
                f"{prefix}{name} referenced at {site} is defined in discarded section "
                f"{odef.symbol.section} of {linker.objects[odef.obj_index].path}"
            )
        return address
    if any(is_undefined_weak(o, name) for o in (obj, *linker.objects)):
        return None
    raise LinkError(f"{prefix}undefined symbol {name} referenced at {site}")
