"""Disassembly and symbol listings of a kernel ELF, for the CLI and humans.

Owns turning a LoadableImage's bytes into text: capstone decodes the code,
ARM mapping symbols ($x/$d) say which bytes are data, every line is labelled
with symbol+offset and every branch or address-forming target is resolved to
a symbol.  The table of ``ktext-emu symbols`` is formatted here too.
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import capstone
from capstone import arm64_const

from emu.blob.elf import ElfSymbol, LoadableImage
from emu.errors import ElfError, UsageError

# Mnemonics whose immediate operand is an address (capstone already adds PC).
_ADDRESS_FORMING = {"b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr", "adrp", "ldr", "ldrsw", "prfm"}


def _is_mapping(name: str) -> bool:
    return name in ("$x", "$d") or name.startswith(("$x.", "$d."))


class SymbolIndex:
    """Address -> nearest preceding symbol, preferring globals and sized symbols."""

    def __init__(self, image: LoadableImage) -> None:
        rank = {"GLOBAL": 0, "WEAK": 1, "LOCAL": 2}
        best: dict[int, ElfSymbol] = {}
        for sym in image.all_symbols:
            if not sym.name or sym.type in ("SECTION", "FILE") or _is_mapping(sym.name):
                continue
            if sym.section is None:
                continue  # absolute constants are not places in the image
            current = best.get(sym.value)
            if current is None or rank.get(sym.binding, 3) < rank.get(current.binding, 3):
                best[sym.value] = sym
        self.addresses = sorted(best)
        self.symbols = [best[a] for a in self.addresses]
        self.by_address = best
        mapping = sorted(
            (s.value, s.name[:2]) for s in image.all_symbols if _is_mapping(s.name) and s.section
        )
        self.mapping_addresses = [a for a, _ in mapping]
        self.mapping_kinds = [k for _, k in mapping]

    def label(self, address: int) -> str | None:
        """``name`` or ``name+0xoff`` for the closest symbol at or below ``address``."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0:
            return None
        sym = self.symbols[i]
        offset = address - sym.value
        return sym.name if offset == 0 else f"{sym.name}+{offset:#x}"

    def is_data(self, address: int) -> bool:
        i = bisect.bisect_right(self.mapping_addresses, address) - 1
        return i >= 0 and self.mapping_kinds[i] == "$d"


@dataclass(frozen=True)
class DisasmLine:
    address: int
    raw: bytes
    text: str  # mnemonic and operands
    target: str | None = None  # symbolised branch / address target


def disassemble(image: LoadableImage, start: int, end: int) -> list[DisasmLine]:
    """Decode [start, end) of the image (data regions as .word / .byte)."""
    if end <= start:
        raise UsageError(f"empty address range [{start:#x}, {end:#x})")
    code = image.read(start, end - start)
    index = SymbolIndex(image)
    cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    cs.detail = True
    lines: list[DisasmLine] = []
    offset = 0
    while offset < len(code):
        address = start + offset
        chunk = code[offset : offset + 4]
        if len(chunk) < 4 or address % 4:
            lines.append(DisasmLine(address, chunk[:1], f".byte {chunk[0]:#04x}"))
            offset += 1
            continue
        if index.is_data(address):
            value = int.from_bytes(chunk, "little")
            lines.append(DisasmLine(address, chunk, f".word {value:#010x}"))
            offset += 4
            continue
        insn = next(cs.disasm(chunk, address), None)
        if insn is None:
            value = int.from_bytes(chunk, "little")
            lines.append(DisasmLine(address, chunk, f".inst {value:#010x} (undefined)"))
        else:
            text = f"{insn.mnemonic}\t{insn.op_str}".rstrip()
            lines.append(DisasmLine(address, chunk, text, _target(insn, index)))
        offset += 4
    return lines


# Instructions that end a translated block: branches, exception generation and return.
_BLOCK_ENDS = {"b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz", "eret", "svc",
               "hvc", "smc", "brk", "udf", "retaa", "retab", "braa", "blraa"}


def disassemble_block(image: LoadableImage, start: int, limit: int = 8) -> list[DisasmLine]:
    """The instructions of the block starting at ``start``, up to its first
    branch or exception-generating instruction (at most ``limit``); empty
    when ``start`` is not in the image (a bad address, a linear-map alias)."""
    lines: list[DisasmLine] = []
    for offset in range(0, 4 * limit, 4):
        try:
            line = disassemble(image, start + offset, start + offset + 4)[0]
        except (UsageError, ElfError):
            break
        lines.append(line)
        mnemonic = line.text.split("\t")[0].split(".")[0]
        if mnemonic in _BLOCK_ENDS or line.text.startswith((".word", ".inst", ".byte")):
            break
    return lines


def _target(insn: capstone.CsInsn, index: SymbolIndex) -> str | None:
    mnemonic = insn.mnemonic.split(".")[0]
    if mnemonic not in _ADDRESS_FORMING:
        return None
    imms = [op.imm for op in insn.operands if op.type == arm64_const.ARM64_OP_IMM]
    if not imms or (mnemonic in ("ldr", "ldrsw", "prfm") and len(insn.operands) != 2):
        return None
    if mnemonic in ("ldr", "ldrsw") and any(
        op.type == arm64_const.ARM64_OP_MEM for op in insn.operands
    ):
        return None
    return index.label(imms[-1] & ((1 << 64) - 1))


def format_disassembly(image: LoadableImage, start: int, end: int) -> str:
    """objdump-like text; a run of zero words is shown once as "..." (like objdump)."""
    index = SymbolIndex(image)
    out: list[str] = []
    in_zero_run = False
    lines = disassemble(image, start, end)
    for i, line in enumerate(lines):
        sym = index.by_address.get(line.address)
        if sym is not None or not out:
            label = sym.name if sym is not None else index.label(line.address)
            if out:
                out.append("")
            out.append(f"{line.address:016x} <{label or '?'}>:")
            in_zero_run = False
        zero = len(line.raw) == 4 and not any(line.raw)
        following = lines[i + 1] if i + 1 < len(lines) else None
        next_is_zero = (
            following is not None
            and len(following.raw) == 4
            and not any(following.raw)
            and following.address not in index.by_address
        )
        if zero and (in_zero_run or next_is_zero):
            if not in_zero_run:
                out.append("\t...")
                in_zero_run = True
            continue
        in_zero_run = False
        comment = f"\t// <{line.target}>" if line.target else ""
        raw = f"{int.from_bytes(line.raw, 'little'):08x}" if len(line.raw) == 4 else line.raw.hex()
        out.append(f"  {line.address:016x}:\t{raw}\t{line.text}{comment}")
    return "\n".join(out) + "\n"


def symbol_range(image: LoadableImage, name: str) -> tuple[int, int]:
    """[start, end) of symbol ``name``: its size, or up to the next symbol when unsized."""
    sym = image.symbols.get(name)
    if sym is None:
        raise UsageError(f"{image.path}: no symbol {name}")
    if sym.section is None:
        raise UsageError(f"{image.path}: {name} is an absolute symbol, not code")
    if sym.size:
        return sym.value, sym.value + sym.size
    index = SymbolIndex(image)
    i = bisect.bisect_right(index.addresses, sym.value)
    section = next((s for s in image.sections if s.vaddr <= sym.value < s.vaddr + s.size), None)
    limit = section.vaddr + section.size if section else sym.value + 4
    end = index.addresses[i] if i < len(index.addresses) else limit
    return sym.value, min(end, limit)


def executable_ranges(image: LoadableImage) -> list[tuple[str, int, int]]:
    return [
        (s.name, s.vaddr, s.vaddr + s.size)
        for s in image.sections
        if s.executable and s.size and not s.nobits
    ]


SYMBOL_KINDS = ("func", "object", "label", "abs")
DEFAULT_SYMBOL_KINDS = ("func", "object", "label")  # places in the image, no constants


def symbol_kind(sym: ElfSymbol) -> str:
    """func, object, label (a NOTYPE address in a section) or abs (no section)."""
    if sym.section is None:
        return "abs"
    return {"FUNC": "func", "OBJECT": "object"}.get(sym.type, "label")


@dataclass(frozen=True)
class SymbolSelection:
    rows: list[ElfSymbol]
    total: int  # symbols there were to list
    hidden_kinds: int  # left out by kind (the asm-offsets constants are abs)
    hidden_duplicates: int  # local copies of a symbol listed already


def select_symbols(image: LoadableImage, kinds: Sequence[str] = DEFAULT_SYMBOL_KINDS,
                   pattern: str | None = None, duplicates: bool = False) -> SymbolSelection:
    """The symbols of ``kinds`` whose name matches the shell ``pattern``,
    sorted by address.  Unless ``duplicates``, a local symbol is left out
    when a symbol of the same name and value is listed already (every file
    that includes asm-offsets.inc has its own local copy of each constant)."""
    candidates = sorted(
        (s for s in image.all_symbols if s.name and not _is_mapping(s.name) and s.type != "FILE"),
        key=lambda s: (s.value, s.binding == "LOCAL", s.name),
    )
    if pattern is not None:
        candidates = [s for s in candidates if fnmatch.fnmatchcase(s.name, pattern)]
    rows: list[ElfSymbol] = []
    seen: set[tuple[str, int]] = set()
    hidden_kinds = hidden_duplicates = 0
    for sym in candidates:
        if symbol_kind(sym) not in kinds:
            hidden_kinds += 1
            continue
        key = (sym.name, sym.value)
        if not duplicates and sym.binding == "LOCAL" and key in seen:
            hidden_duplicates += 1
            continue
        seen.add(key)
        rows.append(sym)
    return SymbolSelection(rows, len(candidates), hidden_kinds, hidden_duplicates)


def format_symbols(image: LoadableImage, kinds: Sequence[str] = SYMBOL_KINDS,
                   pattern: str | None = None, duplicates: bool = True) -> str:
    """The symbol table sorted by address (by default: every symbol but mapping symbols)."""
    selection = select_symbols(image, kinds, pattern, duplicates)
    lines = [f"{'VALUE':<18} {'SIZE':>8} {'TYPE':<8} {'BIND':<7} {'SECTION':<22} NAME"]
    for s in selection.rows:
        lines.append(
            f"{s.value:#018x} {s.size:>8} {s.type:<8} {s.binding:<7} "
            f"{s.section or '*ABS*':<22} {s.name}"
        )
    return "\n".join(lines) + "\n"
