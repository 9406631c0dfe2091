"""The AArch64 back end, like GNU as's config/tc-aarch64.c: instruction
operands in, instruction words and relocations out.

Owns register names and ``.req``/``.unreq`` aliases, parsing an
instruction's operands (``Operand``), planning each instruction once every
symbol has a value (``plan``: branch and address targets, ``:lo12:`` and
``:abs_gN:`` operators, immediates range-checked because keystone silently
truncates), and encoding the plans through keystone in the guarded worker
of ``emu.blob.ksworker`` (``encode``), every word cross-checked with
capstone.

The interface with the core is narrow. While the source is read, the core
calls ``parse_operands(mnemonic, text, bind, pool)``; ``bind`` turns
expression text into an ``expr.Node`` bound to what is known there, and
``pool(register, node)`` puts an ``ldr REG, =value`` literal in the current
literal pool and returns its label. At the end the core hands over each
instruction as an ``Insn`` (mnemonic, operands, section offset, section,
source line) with a ``Resolver`` (final symbol values, the symbol a
relocation names) and gets back a ``Plan`` per instruction (its relocation,
if any), then from ``encode`` a word or a message per plan. Errors are
``Fail``/``ExprError`` (user errors); keystone only ever sees registers and
numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from emu.blob import expr as ex
from emu.blob.asm.aarch64_opc import (
    Float,
    Hex,
    Imm,
    Kw,
    Mem,
    Reg,
    ROp,
    Shift,
    a64fix,
    capstone_decodes,
    gpr_number,
    patch_pc_relative,
    register_numbers,
    render,
)
from emu.blob.asm.common import Fail, hex_text
from emu.blob.asm.read import Stmt, pseudo_op, split_top
from emu.blob.expr import Node, Sym, Value
from emu.blob.ksworker import KeystoneWorker, shared_worker
from emu.blob.objfile import Relocation, RelocType

ABSOLUTE_SYMBOL = "*ABS*"  # a local absolute symbol of value 0, for "adrp xN, <number>"

_REG = re.compile(
    r"(?:[xw](?:[12]?[0-9]|30)|sp|wsp|xzr|wzr|lr|fp|ip[01]"
    r"|[bhsdqz](?:[12]?[0-9]|3[01])|p(?:1?[0-9])(?:/[zm])?"
    r"|v(?:[12]?[0-9]|3[01])(?:\.\d*[bhsdq])?(?:\[\d+\])?)"
)
_SHIFT = re.compile(r"(lsl|lsr|asr|ror|msl|[us]xt[bhwx])(?:\s+(.*))?", re.S)
_KEYWORD = re.compile(r"[a-z][a-z0-9_]*")
_REGLIST = re.compile(r"\{[a-z0-9., \-]*\}(?:\[\d+\])?")
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|\.\d+(?:e[-+]?\d+)?)")
_REG_ALIAS = {"ip0": "x16", "ip1": "x17", "lr": "x30", "fp": "x29"}
_REQ = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+\.req\s+([A-Za-z0-9_.]+)\s*", re.I)

CONDITIONS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", "nv")
_COND_BRANCHES = {f"b.{c}" for c in CONDITIONS} | {f"b{c}" for c in CONDITIONS if c not in ("al", "nv")}
_COND_LAST = {"csel", "csinc", "csinv", "csneg", "cset", "csetm", "cinc", "cinv", "cneg", "ccmp", "ccmn", "fcsel", "fccmp", "fccmpe"}
_FIRST_KEYWORD = {"tlbi", "dc", "ic", "at", "prfm", "prfum", "dsb", "dmb", "isb", "bti", "psb", "tsb", "msr", "clrex"}

_LABEL_OPERAND: dict[str, tuple[int, RelocType]] = {
    "b": (0, RelocType.JUMP26),
    "bl": (0, RelocType.CALL26),
    "cbz": (1, RelocType.CONDBR19),
    "cbnz": (1, RelocType.CONDBR19),
    "tbz": (2, RelocType.TSTBR14),
    "tbnz": (2, RelocType.TSTBR14),
    "adr": (1, RelocType.ADR_PREL_LO21),
    "adrp": (1, RelocType.ADR_PREL_PG_HI21),
    "ldr": (1, RelocType.LD_PREL_LO19),
    "ldrsw": (1, RelocType.LD_PREL_LO19),
    "prfm": (1, RelocType.LD_PREL_LO19),
}

_MOVW = {
    "abs_g0": (0, RelocType.MOVW_UABS_G0, True),
    "abs_g0_nc": (0, RelocType.MOVW_UABS_G0_NC, False),
    "abs_g1": (1, RelocType.MOVW_UABS_G1, True),
    "abs_g1_nc": (1, RelocType.MOVW_UABS_G1_NC, False),
    "abs_g2": (2, RelocType.MOVW_UABS_G2, True),
    "abs_g2_nc": (2, RelocType.MOVW_UABS_G2_NC, False),
    "abs_g3": (3, RelocType.MOVW_UABS_G3, True),
}
_MOVW_SIGNED = {"abs_g0_s": 0, "abs_g1_s": 1, "abs_g2_s": 2}
_RELOC_OPERATORS = {"lo12", "pg_hi21", "pg_hi21_nc", *_MOVW, *_MOVW_SIGNED}

_LDST_SIZE = {"ldrb": 8, "strb": 8, "ldrsb": 8, "ldrh": 16, "strh": 16, "ldrsh": 16, "ldrsw": 32, "prfm": 64}
_LDST_BY_REG = {"w": 32, "x": 64, "b": 8, "h": 16, "s": 32, "d": 64, "q": 128}
_LDST_KIND = {
    8: RelocType.LDST8_ABS_LO12_NC,
    16: RelocType.LDST16_ABS_LO12_NC,
    32: RelocType.LDST32_ABS_LO12_NC,
    64: RelocType.LDST64_ABS_LO12_NC,
    128: RelocType.LDST128_ABS_LO12_NC,
}
_LOGICAL = {"and", "ands", "orr", "eor", "tst", "bic", "bics", "orn", "eon"}
_WIDE_IMMEDIATE = _LOGICAL | {"mov", "movz", "movn", "movk", "add", "adds", "sub", "subs", "cmp", "cmn"}


# Parsed operands: what the source says, expressions still unevaluated (``plan``
# gives them values once every symbol has one). Registers, keywords and
# floating-point immediates are already final: the rendered types serve.


@dataclass(frozen=True)
class ImmExpr:
    """``#expr`` or a bare expression: an immediate, or a branch or address target."""

    node: Node


@dataclass(frozen=True)
class RelocExpr:
    """``#:operator:expr``, as in ``:lo12:sym`` or ``:abs_g1_nc:sym``."""

    operator: str
    node: Node


@dataclass(frozen=True)
class ShiftExpr:
    """A shift or extend whose amount is an expression (or absent)."""

    name: str
    node: Node | None = None


@dataclass(frozen=True)
class MemExpr:
    """``[base, index, extend]``: index a register, an immediate or ``:lo12:``."""

    base: str
    parts: tuple[Reg | ImmExpr | RelocExpr | ShiftExpr, ...] = ()
    writeback: bool = False


@dataclass(frozen=True)
class Literal:
    """``=expr``: a literal pool entry, only in ``ldr REG, =expr``."""

    node: Node


Operand = Reg | Kw | Float | ImmExpr | RelocExpr | ShiftExpr | MemExpr | Literal


@dataclass(frozen=True)
class Insn:
    """One instruction as the core hands it to ``plan``."""

    mnemonic: str
    operands: Sequence[Operand]
    position: int  # offset in its section, once the sections are laid out
    section_key: str  # the base its section's labels are relative to
    stmt: Stmt  # the source, for messages and relocation places


@dataclass
class Plan:
    """What an instruction becomes: keystone text or a word, and a PC-relative
    field to fill or a relocation to emit."""

    insn: Insn
    text: str | None = None
    word: int | None = None
    ops: list[ROp] = field(default_factory=list)
    mnemonic: str = ""
    pcrel: tuple[RelocType, int] | None = None
    reloc: Relocation | None = None


class Resolver(Protocol):
    """What the back end asks the core once every symbol has a value."""

    def value_final(self, node: Node) -> Value: ...

    def absolute_final(self, node: Node | None, what: str) -> int: ...

    def symbol_name_for(self, value: Value, key: str) -> tuple[str, int]: ...

    def is_global(self, name: str) -> bool: ...


Bind = Callable[[str], Node]
Pool = Callable[[str, Node], str]


def _keyword_position(mnemonic: str, index: int, count: int) -> bool:
    if mnemonic in _COND_LAST and index == count - 1:
        return True
    if mnemonic in _FIRST_KEYWORD and index == 0:
        return True
    if mnemonic == "mrs" and index == 1:
        return True
    if mnemonic == "sys" and index in (1, 2):
        return True
    return mnemonic == "sysl" and index in (2, 3)


def _shift_expr(shift: re.Match[str], bind: Bind) -> ShiftExpr:
    amount = shift.group(2)
    return ShiftExpr(shift.group(1), bind(amount.strip().lstrip("#")) if amount and amount.strip() else None)


def _shift_amount(resolver: Resolver, node: Node | None) -> int | None:
    if node is None:
        return None
    amount = resolver.absolute_final(node, "shift amount")
    if not 0 <= amount < 64:
        raise Fail(f"shift amount {amount} out of range [0, 63]")
    return amount


class AArch64:
    """The back end of one assembly: register aliases, and the worker that encodes."""

    def __init__(self, worker: KeystoneWorker | None = None) -> None:
        self.worker = worker
        self.reg_aliases: dict[str, str] = {}  # "name .req x2"

    # -- registers -------------------------------------------------------------------

    def register_alias_statement(self, text: str) -> bool:
        """Handle ``name .req register`` if that is what the statement is."""
        alias = _REQ.fullmatch(text)
        if not alias:
            return False
        name, register = alias.group(1), alias.group(2)
        target = self.register(register.lower())
        if target is None:
            raise Fail(f"'{register}' is not a register")
        if _REG.fullmatch(name.lower()):
            raise Fail(f"'{name}' is a register name already")
        self.reg_aliases[name.lower()] = target
        return True

    def register(self, low: str) -> str | None:
        """The canonical name of a register operand (after aliases), or None."""
        if low in self.reg_aliases:
            return self.reg_aliases[low]
        if _REG.fullmatch(low):
            return _REG_ALIAS.get(low, low)
        return None


    def remove_register_alias(self, name: str) -> None:
        if self.reg_aliases.pop(name.lower(), None) is None:
            raise Fail(f"'{name}' is not a register alias")

    # -- operands --------------------------------------------------------------------

    def parse_operands(self, mnemonic: str, rest: str, bind: Bind, pool: Pool) -> list[Operand]:
        """An instruction's operands; an ``=value`` literal becomes its pool label."""
        texts = split_top(rest) if rest.strip() else []
        operands = [self.parse_operand(t, mnemonic, i, len(texts), bind) for i, t in enumerate(texts)]
        for i, op in enumerate(operands):
            if isinstance(op, Literal):
                register = operands[0]
                if i != 1 or mnemonic != "ldr" or not isinstance(register, Reg):
                    raise Fail("'=' literals are only allowed as 'ldr REG, =value'")
                operands[i] = ImmExpr(Sym(pool(register.name, op.node)))
        return operands

    def parse_operand(self, text: str, mnemonic: str, index: int, count: int, bind: Bind) -> Operand:
        t = text.strip()
        if not t:
            raise Fail("empty operand")
        low = t.lower()
        first = t[0]
        if first == "[":
            return self.parse_memory(t, bind)
        if first == "{":
            if not _REGLIST.fullmatch(low):
                raise Fail(f"bad register list {t!r}")
            return Kw(low)
        if first == "=":
            return Literal(bind(t[1:]))
        if first == "#":
            body = t[1:].strip()
            if body.startswith(":"):
                return self.parse_reloc(body, bind)
            if _FLOAT.fullmatch(body.lower()):
                return Float(body.lower())
            return ImmExpr(bind(body))
        if first == ":":
            return self.parse_reloc(t, bind)
        register = self.register(low)
        if register is not None:
            return Reg(register)
        shift = _SHIFT.fullmatch(low)
        if shift:
            return _shift_expr(shift, bind)
        if _KEYWORD.fullmatch(low) and _keyword_position(mnemonic, index, count):
            return Kw(low)
        if _FLOAT.fullmatch(low) and mnemonic.startswith("f"):
            return Float(low)
        return ImmExpr(bind(t))

    def parse_reloc(self, text: str, bind: Bind) -> RelocExpr:
        m = re.fullmatch(r":([A-Za-z0-9_]+):(.*)", text, re.S)
        if not m:
            raise Fail(f"bad relocation operator in {text!r}")
        operator = m.group(1).lower()
        if operator not in _RELOC_OPERATORS:
            raise Fail(f"relocation operator :{operator}: is not supported")
        return RelocExpr(operator, bind(m.group(2)))

    def parse_memory(self, text: str, bind: Bind) -> MemExpr:
        m = re.fullmatch(r"\[(.*)\]\s*(!?)", text, re.S)
        if not m:
            raise Fail(f"bad memory operand {text!r}")
        parts = split_top(m.group(1))
        base = self.register(parts[0].lower())
        if base is None:
            raise Fail(f"bad base register {parts[0]!r}")
        items: list[Reg | ImmExpr | RelocExpr | ShiftExpr] = []
        if len(parts) > 3:
            raise Fail(f"too many parts in memory operand {text!r}")
        for i, part in enumerate(parts[1:], start=1):
            low = part.lower()
            register = self.register(low)
            if register is not None:
                items.append(Reg(register))
            elif i == 2 and _SHIFT.fullmatch(low):
                items.append(_shift_expr(_SHIFT.fullmatch(low), bind))  # type: ignore[arg-type]
            elif (part.startswith("#") and part[1:].strip().startswith(":")) or part.startswith(":"):
                items.append(self.parse_reloc(part.lstrip("#").strip(), bind))
            elif i == 1 and part:
                body = part[1:] if part.startswith("#") else part
                items.append(ImmExpr(bind(body)))
            else:
                raise Fail(f"bad memory operand part {part!r}")
        return MemExpr(base, tuple(items), bool(m.group(2)))


    # -- planning, once every symbol has a value -------------------------------------

    def plan(self, insn: Insn, resolver: Resolver) -> Plan:
        m = insn.mnemonic
        ops = insn.operands
        plan = Plan(insn)
        label_index = None
        label_kind = None
        if m in _COND_BRANCHES:
            label_index, label_kind = 0, RelocType.CONDBR19
        elif m in _LABEL_OPERAND:
            label_index, label_kind = _LABEL_OPERAND[m]
        if label_index is not None and (label_index >= len(ops) or not isinstance(ops[label_index], (ImmExpr, RelocExpr))):
            label_index = None
        target = ops[label_index] if label_index is not None else None
        if isinstance(target, RelocExpr):
            operator = target.operator
            if m == "adrp" and operator in ("pg_hi21", "pg_hi21_nc"):
                label_kind = RelocType.ADR_PREL_PG_HI21 if operator == "pg_hi21" else RelocType.ADR_PREL_PG_HI21_NC
            else:
                raise Fail(f":{operator}: cannot be used with {m}")
        rendered: list[ROp] = []
        wide = bool(ops) and isinstance(ops[0], Reg) and ops[0].name[:1] == "w"
        for index, op in enumerate(ops):
            if index == label_index:
                assert label_kind is not None and isinstance(op, (ImmExpr, RelocExpr))
                rendered.append(Imm(0))
                self.plan_target(plan, op.node, label_kind, resolver)
            elif isinstance(op, RelocExpr):
                rendered.extend(self.plan_reloc_operand(plan, m, op, resolver))
            elif isinstance(op, ImmExpr):
                value = resolver.absolute_final(op.node, "immediate")
                rendered.append(self.immediate(m, value, wide))
            elif isinstance(op, ShiftExpr):
                rendered.append(Shift(op.name, _shift_amount(resolver, op.node)))
            elif isinstance(op, MemExpr):
                rendered.append(self.plan_memory(plan, m, op, rendered, resolver))
            elif isinstance(op, (Reg, Kw, Float)):
                rendered.append(op)
            else:
                raise Fail(f"unexpected operand {op}")
        fixed = a64fix(plan.mnemonic or m, rendered)
        if isinstance(fixed, int):
            plan.word = fixed
        else:
            plan.mnemonic, plan.ops = fixed
            plan.text = render(plan.mnemonic, plan.ops)
        return plan

    def immediate(self, mnemonic: str, value: int, wide: bool) -> Imm | Hex:
        # GNU as takes a 64-bit value for a 32-bit operation when its upper half is all zeros
        # or all ones; keystone silently truncates anything, so the check is ours.
        if wide and not -(1 << 32) <= value < (1 << 32):
            raise Fail(f"immediate {hex_text(value)} out of range for a 32-bit operation")
        if wide and value < -(1 << 31) and mnemonic in ("mov", "movz", "movn", "movk"):
            value &= 0xFFFFFFFF
        if mnemonic in ("orn", "eon"):
            raise Fail(f"{mnemonic} has no immediate form (GNU as rejects it; keystone would make it an orr/eor)")
        if mnemonic not in _WIDE_IMMEDIATE and not -(1 << 32) <= value < (1 << 32) and not mnemonic.startswith(("ld", "st")):
            raise Fail(f"immediate {hex_text(value)} out of range")
        if mnemonic in _LOGICAL:
            return Hex(value & (0xFFFFFFFF if wide else 0xFFFFFFFFFFFFFFFF))
        if mnemonic == "prfm" and not 0 <= value < 32:
            raise Fail(f"prefetch operation {value} out of range [0, 31]")
        return Imm(value)

    def plan_target(self, plan: Plan, node: Node, kind: RelocType, resolver: Resolver) -> None:
        insn = plan.insn
        value = resolver.value_final(node)
        if value.is_absolute:
            if kind in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
                # The page of an absolute address, relative to the page this code lands in:
                # like GNU as, relocate against the absolute symbol (*ABS* + address).
                plan.reloc = Relocation(insn.position, kind, ABSOLUTE_SYMBOL, value.const, insn.stmt.where)
                return
            plan.pcrel = (kind, value.const)  # GNU as: a number is an offset from the instruction
            return
        terms = value.term_map()
        if len(terms) != 1 or next(iter(terms.values())) != 1:
            raise Fail("branch or address target too complex for a relocation")
        key = next(iter(terms))
        name, addend = resolver.symbol_name_for(value, key)
        local = key == insn.section_key and not resolver.is_global(name)
        if local and kind not in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
            plan.pcrel = (kind, ex.wrap64(value.const - insn.position))
            return
        plan.reloc = Relocation(insn.position, kind, name, addend, insn.stmt.where)

    def set_reloc(self, plan: Plan, kind: RelocType, value: Value, resolver: Resolver) -> None:
        terms = value.term_map()
        if len(terms) != 1 or next(iter(terms.values())) != 1:
            raise Fail("expression too complex for a relocation")
        name, addend = resolver.symbol_name_for(value, next(iter(terms)))
        plan.reloc = Relocation(plan.insn.position, kind, name, addend, plan.insn.stmt.where)

    def plan_reloc_operand(self, plan: Plan, m: str, op: RelocExpr, resolver: Resolver) -> list[ROp]:
        operator = op.operator
        value = resolver.value_final(op.node)
        if operator == "lo12":
            if m != "add":
                raise Fail(f":lo12: cannot be used with {m} here")
            if value.is_absolute:
                return [Imm(value.const & 0xFFF)]
            self.set_reloc(plan, RelocType.ADD_ABS_LO12_NC, value, resolver)
            return [Imm(0)]
        if operator in _MOVW:
            if m not in ("movz", "movk"):
                raise Fail(f":{operator}: needs movz or movk, not {m}")
            group, kind, checked = _MOVW[operator]
            if value.is_absolute:
                unsigned = value.const & 0xFFFFFFFFFFFFFFFF
                if checked and unsigned >> (16 * (group + 1)):
                    raise Fail(f"value {hex_text(value.const)} does not fit :{operator}:")
                return [Imm(unsigned >> (16 * group) & 0xFFFF), Shift("lsl", 16 * group)]
            self.set_reloc(plan, kind, value, resolver)
            return [Imm(0), Shift("lsl", 16 * group)]
        if operator in _MOVW_SIGNED:
            if m not in ("movz", "movn"):
                raise Fail(f":{operator}: needs movz or movn, not {m}")
            group = _MOVW_SIGNED[operator]
            if not value.is_absolute:
                raise Fail(f":{operator}: with a symbol needs R_AARCH64_MOVW_SABS, which is not supported")
            v = value.const
            limit = 1 << (16 * (group + 1))
            if not -limit <= v < limit:
                raise Fail(f"value {hex_text(v)} does not fit :{operator}:")
            plan.mnemonic = "movz" if v >= 0 else "movn"
            field_ = (v if v >= 0 else ~v) >> (16 * group) & 0xFFFF
            return [Imm(field_), Shift("lsl", 16 * group)]
        raise Fail(f":{operator}: cannot be used with {m}")

    def plan_memory(self, plan: Plan, m: str, op: MemExpr, before: list[ROp], resolver: Resolver) -> Mem:
        index: Reg | Imm | None = None
        extend: Shift | None = None
        for part in op.parts:
            if isinstance(part, Reg):
                index = part
            elif isinstance(part, ShiftExpr):
                extend = Shift(part.name, _shift_amount(resolver, part.node))
            elif isinstance(part, ImmExpr):
                offset = resolver.absolute_final(part.node, "offset")
                if not -(1 << 32) <= offset < (1 << 32):
                    raise Fail(f"offset {hex_text(offset)} out of range")
                index = Imm(offset)
            elif isinstance(part, RelocExpr):
                if part.operator != "lo12":
                    raise Fail(f":{part.operator}: cannot be used in a memory operand")
                size = _LDST_SIZE.get(m)
                first = before[0] if before else None
                if size is None and m in ("ldr", "str") and isinstance(first, Reg):
                    size = _LDST_BY_REG.get(first.name[0])
                    if first.name in ("wzr", "wsp"):
                        size = 32
                    elif first.name in ("xzr", "sp"):
                        size = 64
                if size is None:
                    raise Fail(f":lo12: cannot be used with {m}")
                value = resolver.value_final(part.node)
                if value.is_absolute:
                    low = value.const & 0xFFF
                    if low % (size // 8):
                        raise Fail(f":lo12: offset {low:#x} is not a multiple of the access size {size // 8}")
                    index = Imm(low)
                else:
                    self.set_reloc(plan, _LDST_KIND[size], value, resolver)
                    index = Imm(0)
        return Mem(op.base, index, extend, op.writeback)

    # -- encoding ----------------------------------------------------------------------

    def encode(self, plans: list[Plan]) -> list[int | str]:
        """Each plan's instruction word, or why it has none (a user error)."""
        texts = [p.text for p in plans if p.text is not None]
        worker = self.worker or shared_worker()
        results = dict(zip(texts, worker.encode_many(texts), strict=True)) if texts else {}
        out: list[int | str] = []
        for plan in plans:
            try:
                out.append(self._word(worker, plan, results))
            except Fail as fail:
                out.append(str(fail))
        return out

    def _word(self, worker: KeystoneWorker, plan: Plan, results: dict) -> int:  # type: ignore[type-arg]
        word = plan.word
        if word is None:
            assert plan.text is not None
            result = results[plan.text]
            if result.data is not None and len(result.data) == 4:
                word = int.from_bytes(result.data, "little")
            elif result.data is not None:
                raise Fail(f"keystone made {len(result.data)} bytes of '{plan.text}'")
            elif result.error == "keystone produced no bytes":
                word = self.substitute_registers(worker, plan)
                if word is None or not capstone_decodes(word):
                    raise Fail(
                        f"'{plan.insn.stmt.text.strip()}' is CONSTRAINED UNPREDICTABLE (register"
                        " overlap); keystone and capstone refuse it, GNU as only warns"
                    )
            else:
                raise Fail(self.explain(plan, result.error or "unknown error"))
        if plan.pcrel is not None:
            word = patch_pc_relative(word, *plan.pcrel)
        if not capstone_decodes(word):
            raise Fail(f"the encoding {word:#010x} of '{plan.text or plan.insn.mnemonic}' does not decode in capstone")
        return word

    def explain(self, plan: Plan, error: str) -> str:
        original = plan.insn.stmt.text.strip()
        if plan.mnemonic == "mov" and len(plan.ops) == 2 and isinstance(plan.ops[1], Imm):
            return (
                f"immediate {hex_text(plan.ops[1].value)} cannot be moved into {plan.ops[0]} with one"
                " instruction (GNU as rejects it too; use movz/movk or ldr =)"
            )
        if error.startswith(("keystone crashed", "keystone hung")):
            return f"{error} (from '{original}')"
        if "MNEMONICFAIL" in error:
            return f"unknown instruction '{plan.mnemonic}' (and no macro of that name) in '{original}'"
        if "SYMBOL_MISSING" in error:
            return f"unknown operand name in '{original}'"
        if "INVALIDOPERAND" in error:
            return f"invalid operands in '{original}'"
        if error == "Unknown error":
            return f"cannot encode '{original}' (bad operand combination or immediate out of range)"
        return f"cannot encode '{original}': {error}"

    def substitute_registers(self, worker: KeystoneWorker, plan: Plan) -> int | None:
        """Encode a form keystone refuses as UNPREDICTABLE (it returns no bytes, GNU
        as only warns): swap one register for two free ones, find the field that
        moved, and put the original register number there."""
        used = {n for o in plan.ops for n in register_numbers(o)}
        free = [n for n in range(1, 29) if n not in used][:2]
        for i, op in enumerate(plan.ops):
            number = gpr_number(op.name) if isinstance(op, Reg) else None
            if not isinstance(op, Reg) or number is None or op.name in ("sp", "wsp") or len(free) < 2:
                continue
            prefix = op.name[0]
            trial = []
            for candidate in free:
                ops = list(plan.ops)
                ops[i] = Reg(f"{prefix}{candidate}")
                trial.append(render(plan.mnemonic, ops))
            first, second = worker.encode_many(trial)
            if first.data is None or second.data is None or len(first.data) != 4 or len(second.data) != 4:
                continue
            a = int.from_bytes(first.data, "little")
            b = int.from_bytes(second.data, "little")
            for shift in range(28):
                mask = 31 << shift
                if (a ^ b) & ~mask == 0 and (a >> shift) & 31 == free[0] and (b >> shift) & 31 == free[1]:
                    return (a & ~mask) | number << shift
        return None


class _HasTarget(Protocol):
    """What ``.unreq`` needs of the assembly (state.py's AsmState, above this module)."""

    target: AArch64


@pseudo_op(".unreq")
def _unreq(asm: _HasTarget, name: str, args: str, stmt: Stmt) -> None:
    asm.target.remove_register_alias(args.strip())
