# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""The cache model: the guest's patch routine does every maintenance step
the architecture asks for on every node's copy (with and without IDC/DIC and
the clean-cache erratum), and the checker names the step a faulty routine
leaves out."""

from __future__ import annotations

import pytest

from emu.checks.icache import IcacheChecker, hotpatch_safe
from emu.kernel.insn import AARCH64_INSN_NOP, aarch64_insn_gen_branch_imm
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

SITE = "sys_ni_syscall"

# Patch routines with one step left out each; "good_patch" has them all,
# per copy, the way ktext_replication_patch() does it.  They write the
# copies of nodes 1.. only: node 0's linear alias is read-only
# (mark_linear_text_alias_ro) and Linux writes it through the fixmap.
ROUTINES = """
	.include "asm-offsets.inc"
	.text
	.macro	patch_routine name, do_dc, do_dsb1, do_ic, do_dsb2, do_isb
	.globl	\\name
	.type	\\name, %function
\\name:
	adrp	x2, _stext
	add	x2, x2, :lo12:_stext
	sub	x4, x0, x2
	adrp	x5, boot_regs
	add	x5, x5, :lo12:boot_regs
	ldr	x6, [x5, #BOOT_NR_NODES]
	adrp	x7, kernel_texts
	add	x7, x7, :lo12:kernel_texts
	adrp	x8, ktext_lm_stext
	ldr	x8, [x8, :lo12:ktext_lm_stext]
	mov	x10, #1
1:	ldr	x9, [x7, x10, lsl #3]
	cbz	x9, 5f
	add	x9, x9, x4
	str	w1, [x9]
	.if	\\do_dc
	dc	cvau, x9
	.endif
	.if	\\do_dsb1
	dsb	ish
	.endif
	.if	\\do_ic
	ic	ivau, x9
	.endif
	.if	\\do_dsb2
	dsb	ish
	.endif
5:	add	x10, x10, #1
	cmp	x10, x6
	b.lo	1b
	.if	\\do_isb
	isb
	.endif
	ret
	.size	\\name, . - \\name
	.endm

	patch_routine good_patch, 1, 1, 1, 1, 1
	patch_routine patch_no_dc, 0, 1, 1, 1, 1
	patch_routine patch_no_first_dsb, 1, 0, 1, 1, 1
	patch_routine patch_no_ic, 1, 1, 0, 1, 1
	patch_routine patch_no_isb, 1, 1, 1, 1, 0
"""
ROUTINE_NAMES = ("good_patch", "patch_no_dc", "patch_no_first_dsb", "patch_no_ic", "patch_no_isb")


@pytest.fixture
def routines(tmp_path):
    path = tmp_path / "patch_routines.S"
    path.write_text(ROUTINES)
    return path


def movz_x0(imm: int) -> int:
    return 0xD2800000 | (imm << 5)


def test_hotpatch_safe_set():
    safe = [AARCH64_INSN_NOP, 0x14000010, 0x94000010, 0xD4200000, 0xD4000001, 0xD4000002,
            0xD4000003]  # fmt: skip
    unsafe = [movz_x0(1), 0xD503201F + 0x20, 0x54000040, 0xB4000040, 0xD65F03C0, 0xD5033FDF]
    assert all(hotpatch_safe(word) for word in safe)
    assert not any(hotpatch_safe(word) for word in unsafe)


@pytest.mark.parametrize("features", [(), ("ARM64_HAS_CACHE_IDC",), ("ARM64_HAS_CACHE_DIC",),
                                      ("ARM64_HAS_CACHE_IDC", "ARM64_HAS_CACHE_DIC"),
                                      ("ARM64_WORKAROUND_CLEAN_CACHE",)],
                         ids=lambda f: "+".join(f) or "none")  # fmt: skip
def test_guest_patch_routine_follows_the_model(ktext_lab_factory, features):
    lab = ktext_lab_factory(nodes=4, cpu_features=features)
    site = lab.sym("static_key_storm_site")  # NOP <-> B: safe to change under other CPUs
    jump = aarch64_insn_gen_branch_imm(site, site + 8, False)  # to "orr x0, x0, #16"
    checker = lab.icache_checker(watch=[site])
    for node in range(4):
        cpu = lab.cpus_on_node(node)[0]
        word = jump if node % 2 == 0 else AARCH64_INSN_NOP
        assert lab.guest_patch(cpu, site, word) == 0
        for other in lab.cpus():
            assert bool(lab.call(other, "static_key_probe")["x0"] & 16) == (word == jump)
    assert checker.violations == [], [v.message() for v in checker.violations]
    assert checker.stores == 4 * 4  # four patches, each on four copies
    assert checker.unpublished() == []
    assert checker.in_flight  # other CPUs ran it before synchronising: allowed, recorded
    # a static key flip goes through the same routine
    lab.guest_key(5, "storm_key")
    assert checker.violations == [] and checker.unpublished() == []


@pytest.mark.parametrize("routine,missing", [
    ("patch_no_dc", "never cleaned to the PoU"),
    ("patch_no_first_dsb", "not invalidated in the I-cache after its clean completed"),
    ("patch_no_ic", "not invalidated in the I-cache after its clean completed"),
    ("patch_no_isb", "no isb after the maintenance completed"),
])  # fmt: skip
def test_checker_names_the_missing_step(ktext_lab_factory, routines, routine, missing):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1, extra_sources=(routines,))
    site = lab.sym(SITE)
    checker = IcacheChecker(lab.system, watch=[site], completion=ROUTINE_NAMES)
    lab.call(1, routine, site, AARCH64_INSN_NOP)
    found = [v for v in checker.violations if missing in v.what]
    assert {v.node for v in found} == {1, 2}, [v.message() for v in checker.violations]
    assert all(v.cpu == 1 and v.va == site and v.symbol == SITE for v in found)


def test_checker_accepts_the_complete_routine(ktext_lab_factory, routines):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1, extra_sources=(routines,))
    site = lab.sym(SITE)
    checker = IcacheChecker(lab.system, watch=[site], completion=ROUTINE_NAMES)
    lab.call(2, "good_patch", site, movz_x0(4))
    assert checker.violations == []
    assert checker.unpublished() == []


def test_running_an_unsafe_pair_in_flight_is_a_violation(ktext_lab_factory, routines):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, extra_sources=(routines,))
    site = lab.sym(SITE)
    checker = IcacheChecker(lab.system, watch=[site], completion=())
    lab.call(0, "patch_no_ic", site, movz_x0(6))  # never published
    assert lab.call(1, SITE)["x0"] == 6  # the emulator shows the new one at once...
    flights = [f for f in checker.in_flight if f.cpu == 1]
    assert flights and not flights[0].published
    # ...but the architecture allows either: mov over mov is not hot-patch safe
    assert any("CONSTRAINED UNPREDICTABLE" in v.what and v.cpu == 1 for v in checker.violations)


def test_running_a_safe_pair_in_flight_is_allowed(ktext_lab_factory, routines):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, extra_sources=(routines,))
    site = lab.sym(SITE)
    branch = aarch64_insn_gen_branch_imm(site, site + 4, False)  # b to the ret
    lab.patch(site, AARCH64_INSN_NOP)
    checker = IcacheChecker(lab.system, watch=[site], completion=())
    lab.call(0, "good_patch", site, branch)
    lab.call(1, SITE)  # published, but CPU 1 has not synchronised since: old or new
    assert [f.cpu for f in checker.in_flight] == [1]
    assert checker.in_flight[0].published
    assert checker.violations == []
