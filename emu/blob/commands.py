"""The ``build``, ``disasm`` and ``symbols`` subcommands of ktext-emu.

Each ``add_*_parser(sub)`` adds one subparser and sets ``run`` to the
function that executes it and returns the exit status; bad input surfaces as
an EmuError, which emu/cli/__init__.py prints as one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from emu.blob import disasm
from emu.blob.ldscript import evaluate, parse_expression
from emu.errors import EmuError, UsageError

DEFAULT_OUTPUT = "kernel.elf"


def parse_defsym(text: str) -> tuple[str, int]:
    """``SYM=VALUE`` with VALUE a linker-script constant expression (0x..., 64K, 1<<20)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise UsageError(f"--defsym {text!r}: expected SYMBOL=VALUE")
    if not re.fullmatch(r"[A-Za-z_.$][A-Za-z0-9_.$]*", name):
        raise UsageError(f"--defsym {text!r}: {name!r} is not a symbol name")
    try:
        return name, _constant(value)
    except EmuError as err:
        raise UsageError(f"--defsym {text!r}: {err}") from None


def _constant(text: str) -> int:
    expr = parse_expression(text.strip(), "--defsym")
    return evaluate(expr, _NoSymbols()).value


class _NoSymbols:
    """Evaluation context for command-line constants: no symbols, no sections."""

    dot = 0
    current_section = None

    def _refuse(self, *args: object) -> int:
        raise UsageError("only constants are allowed here")

    symbol_value = section_vma = section_lma = section_size = section_align = _refuse

    def is_defined(self, name: str) -> bool:
        return False

    def check_section(self, name: str, loc: object) -> None:
        raise UsageError("only constants are allowed here")


def parse_address(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        try:
            value = int(text, 16)
        except ValueError:
            raise UsageError(f"{text!r} is not an address") from None
    if not 0 <= value < 1 << 64:
        raise UsageError(f"{text!r} is not a 64-bit address")
    return value


# --------------------------------------------------------------------------- build


def add_build_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "build",
        help="assemble and link a kernel ELF",
        description="Assemble and link a kernel image. Without SOURCE files, build the "
        "shipped kernel (kernel_blob/*.S with linker_scripts/kernel.ld).",
    )
    parser.add_argument("sources", nargs="*", metavar="SOURCE.S", help="sources to link instead")
    parser.add_argument("-T", dest="script", metavar="SCRIPT", help="linker script")
    parser.add_argument(
        "-o", dest="output", default=DEFAULT_OUTPUT, metavar="OUT.elf",
        help=f"output ELF (default ./{DEFAULT_OUTPUT}; - for standard output)",
    )  # fmt: skip
    parser.add_argument(
        "--add", action="append", default=[], metavar="FILE.S|FILE.c",
        help="an extra source linked after the others; a .c file is compiled first "
        "(repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--add-user", action="append", default=[], metavar="FILE.s|FILE.c",
        help="a source linked as user code: .text/.rodata/.data/.bss become the user "
        "sections (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--defsym", action="append", default=[], metavar="SYM=VAL",
        help="define an absolute symbol, e.g. KIMAGE_VADDR=0xffff800008000000 (repeatable)",
    )  # fmt: skip
    parser.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    from emu.blob.build import build_kernel
    from emu.blob.elf import write_elf
    from emu.fileio import STDOUT, check_outputs, printable

    defsyms = dict(parse_defsym(d) for d in args.defsym)
    sources = [Path(s) for s in args.sources] or None
    inputs = [("a source", Path(s)) for s in args.sources]
    inputs += [("-T", args.script and Path(args.script))]
    inputs += [("--add", Path(p)) for p in args.add]
    inputs += [("--add-user", Path(p)) for p in args.add_user]
    check_outputs([("-o", args.output)], inputs)
    image = build_kernel(
        sources,
        Path(args.script) if args.script else None,
        [Path(p) for p in args.add],
        defsyms,
        [Path(p) for p in args.add_user],
    )
    write_elf(image, args.output)
    out = sys.stderr if args.output == STDOUT else sys.stdout  # the ELF may be on stdout
    print(f"{'SECTION':<24} {'VADDR':>18} {'PADDR':>18} {'SIZE':>10}  FLAGS", file=out)
    total = 0
    for sec in sorted(image.sections, key=lambda s: s.vaddr):
        flags = "A" + ("W" if sec.flags.write else "") + ("X" if sec.flags.execute else "")
        flags += " nobits" if sec.nobits else ""
        print(
            f"{printable(sec.name):<24} {sec.vaddr:#18x} {sec.paddr:#18x} {sec.size:>#10x}  {flags}", file=out
        )
        total += sec.size
    where = "standard output" if args.output == STDOUT else printable(args.output)
    print(f"entry {image.entry:#x}, {total:#x} bytes in sections, written to {where}", file=out)
    return 0


# --------------------------------------------------------------------------- disasm / symbols


def add_disasm_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "disasm",
        help="disassemble a kernel ELF",
        description="Disassemble the executable sections of an ELF, a symbol, or an address "
        "range, with symbol+offset labels and branch targets resolved to symbols.",
    )
    parser.add_argument("elf", metavar="ELF")
    parser.add_argument("--symbol", metavar="NAME", help="only this symbol")
    parser.add_argument("--start", metavar="ADDR", help="start address (with --end)")
    parser.add_argument("--end", metavar="ADDR", help="end address, exclusive (with --start)")
    parser.set_defaults(run=run_disasm)


def run_disasm(args: argparse.Namespace) -> int:
    from emu.blob.elf import read_elf

    if args.symbol and (args.start or args.end):
        raise UsageError("disasm: give --symbol or --start/--end, not both")
    if bool(args.start) != bool(args.end):
        raise UsageError("disasm: --start and --end go together")
    image = read_elf(args.elf)
    if args.symbol:
        ranges = [disasm.symbol_range(image, args.symbol)]
    elif args.start:
        ranges = [(parse_address(args.start), parse_address(args.end))]
    else:
        ranges = [(lo, hi) for _, lo, hi in disasm.executable_ranges(image)]
    texts = [disasm.format_disassembly(image, lo, hi) for lo, hi in ranges]
    sys.stdout.write("\n".join(texts))
    return 0


def add_symbols_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "symbols",
        help="list the symbols of a kernel ELF",
        description="List the symbols of an ELF sorted by address.  By default: functions, "
        "objects and labels, each once; absolute constants (the asm-offsets values every "
        "source includes) and local copies of a symbol already listed are left out.",
    )
    parser.add_argument("elf", metavar="ELF")
    parser.add_argument("--name", dest="pattern", metavar="PATTERN",
                        help="only names matching this shell pattern, e.g. 'sys_*'")
    parser.add_argument("--kind", action="append", choices=[*disasm.SYMBOL_KINDS, "all"],
                        help="func, object, label (an address with no type), abs (a constant), "
                        "or all; repeatable (default: func, object and label)")
    parser.add_argument("--all", action="store_true",
                        help="every symbol, local duplicates and constants included")
    parser.set_defaults(run=run_symbols)


def run_symbols(args: argparse.Namespace) -> int:
    from emu.blob.elf import read_elf

    kinds = args.kind or (disasm.SYMBOL_KINDS if args.all else disasm.DEFAULT_SYMBOL_KINDS)
    if "all" in kinds:
        kinds = disasm.SYMBOL_KINDS
    image = read_elf(args.elf)
    selection = disasm.select_symbols(image, kinds, args.pattern, duplicates=args.all)
    sys.stdout.write(disasm.format_symbols(image, kinds, args.pattern, duplicates=args.all))
    hidden = []
    if selection.hidden_kinds:
        hidden.append(f"{selection.hidden_kinds} of other kinds (--kind)")
    if selection.hidden_duplicates:
        hidden.append(f"{selection.hidden_duplicates} local duplicates (--all)")
    if hidden:
        print(f"{len(selection.rows)} of {selection.total} symbols listed; not listed: "
              + ", ".join(hidden), file=sys.stderr)
    return 0
