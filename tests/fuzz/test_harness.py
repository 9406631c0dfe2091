"""The fuzz harness itself: verdicts, the time box, the supervisor's crash and hang
records, and the page-table target's reference walk (so a disagreement means
something)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emu.hw.pagetable import Access, FaultKind, Geometry, make_tcr, make_ttbr, walk
from emu.kernel.mmu import create_pgd_mapping
from emu.kernel.pgtable_prot import PAGE_KERNEL_ROX, PAGE_USER
from fuzz.harness import message_shape, run_case
from fuzz.targets import get_target
from fuzz.targets.pagetable import HEADER, RAM_BASE, decode_input, reference_walk

REPO = Path(__file__).resolve().parents[2]
SELFTEST = get_target("selftest")


@pytest.mark.parametrize(
    ("data", "kind", "label"),
    [
        (b"ok", "ok", "clean"),
        (b"bad", "rejected", "ConfigError: a documented rejection"),
        (b"boom", "traceback", "KeyError at fuzz/targets/selftest.py:"),
        (b"multi", "violation", "violation: error message spans several lines"),
        (b"slow", "hang", "hang (0.5 s)"),
    ],
)
def test_verdicts(data: bytes, kind: str, label: str) -> None:
    verdict = run_case(SELFTEST, data)
    assert verdict.kind == kind
    assert verdict.label.startswith(label)
    assert verdict.failed == (kind not in ("ok", "rejected"))


def test_message_shape_drops_place_and_numbers() -> None:
    assert message_shape("k.elf: segment at 0x1000 is 0x20 bytes") == "segment at N is N bytes"
    assert message_shape("t.S:12: unknown directive .foo") == "unknown directive .foo"


@pytest.mark.slow
def test_supervisor_records_crashes_and_hangs_and_keeps_going(tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", "--target", "selftest", "--seconds", "12",
         "--findings", str(tmp_path), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (stats,) = json.loads(out.read_text())
    kinds = stats["kinds"]
    assert kinds.get("crash", 0) >= 1 and kinds.get("hang", 0) >= 1, stats
    labels = {f["signature"] for f in stats["failures"]}
    assert "crash: child signal SIGSEGV" in labels
    assert any(label.startswith("hang: no progress") for label in labels)
    saved = {p.read_bytes() for p in (tmp_path / "selftest").glob("*.bin")}
    assert b"crash" in saved and b"hang" in saved
    assert "selftest" in proc.stdout.splitlines()[1]
    replay = subprocess.run(
        [sys.executable, "-m", "fuzz", "--target", "selftest", "--replay",
         str(next((tmp_path / "selftest").glob("crash-*.bin")))],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replay.returncode == -11  # the crash reproduces in the foreground


def test_list_names_every_target() -> None:
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0
    assert [line.split()[0] for line in proc.stdout.splitlines()] == [
        "elf", "asm", "ldscript", "toml", "pagetable", "ldst", "boot", "sweep", "replay",
        "report"]


# -- the reference walk of the pagetable target ------------------------------------


class _Ram:
    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def read_u64(self, pa: int) -> int:
        if not RAM_BASE <= pa < RAM_BASE + (1 << 24):
            raise IndexError(pa)
        return self.words.get(pa, 0)

    def write_u64(self, pa: int, value: int) -> None:
        self.words[pa] = value


@pytest.mark.parametrize(("granule", "va_bits"), [(4096, 48), (16384, 47), (65536, 42)])
def test_reference_walk_translates_a_real_mapping(granule: int, va_bits: int) -> None:
    g = Geometry(granule, va_bits)
    ram = _Ram()
    tables = iter(range(RAM_BASE + granule, RAM_BASE + (1 << 24), granule))
    va = g.upper_base + 16 * granule
    create_pgd_mapping(ram, g, RAM_BASE, va, 0x8000_0000, 2 * granule, PAGE_KERNEL_ROX,
                       lambda: next(tables))  # fmt: skip
    tcr, ttbr = make_tcr(g), make_ttbr(RAM_BASE)
    got = reference_walk(ram.read_u64, tcr, 0, ttbr, va + granule + 12, Access.FETCH, 1)
    assert (got.pa, got.fault, got.perms) == (0x8000_0000 + granule + 12, None,
                                              (True, False, True))  # fmt: skip
    write = reference_walk(ram.read_u64, tcr, 0, ttbr, va, Access.WRITE, 1)
    assert write.fault == (FaultKind.PERMISSION, 3)
    hole = reference_walk(ram.read_u64, tcr, 0, ttbr, va + 8 * granule, Access.READ, 1)
    assert hole.fault[0] == FaultKind.TRANSLATION and hole.pa is None
    for probe in (va, va + granule, va + 8 * granule):
        real = walk(ram.read_u64, tcr, 0, ttbr, probe, Access.READ, 1)
        ref = reference_walk(ram.read_u64, tcr, 0, ttbr, probe, Access.READ, 1)
        assert real.pa == ref.pa
        assert ((real.fault.kind, real.fault.level) if real.fault else None) == ref.fault


def test_reference_walk_sees_el0_rules_and_the_target_catches_a_disagreement() -> None:
    g = Geometry(4096, 48)
    ram = _Ram()
    tables = iter(range(RAM_BASE + 4096, RAM_BASE + (1 << 24), 4096))
    create_pgd_mapping(ram, g, RAM_BASE, 0x40_0000, 0x9000_0000, 4096, PAGE_USER,
                       lambda: next(tables))  # fmt: skip
    tcr, ttbr = make_tcr(g), make_ttbr(RAM_BASE)
    el0 = reference_walk(ram.read_u64, tcr, ttbr, 0, 0x40_0010, Access.WRITE, 0)
    assert (el0.pa, el0.perms) == (0x9000_0010, (True, True, False))
    el1_fetch = reference_walk(ram.read_u64, tcr, ttbr, 0, 0x40_0010, Access.FETCH, 1)
    assert el1_fetch.fault == (FaultKind.PERMISSION, 3)  # EL0-writable is never EL1-executable
    # Encoded as a pagetable-target input, the same memory runs clean...
    image = bytearray(1 << 16)
    for pa, value in ram.words.items():
        image[pa - RAM_BASE : pa - RAM_BASE + 8] = value.to_bytes(8, "little")
    data = HEADER.pack(tcr, ttbr, 0, 0x40_0010, Access.WRITE, 0, 8) + bytes(image)
    assert decode_input(data)[3] == 0x40_0010
    target = get_target("pagetable")
    assert run_case(target, data).kind == "ok"
    # ...and a walker that got one permission wrong would be caught.
    from fuzz.targets import pagetable as module

    real_walker = module.Walker

    class WrongWalker(real_walker):  # type: ignore[misc, valid-type]
        def walk(self, *args):  # type: ignore[no-untyped-def]
            result = super().walk(*args)
            result.writable = not result.writable
            return result

    module.Walker = WrongWalker
    try:
        verdict = run_case(target, data)
    finally:
        module.Walker = real_walker
    assert verdict.kind == "violation" and "differ from the reference" in verdict.detail
