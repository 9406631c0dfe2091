"""Symbols, like GNU as's symbols.c (with the binding half of expr.c).

Owns labels (numeric local labels ``1:``/``1b``/``1f`` included), equates
(``=``, ``.set``, ``.equ``...), the ELF attributes ``.globl``/``.type``/
``.size`` give a name, binding an expression to what is known where it
stands (``prepare``, ``value_now``: ``.``, local labels, equates) and to
what is known at the end (``value_final``), and the object's symbol table.
A label lives in a subsection (a ``Chunk``) at an offset (``LabelDef``; the
records are state.py's); values are chunk-relative until write.py lays the
sections out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.blob import expr as ex
from emu.blob.asm.common import MAX_EQUATE_NODES, Fail
from emu.blob.asm.read import SYMBOL, Stmt
from emu.blob.asm.state import Equate, LabelDef, SymAttrs
from emu.blob.expr import Const, Evaluator, ExprError, Node, Num, Sym, Value
from emu.blob.objfile import Binding, Symbol
from emu.errors import AsmError

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


def local_name(number: int, count: int) -> str:
    return f".L{number}\x02{count}"


def is_local_name(name: str) -> bool:
    return name.startswith(".L") and "\x02" in name


def _local_number(name: str) -> str:
    return name[2 : name.index("\x02")]


class Symbols:
    """The symbol side of an Assembler."""

    labels: dict[str, LabelDef]
    equates: dict[str, Equate]
    equate_values: dict[str, Value]  # memo for finish(), when every equate is final
    attrs: dict[str, SymAttrs]
    local_counts: dict[int, int]
    internal: set[str]  # literal pool labels: never in the symbol table

    def check_name(self: AsmState, name: str) -> str:
        if not SYMBOL.fullmatch(name):
            raise Fail(f"bad symbol name {name!r}")
        return name

    def define_label(self: AsmState, name: str, stmt: Stmt) -> None:
        if name.isdigit():
            number = int(name)
            count = self.local_counts.get(number, 0) + 1
            self.local_counts[number] = count
            name = local_name(number, count)
        if name in self.labels or name in self.equates:
            raise Fail(f"symbol '{name}' is already defined")
        self.labels[name] = LabelDef(self.chunk, self.chunk.offset, stmt.where)

    def local_ref(self: AsmState, number: int, forward: bool) -> str:
        count = self.local_counts.get(number, 0)
        if forward:
            return local_name(number, count + 1)
        if count == 0:
            raise ExprError(f"backward reference {number}b to a local label not yet defined")
        return local_name(number, count)

    def dot(self: AsmState) -> Value:
        return Value.base(self.chunk.key, self.chunk.offset)

    def prepare(self: AsmState, text: str) -> tuple[Node, int]:
        """Parse an expression and bind what is known now: ``.``, numeric labels, equates."""
        node = ex.parse_expression(text)
        if isinstance(node, Num):
            return node, 1
        size = ex.tree_size(node)
        dot = self.dot()

        def leaf(n: Node) -> Node | None:
            nonlocal size
            if isinstance(n, ex.Dot):
                return Const(dot)
            if isinstance(n, ex.LocalRef):
                return Sym(self.local_ref(n.number, n.forward))
            if isinstance(n, Sym):
                equate = self.equates.get(n.name)
                if equate is not None:
                    size += equate.size
                    return ex.Alias(n.name, equate.node) if isinstance(equate.node, Const) else equate.node
            return None

        node = ex.substitute(node, leaf)
        if size > MAX_EQUATE_NODES:
            raise ExprError("expression too complex (equates expand to too many terms)")
        return node, size

    def pre(self: AsmState, text: str) -> Node:
        return self.prepare(text)[0]

    def value_now(self: AsmState, node: Node) -> Value:
        """Evaluate with what is defined so far (chunk-relative labels)."""

        def resolve(name: str) -> Value | None:
            label = self.labels.get(name)
            if label is not None:
                return Value.base(label.chunk.key, label.offset, name, label.offset)
            if is_local_name(name):
                number = _local_number(name)
                raise ExprError(f"local label {number}f is not defined yet (a forward reference cannot be used here)")
            raise ExprError(f"symbol '{name}' is not defined at this point (its value is needed here)")

        return Evaluator(resolve)(node)

    def absolute(self: AsmState, text: str, what: str) -> int:
        value = self.value_now(self.pre(text))
        if not value.is_absolute:
            raise Fail(f"{what} must be an absolute expression")
        return value.const

    def set_symbol(self: AsmState, name: str, text: str, stmt: Stmt, redefine: bool = True) -> None:
        self.check_name(name)
        if name in self.labels:
            raise Fail(f"symbol '{name}' is already defined as a label")
        if not redefine and name in self.equates:
            raise Fail(f"symbol '{name}' is already defined")
        if not text.strip():
            raise Fail(f"missing value for '{name}'")
        node, size = self.prepare(text)
        try:
            value = self.value_now(node)
            node, size = (Num(value.const) if value.is_absolute else Const(value)), 1
        except ExprError:
            pass  # forward references: evaluated when the object is finished
        self.equates[name] = Equate(node, size, stmt.where)

    def attrs_of(self: AsmState, name: str) -> SymAttrs:
        self.check_name(name)
        attrs = self.attrs.get(name)
        if attrs is None:
            attrs = self.attrs[name] = SymAttrs()
        return attrs

    # -- emitting bytes -----------------------------------------------------------
    def value_final(self: AsmState, node: Node) -> Value:
        """Evaluate with every label placed: section-relative, undefined symbols as their own bases."""
        active: set[str] = set()

        def resolve(name: str) -> Value | None:
            label = self.labels.get(name)
            if label is not None:
                return Value.base(label.chunk.key, label.offset, name, label.offset)
            equate = self.equates.get(name)
            if equate is not None:
                known = self.equate_values.get(name)
                if known is not None:
                    return known
                if name in active:
                    raise ExprError(f"symbol '{name}' is defined in terms of itself")
                active.add(name)
                try:
                    value = evaluator(equate.node)
                finally:
                    active.discard(name)
                if len(value.terms) == 1 and value.terms[0][1] == 1 and value.terms[0][0].startswith("\x00"):
                    key = value.terms[0][0]
                    value = Value(value.const, value.terms, ((key, (name, value.const)),))
                self.equate_values[name] = value
                return value
            if is_local_name(name):
                number = _local_number(name)
                raise ExprError(f"reference to local label {number}f, which is never defined")
            if name in self.internal:
                raise ExprError("internal error: literal pool entry without a place")
            return Value.base(name, 0, name, 0)

        def alias(name: str, value: Value) -> Value:
            # GNU as relocates against a global alias itself, not against what it stands for.
            if self.is_global(name) and len(value.terms) == 1 and value.terms[0][1] == 1:
                return Value(value.const, value.terms, ((value.terms[0][0], (name, value.const)),))
            return value

        evaluator = Evaluator(resolve, alias=alias)
        return self.section_value(evaluator(node))

    def symbol_name_for(self: AsmState, value: Value, key: str) -> tuple[str, int]:
        """A symbol for base ``key`` of value: (name, addend)."""
        hint = value.hint(key)
        if key.startswith("\x00"):
            if hint is not None:
                return hint[0], ex.wrap64(value.const - hint[1])
            return key[1:], value.const
        return key, value.const

    def is_global(self: AsmState, name: str) -> bool:
        attrs = self.attrs.get(name)
        return attrs is not None and attrs.binding in (Binding.GLOBAL, Binding.WEAK)

    def absolute_final(self: AsmState, node: Node | None, what: str) -> int:
        if node is None:
            raise Fail(f"missing {what}")
        value = self.value_final(node)
        if not value.is_absolute:
            raise Fail(f"{what} must be an absolute expression (use :lo12:/:abs_gN: for addresses)")
        return value.const

    def symbol_table(self: AsmState, errors: list[tuple[int, AsmError]]) -> dict[str, Symbol]:
        symbols: dict[str, Symbol] = {}
        for name, label in self.labels.items():
            if name in self.internal:
                continue
            symbols[name] = Symbol(name, label.chunk.section.name, label.chunk.start + label.offset, loc=label.loc)
        aliases: dict[str, str] = {}
        for name, equate in self.equates.items():
            try:
                value = self.value_final(equate.node)
            except ExprError as fail:
                if self.is_global(name):
                    errors.append((0, AsmError(str(fail), equate.loc)))
                continue
            if value.is_absolute:
                symbols[name] = Symbol(name, None, value.const, loc=equate.loc)
            elif len(value.terms) == 1 and value.terms[0][1] == 1 and value.terms[0][0].startswith("\x00"):
                symbols[name] = Symbol(name, value.terms[0][0][1:], value.const, loc=equate.loc)
                hint = value.hint(value.terms[0][0])
                if hint is not None and hint[0] != name:
                    aliases[name] = hint[0]
            elif self.is_global(name):
                errors.append((0, AsmError(f"global symbol '{name}' has a value that is not a plain address", equate.loc)))
        for name, attrs in self.attrs.items():
            symbol = symbols.get(name)
            if symbol is None:
                continue
            if attrs.binding is not None:
                symbol.binding = attrs.binding
            if attrs.type is not None:
                symbol.type = attrs.type
            if attrs.size is not None:
                try:
                    symbol.size = self.absolute_final(attrs.size, f".size of {name}")
                except (Fail, ExprError) as fail:
                    errors.append((0, self.error_at(str(fail), attrs.size_stmt)))
        # Like GNU as, "alias = sym + k" takes sym's ELF type and size unless it has its own.
        for name, source in aliases.items():
            own = self.attrs.get(name, SymAttrs())
            if source in symbols:
                if own.type is None:
                    symbols[name].type = symbols[source].type
                if own.size is None:
                    symbols[name].size = symbols[source].size
        return symbols
