"""GNU as + ld as the oracle for the insn generators, at the real addresses.

Each case is one instruction in its own section, placed at its site with
--section-start and branching to an absolute symbol given with --defsym, so
GNU ld computes every PC-relative field (ADRP pages included) from the same
site and target as the generator gets. The cases are the range edges at
sites across the 64-bit space (wrapping ones too) plus seeded random ones.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from emu.kernel.insn import (
    aarch64_insn_gen_adr,
    aarch64_insn_gen_branch_imm,
    aarch64_insn_gen_comp_branch_imm,
    aarch64_insn_gen_cond_branch_imm,
)

GNU_AS = "aarch64-linux-gnu-as"
GNU_LD = "aarch64-linux-gnu-ld"
MASK64 = (1 << 64) - 1
MIB = 1 << 20

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(
        not (shutil.which(GNU_AS) and shutil.which(GNU_LD)),
        reason="GNU binutils for AArch64 not installed",
    ),
]

CONDS = ["eq", "ne", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"]


def reg(n: int, is64: bool = True) -> str:
    if n == 31:
        return "xzr" if is64 else "wzr"
    return f"{'x' if is64 else 'w'}{n}"


# kind: (reach, target alignment, gas text for (sym, variant), generator for (pc, addr, variant))
KINDS: dict[str, tuple[int, int, Callable[[str, int], str], Callable[[int, int, int], int]]] = {
    "b": (128 * MIB, 4, lambda s, v: f"b {s}",
          lambda pc, a, v: aarch64_insn_gen_branch_imm(pc, a, False)),
    "bl": (128 * MIB, 4, lambda s, v: f"bl {s}",
           lambda pc, a, v: aarch64_insn_gen_branch_imm(pc, a, True)),
    "b.cond": (MIB, 4, lambda s, v: f"b.{CONDS[v % 15]} {s}",
               lambda pc, a, v: aarch64_insn_gen_cond_branch_imm(pc, a, CONDS[v % 15])),
    "cbz": (MIB, 4, lambda s, v: f"cbz {reg(v % 32, v & 32 != 0)}, {s}",
            lambda pc, a, v: aarch64_insn_gen_comp_branch_imm(pc, a, v % 32, v & 32 != 0, False)),
    "cbnz": (MIB, 4, lambda s, v: f"cbnz {reg(v % 32, v & 32 != 0)}, {s}",
             lambda pc, a, v: aarch64_insn_gen_comp_branch_imm(pc, a, v % 32, v & 32 != 0, True)),
    "adr": (MIB, 1, lambda s, v: f"adr {reg(v % 32)}, {s}",
            lambda pc, a, v: aarch64_insn_gen_adr(pc, a, v % 32, False)),
    "adrp": (1 << 32, 1, lambda s, v: f"adrp {reg(v % 32)}, {s}",
             lambda pc, a, v: aarch64_insn_gen_adr(pc, a, v % 32, True)),
}  # fmt: skip
EDGE_SITES = [0x0, 0x1234, 0xFFFF_8000_1000_0000, 0xFFFF_8000_1000_0FFC, 0xFFFF_FFFF_FFFF_FFFC]


def build_cases() -> list[tuple[str, int, int, int]]:
    """(kind, site, target, variant) with distinct sites."""
    rng = random.Random(0x6B74_6578)
    cases: list[tuple[str, int, int, int]] = []
    used: set[int] = set()

    def add(kind: str, pc: int, addr: int) -> None:
        while pc in used:  # every case needs a site of its own
            pc = (pc + 0x10_0000_0000) & MASK64
            addr = (addr + 0x10_0000_0000) & MASK64
        used.add(pc)
        cases.append((kind, pc, addr & MASK64, rng.randrange(64)))

    for kind, (reach, align, _, _) in KINDS.items():
        for base in EDGE_SITES:
            if kind == "adrp":
                first = base & ~0xFFF
                add(kind, base, first + reach - 1)
                add(kind, base, first - reach)
            else:
                add(kind, base, base + reach - align)
                add(kind, base, base - reach)
        for _ in range(20):
            pc = rng.randrange(0, 1 << 62) * 4
            offset = rng.randrange(-reach // align, reach // align) * align
            add(kind, pc, pc + offset)
    return cases


CASES = build_cases()


@pytest.fixture(scope="module")
def gnu_words(tmp_path_factory: pytest.TempPathFactory) -> dict[int, int]:
    """Site -> the word GNU as + ld produced there."""
    work: Path = tmp_path_factory.mktemp("insn_gnu")
    lines = []
    args = [GNU_LD, "-o", str(work / "cases.elf"), str(work / "cases.o"), "-e", "0",
            "-z", "max-page-size=0x1000", "-z", "common-page-size=0x1000"]  # fmt: skip
    for i, (kind, pc, addr, variant) in enumerate(CASES):
        lines += [f'.section .t{i},"ax"', KINDS[kind][2](f"tgt{i}", variant)]
        args += [f"--section-start=.t{i}={pc:#x}", f"--defsym=tgt{i}={addr:#x}"]
    (work / "cases.s").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [GNU_AS, str(work / "cases.s"), "-o", str(work / "cases.o")],
        check=True,
        capture_output=True,
    )
    subprocess.run(args, check=True, capture_output=True)
    words = {}
    with open(work / "cases.elf", "rb") as f:
        for section in ELFFile(f).iter_sections():
            if section.name.startswith(".t"):
                words[section["sh_addr"]] = int.from_bytes(section.data(), "little")
    assert len(words) == len(CASES)
    return words


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generators_match_gnu(gnu_words: dict[int, int], kind: str) -> None:
    mismatches = []
    checked = 0
    for k, pc, addr, variant in CASES:
        if k != kind:
            continue
        ours = KINDS[kind][3](pc, addr, variant)
        if ours != gnu_words[pc]:
            mismatches.append(f"{pc:#x} -> {addr:#x}: ours {ours:#010x}, GNU {gnu_words[pc]:#010x}")
        checked += 1
    assert checked >= 30
    assert not mismatches, "\n".join(mismatches)
