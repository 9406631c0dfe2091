"""Macros and loops, like GNU as's macro.c: ``.macro``, ``.rept``, ``.irp``, ``.irpc``.

Owns defining and invoking macros (their ``Macro`` records are
state.py's), splitting a macro call's
arguments (``split_macro_args``), substituting ``\\param``, ``\\@`` and
``\\()`` (``substitute_params``), and pushing an expansion or a loop body
as a new input frame for the statement loop of loop.py.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from emu.blob.asm.common import MAX_LINE, MAX_MACRO_DEPTH, MAX_STATEMENTS, Fail
from emu.blob.asm.read import Frame, Stmt, pseudo_op, split_statements, unquote
from emu.blob.asm.state import Macro, MacroParam

if TYPE_CHECKING:
    from emu.blob.asm.state import AsmState


_MACRO_REF = re.compile(r"\\(@|\(\)|[A-Za-z_.$][A-Za-z0-9_.$]*)")
_OPERATOR_CHARS = set("+-*/%&|^<>=!~(")


def split_macro_args(text: str) -> list[str]:
    """GNU macro-call arguments: separated by commas or blanks, except that a
    blank next to an operator (``1 + 2``) does not separate; quotes are removed."""
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            if args and text.rstrip().endswith(","):
                args.append("")
            return args
        if text[i] == ",":
            args.append("")
            i += 1
            continue
        value: list[str] = []
        depth = 0
        while i < n:
            ch = text[i]
            if ch == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                value.append(text[i + 1 : j].replace('\\"', '"'))
                i = j + 1
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
            elif ch == "," and depth == 0:
                break
            elif ch in " \t" and depth == 0:
                j = i
                while j < n and text[j] in " \t":
                    j += 1
                last = "".join(value).rstrip()[-1:]
                if j < n and (text[j] in _OPERATOR_CHARS or last in _OPERATOR_CHARS) and text[j] != ",":
                    value.append(" ")
                    i = j
                    continue
                i = j
                break
            value.append(ch)
            i += 1
        args.append("".join(value).strip())
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ",":
            i += 1
            if i >= n or not text[i:].strip():
                args.append("")
                return args


def substitute_params(text: str, values: dict[str, str], counter: str | None) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "()":
            return ""
        if name == "@":
            return counter if counter is not None else m.group()
        return values.get(name, m.group())

    return _MACRO_REF.sub(repl, text) if "\\" in text else text


# ---------------------------------------------------------------------------
# Sections and records


def _expanded_lines(text: str, values: dict[str, str], counter: str | None, what: str) -> list[str]:
    """One body line with its parameters substituted, split into statements."""
    text = substitute_params(text, values, counter)
    if len(text) > MAX_LINE:
        raise Fail(f"{what} expands to a line longer than {MAX_LINE} characters")
    return split_statements(text)


class Macros:
    """The macro side of an AsmState: definitions and the frames they expand into."""

    frames: list[Frame]
    macros: dict[str, Macro]
    macro_count: int

    def invoke_macro(self: AsmState, macro: Macro, rest: str, stmt: Stmt) -> None:
        depth = sum(1 for f in self.frames if f.kind == "macro")
        if depth >= MAX_MACRO_DEPTH:
            raise Fail(f"macros nested more than {MAX_MACRO_DEPTH} deep (recursive macro '{macro.name}'?)")
        values: dict[str, str] = {}
        args = split_macro_args(rest)
        positional = 0
        for index, arg in enumerate(args):
            keyword = re.match(r"([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)(.*)", arg, re.S)
            if keyword and any(p.name == keyword.group(1) for p in macro.params):
                values[keyword.group(1)] = keyword.group(2).strip()
                continue
            if positional >= len(macro.params):
                raise Fail(f"too many arguments for macro '{macro.name}'")
            param = macro.params[positional]
            if param.vararg:
                values[param.name] = ", ".join(a for a in args[index:])
                positional = len(macro.params)
                break
            if arg != "":
                values[param.name] = arg
            positional += 1
        for param in macro.params:
            if param.name not in values or values[param.name] == "":
                if param.required:
                    raise Fail(f"missing value for required parameter '{param.name}' of macro '{macro.name}'")
                values[param.name] = param.default
        self.macro_count += 1
        counter = str(self.macro_count - 1)
        expanded: list[Stmt] = []
        for body in macro.body:
            for piece in _expanded_lines(body.text, values, counter, f"macro '{macro.name}'"):
                expanded.append(Stmt(piece, body.loc, stmt.where, f" (in macro '{macro.name}' at {body.loc})"))
        self.frames.append(Frame(expanded, "macro", len(self.cond), macro.name))

    def push_loop(self: AsmState, body: list[Stmt], kind: str = "loop") -> None:
        if len(self.frames) > MAX_MACRO_DEPTH * 4:
            raise Fail("loops and macros nested too deeply")
        self.frames.append(Frame(body, kind, len(self.cond)))



@pseudo_op(".macro")
def _macro(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    m = re.match(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*,?(.*)", args, re.S)
    if not m:
        raise Fail(".macro needs a name")
    macro_name = m.group(1).lower()
    params: list[MacroParam] = []
    for spec in re.findall(r"""[^\s,=]+(?:\s*=\s*(?:"(?:\\.|[^"\\])*"|[^\s,]*))?""", m.group(2)):
        pm = re.fullmatch(r"""([A-Za-z_.$][A-Za-z0-9_.$]*)(?::(req|vararg))?(?:\s*=\s*(.*))?""", spec, re.S)
        if not pm:
            raise Fail(f"bad macro parameter {spec!r}")
        default = pm.group(3) or ""
        if default.startswith('"') and default.endswith('"') and len(default) >= 2:
            default = default[1:-1]
        param = MacroParam(pm.group(1), default, pm.group(2) == "req", pm.group(2) == "vararg")
        if any(p.name == param.name for p in params):
            raise Fail(f"duplicate macro parameter '{param.name}'")
        params.append(param)
    if any(p.vararg for p in params[:-1]):
        raise Fail(":vararg must be the last macro parameter")
    body = asm.collect(stmt, {".macro"}, ".endm")
    asm.macros[macro_name] = Macro(macro_name, params, body, stmt.loc)


@pseudo_op(".endm", ".endr")
def _stray_end(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    raise Fail(f"{name} without {'.macro' if name == '.endm' else '.rept/.irp/.irpc'}")


@pseudo_op(".exitm")
def _exitm(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    while asm.frames and asm.frames[-1].kind == "loop":
        frame = asm.frames.pop()
        del asm.cond[frame.cond_depth :]
    if not asm.frames or asm.frames[-1].kind != "macro":
        raise Fail(".exitm outside a macro")
    frame = asm.frames.pop()
    del asm.cond[frame.cond_depth :]


@pseudo_op(".purgem")
def _purgem(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    macro_name = args.strip().lower()
    if macro_name not in asm.macros:
        raise Fail(f"macro '{macro_name}' is not defined")
    del asm.macros[macro_name]


_LOOP_OPENERS = {".rept", ".irp", ".irpc"}


@pseudo_op(".rept")
def _rept(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    count = asm.absolute(args, "repeat count") if args else 0
    body = asm.collect(stmt, _LOOP_OPENERS, ".endr")
    if count > 0 and body:
        if count * len(body) > MAX_STATEMENTS:
            raise Fail(f".rept {count} expands to more than {MAX_STATEMENTS} statements")
        asm.push_loop(body * count)


@pseudo_op(".irp", ".irpc")
def _irp(asm: AsmState, name: str, args: str, stmt: Stmt) -> None:
    m = re.match(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*,?(.*)", args, re.S)
    if not m:
        raise Fail(f"{name} needs a parameter name")
    param = m.group(1)
    body = asm.collect(stmt, _LOOP_OPENERS, ".endr")
    if name == ".irp":
        values = split_macro_args(m.group(2)) or [""]
    else:
        values = list(unquote(m.group(2).strip())) or [""]
    expanded: list[Stmt] = []
    for value in values:
        for item in body:
            for piece in _expanded_lines(item.text, {param: value}, None, name):
                expanded.append(Stmt(piece, item.loc, item.where, item.note))
        if len(expanded) > MAX_STATEMENTS:
            raise Fail(f"{name} expands to more than {MAX_STATEMENTS} statements")
    asm.push_loop(expanded)
