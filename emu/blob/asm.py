"""The assembler front end: GNU as syntax for AArch64 in, an ObjectFile out.

Owns everything between source text and the relocatable object model:
reading (comments, statements, ``.include``), macros, loops and
conditionals, sections and subsections, symbols, data and alignment
directives, literal pools, and instructions. Keystone encodes the
instructions, through the guarded worker of ``ksworker``, and only ever sees
registers and numbers: every symbolic operand becomes a placeholder that
this module either resolves at assembly time (labels of the same section, as
GNU as does) or turns into an ELF relocation. Forms keystone gets wrong are
rewritten or encoded here (``a64fix`` table below), and every instruction
word is cross-checked with capstone.

Errors are ``AsmError("FILE:LINE: message")``. Inside a macro expansion the
place is the line that invoked the outermost macro, and the message says
where in the macro body the statement came from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emu.blob import expr as ex
from emu.blob.expr import Const, Evaluator, ExprError, Node, Num, Sym, Value
from emu.blob.ksworker import KeystoneWorker, shared_worker
from emu.blob.objfile import (
    Binding,
    ObjectFile,
    Relocation,
    RelocType,
    Section,
    SectionFlags,
    Symbol,
    SymbolType,
)
from emu.errors import AsmError, SourceLoc
from emu.fileio import read_input_file

NOP = 0xD503201F
ABSOLUTE_SYMBOL = "*ABS*"  # a local absolute symbol of value 0, for "adrp xN, <number>"
MAX_MACRO_DEPTH = 100
MAX_INCLUDE_DEPTH = 32
MAX_STATEMENTS = 250_000
MAX_SECTION_BYTES = 64 << 20
MAX_NOBITS_BYTES = 1 << 32
MAX_ALIGN_LOG2 = 16
MAX_EQUATE_NODES = 10_000
MAX_LINE = 64 * 1024
MAX_INCLUDE_BYTES = 16 << 20

_SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
_LABEL = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*|[0-9]+)\s*:(?!:)")
_ASSIGN = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)(.*)", re.S)
_WORD = re.compile(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)(.*)", re.S)
_REQ = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+\.req\s+([A-Za-z0-9_.]+)\s*", re.I)


class _Fail(Exception):
    """An error message without a place; turned into AsmError by the statement loop."""


# ---------------------------------------------------------------------------
# Reading text: comments, logical lines, statements

_LEX = re.compile(
    r"""
    (?P<hash>^[ \t]*\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\\n])*"?)
  | (?P<chr>'(?:\\.|[^\\\n])'?)
  | (?P<line>//[^\n]*)
  | (?P<block>/\*[\s\S]*?(?:\*/|\Z))
  | (?P<nl>\n)
  | (?P<text>[^"'/\n]+|/|')
    """,
    re.M | re.X,
)
_CPP_MARKER = re.compile(r'[ \t]*#[ \t]*(?:line[ \t]+)?(\d+)[ \t]+"((?:\\.|[^"\\])*)"')


def read_lines(text: str, filename: str) -> list[tuple[str, SourceLoc]]:
    """Logical lines with comments removed, each with the place it starts.

    ``//`` and ``/* */`` comments go (a block comment joins the lines it
    spans, like GNU as); a line whose first non-blank is ``#`` is a comment,
    and a cpp line marker (``# 12 "file.S"``) renames the lines after it.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines: list[tuple[str, SourceLoc]] = []
    parts: list[str] = []
    physical = 1
    start = 1
    name, delta = filename, 0
    for m in _LEX.finditer(text):
        kind = m.lastgroup
        tok = m.group()
        if kind == "nl":
            lines.append(("".join(parts), SourceLoc(name, start + delta)))
            parts = []
            physical += 1
            start = physical
        elif kind == "hash":
            marker = _CPP_MARKER.match(tok)
            if marker:
                name = marker.group(2)
                delta = int(marker.group(1)) - (physical + 1)
        elif kind == "line":
            pass
        elif kind == "block":
            if not tok.endswith("*/") or len(tok) < 4:
                raise AsmError("unterminated /* comment", SourceLoc(name, physical + delta))
            parts.append(" ")
            physical += tok.count("\n")
        else:
            parts.append(tok)
    if parts:
        lines.append(("".join(parts), SourceLoc(name, start + delta)))
    return lines


_SPLIT = re.compile(r""""(?:\\.|[^"\\])*"?|'(?:\\.|[^\\])'?|;|[^"';]+""", re.S)


def split_statements(line: str) -> list[str]:
    if ";" not in line:
        return [line]
    pieces: list[str] = []
    current: list[str] = []
    for m in _SPLIT.finditer(line):
        if m.group() == ";":
            pieces.append("".join(current))
            current = []
        else:
            current.append(m.group())
    pieces.append("".join(current))
    return pieces


_TOP = re.compile(r""""(?:\\.|[^"\\])*"?|'(?:\\.|[^\\])'?|[\[\]{}(),]|[^"'\[\]{}(),]+""", re.S)


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets, parentheses and quotes."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for m in _TOP.finditer(text):
        tok = m.group()
        if tok in "([{" and len(tok) == 1:
            depth += 1
        elif tok in ")]}" and len(tok) == 1:
            depth = max(0, depth - 1)
        elif tok == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(tok)
    items.append("".join(current).strip())
    return items


_STRING_ESCAPES = {"b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "a": 7, "e": 27, '"': 34, "\\": 92}


def parse_string(text: str, pos: int) -> tuple[bytes, int]:
    """A double-quoted GNU as string literal starting at text[pos]; returns bytes and end."""
    if pos >= len(text) or text[pos] != '"':
        raise _Fail("expected a string in double quotes")
    out = bytearray()
    i = pos + 1
    while True:
        if i >= len(text):
            raise _Fail("unterminated string")
        ch = text[i]
        if ch == '"':
            return bytes(out), i + 1
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        i += 1
        if i >= len(text):
            raise _Fail("unterminated string")
        esc = text[i]
        if esc in "01234567":
            j = i
            while j < len(text) and j < i + 3 and text[j] in "01234567":
                j += 1
            out.append(int(text[i:j], 8) & 0xFF)
            i = j
        elif esc in "xX":
            j = i + 1
            while j < len(text) and text[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 1:
                raise _Fail("\\x with no hex digits in string")
            out.append(int(text[i + 1 : j], 16) & 0xFF)
            i = j
        else:
            out.append(_STRING_ESCAPES.get(esc, ord(esc) & 0xFF))
            i += 1


def parse_strings(text: str) -> list[bytes]:
    """One or more string literals separated by commas and/or blanks."""
    out: list[bytes] = []
    pos = 0
    text = text.strip()
    if not text:
        raise _Fail("expected a string")
    while pos < len(text):
        data, pos = parse_string(text, pos)
        out.append(data)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos >= len(text):
                raise _Fail("expected a string after ','")
    return out


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return parse_string(text, 0)[0].decode("utf-8", "surrogateescape")
    return text


# ---------------------------------------------------------------------------
# Statements, input frames, macros


@dataclass(frozen=True)
class Stmt:
    text: str
    loc: SourceLoc  # where the text physically is
    where: SourceLoc  # what errors report: the outermost line of a real file
    note: str = ""  # macro context, appended to error messages


@dataclass
class Frame:
    stmts: list[Stmt]
    kind: str  # "file", "macro" or "loop"
    cond_depth: int
    name: str = ""
    pos: int = 0


@dataclass
class MacroParam:
    name: str
    default: str = ""
    required: bool = False
    vararg: bool = False


@dataclass
class Macro:
    name: str
    params: list[MacroParam]
    body: list[Stmt]
    loc: SourceLoc


@dataclass
class Cond:
    active: bool
    taken: bool
    outer_active: bool
    loc: SourceLoc
    seen_else: bool = False


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


@dataclass
class SectionState:
    name: str
    flags: SectionFlags
    order: int
    chunks: dict[int, Chunk] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "\x00" + self.name

    @property
    def code(self) -> bool:
        return self.flags.execute


@dataclass
class PoolEntry:
    size: int
    node: Node
    label: str
    stmt: Stmt
    seq: int


@dataclass
class Chunk:
    """One subsection of a section: its own bytes until the sections are laid out."""

    section: SectionState
    sub: int
    data: bytearray = field(default_factory=bytearray)
    nobits_size: int = 0
    align: int = 1
    start: int = 0
    pool: list[PoolEntry] = field(default_factory=list)
    pool_index: dict[tuple[int, object], PoolEntry] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"\x00{self.section.name}\x00{self.sub}"

    @property
    def offset(self) -> int:
        return self.nobits_size if self.section.flags.nobits else len(self.data)


@dataclass
class DataFix:
    chunk: Chunk
    offset: int
    size: int
    node: Node
    stmt: Stmt
    seq: int
    inst: bool = False


@dataclass(frozen=True)
class Operand:
    kind: str  # reg kw imm reloc mem shift lit float
    text: str = ""
    node: Node | None = None
    parts: tuple[Operand, ...] = ()
    writeback: bool = False


@dataclass
class InsnRec:
    chunk: Chunk
    offset: int
    mnemonic: str
    operands: list[Operand]
    stmt: Stmt
    seq: int


@dataclass
class LabelDef:
    chunk: Chunk
    offset: int
    loc: SourceLoc


@dataclass
class Equate:
    node: Node
    size: int
    loc: SourceLoc


@dataclass
class SymAttrs:
    binding: Binding | None = None
    type: SymbolType | None = None
    size: Node | None = None
    size_stmt: Stmt | None = None


# ---------------------------------------------------------------------------
# Instruction operand vocabulary

_REG = re.compile(
    r"(?:[xw](?:[12]?[0-9]|30)|sp|wsp|xzr|wzr|lr|fp|ip[01]"
    r"|[bhsdqz](?:[12]?[0-9]|3[01])|p(?:1?[0-9])(?:/[zm])?"
    r"|v(?:[12]?[0-9]|3[01])(?:\.\d*[bhsdq])?(?:\[\d+\])?)"
)
_GPR = re.compile(r"(?:([xw])([12]?[0-9]|30)|(xzr|wzr)|(sp|wsp))")
_SHIFT = re.compile(r"(lsl|lsr|asr|ror|msl|[us]xt[bhwx])(?:\s+(.*))?", re.S)
_KEYWORD = re.compile(r"[a-z][a-z0-9_]*")
_REGLIST = re.compile(r"\{[a-z0-9., \-]*\}(?:\[\d+\])?")
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|\.\d+(?:e[-+]?\d+)?)")
_REG_ALIAS = {"ip0": "x16", "ip1": "x17", "lr": "x30", "fp": "x29"}

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
_ADDSUB_FLIP = {"add": "sub", "sub": "add", "adds": "subs", "subs": "adds", "cmp": "cmn", "cmn": "cmp"}
_EXTEND_32 = {"uxtb", "uxth", "uxtw", "sxtb", "sxth", "sxtw"}
_LSE = re.compile(
    r"(?:ld|st)(?:add|clr|eor|set|smax|smin|umax|umin)(?:a|al|l)?[bh]?"
    r"|swp(?:a|al|l)?[bh]?|casp?(?:a|al|l)?[bh]?"
)

# ---------------------------------------------------------------------------
# a64fix: where keystone 0.9.2 and GNU as 2.40 part ways, measured by assembling
# generated instruction sets with both (tests/blob/test_asm_oracle.py keeps it so):
# - keystone rejects: the hint-space aliases (bti, paciasp/autiasp/..., csdb, esb,
#   psb/tsb csync, dgh, xpaclri), sb/ssbb/pssbb, retaa/retab/eretaa/eretab, udf, the
#   PAuth data-processing and branch forms, ldapr/ldaprb/ldaprh, "msr pan|uao|dit|ssbs|tco,
#   #imm", about 270 system register names (pan, uao, ttbr1_el2, the *_el12 aliases,
#   id_aa64mmfr2_el1, ...), dc cvap/cvadp, prfm with an unscaled offset (GNU: prfum),
#   add/sub/cmp/cmn with some negative immediates (#-4096), extended-register operands
#   written with an X register (cmp x0, x1, sxtw), fcmp #0, and LSE atomics (left an error).
# - keystone encodes differently: uxtw xD, wN (keystone: ubfx; GNU: mov wD, wN).
# - keystone is silently wrong: values that do not fit are truncated (mov w0, #2**32 is
#   mov w0, #0; shift amounts, prfm operations), branch offsets out of range spill into
#   the opcode (b #0x8000000 becomes another instruction), so immediates are range-checked
#   here and every PC-relative field is filled here, never by keystone.
# - keystone returns no bytes and no error: UNPREDICTABLE register overlaps that GNU only
#   warns about (strb w16, [x16, 220]!; stxr w0, x0, [x1]; ldp x1, x1, [x0]) and dc cvap.
# - keystone accepts what GNU rejects: orn/eon with an immediate (refused here too).

_HINT_ALIASES = {
    "yield": 1, "wfe": 2, "wfi": 3, "sev": 4, "sevl": 5, "dgh": 6, "xpaclri": 7,
    "pacia1716": 8, "pacib1716": 10, "autia1716": 12, "autib1716": 14, "esb": 16,
    "csdb": 20, "paciaz": 24, "paciasp": 25, "pacibz": 26, "pacibsp": 27,
    "autiaz": 28, "autiasp": 29, "autibz": 30, "autibsp": 31,
}  # fmt: skip
_HINT_WITH_OPERAND = {("psb", "csync"): 17, ("tsb", "csync"): 18, ("bti", ""): 32, ("bti", "c"): 34, ("bti", "j"): 36, ("bti", "jc"): 38}
_FIXED_WORDS = {
    "sb": 0xD50330FF, "ssbb": 0xD503309F, "pssbb": 0xD503349F,
    "retaa": 0xD65F0BFF, "retab": 0xD65F0FFF, "eretaa": 0xD69F0BFF, "eretab": 0xD69F0FFF,
}  # fmt: skip
_PAC_TWO = {n: 0xDAC10000 | i << 10 for i, n in enumerate(("pacia", "pacib", "pacda", "pacdb", "autia", "autib", "autda", "autdb"))}
_PAC_ONE = {n: 0xDAC123E0 | i << 10 for i, n in enumerate(("paciza", "pacizb", "pacdza", "pacdzb", "autiza", "autizb", "autdza", "autdzb"))}
_PAC_ONE |= {"xpaci": 0xDAC143E0, "xpacd": 0xDAC147E0}
_PAC_BRANCH_TWO = {"braa": 0xD71F0800, "brab": 0xD71F0C00, "blraa": 0xD73F0800, "blrab": 0xD73F0C00}
_PAC_BRANCH_ONE = {"braaz": 0xD61F081F, "brabz": 0xD61F0C1F, "blraaz": 0xD63F081F, "blrabz": 0xD63F0C1F}
_LDAPR = {"ldaprb": 0, "ldaprh": 1}
# PSTATE fields for "msr <field>, #imm": (op1, op2, largest immediate).
_PSTATE = {
    "spsel": (0, 5, 1), "daifset": (3, 6, 15), "daifclr": (3, 7, 15), "uao": (0, 3, 1),
    "pan": (0, 4, 1), "dit": (3, 2, 1), "ssbs": (3, 1, 1), "tco": (3, 4, 1),
}  # fmt: skip
# "dc" operations keystone does not know: (op1, CRm, op2) of SYS with CRn=7.
_DC_EXTRA = {"cvap": (3, 12, 1), "cvadp": (3, 13, 1)}


@functools.lru_cache(maxsize=1)
def _capstone():  # type: ignore[no-untyped-def]
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

    return Cs(CS_ARCH_ARM64, CS_MODE_ARM)


@functools.lru_cache(maxsize=65536)
def capstone_decodes(word: int) -> bool:
    """True if capstone 5 decodes the 32-bit word as an instruction."""
    return any(True for _ in _capstone().disasm_lite(word.to_bytes(4, "little"), 0))


@functools.lru_cache(maxsize=1)
def system_register_names() -> tuple[dict[str, str], dict[str, str]]:
    """Names capstone gives system registers, for mrs and for msr, as s<op0>_<op1>_c<n>_c<m>_<op2>.

    Keystone lacks many register names GNU as knows (pan, uao, ttbr1_el2, the
    *_el12 aliases...) but encodes the generic form correctly.
    """
    names: tuple[dict[str, str], dict[str, str]] = ({}, {})
    md = _capstone()
    for table, base, reg_index in ((names[0], 0xD5300000, 1), (names[1], 0xD5100000, 0)):
        code = b"".join((base | i << 5).to_bytes(4, "little") for i in range(1 << 15))
        offset = 0
        while offset < len(code):
            decoded = 0
            for address, _size, _mnemonic, op_str in md.disasm_lite(code[offset:], offset):
                decoded += 1
                word = base | (address // 4) << 5
                operands = [x.strip() for x in op_str.split(",")]
                if len(operands) != 2:
                    continue
                name = operands[reg_index].lower()
                if re.fullmatch(r"s\d_\d_c\d+_c\d+_\d", name):
                    continue
                op0 = 2 + (word >> 19 & 1)
                generic = f"s{op0}_{word >> 16 & 7}_c{word >> 12 & 15}_c{word >> 8 & 15}_{word >> 5 & 7}"
                table.setdefault(name, generic)
            offset += 4 * max(decoded, 1)
    return names


def _gpr_number(name: str) -> int | None:
    m = _GPR.fullmatch(name)
    if not m:
        return None
    if m.group(2):
        return int(m.group(2))
    return 31


def _hex(v: int) -> str:
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


# Rendered operands: ("reg", name) ("kw", text) ("imm", int) ("hex", int) ("float", text)
# ("shift", name, amount|None) ("mem", base, index|None, extend|None, writeback)
ROp = tuple


def render_operand(op: ROp) -> str:
    kind = op[0]
    if kind in ("reg", "kw"):
        return op[1]
    if kind == "imm":
        return f"#{op[1]}"
    if kind == "hex":
        return f"#{op[1]:#x}"
    if kind == "float":
        return f"#{op[1]}"
    if kind == "shift":
        return op[1] if op[2] is None else f"{op[1]} #{op[2]}"
    inner = [op[1]] + [render_operand(x) for x in op[2:4] if x is not None]
    return "[" + ", ".join(inner) + "]" + ("!" if op[4] else "")


def render(mnemonic: str, ops: Sequence[ROp]) -> str:
    return mnemonic + (" " + ", ".join(render_operand(o) for o in ops) if ops else "")


def _reg_field(op: ROp, what: str) -> int:
    number = _gpr_number(op[1]) if op[0] == "reg" else None
    if number is None:
        raise _Fail(f"{what} must be a general register")
    return number


def a64fix(mnemonic: str, ops: list[ROp]) -> tuple[str, list[ROp]] | int:
    """Make an instruction keystone-safe and GNU-exact: a new (mnemonic, operands),
    or the encoded word when keystone cannot encode the form at all."""
    m = mnemonic
    if m in _FIXED_WORDS and not ops:
        return _FIXED_WORDS[m]
    if m in _HINT_ALIASES and not ops:
        return 0xD503201F | _HINT_ALIASES[m] << 5
    if m in ("psb", "tsb", "bti"):
        key = (m, ops[0][1] if ops and ops[0][0] == "kw" else "")
        if len(ops) <= 1 and key in _HINT_WITH_OPERAND:
            return 0xD503201F | _HINT_WITH_OPERAND[key] << 5
        raise _Fail(f"bad operand for {m}")
    if m == "udf":
        if len(ops) == 1 and ops[0][0] == "imm" and 0 <= ops[0][1] <= 0xFFFF:
            return ops[0][1]
        raise _Fail("udf needs an immediate in [0, 0xffff]")
    if m in _PAC_TWO and len(ops) == 2:
        return _PAC_TWO[m] | _reg_field(ops[1], "source") << 5 | _reg_field(ops[0], "destination")
    if m in _PAC_ONE and len(ops) == 1:
        return _PAC_ONE[m] | _reg_field(ops[0], "destination")
    if m == "pacga" and len(ops) == 3:
        return 0x9AC03000 | _reg_field(ops[2], "modifier") << 16 | _reg_field(ops[1], "source") << 5 | _reg_field(ops[0], "destination")
    if m in _PAC_BRANCH_TWO and len(ops) == 2:
        return _PAC_BRANCH_TWO[m] | _reg_field(ops[0], "target") << 5 | _reg_field(ops[1], "modifier")
    if m in _PAC_BRANCH_ONE and len(ops) == 1:
        return _PAC_BRANCH_ONE[m] | _reg_field(ops[0], "target") << 5
    if (m in _LDAPR or m == "ldapr") and len(ops) == 2 and ops[1][0] == "mem" and ops[1][3] is None:
        index = ops[1][2]
        if index is not None and index != ("imm", 0):
            raise _Fail(f"{m} takes no offset")
        if m == "ldapr":
            size = 3 if ops[0][1].startswith("x") else 2
        else:
            size = _LDAPR[m]
        return 0x38BFC000 | size << 30 | _reg_field(("reg", ops[1][1]), "base") << 5 | _reg_field(ops[0], "target")
    if m == "msr" and len(ops) == 2 and ops[0][0] == "kw" and ops[1][0] == "imm":
        field_ = _PSTATE.get(ops[0][1])
        if field_ is None:
            raise _Fail(f"'{ops[0][1]}' is not a PSTATE field for msr #imm")
        op1, op2, top = field_
        if not 0 <= ops[1][1] <= top:
            raise _Fail(f"immediate {ops[1][1]} out of range [0, {top}] for msr {ops[0][1]}")
        return 0xD500401F | op1 << 16 | ops[1][1] << 8 | op2 << 5
    if m == "dc" and len(ops) == 2 and ops[0][0] == "kw" and ops[0][1] in _DC_EXTRA:
        op1, crm, op2 = _DC_EXTRA[ops[0][1]]
        return 0xD5087000 | op1 << 16 | crm << 8 | op2 << 5 | _reg_field(ops[1], "address")
    if m in ("mrs", "msr") and len(ops) == 2:
        position = 1 if m == "mrs" else 0
        if ops[position][0] == "kw":
            table = system_register_names()[0 if m == "mrs" else 1]
            name = ops[position][1]
            if name in table:
                ops = list(ops)
                ops[position] = ("kw", table[name])
        return m, ops
    if _LSE.fullmatch(m):
        raise _Fail(f"LSE atomic '{m}' is not supported (keystone 0.9.2 cannot encode it)")
    if m in _ADDSUB_FLIP and ops and ops[-1][0] == "imm" and ops[-1][1] < 0:
        return _ADDSUB_FLIP[m], [*ops[:-1], ("imm", -ops[-1][1])]
    if m in _ADDSUB_FLIP and len(ops) >= 3 and ops[-2][0] == "imm" and ops[-2][1] < 0 and ops[-1][0] == "shift":
        return _ADDSUB_FLIP[m], [*ops[:-2], ("imm", -ops[-2][1]), ops[-1]]
    if m in _ADDSUB_FLIP and len(ops) >= 3 and ops[-1][0] == "shift" and ops[-1][1] in _EXTEND_32:
        source = ops[-2]
        if source[0] == "reg" and source[1].startswith("x") and source[1] != "xzr":
            return m, [*ops[:-2], ("reg", "w" + source[1][1:]), ops[-1]]
    if m == "uxtw" and len(ops) == 2 and ops[0][0] == "reg" and ops[0][1][0] in "xw":
        dest = "wzr" if ops[0][1] in ("xzr", "wzr") else "w" + ops[0][1][1:]
        return "mov", [("reg", dest), ops[1]]
    if m == "prfm" and len(ops) == 2 and ops[1][0] == "mem" and ops[1][2] is not None and ops[1][2][0] == "imm":
        offset = ops[1][2][1]
        if (offset % 8 or offset < 0) and -256 <= offset < 256 and not ops[1][4]:
            return "prfum", ops
    if m in ("fcmp", "fcmpe") and len(ops) == 2 and ops[1] == ("imm", 0):
        return m, [ops[0], ("float", "0.0")]
    return m, ops


# ---------------------------------------------------------------------------
# Field patches for references resolved at assembly time


def patch_pc_relative(word: int, kind: RelocType, offset: int) -> int:
    """Store a PC-relative byte offset in the field ``kind`` relocates; _Fail if it cannot."""

    def check(bits: int, scale: int, what: str) -> int:
        if offset % scale:
            raise _Fail(f"{what} offset {_hex(offset)} is not a multiple of {scale}")
        lo, hi = -(1 << (bits - 1)) * scale, (1 << (bits - 1)) * scale
        if not lo <= offset < hi:
            raise _Fail(f"{what} offset {_hex(offset)} out of range [{_hex(lo)}, {_hex(hi)})")
        return (offset // scale) & ((1 << bits) - 1)

    if kind in (RelocType.JUMP26, RelocType.CALL26):
        return (word & ~0x03FFFFFF) | check(26, 4, "branch")
    if kind in (RelocType.CONDBR19, RelocType.LD_PREL_LO19):
        return (word & ~(0x7FFFF << 5)) | check(19, 4, "branch" if kind == RelocType.CONDBR19 else "literal") << 5
    if kind == RelocType.TSTBR14:
        return (word & ~(0x3FFF << 5)) | check(14, 4, "test-and-branch") << 5
    if kind == RelocType.ADR_PREL_LO21:
        imm = check(21, 1, "adr")
        return (word & ~(0x7FFFF << 5 | 3 << 29)) | (imm & 3) << 29 | (imm >> 2) << 5
    if kind in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
        imm = check(21, 4096, "adrp")
        return (word & ~(0x7FFFF << 5 | 3 << 29)) | (imm & 3) << 29 | (imm >> 2) << 5
    raise _Fail(f"cannot resolve {kind.name} at assembly time")


# ---------------------------------------------------------------------------
# The assembler


@dataclass
class _Plan:
    rec: InsnRec
    text: str | None = None
    word: int | None = None
    ops: list[ROp] = field(default_factory=list)
    mnemonic: str = ""
    pcrel: tuple[RelocType, int] | None = None
    reloc: Relocation | None = None


class Assembler:
    """One assembly: feed it a file or text with ``run``, then ``finish`` for the ObjectFile."""

    def __init__(
        self,
        filename: str,
        include_dirs: Sequence[Path] = (),
        worker: KeystoneWorker | None = None,
    ) -> None:
        self.filename = filename
        self.include_dirs = [Path(p) for p in include_dirs]
        self.worker = worker
        self.frames: list[Frame] = []
        self.cond: list[Cond] = []
        self.macros: dict[str, Macro] = {}
        self.macro_count = 0
        self.statements = 0
        self.seq = 0
        self.sections: dict[str, SectionState] = {}
        self.section_stack: list[tuple[Chunk, Chunk | None]] = []
        self.chunk: Chunk = self._chunk(self._section(".text", "ax", ""), 0)
        self.previous: Chunk | None = None
        self.labels: dict[str, LabelDef] = {}
        self.equates: dict[str, Equate] = {}
        self.equate_values: dict[str, Value] = {}  # memo for finish(), when every equate is final
        self.attrs: dict[str, SymAttrs] = {}
        self.local_counts: dict[int, int] = {}
        self.reg_aliases: dict[str, str] = {}  # "name .req x2"
        self.internal: set[str] = set()
        self.records: list[InsnRec] = []
        self.datafix: list[DataFix] = []
        self.pool_count = 0
        self.absolute_symbol_used = False
        self.stmt: Stmt | None = None
        self.ended = False

    # -- errors ----------------------------------------------------------------

    def error_at(self, message: str, stmt: Stmt | None) -> AsmError:
        # Messages quote the source: its line breaks and control codes are shown escaped,
        # so the error stays one line and a terminal printing it does not act on them.
        if stmt is not None:
            message += stmt.note
        message = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
        if stmt is None:
            return AsmError(message, SourceLoc(self.filename, 0))
        return AsmError(message, stmt.where)

    # -- input -------------------------------------------------------------------

    def push_file(self, text: str, filename: str) -> None:
        if len(self.frames) and sum(f.kind == "file" for f in self.frames) >= MAX_INCLUDE_DEPTH:
            raise _Fail(f".include nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)")
        stmts: list[Stmt] = []
        for line, loc in read_lines(text, filename):
            if len(line) > MAX_LINE:
                raise AsmError(f"line longer than {MAX_LINE} characters", loc)
            for piece in split_statements(line):
                stmts.append(Stmt(piece, loc, loc))
        self.frames.append(Frame(stmts, "file", len(self.cond), filename))

    def run(self) -> None:
        while self.frames and not self.ended:
            frame = self.frames[-1]
            if frame.pos >= len(frame.stmts):
                self.pop_frame()
                continue
            stmt = frame.stmts[frame.pos]
            frame.pos += 1
            self.statements += 1
            if self.statements > MAX_STATEMENTS:
                raise self.error_at(f"more than {MAX_STATEMENTS} statements (runaway .rept or macro?)", stmt)
            self.stmt = stmt
            try:
                self.statement(stmt)
            except _Fail as fail:
                raise self.error_at(str(fail), stmt) from None
            except ExprError as fail:
                raise self.error_at(str(fail), stmt) from None
        if not self.ended:
            self.stmt = None

    def pop_frame(self) -> None:
        frame = self.frames.pop()
        if len(self.cond) > frame.cond_depth:
            if frame.kind == "file":
                raise AsmError(".if without .endif at the end of the file", self.cond[-1].loc)
            raise AsmError(".if without .endif at the end of a macro or loop body", self.cond[-1].loc)
        if len(self.cond) < frame.cond_depth:
            raise self.error_at(".endif closes a conditional opened outside this macro or loop", self.stmt)

    def collect(self, opener: Stmt, openers: set[str], closer: str) -> list[Stmt]:
        """The statements up to the matching closer, taken from the current frame."""
        frame = self.frames[-1]
        body: list[Stmt] = []
        depth = 1
        while frame.pos < len(frame.stmts):
            stmt = frame.stmts[frame.pos]
            frame.pos += 1
            word = _directive_word(stmt.text)
            if word in openers:
                depth += 1
            elif word == closer:
                depth -= 1
                if depth == 0:
                    return body
            body.append(stmt)
        what = _directive_word(opener.text) or "block"
        raise self.error_at(f"{what} without {closer}", opener)

    # -- statements --------------------------------------------------------------

    def statement(self, stmt: Stmt) -> None:
        text = stmt.text
        if not text.strip():
            return
        if self.cond and not self.cond[-1].active:
            self.skipped(text)
            return
        while True:
            m = _LABEL.match(text)
            if not m:
                break
            self.define_label(m.group(1), stmt)
            text = text[m.end() :]
        if not text.strip():
            return
        assign = _ASSIGN.match(text)
        if assign:
            self.set_symbol(assign.group(1), assign.group(2), stmt)
            return
        alias = _REQ.fullmatch(text)
        if alias:
            self.define_register_alias(alias.group(1), alias.group(2))
            return
        word = _WORD.match(text)
        if not word:
            raise _Fail(f"junk at the start of the statement: {text.strip()[:40]!r}")
        name, rest = word.group(1), word.group(2)
        low = name.lower()
        if low in self.macros:
            self.invoke_macro(self.macros[low], rest, stmt)
            return
        if name.startswith("."):
            handler = _DIRECTIVES.get(low)
            if handler is None:
                raise _Fail(f"unknown directive {name}")
            handler(self, low, rest.strip(), stmt)
            return
        self.instruction(low, rest, stmt)

    def skipped(self, text: str) -> None:
        while True:
            m = _LABEL.match(text)
            if not m:
                break
            text = text[m.end() :]
        word = _directive_word(text)
        if word is None:
            return
        if word.startswith(".if"):
            self.cond.append(Cond(False, True, False, self.stmt.loc if self.stmt else SourceLoc(self.filename, 0)))
        elif word in (".else", ".elseif", ".endif"):
            _DIRECTIVES[word](self, word, _WORD.match(text).group(2).strip(), self.stmt)  # type: ignore[union-attr,arg-type]

    # -- sections ----------------------------------------------------------------

    def _section(self, name: str, flags: str, kind: str) -> SectionState:
        state = self.sections.get(name)
        if state is not None:
            return state
        nobits = kind == "nobits" or name == ".bss" or name.startswith(".bss.") or name == ".tbss" or name.startswith(".tbss.")
        if not flags and not kind:
            flags = _default_section_flags(name)
        unknown = set(flags) - set("awxMSGTRoed?")
        if unknown:
            raise _Fail(f"unknown section flag(s) {''.join(sorted(unknown))!r}")
        state = SectionState(
            name,
            SectionFlags(alloc="a" in flags, write="w" in flags, execute="x" in flags, nobits=nobits),
            len(self.sections),
        )
        self.sections[name] = state
        return state

    def _chunk(self, section: SectionState, sub: int) -> Chunk:
        chunk = section.chunks.get(sub)
        if chunk is None:
            chunk = section.chunks[sub] = Chunk(section, sub)
        return chunk

    def switch(self, chunk: Chunk) -> None:
        # Like GNU as, even a switch to the current section makes it the .previous one.
        self.previous, self.chunk = self.chunk, chunk

    def parse_section_args(self, args: list[str], allow_subsection: bool) -> tuple[str, int, str, str]:
        if not args or not args[0]:
            raise _Fail("missing section name")
        name = unquote(args[0])
        if not name or not re.fullmatch(r"[A-Za-z0-9_.$\-]+", name):
            raise _Fail(f"bad section name {args[0]!r}")
        rest = args[1:]
        sub = 0
        if allow_subsection and rest and rest[0] and rest[0][0] not in "\"@%#":
            sub = self.absolute(rest[0], "subsection")
            rest = rest[1:]
        flags = ""
        kind = ""
        if rest:
            if not (rest[0].startswith('"') and rest[0].endswith('"') and len(rest[0]) >= 2):
                raise _Fail(f"section flags must be a quoted string, not {rest[0]!r}")
            flags = rest[0][1:-1]
        if len(rest) > 1:
            kind = rest[1].lstrip("@%").lower()
            if kind not in ("progbits", "nobits", "note", "init_array", "fini_array", "preinit_array"):
                raise _Fail(f"unsupported section type {rest[1]!r}")
        return name, sub, flags, kind

    def enter_section(self, name: str, sub: int, flags: str, kind: str, stmt: Stmt) -> Chunk:
        if not 0 <= sub < 8192:
            raise _Fail(f"subsection {sub} out of range [0, 8192)")
        section = self._section(name, flags, kind)
        return self._chunk(section, sub)

    # -- symbols -------------------------------------------------------------------

    def check_name(self, name: str) -> str:
        if not _SYMBOL.fullmatch(name):
            raise _Fail(f"bad symbol name {name!r}")
        return name

    def define_label(self, name: str, stmt: Stmt) -> None:
        if name.isdigit():
            number = int(name)
            count = self.local_counts.get(number, 0) + 1
            self.local_counts[number] = count
            name = _local_name(number, count)
        if name in self.labels or name in self.equates:
            raise _Fail(f"symbol '{name}' is already defined")
        self.labels[name] = LabelDef(self.chunk, self.chunk.offset, stmt.where)

    def local_ref(self, number: int, forward: bool) -> str:
        count = self.local_counts.get(number, 0)
        if forward:
            return _local_name(number, count + 1)
        if count == 0:
            raise ExprError(f"backward reference {number}b to a local label not yet defined")
        return _local_name(number, count)

    def dot(self) -> Value:
        return Value.base(self.chunk.key, self.chunk.offset)

    def prepare(self, text: str) -> tuple[Node, int]:
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

    def pre(self, text: str) -> Node:
        return self.prepare(text)[0]

    def value_now(self, node: Node) -> Value:
        """Evaluate with what is defined so far (chunk-relative labels)."""

        def resolve(name: str) -> Value | None:
            label = self.labels.get(name)
            if label is not None:
                return Value.base(label.chunk.key, label.offset, name, label.offset)
            if _is_local_name(name):
                number = name[2 : name.index("\x02")]
                raise ExprError(f"local label {number}f is not defined yet (a forward reference cannot be used here)")
            raise ExprError(f"symbol '{name}' is not defined at this point (its value is needed here)")

        return Evaluator(resolve)(node)

    def absolute(self, text: str, what: str) -> int:
        value = self.value_now(self.pre(text))
        if not value.is_absolute:
            raise _Fail(f"{what} must be an absolute expression")
        return value.const

    def set_symbol(self, name: str, text: str, stmt: Stmt, redefine: bool = True) -> None:
        self.check_name(name)
        if name in self.labels:
            raise _Fail(f"symbol '{name}' is already defined as a label")
        if not redefine and name in self.equates:
            raise _Fail(f"symbol '{name}' is already defined")
        if not text.strip():
            raise _Fail(f"missing value for '{name}'")
        node, size = self.prepare(text)
        try:
            value = self.value_now(node)
            node, size = (Num(value.const) if value.is_absolute else Const(value)), 1
        except ExprError:
            pass  # forward references: evaluated when the object is finished
        self.equates[name] = Equate(node, size, stmt.where)

    def define_register_alias(self, name: str, register: str) -> None:
        target = self.register(register.lower())
        if target is None:
            raise _Fail(f"'{register}' is not a register")
        if _REG.fullmatch(name.lower()):
            raise _Fail(f"'{name}' is a register name already")
        self.reg_aliases[name.lower()] = target

    def register(self, low: str) -> str | None:
        """The canonical name of a register operand (after aliases), or None."""
        if low in self.reg_aliases:
            return self.reg_aliases[low]
        if _REG.fullmatch(low):
            return _REG_ALIAS.get(low, low)
        return None

    def attrs_of(self, name: str) -> SymAttrs:
        self.check_name(name)
        attrs = self.attrs.get(name)
        if attrs is None:
            attrs = self.attrs[name] = SymAttrs()
        return attrs

    # -- emitting bytes -----------------------------------------------------------

    def emit(self, data: bytes | bytearray) -> None:
        chunk = self.chunk
        if chunk.section.flags.nobits:
            if any(data):
                raise _Fail(f"non-zero data in nobits section {chunk.section.name}")
            chunk.nobits_size += len(data)
            if chunk.nobits_size > MAX_NOBITS_BYTES:
                raise _Fail(f"section {chunk.section.name} larger than {MAX_NOBITS_BYTES:#x} bytes")
            return
        if len(chunk.data) + len(data) > MAX_SECTION_BYTES:
            raise _Fail(f"section {chunk.section.name} larger than {MAX_SECTION_BYTES:#x} bytes")
        chunk.data += data

    def emit_fill(self, count: int, pattern: bytes) -> None:
        if count < 0:
            raise _Fail(f"negative size {count}")
        chunk = self.chunk
        if chunk.section.flags.nobits:
            if count and any(pattern):
                raise _Fail(f"non-zero data in nobits section {chunk.section.name}")
            chunk.nobits_size += count
            if chunk.nobits_size > MAX_NOBITS_BYTES:
                raise _Fail(f"section {chunk.section.name} larger than {MAX_NOBITS_BYTES:#x} bytes")
            return
        if len(chunk.data) + count > MAX_SECTION_BYTES:
            raise _Fail(f"section {chunk.section.name} larger than {MAX_SECTION_BYTES:#x} bytes")
        if len(pattern) == 1:
            chunk.data += pattern * count
        else:
            chunk.data += (pattern * (count // len(pattern) + 1))[:count]

    def align_to(self, align: int, fill: bytes | None, max_skip: int | None, fill_size: int = 1) -> None:
        chunk = self.chunk
        chunk.align = max(chunk.align, align)
        pad = -chunk.offset % align
        if pad == 0 or (max_skip is not None and pad > max_skip):
            return
        if fill is not None:
            if pad % fill_size:
                raise _Fail(f"alignment padding ({pad} bytes) not a multiple of {fill_size}")
            self.emit_fill(pad, fill)
        elif chunk.section.code and not chunk.section.flags.nobits:
            self.emit_fill(pad % 4, b"\0")
            self.emit_fill(pad - pad % 4, NOP.to_bytes(4, "little"))
        else:
            self.emit_fill(pad, b"\0")

    def code_align(self) -> None:
        chunk = self.chunk
        chunk.align = max(chunk.align, 4)
        if chunk.section.code and chunk.offset % 4:
            self.emit_fill(-chunk.offset % 4, b"\0")

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def data_values(self, size: int, args: str, stmt: Stmt, inst: bool = False) -> None:
        stmt = _kept(stmt)
        items = split_top(args)
        if items == [""]:
            return
        for item in items:
            if not item:
                raise _Fail("missing value")
            node = self.pre(item)
            if inst:
                self.code_align()
            fix = DataFix(self.chunk, self.chunk.offset, size, node, stmt, self.next_seq(), inst)
            if self.chunk.section.flags.nobits:
                value = self.value_now(node)
                if not value.is_absolute or value.const:
                    raise _Fail(f"non-zero data in nobits section {self.chunk.section.name}")
                self.emit(bytes(size))
                continue
            self.emit(bytes(size))
            self.datafix.append(fix)

    # -- macros ------------------------------------------------------------------

    def invoke_macro(self, macro: Macro, rest: str, stmt: Stmt) -> None:
        depth = sum(1 for f in self.frames if f.kind == "macro")
        if depth >= MAX_MACRO_DEPTH:
            raise _Fail(f"macros nested more than {MAX_MACRO_DEPTH} deep (recursive macro '{macro.name}'?)")
        values: dict[str, str] = {}
        args = split_macro_args(rest)
        positional = 0
        for index, arg in enumerate(args):
            keyword = re.match(r"([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)(.*)", arg, re.S)
            if keyword and any(p.name == keyword.group(1) for p in macro.params):
                values[keyword.group(1)] = keyword.group(2).strip()
                continue
            if positional >= len(macro.params):
                raise _Fail(f"too many arguments for macro '{macro.name}'")
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
                    raise _Fail(f"missing value for required parameter '{param.name}' of macro '{macro.name}'")
                values[param.name] = param.default
        self.macro_count += 1
        counter = str(self.macro_count - 1)
        expanded: list[Stmt] = []
        for body in macro.body:
            text = substitute_params(body.text, values, counter)
            if len(text) > MAX_LINE:
                raise _Fail(f"macro '{macro.name}' expands to a line longer than {MAX_LINE} characters")
            for piece in split_statements(text):
                expanded.append(Stmt(piece, body.loc, stmt.where, f" (in macro '{macro.name}' at {body.loc})"))
        self.frames.append(Frame(expanded, "macro", len(self.cond), macro.name))

    def push_loop(self, body: list[Stmt], kind: str = "loop") -> None:
        if len(self.frames) > MAX_MACRO_DEPTH * 4:
            raise _Fail("loops and macros nested too deeply")
        self.frames.append(Frame(body, kind, len(self.cond)))

    # -- instructions -------------------------------------------------------------

    def parse_operand(self, text: str, mnemonic: str, index: int, count: int) -> Operand:
        t = text.strip()
        if not t:
            raise _Fail("empty operand")
        low = t.lower()
        first = t[0]
        if first == "[":
            return self.parse_memory(t)
        if first == "{":
            if not _REGLIST.fullmatch(low):
                raise _Fail(f"bad register list {t!r}")
            return Operand("kw", low)
        if first == "=":
            return Operand("lit", node=self.pre(t[1:]))
        if first == "#":
            body = t[1:].strip()
            if body.startswith(":"):
                return self.parse_reloc(body)
            if _FLOAT.fullmatch(body.lower()):
                return Operand("float", body.lower())
            return Operand("imm", node=self.pre(body))
        if first == ":":
            return self.parse_reloc(t)
        register = self.register(low)
        if register is not None:
            return Operand("reg", register)
        shift = _SHIFT.fullmatch(low)
        if shift:
            amount = shift.group(2)
            node = self.pre(amount.strip().lstrip("#")) if amount and amount.strip() else None
            return Operand("shift", shift.group(1), node)
        if _KEYWORD.fullmatch(low) and _keyword_position(mnemonic, index, count):
            return Operand("kw", low)
        if _FLOAT.fullmatch(low) and mnemonic.startswith("f"):
            return Operand("float", low)
        return Operand("imm", node=self.pre(t))

    def parse_reloc(self, text: str) -> Operand:
        m = re.fullmatch(r":([A-Za-z0-9_]+):(.*)", text, re.S)
        if not m:
            raise _Fail(f"bad relocation operator in {text!r}")
        operator = m.group(1).lower()
        if operator not in _RELOC_OPERATORS:
            raise _Fail(f"relocation operator :{operator}: is not supported")
        return Operand("reloc", operator, self.pre(m.group(2)))

    def parse_memory(self, text: str) -> Operand:
        m = re.fullmatch(r"\[(.*)\]\s*(!?)", text, re.S)
        if not m:
            raise _Fail(f"bad memory operand {text!r}")
        parts = split_top(m.group(1))
        base = self.register(parts[0].lower())
        if base is None:
            raise _Fail(f"bad base register {parts[0]!r}")
        items = [Operand("reg", base)]
        if len(parts) > 3:
            raise _Fail(f"too many parts in memory operand {text!r}")
        for i, part in enumerate(parts[1:], start=1):
            low = part.lower()
            register = self.register(low)
            if register is not None:
                items.append(Operand("reg", register))
            elif i == 2 and _SHIFT.fullmatch(low):
                items.append(self.parse_operand(part, "", 0, 0))
            elif (part.startswith("#") and part[1:].strip().startswith(":")) or part.startswith(":"):
                items.append(self.parse_reloc(part.lstrip("#").strip()))
            elif i == 1 and part:
                body = part[1:] if part.startswith("#") else part
                items.append(Operand("imm", node=self.pre(body)))
            else:
                raise _Fail(f"bad memory operand part {part!r}")
        return Operand("mem", parts=tuple(items), writeback=bool(m.group(2)))

    def instruction(self, mnemonic: str, rest: str, stmt: Stmt) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*(?:\.[a-z0-9]+)?", mnemonic):
            raise _Fail(f"unknown instruction '{mnemonic}' (and no macro of that name)")
        if self.chunk.section.flags.nobits:
            raise _Fail(f"instruction in nobits section {self.chunk.section.name}")
        self.code_align()
        texts = split_top(rest) if rest.strip() else []
        operands = [self.parse_operand(t, mnemonic, i, len(texts)) for i, t in enumerate(texts)]
        for i, op in enumerate(operands):
            if op.kind == "lit":
                if i != 1 or mnemonic != "ldr" or operands[0].kind != "reg":
                    raise _Fail("'=' literals are only allowed as 'ldr REG, =value'")
                operands[i] = Operand("imm", node=Sym(self.pool_literal(operands[0].text, op.node, stmt)))  # type: ignore[arg-type]
        self.records.append(InsnRec(self.chunk, self.chunk.offset, mnemonic, operands, _kept(stmt), self.next_seq()))
        self.emit(bytes(4))

    def pool_literal(self, register: str, node: Node, stmt: Stmt) -> str:
        kind = register[0]
        size = {"x": 8, "w": 4, "s": 4, "d": 8, "q": 16}.get(kind)
        if size is None or register in ("sp", "wsp"):
            raise _Fail(f"no literal pool load into {register}")
        chunk = self.chunk
        key = (size, _pool_key(node))
        entry = chunk.pool_index.get(key)
        if entry is None:
            self.pool_count += 1
            label = f"\x00pool{self.pool_count}"
            self.internal.add(label)
            entry = PoolEntry(size, node, label, _kept(stmt), self.next_seq())
            chunk.pool.append(entry)
            chunk.pool_index[key] = entry
        return entry.label

    def dump_pool(self, chunk: Chunk) -> None:
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

    def finish(self) -> ObjectFile:
        for section in list(self.sections.values()):
            for chunk in list(section.chunks.values()):
                first = chunk.pool[0].stmt if chunk.pool else None
                try:
                    self.dump_pool(chunk)
                except _Fail as fail:
                    raise self.error_at(str(fail), first) from None
        self.layout()
        errors: list[tuple[int, AsmError]] = []
        relocations: dict[str, list[tuple[int, Relocation]]] = {name: [] for name in self.sections}
        for fix in self.datafix:
            try:
                reloc = self.finish_data(fix)
            except (_Fail, ExprError) as fail:
                errors.append((fix.seq, self.error_at(str(fail), fix.stmt)))
                continue
            if reloc is not None:
                relocations[fix.chunk.section.name].append((fix.seq, reloc))
        plans: list[_Plan] = []
        for rec in self.records:
            try:
                plans.append(self.plan(rec))
            except (_Fail, ExprError) as fail:
                errors.append((rec.seq, self.error_at(str(fail), rec.stmt)))
        self.encode(plans, errors)
        for plan in plans:
            if plan.reloc is not None:
                relocations[plan.rec.chunk.section.name].append((plan.rec.seq, plan.reloc))
        symbols = self.symbol_table(errors)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return self.build_object(relocations, symbols)

    def layout(self) -> None:
        """Place each section's subsections one after the other, each at its alignment."""
        for section in self.sections.values():
            position = 0
            for sub in sorted(section.chunks):
                chunk = section.chunks[sub]
                position += -position % chunk.align
                chunk.start = position
                position += chunk.offset

    def section_value(self, value: Value) -> Value:
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

    def _chunk_by_key(self, key: str) -> Chunk | None:
        if key.count("\x00") != 2:
            return None
        _, name, sub = key.split("\x00")
        return self.sections[name].chunks[int(sub)]

    def value_final(self, node: Node) -> Value:
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
            if _is_local_name(name):
                number = name[2 : name.index("\x02")]
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

    def symbol_name_for(self, value: Value, key: str) -> tuple[str, int]:
        """A symbol for base ``key`` of value: (name, addend)."""
        hint = value.hint(key)
        if key.startswith("\x00"):
            if hint is not None:
                return hint[0], ex.wrap64(value.const - hint[1])
            return key[1:], value.const
        return key, value.const

    def is_global(self, name: str) -> bool:
        attrs = self.attrs.get(name)
        return attrs is not None and attrs.binding in (Binding.GLOBAL, Binding.WEAK)

    def finish_data(self, fix: DataFix) -> Relocation | None:
        value = self.value_final(fix.node)
        chunk = fix.chunk
        position = chunk.start + fix.offset
        where = fix.offset
        if value.is_absolute:
            self.store(chunk, where, fix.size, value.const, fix.inst)
            return None
        if fix.inst:
            raise _Fail(".inst needs an absolute value")
        terms = value.term_map()
        own = chunk.section.key
        if len(terms) == 1:
            (key, coef), = terms.items()
            if coef == 1:
                kind = {8: RelocType.ABS64, 4: RelocType.ABS32, 2: RelocType.ABS16}.get(fix.size)
                if kind is None:
                    raise _Fail(f"no {fix.size * 8}-bit relocation for a symbolic value")
                name, addend = self.symbol_name_for(value, key)
                return Relocation(position, kind, name, addend, fix.stmt.where)
        if len(terms) == 2 and terms.get(own) == -1:
            (key, coef), = ((k, c) for k, c in terms.items() if k != own)
            if coef == 1:
                kind = {8: RelocType.PREL64, 4: RelocType.PREL32, 2: RelocType.PREL16}.get(fix.size)
                if kind is None:
                    raise _Fail(f"no {fix.size * 8}-bit PC-relative relocation")
                name, addend = self.symbol_name_for(value, key)
                return Relocation(position, kind, name, ex.wrap64(addend + position), fix.stmt.where)
        if any(coef < 0 for coef in terms.values()):
            raise _Fail("cannot relocate a difference of symbols in different sections")
        raise _Fail("expression too complex for a relocation")

    def store(self, chunk: Chunk, offset: int, size: int, value: int, inst: bool = False) -> None:
        bits = size * 8
        if size < 8 and not -(1 << (bits - 1)) <= value < (1 << bits):
            raise _Fail(f"value {_hex(value)} does not fit in {size} byte(s)")
        if size > 8 and value < 0:
            value &= (1 << bits) - 1
        chunk.data[offset : offset + size] = (value & ((1 << bits) - 1)).to_bytes(size, "little")

    # -- instruction encoding -----------------------------------------------------

    def absolute_final(self, node: Node | None, what: str) -> int:
        if node is None:
            raise _Fail(f"missing {what}")
        value = self.value_final(node)
        if not value.is_absolute:
            raise _Fail(f"{what} must be an absolute expression (use :lo12:/:abs_gN: for addresses)")
        return value.const

    def plan(self, rec: InsnRec) -> _Plan:
        m = rec.mnemonic
        ops = rec.operands
        plan = _Plan(rec)
        position = rec.chunk.start + rec.offset
        label_index = None
        label_kind = None
        if m in _COND_BRANCHES:
            label_index, label_kind = 0, RelocType.CONDBR19
        elif m in _LABEL_OPERAND:
            label_index, label_kind = _LABEL_OPERAND[m]
        if label_index is not None and (label_index >= len(ops) or ops[label_index].kind not in ("imm", "reloc")):
            label_index = None
        if label_index is not None and ops[label_index].kind == "reloc":
            operator = ops[label_index].text
            if m == "adrp" and operator in ("pg_hi21", "pg_hi21_nc"):
                label_kind = RelocType.ADR_PREL_PG_HI21 if operator == "pg_hi21" else RelocType.ADR_PREL_PG_HI21_NC
            else:
                raise _Fail(f":{operator}: cannot be used with {m}")
        rendered: list[ROp] = []
        wide = bool(ops) and ops[0].kind == "reg" and ops[0].text[:1] == "w"
        for index, op in enumerate(ops):
            if index == label_index:
                assert label_kind is not None
                rendered.append(("imm", 0))
                self.plan_target(plan, op, label_kind, position)
            elif op.kind == "reloc":
                rendered.extend(self.plan_reloc_operand(plan, m, op, position, rendered))
            elif op.kind == "imm":
                value = self.absolute_final(op.node, "immediate")
                rendered.append(self.immediate(m, value, wide))
            elif op.kind == "shift":
                amount = None
                if op.node is not None:
                    amount = self.absolute_final(op.node, "shift amount")
                    if not 0 <= amount < 64:
                        raise _Fail(f"shift amount {amount} out of range [0, 63]")
                rendered.append(("shift", op.text, amount))
            elif op.kind == "mem":
                rendered.append(self.plan_memory(plan, m, op, rendered, position))
            elif op.kind in ("reg", "kw", "float"):
                rendered.append((op.kind, op.text))
            else:
                raise _Fail(f"unexpected operand kind {op.kind}")
        fixed = a64fix(plan.mnemonic or m, rendered)
        if isinstance(fixed, int):
            plan.word = fixed
        else:
            plan.mnemonic, plan.ops = fixed
            plan.text = render(plan.mnemonic, plan.ops)
        return plan

    def immediate(self, mnemonic: str, value: int, wide: bool) -> ROp:
        # GNU as takes a 64-bit value for a 32-bit operation when its upper half is all zeros
        # or all ones; keystone silently truncates anything, so the check is ours.
        if wide and not -(1 << 32) <= value < (1 << 32):
            raise _Fail(f"immediate {_hex(value)} out of range for a 32-bit operation")
        if wide and value < -(1 << 31) and mnemonic in ("mov", "movz", "movn", "movk"):
            value &= 0xFFFFFFFF
        if mnemonic in ("orn", "eon"):
            raise _Fail(f"{mnemonic} has no immediate form (GNU as rejects it; keystone would make it an orr/eor)")
        if mnemonic not in _WIDE_IMMEDIATE and not -(1 << 32) <= value < (1 << 32) and not mnemonic.startswith(("ld", "st")):
            raise _Fail(f"immediate {_hex(value)} out of range")
        if mnemonic in _LOGICAL:
            return ("hex", value & (0xFFFFFFFF if wide else 0xFFFFFFFFFFFFFFFF))
        if mnemonic == "prfm" and not 0 <= value < 32:
            raise _Fail(f"prefetch operation {value} out of range [0, 31]")
        return ("imm", value)

    def plan_target(self, plan: _Plan, op: Operand, kind: RelocType, position: int) -> None:
        assert op.node is not None
        value = self.value_final(op.node)
        section_key = plan.rec.chunk.section.key
        if value.is_absolute:
            if kind in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
                # The page of an absolute address, relative to the page this code lands in:
                # like GNU as, relocate against the absolute symbol (*ABS* + address).
                self.absolute_symbol_used = True
                plan.reloc = Relocation(position, kind, ABSOLUTE_SYMBOL, value.const, plan.rec.stmt.where)
                return
            plan.pcrel = (kind, value.const)  # GNU as: a number is an offset from the instruction
            return
        terms = value.term_map()
        if len(terms) != 1 or next(iter(terms.values())) != 1:
            raise _Fail("branch or address target too complex for a relocation")
        key = next(iter(terms))
        name, addend = self.symbol_name_for(value, key)
        local = key == section_key and not self.is_global(name)
        if local and kind not in (RelocType.ADR_PREL_PG_HI21, RelocType.ADR_PREL_PG_HI21_NC):
            plan.pcrel = (kind, ex.wrap64(value.const - position))
            return
        plan.reloc = Relocation(position, kind, name, addend, plan.rec.stmt.where)

    def set_reloc(self, plan: _Plan, kind: RelocType, value: Value, position: int) -> None:
        terms = value.term_map()
        if len(terms) != 1 or next(iter(terms.values())) != 1:
            raise _Fail("expression too complex for a relocation")
        name, addend = self.symbol_name_for(value, next(iter(terms)))
        plan.reloc = Relocation(position, kind, name, addend, plan.rec.stmt.where)

    def plan_reloc_operand(self, plan: _Plan, m: str, op: Operand, position: int, before: list[ROp]) -> list[ROp]:
        assert op.node is not None
        operator = op.text
        value = self.value_final(op.node)
        if operator == "lo12":
            if m != "add":
                raise _Fail(f":lo12: cannot be used with {m} here")
            if value.is_absolute:
                return [("imm", value.const & 0xFFF)]
            self.set_reloc(plan, RelocType.ADD_ABS_LO12_NC, value, position)
            return [("imm", 0)]
        if operator in _MOVW:
            if m not in ("movz", "movk"):
                raise _Fail(f":{operator}: needs movz or movk, not {m}")
            group, kind, checked = _MOVW[operator]
            if value.is_absolute:
                unsigned = value.const & 0xFFFFFFFFFFFFFFFF
                if checked and unsigned >> (16 * (group + 1)):
                    raise _Fail(f"value {_hex(value.const)} does not fit :{operator}:")
                return [("imm", unsigned >> (16 * group) & 0xFFFF), ("shift", "lsl", 16 * group)]
            self.set_reloc(plan, kind, value, position)
            return [("imm", 0), ("shift", "lsl", 16 * group)]
        if operator in _MOVW_SIGNED:
            if m not in ("movz", "movn"):
                raise _Fail(f":{operator}: needs movz or movn, not {m}")
            group = _MOVW_SIGNED[operator]
            if not value.is_absolute:
                raise _Fail(f":{operator}: with a symbol needs R_AARCH64_MOVW_SABS, which is not supported")
            v = value.const
            limit = 1 << (16 * (group + 1))
            if not -limit <= v < limit:
                raise _Fail(f"value {_hex(v)} does not fit :{operator}:")
            plan.mnemonic = "movz" if v >= 0 else "movn"
            field_ = (v if v >= 0 else ~v) >> (16 * group) & 0xFFFF
            return [("imm", field_), ("shift", "lsl", 16 * group)]
        raise _Fail(f":{operator}: cannot be used with {m}")

    def plan_memory(self, plan: _Plan, m: str, op: Operand, before: list[ROp], position: int) -> ROp:
        base = op.parts[0].text
        index: ROp | None = None
        extend: ROp | None = None
        for part in op.parts[1:]:
            if part.kind == "reg":
                index = ("reg", part.text)
            elif part.kind == "shift":
                amount = None
                if part.node is not None:
                    amount = self.absolute_final(part.node, "shift amount")
                    if not 0 <= amount < 64:
                        raise _Fail(f"shift amount {amount} out of range [0, 63]")
                extend = ("shift", part.text, amount)
            elif part.kind == "imm":
                offset = self.absolute_final(part.node, "offset")
                if not -(1 << 32) <= offset < (1 << 32):
                    raise _Fail(f"offset {_hex(offset)} out of range")
                index = ("imm", offset)
            elif part.kind == "reloc":
                if part.text != "lo12":
                    raise _Fail(f":{part.text}: cannot be used in a memory operand")
                size = _LDST_SIZE.get(m)
                if size is None and m in ("ldr", "str") and before and before[0][0] == "reg":
                    size = _LDST_BY_REG.get(before[0][1][0])
                    if before[0][1] in ("wzr", "wsp"):
                        size = 32
                    elif before[0][1] in ("xzr", "sp"):
                        size = 64
                if size is None:
                    raise _Fail(f":lo12: cannot be used with {m}")
                assert part.node is not None
                value = self.value_final(part.node)
                if value.is_absolute:
                    low = value.const & 0xFFF
                    if low % (size // 8):
                        raise _Fail(f":lo12: offset {low:#x} is not a multiple of the access size {size // 8}")
                    index = ("imm", low)
                else:
                    self.set_reloc(plan, _LDST_KIND[size], value, position)
                    index = ("imm", 0)
        return ("mem", base, index, extend, op.writeback)

    def encode(self, plans: list[_Plan], errors: list[tuple[int, AsmError]]) -> None:
        texts = [p.text for p in plans if p.text is not None]
        worker = self.worker or shared_worker()
        results = dict(zip(texts, worker.encode_many(texts), strict=True)) if texts else {}
        for plan in plans:
            rec = plan.rec
            try:
                word = plan.word
                if word is None:
                    assert plan.text is not None
                    result = results[plan.text]
                    if result.data is not None and len(result.data) == 4:
                        word = int.from_bytes(result.data, "little")
                    elif result.data is not None:
                        raise _Fail(f"keystone made {len(result.data)} bytes of '{plan.text}'")
                    elif result.error == "keystone produced no bytes":
                        word = self.substitute_registers(worker, plan)
                        if word is None or not capstone_decodes(word):
                            raise _Fail(
                                f"'{rec.stmt.text.strip()}' is CONSTRAINED UNPREDICTABLE (register"
                                " overlap); keystone and capstone refuse it, GNU as only warns"
                            )
                    else:
                        raise _Fail(self.explain(plan, result.error or "unknown error"))
                if plan.pcrel is not None:
                    word = patch_pc_relative(word, *plan.pcrel)
                if not capstone_decodes(word):
                    raise _Fail(f"the encoding {word:#010x} of '{plan.text or rec.mnemonic}' does not decode in capstone")
                rec.chunk.data[rec.offset : rec.offset + 4] = word.to_bytes(4, "little")
            except _Fail as fail:
                errors.append((rec.seq, self.error_at(str(fail), rec.stmt)))
                plan.reloc = None

    def explain(self, plan: _Plan, error: str) -> str:
        original = plan.rec.stmt.text.strip()
        if plan.mnemonic == "mov" and len(plan.ops) == 2 and plan.ops[1][0] == "imm":
            return (
                f"immediate {_hex(plan.ops[1][1])} cannot be moved into {plan.ops[0][1]} with one"
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

    def substitute_registers(self, worker: KeystoneWorker, plan: _Plan) -> int | None:
        """Encode a form keystone refuses as UNPREDICTABLE (it returns no bytes, GNU
        as only warns): swap one register for two free ones, find the field that
        moved, and put the original register number there."""
        used = {n for o in plan.ops for n in _register_numbers(o)}
        free = [n for n in range(1, 29) if n not in used][:2]
        for i, op in enumerate(plan.ops):
            number = _gpr_number(op[1]) if op[0] == "reg" else None
            if number is None or op[1] in ("sp", "wsp") or len(free) < 2:
                continue
            prefix = op[1][0]
            trial = []
            for candidate in free:
                ops = list(plan.ops)
                ops[i] = ("reg", f"{prefix}{candidate}")
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

    # -- the object ---------------------------------------------------------------

    def symbol_table(self, errors: list[tuple[int, AsmError]]) -> dict[str, Symbol]:
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
                except (_Fail, ExprError) as fail:
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

    def build_object(self, relocations: dict[str, list[tuple[int, Relocation]]], symbols: dict[str, Symbol]) -> ObjectFile:
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


def _pool_key(node: Node) -> object:
    """Equal for literal expressions GNU as shares a pool entry for (``sym+8``, ``sym+4+4``)."""
    try:
        value = Evaluator(lambda name: Value.base("\x01" + name))(node)
    except ExprError:
        return ex.fold(node)
    return (value.const, tuple(sorted(value.terms)))


def _kept(stmt: Stmt) -> Stmt:
    """The statement as records keep it until the end: enough text for a message."""
    if len(stmt.text) <= 200:
        return stmt
    return Stmt(stmt.text.strip()[:200], stmt.loc, stmt.where, stmt.note)


def _local_name(number: int, count: int) -> str:
    return f".L{number}\x02{count}"


def _is_local_name(name: str) -> bool:
    return name.startswith(".L") and "\x02" in name


def _directive_word(text: str) -> str | None:
    while True:
        m = _LABEL.match(text)
        if not m:
            break
        text = text[m.end() :]
    m = _WORD.match(text)
    if not m or not m.group(1).startswith("."):
        return None
    return m.group(1).lower()


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


def _register_numbers(op: ROp) -> list[int]:
    if op[0] == "reg":
        number = _gpr_number(op[1])
        return [number] if number is not None else []
    if op[0] == "mem":
        numbers = []
        base = _gpr_number(op[1])
        if base is not None:
            numbers.append(base)
        if op[2] is not None and op[2][0] == "reg":
            numbers += _register_numbers(op[2])
        return numbers
    return []


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


def _default_section_flags(name: str) -> str:
    """GNU as's flags for a section named without flags (unknown names get none)."""
    for prefix, flags in _DEFAULT_FLAGS:
        if name == prefix or name.startswith(prefix + "."):
            return flags
    return ""


# ---------------------------------------------------------------------------
# Directives

Handler = Callable[[Assembler, str, str, Stmt], None]
_DIRECTIVES: dict[str, Handler] = {}


def directive(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            _DIRECTIVES[name] = fn
        return fn

    return register


@directive(".file", ".ident", ".loc", ".arch", ".cpu", ".arch_extension", ".addrsig", ".addrsig_sym",
           ".variant_pcs", ".hidden", ".protected", ".internal", ".print", ".warning", ".loc_mark_labels",
           ".tlsdesccall", ".noaltmacro")  # fmt: skip
def _ignored(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if name in (".hidden", ".protected", ".internal"):
        for sym in split_top(args):
            asm.check_name(sym)


def _cfi(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    pass


@directive(".section", ".pushsection")
def _section_directive(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    push = name == ".pushsection"
    sec, sub, flags, kind = asm.parse_section_args(split_top(args), push)
    chunk = asm.enter_section(sec, sub, flags, kind, stmt)
    if push:
        asm.section_stack.append((asm.chunk, asm.previous))
    asm.switch(chunk)


@directive(".popsection")
def _popsection(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if not asm.section_stack:
        raise _Fail(".popsection without .pushsection")
    asm.chunk, asm.previous = asm.section_stack.pop()


@directive(".previous")
def _previous(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if asm.previous is None:
        raise _Fail(".previous without an earlier section")
    asm.chunk, asm.previous = asm.previous, asm.chunk


@directive(".text", ".data", ".bss")
def _simple_section(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    sub = asm.absolute(args, "subsection") if args else 0
    asm.switch(asm.enter_section(name, sub, "", "", stmt))


@directive(".subsection")
def _subsection(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    sub = asm.absolute(args, "subsection")
    asm.switch(asm.enter_section(asm.chunk.section.name, sub, "", "", stmt))


@directive(".globl", ".global", ".local", ".weak")
def _binding(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    binding = {".globl": Binding.GLOBAL, ".global": Binding.GLOBAL, ".local": Binding.LOCAL, ".weak": Binding.WEAK}[name]
    names = [n for n in re.split(r"[\s,]+", args) if n]
    if not names:
        raise _Fail(f"{name} needs a symbol name")
    for sym in names:
        attrs = asm.attrs_of(sym)
        if attrs.binding == Binding.WEAK and binding == Binding.GLOBAL:
            continue
        attrs.binding = binding


_TYPES = {
    "function": SymbolType.FUNC, "stt_func": SymbolType.FUNC, "object": SymbolType.OBJECT,
    "stt_object": SymbolType.OBJECT, "notype": SymbolType.NOTYPE, "stt_notype": SymbolType.NOTYPE,
}  # fmt: skip


@directive(".type")
def _type(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) != 2:
        raise _Fail(".type needs a symbol and a type")
    kind = parts[1].strip().strip('"').lstrip("%@").lower()
    if kind not in _TYPES:
        raise _Fail(f"unsupported symbol type {parts[1]!r}")
    asm.attrs_of(parts[0]).type = _TYPES[kind]


@directive(".size")
def _size(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) != 2 or not parts[1]:
        raise _Fail(".size needs a symbol and an expression")
    attrs = asm.attrs_of(parts[0])
    attrs.size = asm.pre(parts[1])
    attrs.size_stmt = stmt


@directive(".set", ".equ", ".eqv", ".equiv")
def _set(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) < 2:
        raise _Fail(f"{name} needs a symbol and a value")
    asm.set_symbol(parts[0], ",".join(parts[1:]), stmt, redefine=name != ".equiv")


@directive(".comm", ".lcomm")
def _comm(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if len(parts) not in (2, 3):
        raise _Fail(f"{name} needs a symbol, a size and an optional alignment")
    sym = asm.check_name(parts[0])
    size = asm.absolute(parts[1], "size")
    if size < 0:
        raise _Fail(f"negative size {size}")
    if len(parts) == 3:
        align = asm.absolute(parts[2], "alignment")
    else:
        # GNU as: the largest power of two not above the size, at most 8 (.lcomm) or 16 (.comm).
        align = 1
        while align * 2 <= size and align * 2 <= (8 if name == ".lcomm" else 16):
            align *= 2
    if align <= 0 or align & (align - 1):
        raise _Fail(f"alignment {align} is not a power of 2")
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


@directive(*_DATA_SIZES)
def _data(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
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


@directive(".uleb128", ".sleb128")
def _leb(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    # The size depends on the value, so it must be known where the directive stands.
    for item in split_top(args):
        value = asm.absolute(item, f"{name} value")
        if name == ".uleb128" and value < 0:
            value &= 0xFFFFFFFFFFFFFFFF
        asm.emit(_leb128(value, name == ".sleb128"))


@directive(".inst")
def _inst(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if not args:
        raise _Fail(".inst needs a value")
    asm.data_values(4, args, stmt, inst=True)


@directive(".ascii", ".asciz", ".string")
def _ascii(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    for data in parse_strings(args):
        asm.emit(data + (b"\0" if name != ".ascii" else b""))


@directive(".zero", ".skip", ".space")
def _skip(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 2 or (name == ".zero" and len(parts) > 1):
        raise _Fail(f"{name} needs a size" + ("" if name == ".zero" else " and an optional fill byte"))
    count = asm.absolute(parts[0], "size")
    fill = asm.absolute(parts[1], "fill value") & 0xFF if len(parts) > 1 else 0
    asm.emit_fill(count, bytes([fill]))


@directive(".fill")
def _fill(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 3:
        raise _Fail(".fill needs a repeat count, and optionally a size and a value")
    repeat = asm.absolute(parts[0], "repeat count")
    size = asm.absolute(parts[1], "size") if len(parts) > 1 and parts[1] else 1
    value = asm.absolute(parts[2], "value") if len(parts) > 2 and parts[2] else 0
    if repeat < 0 or size < 0:
        raise _Fail(".fill needs a non-negative repeat count and size")
    size = min(size, 8)
    pattern = ((value & 0xFFFFFFFF).to_bytes(8, "little"))[:size]
    asm.emit_fill(repeat * size, pattern if size else b"\0")


@directive(".align", ".p2align", ".p2alignw", ".p2alignl", ".balign", ".balignw", ".balignl")
def _align(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args) if args else [""]
    if not parts[0] or len(parts) > 3:
        raise _Fail(f"{name} needs an alignment, and optionally a fill value and a maximum skip")
    amount = asm.absolute(parts[0], "alignment")
    fill = asm.absolute(parts[1], "fill value") if len(parts) > 1 and parts[1] else None
    max_skip = asm.absolute(parts[2], "maximum skip") if len(parts) > 2 and parts[2] else None
    fill_size = {"w": 2, "l": 4}.get(name[-1], 1)
    if name.startswith(".balign"):
        if amount <= 0 or amount & (amount - 1):
            raise _Fail(f"alignment {amount} is not a power of 2")
        if amount > 1 << MAX_ALIGN_LOG2:
            raise _Fail(f"alignment {amount} larger than {1 << MAX_ALIGN_LOG2}")
        align = amount
    else:
        if not 0 <= amount <= MAX_ALIGN_LOG2:
            raise _Fail(f"alignment 2**{amount} out of range [0, {MAX_ALIGN_LOG2}]")
        align = 1 << amount
    pattern = None if fill is None else (fill & ((1 << (8 * fill_size)) - 1)).to_bytes(fill_size, "little")
    asm.align_to(align, pattern, max_skip, fill_size)


@directive(".org")
def _org(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    if not parts[0] or len(parts) > 2:
        raise _Fail(".org needs a location and an optional fill byte")
    value = asm.value_now(asm.pre(parts[0]))
    here = asm.chunk.offset
    if value.is_absolute or value.terms == ((asm.chunk.key, 1),):
        target = value.const
    else:
        raise _Fail(".org needs a location in the current section (known when it is reached)")
    fill = asm.absolute(parts[1], "fill value") & 0xFF if len(parts) > 1 else 0
    if target < here:
        raise _Fail(
            f".org moves the location backwards, from {here:#x} to {target:#x}"
            " (alternative sequences of different lengths?)"
        )
    asm.emit_fill(target - here, bytes([fill]))


@directive(".ltorg", ".pool")
def _ltorg(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    asm.dump_pool(asm.chunk)


@directive(".end")
def _end(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    asm.ended = True


@directive(".err")
def _err(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    raise _Fail(".err encountered")


@directive(".error")
def _error(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    message = unquote(args) if args else ".error directive invoked"
    message = message if message.strip() else ".error directive invoked"
    # One line on the user's terminal: line breaks and control codes are shown, not sent.
    raise _Fail("".join(c if c.isprintable() else ascii(c)[1:-1] for c in message))


def _search_path(asm: Assembler, stmt: Stmt, target: str) -> list[Path]:
    """Beside the including file, then the include directories, then the working directory."""
    here = Path(stmt.loc.file)
    candidates = [here.parent / target] if here.is_file() else []
    return [*candidates, *(d / target for d in asm.include_dirs), Path(target)]


def _read_limited(path: Path, skip: int, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path`` from ``skip`` on: a huge or endless file (a
    /proc or device file) is never read whole, and a read error is the user's error."""
    try:
        with path.open("rb") as handle:
            if skip:
                handle.seek(min(skip, 1 << 62))  # past the end reads nothing
            return handle.read(limit)
    except OSError as err:
        raise _Fail(f"cannot read {what} {path}: {err.strerror or err}") from None


@directive(".include")
def _include(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    target = unquote(args)
    if not target:
        raise _Fail(".include needs a file name")
    for path in _search_path(asm, stmt, target):
        if path.is_file():
            raw = _read_limited(path, 0, MAX_INCLUDE_BYTES + 1, "include file")
            if len(raw) > MAX_INCLUDE_BYTES:
                raise _Fail(f"include file {path} is larger than {MAX_INCLUDE_BYTES:#x} bytes")
            asm.push_file(raw.decode("utf-8", "surrogateescape"), str(path))
            return
    raise _Fail(f"cannot find include file {target!r}")


@directive(".incbin")
def _incbin(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    parts = split_top(args)
    target = unquote(parts[0])
    skip = asm.absolute(parts[1], "skip") if len(parts) > 1 else 0
    count = asm.absolute(parts[2], "count") if len(parts) > 2 else None
    if skip < 0 or (count is not None and count < 0):
        raise _Fail(f".incbin {'skip' if skip < 0 else 'count'} is negative")
    # One byte past the section limit is enough for emit() to refuse an oversized file.
    limit = MAX_SECTION_BYTES + 1 if count is None else min(count, MAX_SECTION_BYTES + 1)
    for path in _search_path(asm, stmt, target):
        if path.is_file():
            asm.emit(_read_limited(path, skip, limit, "file"))
            return
    raise _Fail(f"cannot find file {target!r}")


# -- conditionals


def _ifc_operands(args: str) -> tuple[str, str]:
    """The two strings of .ifc: blank-trimmed, optionally in single quotes, comma between."""
    strings: list[str] = []
    rest = args.strip()
    for index in range(2):
        if rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise _Fail("unterminated quoted string in .ifc")
            strings.append(rest[1:end])
            rest = rest[end + 1 :].strip()
        else:
            comma = rest.find(",") if index == 0 else len(rest)
            if comma < 0:
                raise _Fail(".ifc needs two strings separated by a comma")
            strings.append(rest[:comma].strip())
            rest = rest[comma:]
        if index == 0:
            if not rest.startswith(","):
                raise _Fail(".ifc needs two strings separated by a comma")
            rest = rest[1:].strip()
        elif rest.strip():
            raise _Fail(f"junk after .ifc operands: {rest.strip()!r}")
    return strings[0], strings[1]


def _condition(asm: Assembler, name: str, args: str) -> bool:
    if name in (".if", ".ifne", ".elseif"):
        return asm.absolute(args, "condition") != 0
    if name == ".ifeq":
        return asm.absolute(args, "condition") == 0
    if name in (".ifgt", ".ifge", ".iflt", ".ifle"):
        v = asm.absolute(args, "condition")
        return {"gt": v > 0, "ge": v >= 0, "lt": v < 0, "le": v <= 0}[name[3:]]
    if name in (".ifdef", ".ifndef", ".ifnotdef"):
        sym = args.strip()
        asm.check_name(sym)
        defined = sym in asm.labels or sym in asm.equates
        return defined if name == ".ifdef" else not defined
    if name in (".ifb", ".ifnb"):
        return (not args.strip()) == (name == ".ifb")
    if name in (".ifeqs", ".ifnes"):
        parts = split_top(args)
        if len(parts) != 2:
            raise _Fail(f"{name} needs two strings separated by a comma")
        a, b = (parse_string(p, 0)[0] for p in parts)
        return (a == b) == (name == ".ifeqs")
    if name in (".ifc", ".ifnc"):
        a, b = _ifc_operands(args)
        return (a == b) == (name == ".ifc")
    raise _Fail(f"unknown conditional {name}")


@directive(".if", ".ifne", ".ifeq", ".ifgt", ".ifge", ".iflt", ".ifle", ".ifdef", ".ifndef", ".ifnotdef",
           ".ifb", ".ifnb", ".ifc", ".ifnc", ".ifeqs", ".ifnes")  # fmt: skip
def _if(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    value = _condition(asm, name, args)
    asm.cond.append(Cond(value, value, True, stmt.loc))


@directive(".elseif")
def _elseif(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if len(asm.cond) <= (asm.frames[-1].cond_depth if asm.frames else 0):
        raise _Fail(".elseif without .if")
    cond = asm.cond[-1]
    if cond.seen_else:
        raise _Fail(".elseif after .else")
    if cond.outer_active and not cond.taken:
        cond.active = _condition(asm, ".elseif", args)
        cond.taken = cond.active
    else:
        cond.active = False


@directive(".else")
def _else(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if len(asm.cond) <= (asm.frames[-1].cond_depth if asm.frames else 0):
        raise _Fail(".else without .if")
    cond = asm.cond[-1]
    if cond.seen_else:
        raise _Fail("a second .else for the same .if")
    cond.seen_else = True
    cond.active = cond.outer_active and not cond.taken
    cond.taken = True


@directive(".endif")
def _endif(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if len(asm.cond) <= (asm.frames[-1].cond_depth if asm.frames else 0):
        raise _Fail(".endif without .if")
    asm.cond.pop()


# -- macros and loops


@directive(".macro")
def _macro(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    m = re.match(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*,?(.*)", args, re.S)
    if not m:
        raise _Fail(".macro needs a name")
    macro_name = m.group(1).lower()
    params: list[MacroParam] = []
    for spec in re.findall(r"""[^\s,=]+(?:\s*=\s*(?:"(?:\\.|[^"\\])*"|[^\s,]*))?""", m.group(2)):
        pm = re.fullmatch(r"""([A-Za-z_.$][A-Za-z0-9_.$]*)(?::(req|vararg))?(?:\s*=\s*(.*))?""", spec, re.S)
        if not pm:
            raise _Fail(f"bad macro parameter {spec!r}")
        default = pm.group(3) or ""
        if default.startswith('"') and default.endswith('"') and len(default) >= 2:
            default = default[1:-1]
        param = MacroParam(pm.group(1), default, pm.group(2) == "req", pm.group(2) == "vararg")
        if any(p.name == param.name for p in params):
            raise _Fail(f"duplicate macro parameter '{param.name}'")
        params.append(param)
    if any(p.vararg for p in params[:-1]):
        raise _Fail(":vararg must be the last macro parameter")
    body = asm.collect(stmt, {".macro"}, ".endm")
    asm.macros[macro_name] = Macro(macro_name, params, body, stmt.loc)


@directive(".endm", ".endr")
def _stray_end(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    raise _Fail(f"{name} without {'.macro' if name == '.endm' else '.rept/.irp/.irpc'}")


@directive(".exitm")
def _exitm(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    while asm.frames and asm.frames[-1].kind == "loop":
        frame = asm.frames.pop()
        del asm.cond[frame.cond_depth :]
    if not asm.frames or asm.frames[-1].kind != "macro":
        raise _Fail(".exitm outside a macro")
    frame = asm.frames.pop()
    del asm.cond[frame.cond_depth :]


@directive(".unreq")
def _unreq(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    if asm.reg_aliases.pop(args.strip().lower(), None) is None:
        raise _Fail(f"'{args.strip()}' is not a register alias")


@directive(".purgem")
def _purgem(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    macro_name = args.strip().lower()
    if macro_name not in asm.macros:
        raise _Fail(f"macro '{macro_name}' is not defined")
    del asm.macros[macro_name]


_LOOP_OPENERS = {".rept", ".irp", ".irpc"}


@directive(".rept")
def _rept(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    count = asm.absolute(args, "repeat count") if args else 0
    body = asm.collect(stmt, _LOOP_OPENERS, ".endr")
    if count > 0 and body:
        if count * len(body) > MAX_STATEMENTS:
            raise _Fail(f".rept {count} expands to more than {MAX_STATEMENTS} statements")
        asm.push_loop(body * count)


@directive(".irp", ".irpc")
def _irp(asm: Assembler, name: str, args: str, stmt: Stmt) -> None:
    m = re.match(r"\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*,?(.*)", args, re.S)
    if not m:
        raise _Fail(f"{name} needs a parameter name")
    param = m.group(1)
    body = asm.collect(stmt, _LOOP_OPENERS, ".endr")
    if name == ".irp":
        values = split_macro_args(m.group(2)) or [""]
    else:
        values = list(unquote(m.group(2).strip())) or [""]
    expanded: list[Stmt] = []
    for value in values:
        for item in body:
            text = substitute_params(item.text, {param: value}, None)
            if len(text) > MAX_LINE:
                raise _Fail(f"{name} expands to a line longer than {MAX_LINE} characters")
            for piece in split_statements(text):
                expanded.append(Stmt(piece, item.loc, item.where, item.note))
        if len(expanded) > MAX_STATEMENTS:
            raise _Fail(f"{name} expands to more than {MAX_STATEMENTS} statements")
    asm.push_loop(expanded)


for _name in (".cfi_startproc", ".cfi_endproc", ".cfi_def_cfa", ".cfi_def_cfa_offset", ".cfi_def_cfa_register",
              ".cfi_offset", ".cfi_restore", ".cfi_remember_state", ".cfi_restore_state", ".cfi_sections",
              ".cfi_rel_offset", ".cfi_adjust_cfa_offset", ".cfi_undefined", ".cfi_same_value", ".cfi_register",
              ".cfi_return_column", ".cfi_signal_frame", ".cfi_escape", ".cfi_negate_ra_state",
              ".cfi_personality", ".cfi_lsda", ".cfi_window_save", ".cfi_b_key_frame", ".cfi_val_offset"):  # fmt: skip
    _DIRECTIVES[_name] = _cfi


# ---------------------------------------------------------------------------
# Public API


def _assemble(text: str, filename: str, include_dirs: Sequence[Path], worker: KeystoneWorker | None) -> ObjectFile:
    asm = Assembler(filename, include_dirs, worker)
    try:
        asm.push_file(text, filename)
        asm.run()
        return asm.finish()
    except AsmError:
        raise
    except _Fail as fail:
        raise asm.error_at(str(fail), asm.stmt) from None
    except (RecursionError, MemoryError) as err:
        raise asm.error_at(f"input too complex ({type(err).__name__})", asm.stmt) from None
    except Exception as err:  # a bug: still one line with a place, never a traceback
        raise asm.error_at(f"internal assembler error ({type(err).__name__}: {err})", asm.stmt) from err


def assemble_source(
    text: str,
    filename: str = "<string>",
    include_dirs: Sequence[Path] = (),
    worker: KeystoneWorker | None = None,
) -> ObjectFile:
    """Assemble GNU as source text for AArch64 into an ObjectFile (AsmError on bad input)."""
    if not isinstance(text, str):
        raise AsmError("assembly source must be text", SourceLoc(filename, 0))
    return _assemble(text, filename, include_dirs, worker)


def assemble_file(
    path: Path,
    include_dirs: Sequence[Path] = (),
    worker: KeystoneWorker | None = None,
) -> ObjectFile:
    """Assemble one source file; ``.include`` looks beside it first, then in include_dirs."""
    path = Path(path)
    try:
        text = read_input_file(path, MAX_INCLUDE_BYTES).decode("utf-8", "surrogateescape")
    except OSError as err:
        raise AsmError(f"cannot read {path}: {err.strerror}", SourceLoc(str(path), 0)) from None
    return _assemble(text, str(path), include_dirs, worker)
